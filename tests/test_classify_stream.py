"""Captures that change underneath the reader, and --frames output that streams
with constant memory (both implementations)."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import time

import pytest

from sipedge.errors import CaptureError
from classify_util import pcap_bytes

HERE = os.path.dirname(os.path.abspath(__file__))

# raw IPv4 (link type 228): a 20-byte header, protocol 0 -- the smallest IP frame
SMALL = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20, 0, 0, 64, 0, 0, b"\xc0\0\x02\x01",
                    b"\xc0\0\x02\x02")
RECORD = struct.pack("<IIII", 0, 0, len(SMALL), len(SMALL)) + SMALL
HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 228)


def write_small_capture(path: str, frames: int) -> None:
    block = RECORD * 65536
    with open(path, "wb") as f:
        f.write(HEADER)
        full, rest = divmod(frames, 65536)
        for _ in range(full):
            f.write(block)
        f.write(RECORD * rest)


def test_capture_shrinking_under_the_reader(impl, tmp_path):
    """A file truncated while it is read: CaptureError naming the offset, no SIGBUS."""
    clf = impl("classify").Classifier()
    p = tmp_path / "big.pcap"
    n = 200_000  # 7.2 MB: more than the reader's 1 MiB window
    write_small_capture(str(p), n)
    stream = clf.iter_pcap(str(p), flows=True, chunk=1000)
    first = next(stream)
    assert len(first) == 1000
    os.truncate(p, 4096 + 7)  # cut inside a record
    with pytest.raises(CaptureError) as e:
        for _ in stream:
            pass
    msg = str(e.value)
    assert "byte offset" in msg and ("truncated pcap record" in msg or "shrank" in msg), msg
    off = int(msg.split("byte offset ")[1].split(":")[0])
    # what was read before the cut is classified: the flow mode reads 65536
    # frames (2.3 MB here) ahead of its output, the native reader a 1 MiB window
    assert 4096 - 36 <= off <= 4 * (1 << 20), msg


@pytest.mark.slow
@pytest.mark.parametrize("flows", [True, False])
def test_capture_shrinking_progress_callback(impl, tmp_path, flows):
    """The same through classify_pcap: the file is cut from the progress callback."""
    mod = impl("classify")
    clf = mod.Classifier()
    p = tmp_path / "big.pcap"
    write_small_capture(str(p), (1 << 20) + 200_000)  # 7 MB after the first callback
    calls = []

    def cut(done, total):
        calls.append(done)
        os.truncate(p, done + 5)

    with pytest.raises(CaptureError, match=r"byte offset \d+: (truncated pcap record|the capture "
                                           r"file shrank)"):
        clf.classify_pcap(str(p), flows=flows, progress=cut)
    assert calls


def _run_rss(args: list[str], env: dict) -> tuple[int, int]:
    """(lines of stdout, max RSS in KiB) of a child process that must succeed.

    The child reports its own peak (VmHWM of /proc/self/status) as the last line
    of stderr. ``wait4``'s ru_maxrss would not do: subprocess starts children with
    vfork, and at exec Linux carries the old memory map's peak, which is this
    pytest process's, into the child's maxrss (162 MiB after a full suite run)."""
    assert args[:3] == [sys.executable, "-m", "sipedge"], args
    args = [sys.executable, "-c", _REPORT_HWM, *args[3:]]
    t0 = time.monotonic()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    lines = 0
    while True:
        b = p.stdout.read(1 << 20)
        if not b:
            break
        lines += b.count(b"\n")
    err = p.stderr.read()
    p.wait()
    assert p.returncode == 0, err.decode()[-2000:]
    last = err.decode().rstrip("\n").rsplit("\n", 1)[-1].split()
    assert last[:1] == ["VmHWM:"] and last[2:] == ["kB"], err.decode()[-2000:]
    hwm = int(last[1])
    print(f"{' '.join(args[-3:])}: {lines} lines, max RSS {hwm / 1024:.0f} MiB, "
          f"{time.monotonic() - t0:.1f} s")
    return lines, hwm


#: runs ``sipedge ARGS...`` and writes the process's own peak RSS line to stderr last
_REPORT_HWM = """\
import sys
from sipedge.cli import main
try:
    rc = main(sys.argv[1:])
finally:
    sys.stdout.flush()
    with open("/proc/self/status") as f:
        sys.stderr.write(next(l for l in f if l.startswith("VmHWM:")))
sys.exit(rc)
"""


def _env(impl) -> dict:
    env = dict(os.environ)
    if impl("classify").__name__ != "sipedge._classify":
        env["SIPEDGE_NO_EXTENSIONS"] = "1"
    return env


@pytest.mark.slow
@pytest.mark.not_under_asan
def test_frames_output_streams_with_constant_memory(impl, tmp_path):
    """67 M frames (the issue's figure) natively, text; JSON over 8 M. The twin
    reads 300 k frames (at about 10 us a frame, 67 M would take over ten
    minutes). Frames are 20-byte raw IPv4 headers, to keep the file at 2.4 GB."""
    env = _env(impl)
    native = "SIPEDGE_NO_EXTENSIONS" not in env
    n = 67_000_000 if native else 300_000
    p = tmp_path / "many.pcap"
    try:
        write_small_capture(str(p), n)
        lines, rss = _run_rss([sys.executable, "-m", "sipedge", "classify", "--frames",
                               str(p)], env)
        assert lines == n
        assert rss < 120 * 1024, f"max RSS {rss} KiB"
        write_small_capture(str(p), n // 8)
        jlines, jrss = _run_rss([sys.executable, "-m", "sipedge", "classify", "--frames",
                                 "--json", str(p)], env)
        assert jlines == 1 and jrss < 120 * 1024, f"max RSS {jrss} KiB"
    finally:
        if p.exists():
            p.unlink()


def test_json_frames_stream_is_valid_json(impl, tmp_path):
    import json

    p = tmp_path / "c.pcap"
    p.write_bytes(pcap_bytes([SMALL] * 3, linktype=228))
    env = _env(impl)
    r = subprocess.run([sys.executable, "-m", "sipedge", "classify", "--frames", "--json",
                        str(p)], capture_output=True, text=True, timeout=60, env=env)
    doc = json.loads(r.stdout)
    assert doc["frames"] == 3 and [f["frame"] for f in doc["frame_list"]] == [1, 2, 3]
    assert doc["by_kind"]["other"] == 3
