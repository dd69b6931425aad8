"""Allowlist and snapshot files that are hostile or simply wrong: refused at once, in
one line, never a hang, a traceback, a MemoryError or a write through a planted link."""
import hashlib
import os
import resource
import subprocess
import sys

import msgpack
import pytest

from sipedge import _files
from sipedge.allowlist import snapshot
from sipedge.allowlist import Allowlist
from sipedge.errors import EXIT_INPUT, AllowlistError, SnapshotError

LAB = """\
[dataset]
name = "lab"
version = "1"

[roles.sig]
ports = ["5060/udp"]

[[ranges]]
role = "sig"
prefixes = ["192.0.2.0/25", "198.51.100.0/24", "203.0.113.64/26", "2001:db8::/48", "2001:db8:5::/48"]
"""

AS_LIMIT = 1 << 30  # 1 GiB of address space: an unbounded read fails fast instead of eating the host


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def _cli(*args, timeout=30):
    """`python -m sipedge ARGS` with bounded memory and time; a hang is a failure."""
    try:
        return subprocess.run([sys.executable, "-m", "sipedge", *args], capture_output=True,
                              text=True, timeout=timeout, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        pytest.fail(f"sipedge {' '.join(args)} did not finish within {timeout} s (it hangs)")


def _one_line_error(r, *words):
    assert r.returncode == EXIT_INPUT, (r.returncode, r.stderr[-500:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    for w in words:
        assert w in lines[0], lines[0]


# ------------------------------------------------------------------ not a regular file
def test_fifo_refused_without_hanging(tmp_path):
    fifo = tmp_path / "allow.toml"
    os.mkfifo(fifo)  # nobody ever writes: the old open() blocked forever
    r = _cli("allowlist", "--file", str(fifo), timeout=20)
    _one_line_error(r, str(fifo), "FIFO", "regular file")


def test_char_device_and_directory_refused(tmp_path):
    # (/dev/zero only in a memory-capped subprocess, below: the old code read it unbounded)
    for path, what in (("/dev/null", "character device"), (str(tmp_path), "directory")):
        with pytest.raises(AllowlistError, match=f"{path}: cannot read allowlist: it is a {what}"):
            Allowlist.load(path)


def test_dev_zero_refused_without_memory_error():
    # the old code read /dev/zero until MemoryError (a traceback), here under a 1 GiB cap
    r = _cli("allowlist", "--file", "/dev/zero")
    _one_line_error(r, "/dev/zero", "character device")


def test_huge_file_refused_by_size(tmp_path):
    big = tmp_path / "big.toml"
    with open(big, "wb") as f:
        f.truncate(8 << 30)  # sparse: 8 GiB long, no disk used
    r = _cli("allowlist", "--file", str(big))
    _one_line_error(r, str(big), "limit")
    # in this process only just over the limit (the old code read what it was given whole)
    with open(big, "wb") as f:
        f.truncate(_files.MAX_INPUT_BYTES + 1)
    with pytest.raises(AllowlistError, match=f"more than the limit of {_files.MAX_INPUT_BYTES}"):
        Allowlist.load(str(big))
    with pytest.raises(SnapshotError, match="limit"):
        snapshot.load(str(big))


def test_file_at_the_limit_is_read(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"a" * 100)
    assert _files.read_regular(str(f), "x", AllowlistError, limit=100) == b"a" * 100
    with pytest.raises(AllowlistError, match="101 bytes, more than the limit of 100"):
        f.write_bytes(b"a" * 101)
        _files.read_regular(str(f), "x", AllowlistError, limit=100)


def test_snapshot_fifo_refused(tmp_path):
    fifo = tmp_path / "a.snap"
    os.mkfifo(fifo)
    code = ("import sys\nfrom sipedge.allowlist import snapshot\nfrom sipedge.errors import SnapshotError\n"
            "try:\n    snapshot.load(sys.argv[1])\nexcept SnapshotError as e:\n    print(e)\n")
    try:  # in a child: the old open() blocked forever
        r = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True,
                           timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("snapshot.load of a FIFO hangs")
    assert "cannot read snapshot: it is a FIFO" in r.stdout, r.stdout + r.stderr


# ------------------------------------------------------------------ deep nesting
@pytest.mark.parametrize("text", [
    "roles = " + "[" * 5000 + "]" * 5000,
    "[roles.sig]\nports = " + "[" * 5000 + "]" * 5000,
    "dataset = " + "{a = " * 3000 + "1" + "}" * 3000,
], ids=["array", "ports-array", "inline-table"])
def test_deep_nesting_is_one_allowlist_error(text, tmp_path):
    with pytest.raises(AllowlistError, match="nested too deeply"):
        Allowlist.from_toml(text, "deep.toml")
    f = tmp_path / "deep.toml"
    f.write_text(text)
    _one_line_error(_cli("allowlist", "--file", str(f)), str(f), "nested too deeply")


# ------------------------------------------------------------------ forged snapshot spans
def _forge_spans(snap, change):
    data = open(snap, "rb").read()
    head = msgpack.unpackb(data[len(snapshot.MAGIC):])
    body = msgpack.unpackb(head["body"])
    change(body["spans"])
    packed = msgpack.packb(body, use_bin_type=True)
    head.update(body=packed, body_sha256=hashlib.sha256(packed).hexdigest())
    with open(snap, "wb") as f:
        f.write(snapshot.MAGIC + msgpack.packb(head, use_bin_type=True))


def _records(b, n):
    return [b[i:i + n] for i in range(0, len(b), n)]


@pytest.mark.parametrize("forgery", ["reversed-v4", "reversed-v6", "overlap-v4", "inverted-v4",
                                     "duplicate-v6"])
def test_forged_unsorted_spans_refused(tmp_path, forgery):
    src = tmp_path / "lab.toml"
    src.write_text(LAB)
    snap = tmp_path / "lab.snap"
    Allowlist.load(str(src)).save_snapshot(str(snap))

    def change(spans):
        p4, n4, p6, n6 = spans["sig"]
        r4, r6 = _records(p4, 8), _records(p6, 32)
        assert len(r4) == 3 and len(r6) == 2
        if forgery == "reversed-v4":
            p4 = b"".join(reversed(r4))
        elif forgery == "reversed-v6":
            p6 = b"".join(reversed(r6))
        elif forgery == "overlap-v4":  # second span starts inside the first
            p4 = r4[0] + r4[0][:4] + r4[1][4:] + r4[2]
        elif forgery == "inverted-v4":  # first > last
            p4 = r4[0][4:] + r4[0][:4] + r4[1] + r4[2]
        else:
            p6 = r6[0] + r6[0]
        spans["sig"] = [p4, n4, p6, n6]

    _forge_spans(snap, change)
    os.unlink(src)  # the snapshot stands alone: only its own content is checked
    with pytest.raises(SnapshotError, match="corrupt allowlist snapshot.*not sorted, disjoint and merged"):
        Allowlist.load(str(snap))
    # the firewall never gets to see it: plan (no root needed) refuses the file
    r = _cli("firewall", "plan", "--allowlist", str(snap))
    _one_line_error(r, str(snap), "not sorted")


def test_genuine_snapshot_spans_pass_the_order_check(tmp_path):
    src = tmp_path / "lab.toml"
    src.write_text(LAB)
    snap = tmp_path / "lab.snap"
    al = Allowlist.load(str(src))
    al.save_snapshot(str(snap))
    back = Allowlist.load(str(snap))
    for v in (4, 6):
        assert back.packed_spans("sig", v) == al.packed_spans("sig", v)
    # adjacent blocks are merged when compiled, so "next first > last + 1" holds for real data
    assert snapshot._ordered(al.packed_spans("sig", 4)[0], 4)
    tw = Allowlist.twilio()
    for role in tw.roles:
        for v in (4, 6):
            assert snapshot._ordered(tw.packed_spans(role, v)[0], v)


# ------------------------------------------------------------------ snapshot.save temp file
def test_save_does_not_write_through_a_planted_link(tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    out = tmp_path / "out.snap"
    # the old code wrote OUT.tmp<pid> with a plain open(): a link planted there was followed
    os.symlink(victim, f"{out}.tmp{os.getpid()}")
    Allowlist.from_toml(LAB).save_snapshot(str(out))
    assert victim.read_bytes() == b"precious"
    assert not os.path.islink(out) and Allowlist.load(str(out)).roles == ["sig"]


def test_save_temp_name_is_unpredictable_exclusive_and_beside_the_target(tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    out = tmp_path / "sub" / "out.snap"
    out.parent.mkdir()
    names = []

    def planted_then_fresh(path):
        name = _files._temp_name(path)
        names.append(name)
        if len(names) == 1:  # the first name drawn is taken by an attacker's link
            os.symlink(victim, name)
        return name

    real = _files.write_atomic
    monkeypatch.setattr(_files, "write_atomic",
                        lambda path, data: real(path, data, temp_name=planted_then_fresh))
    Allowlist.from_toml(LAB).save_snapshot(str(out))
    assert victim.read_bytes() == b"precious"  # O_EXCL | O_NOFOLLOW: the link was not opened
    assert len(names) == 2 and len(set(names)) == 2
    assert all(os.path.dirname(n) == str(out.parent) for n in names)
    assert sorted(os.listdir(out.parent)) == sorted(["out.snap", os.path.basename(names[0])])
    assert Allowlist.load(str(out)).roles == ["sig"]


def test_save_failure_leaves_no_temp_file(tmp_path):
    out = tmp_path / "out.snap"
    out.mkdir()  # rename over a directory fails
    with pytest.raises(SnapshotError, match="cannot write snapshot"):
        Allowlist.from_toml(LAB).save_snapshot(str(out))
    assert os.listdir(tmp_path) == ["out.snap"]
