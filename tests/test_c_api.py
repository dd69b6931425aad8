"""The C core's API used straight from C (no Python), under AddressSanitizer and
UBSan: what the Cython binding cannot reach today must hold too."""
from __future__ import annotations

import os
import subprocess

import pytest

from conftest import ROOT, require_tool

pytestmark = pytest.mark.once  # plain C: the same in both passes


def test_capture_codes_grow_past_frames_counted_without_codes(tmp_path):
    """sx_cap_classify without codes, then with codes (capture.h allows it): the
    codes array grows to the frame index instead of one doubling, and a
    configuration with more values than a 24-bit code can name is refused (-3)."""
    require_tool("cc")
    exe = tmp_path / "capture_codes"
    csrc = os.path.join(ROOT, "csrc")
    build = subprocess.run(
        ["cc", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-O1", "-g",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-I", csrc,
         os.path.join(ROOT, "tests", "c", "capture_codes.c"),
         *(os.path.join(csrc, f) for f in ("capture.c", "classify.c", "flow.c", "prefix.c")),
         "-o", str(exe)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120,
                         env=dict(env, ASAN_OPTIONS="detect_leaks=1"))
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr[-3000:]
