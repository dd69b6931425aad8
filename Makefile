# sipedge developer targets. `make test` is the one command that sets up and
# runs the whole suite (CI runs exactly that through .ci/run).
PYTHON ?= python3
PYTEST ?= $(PYTHON) -m pytest
PYTEST_ARGS ?=

.PHONY: test deps build build-debug test-native test-python plan bench clean

## test: install what the suite needs, build, run pytest native and pure-Python
test: deps build
	$(PYTEST) $(PYTEST_ARGS)
	SIPEDGE_NO_EXTENSIONS=1 $(PYTEST) $(PYTEST_ARGS)

## deps: pip packages of the [test] extra; apt tools (nftables, sipp, tshark, ...) when root
deps:
	bash .ci/install-deps

## build: compile the C core and Cython modules in place (src/sipedge/*.so)
build:
	$(PYTHON) setup.py -q build_ext --inplace

## build-debug: -O0 -g with AddressSanitizer and UBSan (see SIPEDGE_DEBUG in setup.py)
build-debug:
	SIPEDGE_DEBUG=1 $(PYTHON) setup.py -q build_ext --inplace --force

test-native: build
	$(PYTEST) $(PYTEST_ARGS)

test-python:
	SIPEDGE_NO_EXTENSIONS=1 $(PYTEST) $(PYTEST_ARGS)

## plan: print the nftables ruleset for the embedded Twilio dataset
plan: build
	PYTHONPATH=src $(PYTHON) -m sipedge firewall plan

## bench: benchmarks side by side with the peers (pytest-benchmark)
bench: build
	PYTHONPATH=src $(PYTEST) bench --benchmark-only --benchmark-json=bench.json -p no:cacheprovider

clean:
	rm -rf build dist wheelhouse src/*.egg-info src/sipedge/_*.c src/sipedge/*.so src/sipedge/*.html

# ----------------------------------------------------------------- classifier (issue 4)
.PHONY: build-asan test-asan fuzz-classify bench-classify
ASAN_BUILD ?= build/asan
ASAN_PYTEST_ARGS ?= tests/test_classify.py tests/test_classify_random.py tests/test_capture.py tests/test_conformance.py tests/test_classify_flow.py tests/test_classify_stream.py tests/test_classify_asan.py -m "not netns"

## build-asan: ASan/UBSan build into $(ASAN_BUILD)/lib (the in-place .so files stay untouched)
build-asan:
	SIPEDGE_DEBUG=1 $(PYTHON) setup.py -q build --build-base $(ASAN_BUILD) --build-lib $(ASAN_BUILD)/lib --force

## test-asan: the classifier's tests once against the ASan/UBSan build (ASAN_PYTEST_ARGS=tests for all)
test-asan: build-asan
	LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 SIPEDGE_EXPECT_ASAN=1 \
	timeout 900 $(PYTEST) -q -p no:cacheprovider -o pythonpath=$(ASAN_BUILD)/lib $(ASAN_PYTEST_ARGS)

## fuzz-classify: atheris over the classifier and capture readers, bounded (FUZZ_SECONDS)
FUZZ_SECONDS ?= 60
fuzz-classify: build
	PYTHONPATH=src $(PYTHON) tests/fuzz_classify.py -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048

## bench-classify: classifier throughput beside dpkt and scapy
bench-classify: build
	PYTHONPATH=src $(PYTEST) bench/bench_classify.py --benchmark-only -p no:cacheprovider \
	  --benchmark-min-rounds 3 --benchmark-max-time 0.5 -s

.PHONY: bench-allowlist
## bench-allowlist: Allowlist.match and 100k load (sipedge native, pure-Python, pytricia), short run
bench-allowlist: build
	PYTHONPATH=src $(PYTEST) bench/bench_allowlist.py --benchmark-only -p no:cacheprovider \
		--benchmark-min-rounds 3 --benchmark-max-time 0.5 --benchmark-columns=min,mean,rounds \
		--benchmark-group-by=group

.PHONY: bench-firewall
## bench-firewall: firewall apply/sync beside nft -f and ipset restore (root; ~3 min,
## 2 of them are nft's own 1% element sync of a 100k-prefix set)
bench-firewall: build
	PYTHONPATH=src $(PYTEST) bench/bench_firewall.py --benchmark-only --benchmark-min-rounds 3 \
		--benchmark-max-time 0.5 -p no:cacheprovider
