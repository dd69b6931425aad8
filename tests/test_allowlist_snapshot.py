"""Compiled snapshots: same answers as the TOML, refused when stale or corrupt."""
import ipaddress
import os

import msgpack
import pytest

from sipedge.allowlist import snapshot
from sipedge.allowlist import Allowlist
from sipedge.cli import main
from sipedge.errors import EXIT_INPUT, SnapshotError

LAB = """\
[dataset]
name = "lab"
version = "7"

[roles.sig]
ports = ["5060/udp", "5061/tcp"]

[[ranges]]
role = "sig"
edge = "east"
prefixes = ["192.0.2.0/24", "192.0.2.128/25", "2001:db8::/32", "2001:db8:1::/48"]

[[ranges]]
role = "sig"
prefixes = ["198.51.100.0/24"]
"""

PROBES = ["192.0.2.1", "192.0.2.200", "192.0.3.0", "198.51.100.9", "2001:db8::1",
          "2001:db8:1::5", "2001:db9::", "203.0.113.1"]


@pytest.fixture
def lab(tmp_path):
    f = tmp_path / "lab.toml"
    f.write_text(LAB)
    return f


def _same(a, b):
    assert [a.match(p) for p in PROBES] == [b.match(p) for p in PROBES]
    assert a.entries == b.entries
    assert a.ports == b.ports and a.roles == b.roles
    assert a.networks("sig") == b.networks("sig")


def test_round_trip_user_file(lab, tmp_path):
    al = Allowlist.load(str(lab))
    snap = tmp_path / "lab.snap"
    al.save_snapshot(str(snap), source=str(lab))
    back = Allowlist.load(str(snap))
    _same(al, back)
    assert back.meta["name"] == "lab" and back.meta["version"] == "7"
    assert back.meta["snapshot"] == str(snap)
    assert back.match.__self__ is back._table
    assert Allowlist.load_snapshot(str(snap), source=str(lab)).match("192.0.2.1").edge == "east"


def test_round_trip_twilio(tmp_path):
    al = Allowlist.twilio()
    snap = tmp_path / "t.snap"
    al.save_snapshot(str(snap))
    back = Allowlist.load(str(snap))
    _same(al, back)
    assert back.match("168.86.128.1").edge is None
    assert len(back) == len(al)


def test_stale_when_source_changed(lab, tmp_path):
    snap = tmp_path / "lab.snap"
    Allowlist.load(str(lab)).save_snapshot(str(snap), source=str(lab))
    lab.write_text(LAB.replace('"198.51.100.0/24"', '"198.51.100.0/25"'))
    with pytest.raises(SnapshotError, match=r"stale snapshot: .*lab.toml has changed.*--snapshot"):
        Allowlist.load(str(snap))
    # a snapshot whose source is gone is still usable on its own
    os.unlink(lab)
    assert Allowlist.load(str(snap)).match("198.51.100.200") is not None


def test_stale_against_an_explicit_source(lab, tmp_path):
    snap = tmp_path / "twilio.snap"
    Allowlist.twilio().save_snapshot(str(snap))
    with pytest.raises(SnapshotError, match="stale snapshot"):
        Allowlist.load_snapshot(str(snap), source=str(lab))


def _rewrite_head(path, **changes):
    data = open(path, "rb").read()
    head = msgpack.unpackb(data[len(snapshot.MAGIC):])
    head.update(changes)
    with open(path, "wb") as f:
        f.write(snapshot.MAGIC + msgpack.packb(head, use_bin_type=True))


def test_stale_twilio_dataset_version(tmp_path):
    snap = tmp_path / "t.snap"
    Allowlist.twilio().save_snapshot(str(snap))
    _rewrite_head(snap, twilio="2024.01.0")
    with pytest.raises(SnapshotError, match="built against Twilio dataset 2024.01.0, this sipedge "
                                            "embeds 2026.11.0; rebuild"):
        Allowlist.load(str(snap))


