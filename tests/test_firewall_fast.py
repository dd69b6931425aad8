"""The fast firewall path gives exactly what the ipaddress path gave.

* set intervals read off the prefix table's integer columns (both
  implementations) equal the merged networks of each role, also when roles
  nest in each other, touch, or list the same network;
* compiled snapshots carry those sets; older snapshots without them still work;
* ``SetSpec`` holds either form of its contents and compares by value;
* the hand-built nf_tables messages are byte-identical to pyroute2's;
* ``sipedge firewall apply`` with a current snapshot imports neither pyroute2
  nor the selection/classification modules, and programs the same kernel state.
"""
from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import os
import subprocess
import sys
import textwrap

import msgpack
import pytest

import sipedge
from sipedge.allowlist import core as almod
from sipedge.allowlist import snapshot
from sipedge.allowlist import Allowlist, Entry, Match, PortRange
from sipedge.firewall.backends import nft
from sipedge.firewall.backends.nft import backend as nft_backend
from sipedge.firewall.backends.nft import encode as nft_encode
from sipedge.firewall.desired import SbcPorts, sbc_ports

import nft_reference as ref_enc
from sipedge.firewall.desired import (SetSpec, desired_state, merge_networks, pack_intervals,
                                      unpack_intervals)

from conftest import require_root, require_tool
from netns import Netns

PORTS = {"sig": [PortRange(5060, 5060, "udp")], "rtp": [PortRange(20000, 20000, "udp")],
         "x": [PortRange(1, 1, "tcp")]}


def _reference(pairs, role, ver):
    """(half-open intervals, count) the ipaddress way: collapse, then merge adjacent."""
    nets = list(ipaddress.collapse_addresses(n for r, n in pairs if r == role and n.version == ver))
    return merge_networks(nets, ver), len(nets)


def _table(impl, pairs):
    return impl("prefix").PrefixTable((n, Match(r, None, str(n))) for r, n in pairs)


def _check(impl, pairs):
    spans = almod._role_spans_all(_table(impl, pairs), list(PORTS))
    for role in PORTS:
        for k, ver in enumerate((4, 6)):
            sp = spans[role][k]
            assert (tuple(zip(sp.starts, sp.ends)), sp.count) == _reference(pairs, role, ver), (role, ver)


def _nets(draw_from):
    from hypothesis import strategies as st

    @st.composite
    def net(draw):
        ver = draw(st.sampled_from((4, 6)))
        bits = 32 if ver == 4 else 128
        # addresses near a few bases so that prefixes nest, touch and repeat often
        base = draw(st.sampled_from((0, 1 << (bits - 1), (1 << bits) - 64, 4096)))
        addr = base + draw(st.integers(0, 63))
        plen = draw(st.one_of(st.integers(bits - 6, bits), st.integers(0, bits)))
        cls = ipaddress.IPv4Network if ver == 4 else ipaddress.IPv6Network
        return cls((addr >> (bits - plen) << (bits - plen), plen))

    return st.lists(st.tuples(st.sampled_from(draw_from), net()), max_size=14,
                    unique_by=lambda t: t)


def test_table_spans_equal_collapsed_networks(impl):
    from hypothesis import given, settings

    @settings(max_examples=300, deadline=None)
    @given(_nets(list(PORTS)))
    def check(pairs):
        _check(impl, pairs)

    check()


@pytest.mark.parametrize("case, exact", [
    # disjoint roles: read off the table, no text parsed
    ([("sig", "192.0.2.0/25"), ("rtp", "198.51.100.0/24"), ("sig", "2001:db8::/32")], set()),
    # a signaling /30 inside the media /24: both roles recomputed from their prefixes
    ([("rtp", "192.0.2.0/24"), ("sig", "192.0.2.4/30")], {"rtp", "sig"}),
    # touching prefixes of two roles: indistinguishable from nesting in the table
    ([("rtp", "192.0.2.0/25"), ("sig", "192.0.2.128/25"), ("x", "203.0.113.0/24")], {"rtp", "sig"}),
    # one network in two roles: the table keeps the first, the second is recomputed
    ([("rtp", "2001:db8::/48"), ("sig", "2001:db8::/48")], {"sig"}),
    # a /24 of one role hidden entirely by two /25s of another: only its role loses
    ([("x", "192.0.2.0/24"), ("sig", "192.0.2.0/25"), ("sig", "192.0.2.128/25")], {"x"}),
])
def test_roles_the_table_cannot_tell_apart_are_computed_exactly(impl, monkeypatch, case, exact):
    pairs = [(r, ipaddress.ip_network(p)) for r, p in case]
    seen = []
    real = almod._role_spans_exact
    monkeypatch.setattr(almod, "_role_spans_exact", lambda v, r: seen.append(r) or real(v, r))
    _check(impl, pairs)
    assert set(seen) == exact


