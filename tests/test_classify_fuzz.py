"""Run the atheris fuzz target for a bounded time (native vs Python, no crash)."""
import os
import platform
import subprocess
import sys

import pytest

from conftest import TEST_INSTALLED, _missing

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.slow
@pytest.mark.needs_native
def test_fuzz_target_runs_clean(tmp_path):
    try:
        import atheris  # noqa: F401
    except ImportError:
        # the [fuzz] extra's markers (pyproject.toml); the wheels' tests do not install it
        if sys.version_info >= (3, 12) or platform.machine() != "x86_64" or TEST_INSTALLED:
            pytest.skip("atheris: the [fuzz] extra installs it on x86_64 up to Python 3.11 "
                        "(make deps), not for the wheels' tests")
        _missing("atheris is not installed: pip install atheris (the [fuzz] extra; see `make deps`)")
    r = subprocess.run([sys.executable, os.path.join(HERE, "fuzz_classify.py"),
                        "-runs=15000", "-max_total_time=20", "-rss_limit_mb=2048",
                        f"-artifact_prefix={tmp_path}/"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Done" in r.stderr or "DONE" in r.stderr or "runs in" in r.stderr, r.stderr[-2000:]
