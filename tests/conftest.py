"""Shared fixtures: both implementations, required tools, root checks.

Every test of a piece with two implementations takes the ``impl`` fixture and
runs once per implementation (``impl("prefix")`` is the module to test). In a
build with ``SIPEDGE_NO_EXTENSIONS=1`` only the Python twin runs; otherwise the
native module must import (a failure here is a failure, not a skip).

With ``CI=true`` a missing tool or missing root fails the test instead of
skipping it, so CI cannot go green on a machine that lacks what it needs.
"""
from __future__ import annotations

import os
import shutil

import pytest

from sipedge import _impl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
#: SIPEDGE_TEST_INSTALLED=1 (.ci/wheel-test): test the installed package, not src/
TEST_INSTALLED = os.environ.get("SIPEDGE_TEST_INSTALLED", "") not in ("", "0")
if not TEST_INSTALLED:
    # subprocesses (python -m sipedge ...) import the same tree as the tests
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [SRC] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

#: Captures kept outside the repository (tests/test_conformance.py, marker
#: ``shared_captures``) in ``shared/captures`` beside the clone. The workplace
#: this project is developed in lays a ``shared/`` folder beside every clone,
#: CI's included: where ``../shared`` exists, the captures are expected (missing
#: ones fail under CI=true); where it does not (a plain clone anywhere else),
#: those tests are deselected and the run says so at its end. The suite's own
#: captures (sipp + tcpdump in namespaces) run everywhere.
SHARED_CAPTURES = os.path.join(os.path.dirname(ROOT), "shared", "captures")
SHARED_EXPECTED = os.path.isdir(os.path.dirname(SHARED_CAPTURES))
IMPLEMENTATIONS = ["python"] if _impl.NO_EXTENSIONS else ["native", "python"]


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing requirement is a failure; run `make test` as root)")
    pytest.skip(reason)


def require_tool(*names: str) -> None:
    """Skip (fail in CI) when a command-line tool is not installed."""
    for name in names:
        if shutil.which(name) is None:
            _missing(f"{name} is not installed")


def require_root() -> None:
    """Skip (fail in CI) when not root: namespaces and netlink need it."""
    if os.geteuid() != 0:
        _missing("needs root (network namespaces, nftables)")


UNDER_ASAN = os.environ.get("SIPEDGE_EXPECT_ASAN") == "1"


def _scale() -> float:
    raw = os.environ.get("SIPEDGE_TEST_SCALE", "") or "1"
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise pytest.UsageError(f"SIPEDGE_TEST_SCALE={raw!r}: give a number in (0, 1], e.g. 0.25")
    return value


#: SIPEDGE_TEST_SCALE (0 < s <= 1, default 1): the share of the full example
#: and sample counts that the heaviest randomized tests run (hypothesis's
#: max_examples, the statistical tests' draws, the rate-limit run's picks),
#: through ``scaled()``. .ci/test-arm64 sets 0.25: under qemu-user emulation
#: Python runs ~10x slower, and the aarch64 pass is there to catch what
#: differs on that architecture, not to repeat the host's statistics at full
#: size. Every other run (make test on the host, the wheels) uses the full
#: counts. The statistical tests keep their significance level at any count
#: (chi-square cells are merged below an expectation of 10; tolerances are
#: computed from the count).
SCALE = _scale()


def scaled(n: int, floor: int = 10) -> int:
    """*n* times SIPEDGE_TEST_SCALE, at least *floor* (and never more than *n*)."""
    return n if SCALE == 1 else min(n, max(floor, round(n * SCALE)))
#: SIPEDGE_TWIN_TESTED=1: this is the pure-Python pass of a run whose native
#: pass came first (``make test``, .ci/test-arm64, .ci/wheel-test) under the
#: same interpreter. That pass already ran every ``impl``-parametrized test on
#: the twin (its ``[python]`` cases), so this pass leaves them out and runs the
#: rest -- the tests of the default implementation, which here is the twin with
#: no extension module at all. Half of the pure-Python pass's time, and most of
#: it under qemu, was that repetition.
TWIN_TESTED = os.environ.get("SIPEDGE_TWIN_TESTED", "") not in ("", "0")


def pytest_collection_modifyitems(config, items):
    """Deselect (not skip) what does not apply to this run: ``needs_native``
    tests compare the native build with the twin, so they have nothing to do
    in a ``SIPEDGE_NO_EXTENSIONS=1`` run, nor have ``once`` tests (they do
    not depend on the implementation: packaging, typing, layout, the firewall
    in a namespace beside its own diff twin); ``asan_only`` tests check the
    sanitized build and run only inside ``make test-asan``; ``not_under_asan``
    tests start that run and must not start it again from inside."""
    keep, drop = [], []
    for item in items:
        why = _deselect_reason(item)
        if why:
            drop.append(item)
            DESELECTED[why] = DESELECTED.get(why, 0) + 1
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


#: fixtures of namespaces with sipedge's firewall in them: that code is the same
#: Python in both passes (the pieces with twins, _setdiff and _prefix, have their
#: own tests over both implementations), so the native pass runs them once
FIREWALL_NS_FIXTURES = frozenset({"fw_ns", "lab", "ipset_ns"})
#: why tests were deselected in this run: reason -> count (printed at the end)
DESELECTED: dict = {}


def _deselect_reason(item) -> str:
    if not SHARED_EXPECTED and item.get_closest_marker("shared_captures"):
        return (f"shared_captures: no {os.path.dirname(SHARED_CAPTURES)} beside this clone (the "
                "tshark-labelled captures live outside the repository; the suite's own sipp/tcpdump "
                "captures cover the same rules)")
    if _impl.NO_EXTENSIONS:
        if item.get_closest_marker("needs_native"):
            return "needs_native: compares the native build with the twin"
        if item.get_closest_marker("once"):
            return "once: does not depend on the implementation, ran in the native pass"
        if FIREWALL_NS_FIXTURES & set(getattr(item, "fixturenames", ())):
            return "firewall in a namespace: the same code in both passes, ran in the native pass"
        callspec = getattr(item, "callspec", None)
        if TWIN_TESTED and callspec is not None and callspec.params.get("impl") == "python":
            return ("impl=python: ran on the twin in the native pass (SIPEDGE_TWIN_TESTED=1, same "
                    "interpreter)")
    if not UNDER_ASAN and item.get_closest_marker("asan_only"):
        return "asan_only: runs inside make test-asan"
    if UNDER_ASAN and item.get_closest_marker("not_under_asan"):
        return "not_under_asan: starts the ASan run itself"
    return ""


def pytest_terminal_summary(terminalreporter):
    if SCALE != 1:
        terminalreporter.write_line(f"SIPEDGE_TEST_SCALE={SCALE:g}: the heaviest randomized tests ran "
                                    f"{SCALE:.0%} of their examples and draws")
    for why, n in sorted(DESELECTED.items()):
        terminalreporter.write_line(f"deselected {n}: {why}")


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request):
    """Returns ``load(piece) -> module`` for the implementation under test."""
    which = request.param

    def load(piece: str):
        return _impl.native(piece) if which == "native" else _impl.python(piece)

    load.name = which
    return load
