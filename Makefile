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

.PHONY: bench-firewall
## bench-firewall: firewall apply/sync beside nft -f and ipset restore (root; ~3 min,
## 2 of them are nft's own 1% element sync of a 100k-prefix set)
bench-firewall: build
	PYTHONPATH=src $(PYTEST) bench/bench_firewall.py --benchmark-only --benchmark-min-rounds 3 \
		--benchmark-max-time 0.5 -p no:cacheprovider
