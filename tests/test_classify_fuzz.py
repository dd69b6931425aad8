"""Run the atheris fuzz target for a bounded time (native vs Python, no crash)."""
import os
import subprocess
import sys

import pytest

from conftest import _missing

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.slow
@pytest.mark.needs_native
def test_fuzz_target_runs_clean(tmp_path):
    try:
        import atheris  # noqa: F401
    except ImportError:
        if sys.version_info >= (3, 12):
            pytest.skip("atheris (the [test] extra installs it up to Python 3.11 only)")
        _missing("atheris is not installed: pip install atheris (see `make deps`)")
    r = subprocess.run([sys.executable, os.path.join(HERE, "fuzz_classify.py"),
                        "-runs=15000", "-max_total_time=20", "-rss_limit_mb=2048",
                        f"-artifact_prefix={tmp_path}/"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Done" in r.stderr or "DONE" in r.stderr or "runs in" in r.stderr, r.stderr[-2000:]