def test_desired_state_equals_the_networks_path(tmp_path):
    al = Allowlist([Entry("rtp", None, ipaddress.ip_network(p)) for p in
                    ("192.0.2.0/25", "192.0.2.128/25", "198.51.100.0/24", "198.51.101.0/25",
                     "2001:db8::/48", "2001:db8:1::/48")]
                   + [Entry("sig", None, ipaddress.ip_network(p)) for p in
                      ("192.0.2.4/30", "203.0.113.7/32", "2001:db8::/64")], PORTS)
    sbc = SbcPorts(sip=(PortRange(5060, 5060, "udp"),), rtp=(PortRange(10000, 20000, "udp"),),
                   roles=(("rtp", "rtp"), ("sig", "sip"), ("x", "sip")))
    d = desired_state(al, sbc=sbc)
    assert list(d.sets) == [f"{r}_v{v}" for r in PORTS for v in (4, 6)]
    for st in d.sets.values():
        nets = al.networks(st.role)
        assert st.intervals == merge_networks(nets, st.family)
        assert st.prefix_count == sum(1 for n in nets if n.version == st.family)
        assert st.packed == pack_intervals(st.intervals, st.family)
    assert d.sets["rtp_v4"].intervals == ((0xC0000200, 0xC0000300), (0xC6336400, 0xC6336580))
    assert d.sets["rtp_v4"].prefix_count == 3  # 192.0.2.0/24, 198.51.100.0/24, 198.51.101.0/25

    sp = al.spans("rtp", 4)
    assert (sp.starts, sp.ends, sp.count) == ([0xC0000200, 0xC6336400], [0xC0000300, 0xC6336580], 3)
    sp.starts.clear()  # the caller's copy: the allowlist's sets stay intact
    assert al.spans("rtp", 4).starts == [0xC0000200, 0xC6336400]
    assert al.spans("nobody", 6) == ([], [], 0) and al.packed_spans("nobody", 4) == (b"", 0)
    with pytest.raises(ValueError, match="IP version 5"):
        al.spans("rtp", 5)

    snap = tmp_path / "a.snap"
    al.save_snapshot(str(snap))
    back = Allowlist.load(str(snap))
    assert "_packed_spans" in back.__dict__
    assert desired_state(back, sbc=sbc).sets == d.sets
    assert back.networks("rtp") == al.networks("rtp") and back.networks("sig", 6) == al.networks("sig", 6)


def _strip_spans(data: bytes) -> bytes:
    """The snapshot as sipedge wrote it before snapshots carried firewall spans."""
    head = msgpack.unpackb(data[len(snapshot.MAGIC):], raw=False)
    body = msgpack.unpackb(head["body"], raw=False)
    del body["spans"]
    head["body"] = msgpack.packb(body, use_bin_type=True)
    head["body_sha256"] = hashlib.sha256(head["body"]).hexdigest()
    return snapshot.MAGIC + msgpack.packb(head, use_bin_type=True)


def test_snapshot_without_spans_still_loads_and_gives_the_same_sets(tmp_path):
    al = Allowlist.twilio()
    old = tmp_path / "old.snap"
    old.write_bytes(_strip_spans(snapshot.dumps(al.compiled())))
    back = Allowlist.load(str(old))
    assert "_packed_spans" not in back.__dict__
    assert desired_state(back).sets == desired_state(al).sets


def test_snapshot_with_malformed_spans_is_refused(tmp_path):
    data = snapshot.dumps(Allowlist.twilio().compiled())
    head = msgpack.unpackb(data[len(snapshot.MAGIC):], raw=False)
    body = msgpack.unpackb(head["body"], raw=False)
    body["spans"]["media"][0] += b"\0"  # not a whole number of v4 pairs
    head["body"] = msgpack.packb(body, use_bin_type=True)
    head["body_sha256"] = hashlib.sha256(head["body"]).hexdigest()
    with pytest.raises(sipedge.SnapshotError, match="corrupt allowlist snapshot"):
        snapshot.loads(snapshot.MAGIC + msgpack.packb(head, use_bin_type=True))