def test_extended_snapshot_records_twilio_version(tmp_path):
    al = Allowlist.from_toml('[dataset]\nextends = "twilio"\n')
    data = snapshot.dumps(al.compiled())
    head = msgpack.unpackb(data[len(snapshot.MAGIC):])
    assert head["twilio"] == "2026.11.0"
    assert head["format"] == snapshot.FORMAT


def test_other_format_refused(tmp_path):
    snap = tmp_path / "t.snap"
    Allowlist.twilio().save_snapshot(str(snap))
    _rewrite_head(snap, format=99)
    with pytest.raises(SnapshotError, match="snapshot format 99.*reads format 1; rebuild"):
        Allowlist.load(str(snap))


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "checksum", "body",
                                    "role-index", "edge-index"])
def test_corrupt_refused(tmp_path, damage):
    snap = tmp_path / "t.snap"
    Allowlist.twilio().save_snapshot(str(snap))
    data = bytearray(open(snap, "rb").read())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[-40] ^= 0xFF
    elif damage == "garbage":
        data = bytearray(snapshot.MAGIC + b"\xc1\xc1\xc1")
    if damage in ("truncate", "flip", "garbage"):
        snap.write_bytes(bytes(data))
    elif damage == "checksum":
        _rewrite_head(snap, body_sha256="0" * 64)
    elif damage == "body":  # a body that passes the checksum but holds inconsistent arrays
        body = msgpack.packb({"roles": ["x"], "edges": [], "value_role": [0], "value_edge": [],
                              "value_prefix": [], "ranges": [b""] * 6, "ports": {},
                              "meta": {}, "carriers": {}})
        import hashlib
        _rewrite_head(snap, body=body, body_sha256=hashlib.sha256(body).hexdigest())
    else:  # checksummed, consistent lengths, but an index that would wrap round (-2 = last)
        import hashlib
        head = msgpack.unpackb(bytes(data[len(snapshot.MAGIC):]))
        body = msgpack.unpackb(head["body"])
        body["value_role" if damage == "role-index" else "value_edge"][0] = -2
        packed = msgpack.packb(body, use_bin_type=True)
        _rewrite_head(snap, body=packed, body_sha256=hashlib.sha256(packed).hexdigest())
    with pytest.raises(SnapshotError, match="corrupt allowlist snapshot.*rebuild"):
        Allowlist.load(str(snap))


def test_wrong_magic_and_missing():
    with pytest.raises(SnapshotError, match="wrong magic"):
        snapshot.loads(b"[roles]\n", "x.snap")
    with pytest.raises(SnapshotError, match="cannot read snapshot"):
        snapshot.load("/nonexistent/x.snap")


def test_large_snapshot_matches_toml(tmp_path):
    nets = [ipaddress.ip_network((0x0A000000 + i * 256, 24)) for i in range(3000)]
    text = '[roles.sig]\nports = ["5060/udp"]\n[[ranges]]\nrole = "sig"\nprefixes = [\n' + \
        "".join(f'  "{n}",\n' for n in nets) + "]\n"
    f = tmp_path / "big.toml"
    f.write_text(text)
    al = Allowlist.load(str(f))
    snap = tmp_path / "big.snap"
    al.save_snapshot(str(snap), source=str(f))
    back = Allowlist.load(str(snap))
    assert len(back) == 3000
    for n in nets[::97]:
        assert back.match(str(n.network_address + 5)).prefix == str(n)
    assert back.match("10.11.184.0") is None


def test_cli_writes_and_reads_snapshot(lab, tmp_path, capsys):
    snap = tmp_path / "lab.snap"
    assert main(["allowlist", "--file", str(lab), "--snapshot", str(snap)]) == 0
    capsys.readouterr()
    assert main(["allowlist", "--file", str(snap), "--match", "192.0.2.200", "--json"]) == 0
    assert '"prefix": "192.0.2.128/25"' in capsys.readouterr().out
    snap.write_bytes(snap.read_bytes()[:-10])
    assert main(["allowlist", "--file", str(snap)]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "corrupt" in err and err.count("\n") == 1
