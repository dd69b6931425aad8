"""The classifier's tests once more against the ASan/UBSan debug build
(``make test-asan``: built into build/asan, the in-place modules untouched)."""
import os
import subprocess
import sys

import pytest

from conftest import require_tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.asan_only
def test_asan_build_is_the_one_loaded():
    """Under `make test-asan`, the classifier really is the sanitized build."""
    from sipedge import _impl

    mod = _impl.native("classify")
    assert os.sep + os.path.join("asan", "lib", "sipedge") in mod.__file__
    with open(mod.__file__, "rb") as f:
        assert b"__asan_init" in f.read()


@pytest.mark.slow
@pytest.mark.needs_native
@pytest.mark.not_under_asan
def test_suite_under_asan_ubsan():
    require_tool("make", "gcc")
    env = dict(os.environ, PYTHON=sys.executable)
    r = subprocess.run(["make", "-s", "test-asan",
                        "ASAN_PYTEST_ARGS=tests/test_classify.py tests/test_classify_random.py "
                        "tests/test_capture.py tests/test_conformance.py tests/test_classify_flow.py "
                        "tests/test_classify_asan.py -m 'not netns'"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    tail = (r.stdout + r.stderr)[-4000:]
    assert r.returncode == 0, tail
    assert "passed" in r.stdout and "ERROR: AddressSanitizer" not in r.stderr, tail
    assert "runtime error:" not in r.stderr, tail