def test_setspec_either_form_same_value():
    ivs = ((0xC0000200, 0xC0000300), (0xCB007100, 0xCB007101))
    a = SetSpec("sig_v4", "sig", 4, ivs, 2)
    b = SetSpec("sig_v4", "sig", 4, None, 2, packed=pack_intervals(ivs, 4))
    assert a == b and hash(a) == hash(b)
    assert b.intervals == ivs and a.packed == b.packed
    assert a != SetSpec("sig_v4", "sig", 4, ivs[:1], 2)
    assert SetSpec("e", "sig", 6).intervals == () and SetSpec("e", "sig", 6).packed == b""
    assert repr(b) == ("SetSpec(name='sig_v4', role='sig', family=4, intervals=((3221225984, "
                       "3221226240), (3405803776, 3405803777)), prefix_count=2)")
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.prefix_count = 3
    v6 = ((1 << 127, (1 << 127) + (1 << 80)),)
    assert unpack_intervals(SetSpec("m", "m", 6, v6).packed, 6) == v6


@pytest.mark.parametrize("fam", [4, 6])
def test_elements_from_packed_intervals_equal_the_per_element_packing(fam):
    import random

    rnd = random.Random(fam)
    top = 1 << (32 if fam == 4 else 128)
    cases = [(), ((0, top),), ((0, 1),), ((top - 1, top),), ((5, 9), (top - 16, top))]
    for n in (1249, 1250, 1251, 833, 834, 2600):  # around the per-message split (2500, 1666 elements)
        starts = sorted(rnd.sample(range(0, top, 1 << 16 if fam == 4 else 1 << 100), 2 * n))
        ivs = tuple(zip(starts[0::2], [e - 7 for e in starts[1::2]]))
        cases += [ivs, ivs + ((top - 256, top),)]
    for ivs in cases:
        st = SetSpec("s", "r", fam, ivs)
        want = nft.pack_elements(nft.interval_keys(ivs, fam), fam)
        assert nft.pack_interval_elements(st.packed, fam) == want
        assert st.interval_count == len(ivs) == SetSpec("s", "r", fam, packed=st.packed).interval_count
    assert len(nft.pack_interval_elements(SetSpec("s", "r", fam, cases[-1]).packed, fam)) == (3 if fam == 4 else 4)


def test_hand_built_netlink_messages_are_pyroute2s():
    from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_NFTABLES, nfgen_msg, nftsocket

    for name in dir(nftsocket):
        if name.startswith("NFT_MSG_") and hasattr(nft, name):
            assert getattr(nft, name) == getattr(nftsocket, name), name
    assert (nft.NFPROTO_INET, nft.NFNL_SUBSYS_NFTABLES) == (nftsocket.NFPROTO_INET, NFNL_SUBSYS_NFTABLES)
    for kind in (nft.NFNL_MSG_BATCH_BEGIN, nft.NFNL_MSG_BATCH_END):
        m = nfgen_msg()
        m["header"]["type"] = kind
        m["header"]["flags"] = 1
        m["header"]["sequence_number"] = 4242
        m["nfgen_family"] = 0
        m["res_id"] = NFNL_SUBSYS_NFTABLES
        m.encode()
        assert nft.batch_marker(kind, 4242) == bytes(m.data)
    assert nft.genid_request(77) == ref_enc.encode(nftsocket.nft_gen_msg, nftsocket.NFT_MSG_GETGEN, 1, 77,
                                               [], family=0)
    g = nftsocket.nft_gen_msg()
    g["header"]["type"] = nft._t(nftsocket.NFT_MSG_NEWGEN)
    g["attrs"] = [("NFTA_GEN_ID", 0xDEADBEEF)]
    g.encode()
    assert nft.parse_genid(bytes(g.data)) == 0xDEADBEEF
    assert nft.parse_genid(bytes(g.data)[:20]) is None


class _Seq:
    seq = 100

    def next_seq(self):
        self.seq += 1
        return self.seq


def _create_messages(d, replace):
    be = nft.NftBackend.__new__(nft.NftBackend)
    be.sock = _Seq()
    return be.create_messages(d, replace)


