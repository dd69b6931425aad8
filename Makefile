# sipedge developer targets. `make test` is the one command that sets up and
# runs the whole suite (CI runs exactly that through .ci/run).
#
# Every target runs Python from the project's virtual environment, $(VENV),
# made from $(PYTHON) with --system-site-packages by .ci/venv (remade when
# PYTHON changes). So Debian 12's own python3, which refuses a system-wide pip
# install (PEP 668), works as well as a pyenv or CI interpreter:
#   make test PYTHON=/usr/bin/python3
# A PYTHON that is already a virtual environment's interpreter is used as it
# is, and so is PYTHON with VENV= (empty): for an environment made elsewhere.
PYTHON ?= python3
VENV ?= .venv
# the interpreter as an absolute path, and whether it already is a venv's
BASE_INFO := $(shell $(PYTHON) -c 'import sys; print(sys.executable, sys.prefix != sys.base_prefix)' 2>/dev/null)
BASE_PYTHON := $(or $(word 1,$(BASE_INFO)),$(PYTHON))
ifeq ($(word 2,$(BASE_INFO)),True)
override VENV :=
endif
ifneq ($(strip $(VENV)),)
override PYTHON := $(abspath $(VENV))/bin/python
endif
# the environment's console scripts (auditwheel, cibuildwheel, check-jsonschema)
# first on PATH, as if it were activated
ifneq ($(strip $(VENV))$(filter True,$(word 2,$(BASE_INFO))),)
export PATH := $(dir $(PYTHON)):$(PATH)
endif
PYTEST ?= $(PYTHON) -m pytest
PYTEST_ARGS ?=
# warnings are errors when the project builds for itself (setup.py: not for users' sdist builds)
export SIPEDGE_WERROR ?= 1
export PYTEST_ARGS

.PHONY: venv test deps build build-debug test-native test-python test-arm64 plan bench clean

## venv: the virtual environment with the runtime and build requirements
venv:
ifneq ($(strip $(VENV)),)
	@bash .ci/venv "$(BASE_PYTHON)" "$(VENV)"
endif

## test: install what the suite needs, build, run pytest native and pure-Python on
## this machine, then the core suite on aarch64 (test-arm64); a summary at the end
## (TEST_ARM64=no leaves the aarch64 part out and says so)
test: venv
	PYTHON="$(PYTHON)" bash .ci/suite

## deps: pip packages of the extras into the venv; apt packages (nftables, sipp, tshark, ...) when root
deps: venv
	PYTHON="$(PYTHON)" bash .ci/install-deps

## build: compile the C core and Cython modules in place (src/sipedge/*.so)
build: venv
	$(PYTHON) setup.py -q build_ext --inplace

## build-debug: -O0 -g with AddressSanitizer and UBSan (see SIPEDGE_DEBUG in setup.py)
build-debug: venv
	SIPEDGE_DEBUG=1 $(PYTHON) setup.py -q build_ext --inplace --force

test-native: build
	$(PYTEST) $(PYTEST_ARGS)

test-python: venv
	SIPEDGE_NO_EXTENSIONS=1 $(PYTEST) $(PYTEST_ARGS)

## test-arm64: build the native core and run the core suite (no host netfilter) on
## aarch64 under qemu-user, native and pure-Python, in an arm64 Debian 12 root made
## once from this machine's apt sources and cached in /var/cache/sipedge (root)
test-arm64:
	HOST_PYTHON="$(PYTHON)" bash .ci/test-arm64

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
build-asan: venv
	SIPEDGE_DEBUG=1 $(PYTHON) setup.py -q build --build-base $(ASAN_BUILD) --build-lib $(ASAN_BUILD)/lib --force

## test-asan: the classifier's tests once against the ASan/UBSan build (ASAN_PYTEST_ARGS=tests for all)
test-asan: build-asan
	LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 SIPEDGE_EXPECT_ASAN=1 \
	timeout 900 $(PYTEST) -q -p no:cacheprovider -o pythonpath=$(ASAN_BUILD)/lib $(ASAN_PYTEST_ARGS)

## fuzz-classify: atheris over the classifier and capture readers, bounded (FUZZ_SECONDS);
## atheris comes from the [fuzz] extra (x86_64, Python <= 3.11: see pyproject.toml)
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

.PHONY: bench-locate
## bench-locate: cached RFC 3263 resolve beside dnspython; the prober on 1000 targets at 1 s (root, ~30 s)
bench-locate: build
	PYTHONPATH=src $(PYTEST) bench/bench_locate.py --benchmark-only -p no:cacheprovider \
		--benchmark-min-rounds 3 --benchmark-max-time 0.5 --benchmark-columns=ops,mean,rounds -s

.PHONY: bench-firewall
## bench-firewall: firewall apply/sync beside nft -f and ipset restore (root; ~3 min,
## 2 of them are nft's own 1% element sync of a 100k-prefix set)
bench-firewall: build
	PYTHONPATH=src $(PYTEST) bench/bench_firewall.py --benchmark-only --benchmark-min-rounds 3 \
		--benchmark-max-time 0.5 -p no:cacheprovider

# ----------------------------------------------------------------- Kamailio (issue 12)
.PHONY: bench-kamailio kamailio-env
KAMAILIO_PYTHON ?= /usr/bin/python3
KAMAILIO_VENV ?= build/kamailio-venv
BENCH_KAMAILIO_ARGS ?=

## bench-kamailio: Kamailio + sipedge (KEMI) beside Kamailio + dispatcher, same sipp load,
## same run: scenario table, CPU per call, max rate with < 1% failed (root; about 8 min)
bench-kamailio: build
	$(PYTHON) bench/bench_kamailio.py $(BENCH_KAMAILIO_ARGS)

## kamailio-env: a venv of Debian's /usr/bin/python3 (the one app_python3 embeds) with
## sipedge installed; point SIPEDGE_PATH (kamailio -A) / SIPEDGE_KAMAILIO_PATH (tests) at
## the site-packages it prints
kamailio-env:
	$(KAMAILIO_PYTHON) -m venv $(KAMAILIO_VENV)
	$(KAMAILIO_VENV)/bin/python -m pip install -q --disable-pip-version-check .
	@$(KAMAILIO_VENV)/bin/python -c "import sysconfig, sipedge; print(sysconfig.get_paths()['purelib'], sipedge.implementation()['select'])"
