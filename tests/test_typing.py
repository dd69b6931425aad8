"""Types that reach users: plain ``mypy src/sipedge`` at 0 errors, the native
modules' ``.pyi`` stubs checked against the built modules with stubtest, and
the README's examples type-checking as typed (mistakes rejected)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import importlib.util

import pytest

from conftest import ROOT, _missing

pytestmark = pytest.mark.once
TYPING = os.path.join(ROOT, "tests", "typing")


@pytest.fixture(scope="module")
def mypy(tmp_path_factory):
    if importlib.util.find_spec("mypy") is None:
        _missing("mypy is not installed: pip install -e '.[test]'")
    cache = tmp_path_factory.mktemp("mypy-cache")

    def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache), *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=600,
                              env=dict(os.environ, MYPYPATH=os.path.join(ROOT, "src"),
                                       **(env or {})))
    return run


def test_mypy_src_sipedge_has_no_errors(mypy):
    out = mypy("src/sipedge")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert out.stdout.startswith("Success: no issues found"), out.stdout


def test_readme_examples_are_typed(mypy):
    """assert_type in the script fails unless sipedge's names carry real types
    (not Any from the lazy __getattr__ or the implementation chooser)."""
    out = mypy(os.path.join(TYPING, "readme_ok.py"))
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_mistakes_in_user_code_are_rejected(mypy):
    path = os.path.join(TYPING, "readme_bad.py")
    with open(path, encoding="utf-8") as f:
        want = {i for i, line in enumerate(f, 1) if line.rstrip().endswith("# E")}
    assert len(want) >= 6
    out = mypy(path)
    assert out.returncode == 1, out.stdout + out.stderr
    got = {int(m.group(1)) for m in re.finditer(r"readme_bad\.py:(\d+): error:", out.stdout)}
    assert got == want, out.stdout


@pytest.mark.needs_native
def test_stubs_match_the_native_modules(mypy):
    """``stubtest`` imports the built modules and compares them with the .pyi stubs
    (tests/typing/stubtest-allowlist.txt lists Cython's own additions)."""
    from sipedge import _impl

    for piece in _impl.PIECES:
        _impl.native(piece)  # built, or this test cannot say anything
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "--ignore-disjoint-bases",
         "--allowlist", os.path.join(TYPING, "stubtest-allowlist.txt"),
         *(f"sipedge._{p}" for p in _impl.PIECES)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, MYPYPATH=os.path.join(ROOT, "src"),
                 PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"),
                                             os.environ.get("PYTHONPATH", "")])))
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