def test_create_messages_are_what_pyroute2_encodes(monkeypatch):
    tw = Allowlist.twilio()
    states = [desired_state(tw), desired_state(
        tw, table="t_2", mode="monitor", priority=-300, iif=["eth0"],
        sbc=sbc_ports(tw, rtp=[PortRange(16384, 32767, "udp"), PortRange(5004, 5004, "udp")]))]
    for d in states:
        for replace in (False, True):
            nft._EXPR_CACHE.clear()
            mine = _create_messages(d, replace)
            with monkeypatch.context() as m:
                m.setattr(nft_backend, "message", ref_enc.message_pyroute2)
                m.setattr(nft_encode, "_expr_bytes", ref_enc._expr_bytes_pyroute2)
                ref = _create_messages(d, replace)
            assert [k for k, _ in mine] == [k for k, _ in ref]
            for (kind, a), (_, b) in zip(mine, ref):
                assert a == b, kind
    assert nft.message(nft.NFT_MSG_GETTABLE, 5, 9, [("NFTA_TABLE_NAME", "x")]) == \
        ref_enc.message_pyroute2(nft.NFT_MSG_GETTABLE, 5, 9, [("NFTA_TABLE_NAME", "x")])


def test_package_exports_are_lazy_and_complete():
    code = textwrap.dedent("""\
        import sys, sipedge
        before = sorted(m for m in ("sipedge.select", "sipedge.classify", "sipedge.allowlist")
                        if m in sys.modules)
        ns = {}
        exec("from sipedge import *", ns)
        missing = [n for n in sipedge.__all__ if n not in ns or n not in dir(sipedge)]
        print(before, missing, sipedge.TargetSet.__module__, sipedge.Classifier is ns["Classifier"])
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "[]", "sipedge.select", "True"]
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        sipedge.nonexistent  # noqa: B018


# -- the CLI in a namespace ---------------------------------------------------------------
TOML = """\
[dataset]
name = "fast"
[roles.signaling]
ports = ["5060/udp", "5061/tcp"]
[roles.media]
ports = ["10000-20000/udp"]
[[ranges]]
role = "signaling"
prefixes = ["192.0.2.4/30", "2001:db8:1::/48"]
[[ranges]]
role = "media"
prefixes = [{media}]
"""

RUN = """\
import json, sys
from sipedge.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "mods": sorted(m for m in ("pyroute2", "sipedge.select",
      "sipedge.classify") if m in sys.modules)}))
"""


def _media(n, skip=0):
    """/29s 8 addresses apart in 198.51.100.0/24 and 203.0.113.0/24: n separate intervals."""
    nets = [f"{net}.{16 * i}/29" for net in ("198.51.100", "203.0.113") for i in range(16)]
    return ", ".join(f'"{p}"' for p in nets[skip:skip + n])


def test_cli_apply_fast_path_imports_little_and_programs_the_same_state(tmp_path):
    require_root()
    require_tool("nft")
    files = []
    for k, media in enumerate((_media(28) + ', "192.0.2.0/24"', _media(28, skip=3))):
        t = tmp_path / f"al{k}.toml"
        t.write_text(TOML.format(media=media))
        s = tmp_path / f"al{k}.snap"
        assert subprocess.run([sys.executable, "-m", "sipedge", "allowlist", "--file", str(t),
                               "--snapshot", str(s)], capture_output=True).returncode == 0
        files.append(s)
    with Netns("fast") as ns:
        args = ["--netns", ns.name, "--lock-file", str(tmp_path / "lock"),
                "--state-dir", str(tmp_path / "st"), "--json"]

        def run(snap):
            out = subprocess.run([sys.executable, "-c", RUN, "firewall", "apply", "--allowlist",
                                  str(snap)] + args, capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            lines = out.stdout.strip().splitlines()
            return json.loads("\n".join(lines[:-1])), json.loads(lines[-1])

        r, info = run(files[0])
        assert r["action"] == "create" and info == {"rc": 0, "mods": []}
        for snap, action in ((files[0], "none"), (files[1], "sync"), (files[0], "sync")):
            r, info = run(snap)
            assert (r["action"], r["fast"], info) == (action, True, {"rc": 0, "mods": []})
        # the kernel holds what the ipaddress path computes from the TOML
        al = Allowlist.load(str(tmp_path / "al0.toml"))
        with nft.NftBackend(ns.name) as be:
            live = be.read("sipedge")
        for role in ("signaling", "media"):
            for fam in (4, 6):
                assert live.sets[f"{role}_v{fam}"].intervals == merge_networks(al.networks(role), fam)
        assert ns.exec("nft", "list", "set", "inet", "sipedge", "signaling_v4").stdout.count("192.0.2.4/30") == 1
