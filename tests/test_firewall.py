"""Firewall: desired state, nft netlink backend, CLI, real traffic, sync under traffic.

Everything that touches the kernel runs in network namespaces these tests
create (tests/netns.py) with documentation addresses only; the root
namespace's firewall is never read or changed.
"""
from __future__ import annotations

import errno
import ipaddress
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from sipedge import errors
from sipedge.allowlist import Allowlist, PortRange
from sipedge.firewall import netlink as nl
from sipedge.firewall import ops, state
from sipedge.firewall.backends import nft
from sipedge.firewall.desired import (desired_state, diff_packed, interval_text, merge_networks,
                                      pack_intervals, sbc_ports, unpack_intervals)
from sipedge.firewall.ruleset import render, render_desired

import nft_reference as ref_enc
from conftest import require_root, require_tool
from netns import Netns, link

HERE = os.path.dirname(os.path.abspath(__file__))
UDP_TOOL = os.path.join(HERE, "fw_udp.py")

SBC, TRUSTED, UNTRUSTED = "192.0.2.10", "192.0.2.20", "203.0.113.20"
SBC_U = "203.0.113.10"


def allowlist_toml(signaling, media, sig_ports=None, media_ports=None) -> str:
    sig_ports = sig_ports or ["5060/udp", "5060/tcp", "5061/tcp"]
    media_ports = media_ports or ["10000-60000/udp"]
    q = lambda xs: ", ".join(f'"{x}"' for x in xs)  # noqa: E731
    return textwrap.dedent(f"""\
        [dataset]
        name = "test"
        [roles.signaling]
        ports = [{q(sig_ports)}]
        [roles.media]
        ports = [{q(media_ports)}]
        [[ranges]]
        role = "signaling"
        edge = "lab"
        prefixes = [{q(signaling)}]
        [[ranges]]
        role = "media"
        prefixes = [{q(media)}]
        """)


AL_A = allowlist_toml(["192.0.2.0/25", "198.51.100.64/26", "2001:db8:1::/48"],
                      ["192.0.2.0/25", "198.51.100.0/24", "2001:db8:2::/48"])
# B: the trusted host's interval changes shape (a /24 replaces a /25), others come and go
AL_B = allowlist_toml(["192.0.2.0/24", "198.51.100.128/27", "2001:db8:1::/48", "2001:db8:9::/64"],
                      ["192.0.2.0/24", "2001:db8:2::/48"])


@pytest.fixture
def al_files(tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(AL_A)
    b.write_text(AL_B)
    return str(a), str(b)


@pytest.fixture
def opts_for(tmp_path):
    def make(ns, **kw):
        return ops.Options(netns=ns.name if ns else None, lock_file=str(tmp_path / "lock"),
                           state_dir=str(tmp_path / "state"), **kw)
    return make


def nft_json(ns: Netns) -> list:
    """`nft -j list ruleset` without metainfo, handles and counter values."""
    out = json.loads(ns.exec("nft", "-j", "list", "ruleset").stdout)["nftables"]
    norm = []
    for item in out:
        if "metainfo" in item:
            continue
        norm.append(_strip(item))
    return norm


def _strip(v):
    if isinstance(v, dict):
        return {k: ({"packets": 0, "bytes": 0} if k == "counter" else _strip(x))
                for k, x in v.items() if k != "handle"}
    if isinstance(v, list):
        return [_strip(x) for x in v]
    return v


def set_elements(ns: Netns, table: str, name: str) -> list:
    out = json.loads(ns.exec("nft", "-j", "list", "set", "inet", table, name).stdout)["nftables"]
    s = [x["set"] for x in out if "set" in x][0]
    res = []
    for e in s.get("elem", []):
        if isinstance(e, dict) and "prefix" in e:
            res.append(f"{e['prefix']['addr']}/{e['prefix']['len']}")
        elif isinstance(e, dict) and "range" in e:
            res.append("-".join(e["range"]))
        else:
            res.append(str(e))
    return sorted(res)


def expected_elements(al: Allowlist, role: str, fam: int) -> list:
    return sorted(interval_text(a, b, fam) for a, b in merge_networks(al.networks(role), fam))


def cli(*args, ns=None, user=None, check=None):
    cmd = [sys.executable, "-m", "sipedge", *args]
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


# ------------------------------------------------------------------ desired state (no root)
def test_desired_state_has_sets_per_role_and_family_and_rules_only_for_sbc_ports():
    al = Allowlist.from_toml(AL_A)
    d = desired_state(al)
    assert list(d.sets) == ["signaling_v4", "signaling_v6", "media_v4", "media_v6"]
    assert d.sets["signaling_v4"].intervals == (
        (int(ipaddress.ip_address("192.0.2.0")), int(ipaddress.ip_address("192.0.2.128"))),
        (int(ipaddress.ip_address("198.51.100.64")), int(ipaddress.ip_address("198.51.100.128"))))
    texts = [r.describe() for r in d.rules]
    # the model: conntrack and loopback first, then the SBC's own ports, then the drops
    assert texts[0] == "ct state established,related counter accept"
    assert texts[1] == 'iif "lo" counter accept'
    assert texts[2] == "ip saddr @signaling_v4 udp dport 5060 counter accept"
    assert "udp dport 10000-20000 counter drop" in texts  # the SBC's RTP range, not Twilio's
    assert all("dport" in t for t in texts[2:])  # every other rule is limited to the SBC's ports
    assert {(r.low, r.high) for r in d.rules[2:]} == {(5060, 5060), (5061, 5061), (10000, 20000)}
    # the carrier's published ports (AL_A says media 10000-60000) are never matched
    assert not any("60000" in t for t in texts)
    assert al.carrier_ports["media"] == [PortRange(10000, 60000, "udp")]
    # one closing rule per SBC port range, after every accept
    kinds = [r.verdict for r in d.rules]
    assert kinds.index("drop") > max(i for i, k in enumerate(kinds) if k == "accept")
    assert len([t for t in texts if t.endswith("drop")]) == 4


def test_monitor_mode_counts_instead_of_dropping_and_ports_are_configurable():
    al = Allowlist.from_toml(AL_A)
    text = render(al, mode="monitor", sbc=sbc_ports(al, rtp="16384-32767/udp", sip="5080/udp"))
    assert "drop" not in text
    assert "udp dport 16384-32767 counter\n" in text
    assert "udp dport 5080 counter\n" in text
    assert "10000-60000" not in text and "dport 5060" not in text
    assert 'comment "managed by sipedge"' in text
    d = desired_state(al, iif=["eth0", "vlan7"])
    assert d.rules[2].describe() == 'iifname != "eth0" iifname != "vlan7" counter return'
    with pytest.raises(errors.InputError, match="--iif"):
        desired_state(al, iif=["bad/name"])
    with pytest.raises(errors.InputError):
        desired_state(al, table="bad name")


def test_sbc_section_in_the_allowlist_and_roles_that_name_their_ports():
    extra = textwrap.dedent("""\
        [sbc]
        sip_ports = ["5080/udp", "5080/tcp"]
        rtp_ports = ["16384-32768/udp"]
        [sbc.roles]
        fax = ["4000-4010/udp"]
        [roles.fax]
        ports = ["4000-4999/udp"]
        [[ranges]]
        role = "fax"
        prefixes = ["198.51.100.200/29"]
        """)
    al = Allowlist.from_toml(AL_A + extra)
    texts = [r.describe() for r in desired_state(al).rules]
    assert "ip saddr @signaling_v4 udp dport 5080 counter accept" in texts
    assert "ip saddr @media_v4 udp dport 16384-32768 counter accept" in texts
    assert "ip saddr @fax_v4 udp dport 4000-4010 counter accept" in texts
    assert "udp dport 4000-4010 counter drop" in texts
    # the command line beats the file
    texts = [r.describe() for r in desired_state(al, sbc=sbc_ports(al, sip="5060/udp")).rules]
    assert "udp dport 5060 counter drop" in texts and "udp dport 5080 counter drop" not in texts
    # a role whose SBC ports cannot be told is an error naming the fix
    al2 = Allowlist.from_toml(AL_A + extra.replace('fax = ["4000-4010/udp"]', ""))
    with pytest.raises(errors.InputError, match=r"\[sbc.roles\] fax"):
        desired_state(al2)
    with pytest.raises(errors.InputError, match="unknown key"):
        desired_state(Allowlist.from_toml(AL_A + "[sbc]\nrtp = 1\n"))


def test_world_open_prefixes_are_refused_unless_forced():
    world = AL_A.replace('"192.0.2.0/25", "198.51.100.64/26"', '"0.0.0.0/0"')
    with pytest.raises(errors.AllowlistError, match="every IPv4 address.*--force"):
        Allowlist.from_toml(world)
    al = Allowlist.from_toml(world, allow_world=True)
    with pytest.raises(errors.UnsafeConfigError, match="every IPv4 address") as ei:
        desired_state(al)
    assert ei.value.exit_code == errors.EXIT_REFUSED == 9
    assert desired_state(al, force=True).sets["signaling_v4"].intervals == ((0, 1 << 32),)
    six = AL_A.replace('"2001:db8:1::/48"', '"::/0"')
    with pytest.raises(errors.AllowlistError, match="every IPv6 address"):
        Allowlist.from_toml(six)


def test_safety_refuses_drops_on_ephemeral_ports_and_ssh(tmp_path):
    from sipedge.firewall import safety

    al = Allowlist.from_toml(AL_A)
    old_default = desired_state(al, sbc=sbc_ports(al, rtp="10000-60000/udp"))  # the old model's range
    found = safety.problems(old_default, (32768, 60999), [22])
    assert len(found) == 1 and "32768-60999" in found[0] and "--rtp-ports" in found[0]
    ssh = desired_state(al, sbc=sbc_ports(al, sip="22/tcp,5060/udp"))
    assert any("SSH port 22" in p for p in safety.problems(ssh, (32768, 60999), [22]))
    assert safety.problems(desired_state(al), (32768, 60999), [22]) == []
    assert safety.problems(desired_state(al, mode="monitor", sbc=sbc_ports(al, rtp="1-65535/udp")),
                           (32768, 60999), [22]) == []  # monitor never drops
    cfg = tmp_path / "sshd_config"
    cfg.write_text("# Port 99\nPort 2222\n")
    assert safety.ssh_ports([str(cfg)]) == [22, 2222]
    lo, hi = safety.ephemeral_range(None)
    assert 0 < lo <= hi <= 65535
    with pytest.raises(errors.UnsafeConfigError, match="ephemeral"):
        safety.check(old_default, None)
    safety.check(desired_state(al, sbc=sbc_ports(al, rtp="10000-60000/udp"), force=True), None)


def test_merge_joins_adjacent_and_overlapping_networks():
    nets = [ipaddress.ip_network(x) for x in ("192.0.2.0/25", "192.0.2.128/25", "192.0.2.64/26",
                                              "198.51.100.0/24")]
    ivs = merge_networks(nets, 4)
    assert [interval_text(a, b, 4) for a, b in ivs] == ["192.0.2.0/24", "198.51.100.0/24"]
    assert interval_text(int(ipaddress.ip_address("192.0.2.0")),
                         int(ipaddress.ip_address("192.0.2.0")) + 3, 4) == "192.0.2.0-192.0.2.2"


def test_interval_elements_round_trip_including_the_top_of_the_address_space():
    ivs = merge_networks([ipaddress.ip_network(x) for x in ("192.0.2.0/24", "255.255.255.0/24")], 4)
    keys = nft.interval_keys(ivs, 4)
    assert keys[-1] == (0xFFFFFF00, False)  # no end element past the last address
    assert nft.elements_to_intervals(list(reversed(keys)), 4) == ivs
    v6 = merge_networks([ipaddress.ip_network("2001:db8::/32")], 6)
    assert nft.elements_to_intervals(nft.interval_keys(v6, 6), 6) == v6


def test_fast_element_packing_decodes_to_what_pyroute2_encodes():
    from pyroute2.netlink.nfnetlink.nftsocket import NFT_MSG_NEWSETELEM, nft_set_elem_list_msg

    ivs = merge_networks([ipaddress.ip_network(x) for x in ("192.0.2.0/25", "198.51.100.0/24")], 4)
    keys = nft.interval_keys(ivs, 4)
    fast = nft.elem_message(NFT_MSG_NEWSETELEM, 5, 7, "sipedge", "media_v4",
                            nft.pack_elements(keys, 4)[0])
    ref = ref_enc.elem_message_pyroute2(NFT_MSG_NEWSETELEM, 5, 7, "sipedge", "media_v4", keys, 4)
    assert len(fast) == len(ref)

    def decoded(b):
        m = nft_set_elem_list_msg(b)
        m.decode()
        return (m["header"]["type"], m["header"]["flags"], m.get_attr("NFTA_SET_ELEM_LIST_TABLE"),
                m.get_attr("NFTA_SET_ELEM_LIST_SET"),
                [(e.get_nested("NFTA_SET_ELEM_KEY", "NFTA_DATA_VALUE"),
                  e.get_attr("NFTA_SET_ELEM_FLAGS")) for e in m.get_attr("NFTA_SET_ELEM_LIST_ELEMENTS")])

    assert decoded(fast) == decoded(ref)
    assert nft.parse_elements([fast]) == keys


def test_rule_messages_are_byte_identical_to_pyroute2_encoding():
    from pyroute2.netlink.nfnetlink.nftsocket import NFT_MSG_NEWRULE, nft_rule_msg

    d = desired_state(Allowlist.from_toml(AL_A), mode="monitor", iif=["eth0", "eth1"])
    assert {r.kind for r in d.rules} == {"ct", "lo", "iif", "port"}
    ids = {n: i + 1 for i, n in enumerate(d.sets)}
    nft._EXPR_CACHE.clear()
    for r in d.rules:
        exprs = nft.rule_exprs(r, ids)
        ref = ref_enc.encode(nft_rule_msg, NFT_MSG_NEWRULE, 0x405, 77,
                         [("NFTA_RULE_TABLE", d.table), ("NFTA_RULE_CHAIN", d.chain),
                          ("NFTA_RULE_EXPRESSIONS", exprs)])
        assert nft.rule_message(0x405, 77, d.table, d.chain, exprs) == ref
    assert 0 < len(nft._EXPR_CACHE) < sum(len(nft.rule_exprs(r, ids)) for r in d.rules)


def test_large_element_lists_are_split_below_the_attribute_size_limit():
    ivs = tuple((i * 4, i * 4 + 2) for i in range(20000))
    chunks = nft.pack_elements(nft.interval_keys(ivs, 4), 4)
    assert len(chunks) > 1 and all(len(c) <= 65535 - 4 for c in chunks)
    assert nft.parse_elements([nft.elem_message(12, 0, 0, "t", "s", c) for c in chunks]) \
        == nft.interval_keys(ivs, 4)


def test_applied_state_round_trip_and_corruption_is_a_firewall_error(tmp_path):
    p = str(tmp_path / "s.applied")
    ivs = {"a_v4": (4, ((1, 5), (9, 1 << 32))), "a_v6": (6, ((1 << 100, 1 << 128),))}
    sets = {n: (f, pack_intervals(i, f)) for n, (f, i) in ivs.items()}
    key = {"boot": state.boot_id(), "netns": "cookie:1", "table": "t", "backend": "nft", "structure": "k"}
    state.save_applied(p, key=key, genid=7, chain="input", sets=sets, mode="enforce", prefixes=3,
                       changes={"added": 1, "deleted": 0})
    doc = state.load_applied(p)
    assert doc["sets"] == sets and doc["genid"] == 7 and doc["key"] == key
    assert len(key["boot"]) == 36  # /proc/sys/kernel/random/boot_id: changes with every boot
    assert {n: unpack_intervals(p, f) for n, (f, p) in doc["sets"].items()} == \
        {n: i for n, (f, i) in ivs.items()}
    add, delete = diff_packed(pack_intervals(((1, 5), (20, 30)), 4), sets["a_v4"][1], 4)
    assert add == ((20, 30),) and delete == ((9, 1 << 32),)
    assert state.load_applied(str(tmp_path / "none")) is None
    with open(p, "wb") as f:
        f.write(b"\xc1garbage")
    with pytest.raises(errors.AppliedStateError, match="corrupt") as ei:
        state.load_applied(p)
    assert isinstance(ei.value, errors.FirewallError) and not isinstance(ei.value, errors.InputError)


def test_metrics_textfile(tmp_path):
    p = str(tmp_path / "m.prom")
    state.write_metrics(p, table="sipedge", netns="ns1", backend="nft", ok=True, when=1000.5,
                        duration=0.01, prefixes={"media_v4": 3}, added=2, deleted=1, changed=True)
    text = open(p).read()
    assert 'sipedge_firewall_prefixes{table="sipedge",netns="ns1",backend="nft",set="media_v4"} 3' in text
    assert 'sipedge_firewall_last_sync_timestamp_seconds{table="sipedge",netns="ns1",backend="nft"} 1000.500' in text
    assert 'op="delete"} 1' in text


def test_lock_makes_a_second_run_wait_then_fail(tmp_path):
    p = str(tmp_path / "l")
    with state.Lock(p):
        with pytest.raises(errors.LockError, match="another sipedge"):
            with state.Lock(p, timeout=0.2):
                pass
    with state.Lock(p, timeout=0.2):  # free again
        pass


def test_cli_plan_needs_no_root_and_bad_input_is_one_line(tmp_path):
    require_tool("setpriv")
    import shutil
    import tempfile

    pub = tempfile.mkdtemp(prefix="sipedge-fw-")  # readable by the unprivileged user
    try:
        os.chmod(pub, 0o755)
        p = os.path.join(pub, "a.toml")
        with open(p, "w") as f:
            f.write(AL_A)
        os.chmod(p, 0o644)
        r = cli("firewall", "plan", "--allowlist", p, user="65534")
        r_apply = cli("firewall", "apply", "--allowlist", p, "--lock-file",
                      os.path.join(pub, "l"), user="65534")
    finally:
        shutil.rmtree(pub)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("table inet sipedge {") and "# live" not in r.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(AL_A.replace("192.0.2.0/25", "192.0.2.999/25"))
    r = cli("firewall", "plan", "--allowlist", str(bad))
    assert r.returncode == errors.EXIT_INPUT
    assert r.stderr.count("\n") == 1 and "192.0.2.999/25" in r.stderr
    r = r_apply
    assert r.returncode == errors.EXIT_PERMISSION
    assert r.stderr.count("\n") == 1 and "CAP_NET_ADMIN" in r.stderr
    r = cli("firewall", "plan", "--edges", "atlantis", "--no-live")
    assert r.returncode == errors.EXIT_INPUT and "atlantis" in r.stderr


# ------------------------------------------------------------------ nft backend in namespaces
FOREIGN = """\
table inet other {
    set keep { type ipv4_addr; flags interval; elements = { 203.0.113.0/24 } }
    chain input { type filter hook input priority 0; policy accept; tcp dport 22 counter accept; }
}
table ip filter {
    chain input { type filter hook input priority 10; policy accept; udp dport 5060 counter; }
}
"""


@pytest.fixture
def fw_ns():
    require_root()
    require_tool("nft")
    with Netns("fw") as ns:
        yield ns


def test_apply_equals_nft_f_then_noop_then_remove_leaves_no_trace(fw_ns, al_files, opts_for, tmp_path):
    ns = fw_ns
    (tmp_path / "foreign.nft").write_text(FOREIGN)
    ns.exec("nft", "-f", str(tmp_path / "foreign.nft"))
    foreign = nft_json(ns)
    al = Allowlist.load(al_files[0])
    d = desired_state(al)
    r = ops.apply(d, opts_for(ns))
    assert r["action"] == "create" and r["changed"]
    # independent check: the same text through nft -f in a fresh namespace gives the same ruleset
    (tmp_path / "want.nft").write_text(render_desired(d))
    with Netns("ref") as ref:
        ref.exec("nft", "-f", str(tmp_path / "want.nft"))
        want = nft_json(ref)
    live = nft_json(ns)
    ours = [x for x in live if x not in foreign]
    assert ours == want
    assert [x for x in live if x in foreign] == foreign
    for role in ("signaling", "media"):
        for fam in (4, 6):
            assert set_elements(ns, "sipedge", f"{role}_v{fam}") == expected_elements(al, role, fam)
    gen = ns.exec("nft", "list", "ruleset").stdout
    r2 = ops.apply(d, opts_for(ns))
    assert r2["action"] == "none" and not r2["changed"] and r2["added"] == r2["deleted"] == 0
    assert ns.exec("nft", "list", "ruleset").stdout == gen
    assert ops.remove("sipedge", opts_for(ns))["removed"] is True
    assert nft_json(ns) == foreign
    assert ops.remove("sipedge", opts_for(ns))["removed"] is False


def test_sync_changes_only_elements_and_detects_foreign_edits(fw_ns, al_files, opts_for):
    ns = fw_ns
    da = desired_state(Allowlist.load(al_files[0]))
    alb = Allowlist.load(al_files[1])
    db = desired_state(alb)
    ops.apply(da, opts_for(ns))
    rules_before = [x for x in json.loads(ns.exec("nft", "-j", "list", "chain", "inet", "sipedge",
                                                  "input").stdout)["nftables"] if "rule" in x]
    r = ops.apply(db, opts_for(ns))
    assert r["action"] == "sync" and r["added"] > 0 and r["deleted"] > 0
    rules_after = [x for x in json.loads(ns.exec("nft", "-j", "list", "chain", "inet", "sipedge",
                                                 "input").stdout)["nftables"] if "rule" in x]
    assert [x["rule"]["handle"] for x in rules_after] == [x["rule"]["handle"] for x in rules_before]
    for role in ("signaling", "media"):
        for fam in (4, 6):
            assert set_elements(ns, "sipedge", f"{role}_v{fam}") == expected_elements(alb, role, fam)
    # someone edits our set behind our back: status reports drift, apply repairs it
    ns.exec("nft", "delete", "element", "inet", "sipedge", "media_v4", "{ 192.0.2.0/24 }")
    st = ops.status(db, opts_for(ns))
    assert st["drift"] and st["sets"]["media_v4"]["add"] == ["192.0.2.0/24"]
    r = ops.apply(db, opts_for(ns))
    assert r["action"] == "sync" and r["added"] == 1 and r["deleted"] == 0 and r["fast"] is False
    assert set_elements(ns, "sipedge", "media_v4") == expected_elements(alb, "media", 4)
    st = ops.status(db, opts_for(ns))
    assert not st["drift"] and st["last_apply"]["matches_desired"]
    # a structure change (monitor mode) replaces the table in one transaction
    dm = desired_state(alb, mode="monitor")
    r = ops.apply(dm, opts_for(ns))
    assert r["action"] == "replace"
    assert "drop" not in ns.exec("nft", "list", "table", "inet", "sipedge").stdout


def test_failed_transaction_leaves_previous_state_and_says_why(fw_ns, al_files, opts_for, monkeypatch):
    ns = fw_ns
    da = desired_state(Allowlist.load(al_files[0]))
    db = desired_state(Allowlist.load(al_files[1]))
    from pyroute2.netlink.nfnetlink.nftsocket import NFT_MSG_NEWSETELEM

    def poison(msgs):
        # an element for a set that does not exist, just before the end of the batch
        bad = nft.elem_message(NFT_MSG_NEWSETELEM, nl.NLM_F_REQUEST | nl.NLM_F_ACK | nl.NLM_F_CREATE,
                               12345, "sipedge", "no_such_set",
                               nft.pack_elements([(1, False)], 4)[0])
        msgs.insert(len(msgs) - 1, bad)

    # 1. the very first apply fails: nothing at all is created
    before = nft_json(ns)
    monkeypatch.setattr(nl, "BATCH_HOOK", poison)
    with pytest.raises(nl.NetlinkError, match="No such file or directory.*nothing was changed") as ei:
        ops.apply(da, opts_for(ns))
    assert ei.value.code == errno.ENOENT and ei.value.exit_code == errors.EXIT_SYSTEM
    assert nft_json(ns) == before == []
    # 2. a sync fails half-way: the previous table stays exactly as it was
    monkeypatch.setattr(nl, "BATCH_HOOK", None)
    ops.apply(da, opts_for(ns))
    before = nft_json(ns)
    monkeypatch.setattr(nl, "BATCH_HOOK", poison)
    with pytest.raises(nl.NetlinkError):
        ops.apply(db, opts_for(ns))
    assert nft_json(ns) == before
    monkeypatch.setattr(nl, "BATCH_HOOK", None)
    assert ops.apply(db, opts_for(ns))["action"] == "sync"


def test_a_concurrent_change_makes_the_kernel_refuse_the_batch_and_apply_retries(fw_ns, al_files,
                                                                                opts_for, monkeypatch):
    ns = fw_ns
    d = desired_state(Allowlist.load(al_files[0]))
    calls = []

    def someone_else_commits(msgs):
        calls.append(len(msgs))
        if len(calls) == 1:  # between our read and our commit, another program changes the ruleset
            ns.exec("nft", "add", "table", "inet", "intruder")

    monkeypatch.setattr(nl, "BATCH_HOOK", someone_else_commits)
    r = ops.apply(d, opts_for(ns))
    # refused (ERESTART), re-read, applied: sets in one transaction, then the chain in a second
    assert r["action"] == "create" and len(calls) == 3
    tables = [x["table"]["name"] for x in nft_json(ns) if "table" in x]
    assert sorted(tables) == ["intruder", "sipedge"]
    # the snapshot fast path is refused the same way and falls back to a full read
    monkeypatch.setattr(nl, "BATCH_HOOK", None)
    db = desired_state(Allowlist.load(al_files[1]))
    calls.clear()
    monkeypatch.setattr(nl, "BATCH_HOOK", lambda m: (calls.append(1), len(calls) == 1 and ns.exec(
        "nft", "add", "table", "inet", "intruder2")))
    r = ops.apply(db, opts_for(ns))
    assert r["action"] == "sync" and r["fast"] is False and len(calls) == 2
    assert set_elements(ns, "sipedge", "media_v4") == expected_elements(Allowlist.load(al_files[1]),
                                                                        "media", 4)


def test_kernel_without_nf_tables_and_missing_namespace_are_one_clear_error(fw_ns, al_files, opts_for,
                                                                            monkeypatch, tmp_path):
    d = desired_state(Allowlist.load(al_files[0]))

    def no_proto():
        raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")

    monkeypatch.setattr(nl.NfSocket, "_factory", staticmethod(no_proto))
    with pytest.raises(errors.KernelSupportError, match="nf_tables"):
        ops.apply(d, opts_for(fw_ns))
    monkeypatch.undo()
    assert nft_json(fw_ns) == []
    r = cli("firewall", "apply", "--allowlist", al_files[0], "--netns", "sxt-no-such-ns",
            "--lock-file", str(tmp_path / "l"), "--state-dir", str(tmp_path / "s"))
    assert r.returncode == errors.EXIT_SYSTEM
    assert r.stderr.count("\n") == 1 and "sxt-no-such-ns" in r.stderr and "ip netns add" in r.stderr


def test_cli_apply_status_remove_in_a_namespace(fw_ns, al_files, tmp_path):
    ns = fw_ns
    common = ["--allowlist", al_files[0], "--netns", ns.name, "--state-dir", str(tmp_path / "s")]
    lock = ["--lock-file", str(tmp_path / "l")]
    r = cli("firewall", "plan", "--allowlist", al_files[0], "--netns", ns.name)
    assert r.returncode == 0 and "# live in netns" in r.stdout and "would create" in r.stdout
    r = cli("firewall", "apply", *common, *lock, "--metrics-file", str(tmp_path / "m.prom"))
    assert r.returncode == 0 and "applied (create)" in r.stdout, r.stderr
    assert "sipedge_firewall_last_changed{" in (tmp_path / "m.prom").read_text()
    r = cli("firewall", "apply", *common, *lock)
    assert r.returncode == 0 and r.stdout.startswith("no change")
    r = cli("firewall", "status", *common, "--json")
    st = json.loads(r.stdout)
    # ct + lo, 3 SIP ports x 2 families + 1 RTP range x 2 families, 4 closing rules
    assert r.returncode == 0 and st["drift"] is False and len(st["rules"]) == 14
    assert all("packets" in x for x in st["rules"])
    common_b = [a if a != al_files[0] else al_files[1] for a in common]
    r = cli("firewall", "status", *common_b)
    assert r.returncode == errors.EXIT_DRIFT and "DRIFT" in r.stdout
    r = cli("firewall", "plan", "--allowlist", al_files[1], "--netns", ns.name)
    assert "would add" in r.stdout and "# + media_v4 192.0.2.0/24" in r.stdout
    r = cli("firewall", "remove", "--netns", ns.name, "--state-dir", str(tmp_path / "s"), *lock)
    assert r.returncode == 0 and "removed table inet sipedge" in r.stdout
    assert nft_json(ns) == []
    # options: hook priority, table name, edges, ports
    r = cli("firewall", "apply", "--netns", ns.name, "--lock-file", str(tmp_path / "l"),
            "--state-dir", str(tmp_path / "s"), "--priority", "5", "--table", "sbc_edge",
            "--allowlist", os.path.join(os.path.dirname(HERE), "contrib", "allowlist-replace.toml"),
            "--edges", "lab-east", "--sip-ports", "5080/udp", "--json")
    assert r.returncode == 0, r.stderr
    live = nft_json(ns)
    chain = [x["chain"] for x in live if "chain" in x][0]
    assert chain["table"] == "sbc_edge" and chain["prio"] == 5 and chain["hook"] == "input"
    assert set_elements(ns, "sbc_edge", "signaling_v4") == ["192.0.2.0/28"]  # not lab-west's
    text = ns.exec("nft", "list", "table", "inet", "sbc_edge").stdout
    assert "udp dport 5080" in text and "dport 5060" not in text


# ------------------------------------------------------------------ real traffic
@pytest.fixture
def lab():
    """SBC namespace with a trusted host (192.0.2.20) and an untrusted one (203.0.113.20)."""
    require_root()
    require_tool("nft", "sipp")
    with Netns("sbc") as sbc, Netns("tr") as tr, Netns("un") as un:
        link(sbc, tr, f"{SBC}/24", f"{TRUSTED}/24")
        link(sbc, un, f"{SBC_U}/24", f"{UNTRUSTED}/24")
        yield sbc, tr, un


def counters(ns: Netns) -> dict:
    out = json.loads(ns.exec("nft", "-j", "list", "chain", "inet", "sipedge", "input").stdout)
    res = {}
    for x in out["nftables"]:
        if "rule" in x:
            expr = x["rule"]["expr"]
            c = [e["counter"] for e in expr if "counter" in e][0]
            key = json.dumps([e for e in expr if "counter" not in e], sort_keys=True)
            res[key] = c["packets"]
    return res


def drop_packets(ns: Netns, port_text: str, mode: str = "enforce") -> int:
    out = json.loads(ns.exec("nft", "-j", "list", "chain", "inet", "sipedge", "input").stdout)
    for x in out["nftables"]:
        if "rule" in x:
            expr = x["rule"]["expr"]
            has_set = any("match" in e and "@" in json.dumps(e) for e in expr)
            verdict = "drop" in json.dumps(expr)
            if not has_set and (verdict or mode == "monitor") and port_text in json.dumps(expr):
                return [e["counter"] for e in expr if "counter" in e][0]["packets"]
    raise AssertionError("no closing rule found")


def sipp_uas(sbc: Netns, addr: str, calls: int) -> subprocess.Popen:
    return sbc.popen("sipp", "-sn", "uas", "-i", addr, "-p", "5060", "-m", str(calls),
                     "-nostdin", "-timeout", "20s", stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)


def sipp_uac(host: Netns, src: str, dst: str, calls: int, timeout: str) -> subprocess.CompletedProcess:
    return host.exec("sipp", "-sn", "uac", f"{dst}:5060", "-i", src, "-p", "5070", "-m", str(calls),
                     "-r", "10", "-d", "100", "-nostdin", "-timeout", timeout, "-timeout_error",
                     "-recv_timeout", "2000", check=False, timeout=60)


def udp_burst(sbc: Netns, host: Netns, dst: str, src: str, port: int, count: int, rate: float,
              max_s: float = 10.0) -> int:
    rx = sbc.popen(sys.executable, UDP_TOOL, "recv", dst, str(port), str(max_s), "0.7",
                   stdout=subprocess.PIPE, text=True)
    try:
        assert rx.stdout.readline().strip() == "ready"
        host.exec(sys.executable, UDP_TOOL, "send", dst, str(port), str(count), str(rate), src)
        out, _ = rx.communicate(timeout=max_s + 5)
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
    return int(out.strip())


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_sipp_calls_and_rtp_from_trusted_host_pass_untrusted_are_dropped(lab, al_files, opts_for):
    sbc, tr, un = lab
    ops.apply(desired_state(Allowlist.load(al_files[0])), opts_for(sbc))
    uas = sipp_uas(sbc, SBC, 3)
    try:
        r = sipp_uac(tr, TRUSTED, SBC, 3, "20s")
        assert r.returncode == 0, r.stdout[-2000:]
    finally:
        _stop(uas)
    assert uas.returncode == 0
    assert udp_burst(sbc, tr, SBC, TRUSTED, 20000, 50, 500) == 50  # RTP to a media port
    # the untrusted host: no answer, and the drop counters rise
    drops_sip, drops_rtp = drop_packets(sbc, '"right": 5060'), drop_packets(sbc, "10000")
    uas = sipp_uas(sbc, SBC_U, 1)
    try:
        r = sipp_uac(un, UNTRUSTED, SBC_U, 1, "4s")
        assert r.returncode != 0
    finally:
        _stop(uas)
    assert drop_packets(sbc, '"right": 5060') > drops_sip
    assert udp_burst(sbc, un, SBC_U, UNTRUSTED, 20000, 20, 500, max_s=2.0) == 0
    assert drop_packets(sbc, "10000") >= drops_rtp + 20


def test_monitor_mode_lets_untrusted_calls_through_and_counts_them(lab, al_files, opts_for):
    sbc, tr, un = lab
    ops.apply(desired_state(Allowlist.load(al_files[0]), mode="monitor"), opts_for(sbc))
    uas = sipp_uas(sbc, SBC_U, 2)
    try:
        r = sipp_uac(un, UNTRUSTED, SBC_U, 2, "20s")
        assert r.returncode == 0, r.stdout[-2000:]
    finally:
        _stop(uas)
    # counted: the first packet of each dialog; the UAS answers, so conntrack accepts the rest
    assert drop_packets(sbc, '"right": 5060', mode="monitor") >= 1
    assert udp_burst(sbc, un, SBC_U, UNTRUSTED, 15000, 20, 500) == 20
    assert drop_packets(sbc, "10000", mode="monitor") >= 20


def test_sync_under_traffic_loses_no_trusted_packet(lab, al_files, opts_for):
    sbc, tr, _un = lab
    da = desired_state(Allowlist.load(al_files[0]))
    db = desired_state(Allowlist.load(al_files[1]))
    opts = opts_for(sbc)
    ops.apply(da, opts)
    count, rate = 3000, 1500.0
    rx = sbc.popen(sys.executable, UDP_TOOL, "recv", SBC, "5060", "15", "1.0",
                   stdout=subprocess.PIPE, text=True)
    results = []
    try:
        assert rx.stdout.readline().strip() == "ready"
        tx = tr.popen(sys.executable, UDP_TOOL, "send", SBC, "5060", str(count), str(rate), TRUSTED,
                      stdout=subprocess.PIPE, text=True)
        time.sleep(0.2)
        for i in range(8):  # A -> B -> A ...: the trusted host's interval is replaced each time
            results.append(ops.apply(db if i % 2 == 0 else da, opts)["action"])
            time.sleep(0.1)
        sent = int(tx.communicate(timeout=20)[0].strip())
        received = int(rx.communicate(timeout=20)[0].strip())
    finally:
        for p in (rx,):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert results == ["sync"] * 8
    assert sent == count
    assert received == sent
    assert drop_packets(sbc, '"right": 5060') == 0


# ------------------------------------------------------------------ ipset backend
def ipset_members(ns: Netns) -> dict:
    out, name = {}, None
    for line in ns.exec("ipset", "list").stdout.splitlines():
        if line.startswith("Name: "):
            name = line[6:]
            out[name] = []
        elif name and line and ":" not in line.split("/")[0][:4] and not line.startswith(
                ("Type", "Revision", "Header", "Size", "References", "Number", "Members")):
            out[name].append(line.strip())
    return {k: sorted(v) for k, v in out.items()}


def ipt_drops(ns: Netns, tool: str = "iptables") -> int:
    total = 0
    for line in ns.exec(tool, "-S", "SIPEDGE", "-v").stdout.splitlines():
        parts = line.split()
        if line.startswith("-A") and "--match-set" not in parts:
            total += int(parts[parts.index("-c") + 1])
    return total


@pytest.fixture
def ipset_ns():
    require_root()
    require_tool("ipset", "iptables", "ip6tables", "iptables-restore")
    with Netns("ips") as ns:
        yield ns


def test_cidrs_cover_an_interval_exactly():
    from sipedge.firewall.backends.ipset import cidrs

    a = int(ipaddress.ip_address("192.0.2.0"))
    assert cidrs(a, a + 256, 4) == [(a, 24)]
    got = [f"{ipaddress.ip_address(x)}/{c}" for x, c in cidrs(a + 1, a + 7, 4)]
    assert got == [str(n) for n in ipaddress.summarize_address_range(
        ipaddress.ip_address(a + 1), ipaddress.ip_address(a + 6))]
    assert cidrs(0, 1 << 32, 4) == [(0, 0)]


# the ipset backend's apply / sync / remove and traffic tests: tests/test_firewall_ipset.py


def test_contrib_example_allowlist_and_units():
    root = os.path.dirname(HERE)
    al = Allowlist.load(os.path.join(root, "contrib", "allowlist-replace.toml"))
    for e in al:  # documentation addresses only
        assert any(e.network.subnet_of(ipaddress.ip_network(doc)) for doc in (
            "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
            if ipaddress.ip_network(doc).version == e.network.version)
    assert "elements = { 192.0.2.0/28, 198.51.100.16/28 }" in render(al)
    unit = open(os.path.join(root, "contrib", "sipedge-firewall.service")).read()
    assert "sipedge firewall apply" in unit and "CAP_NET_ADMIN" in unit
    assert "OnUnitActiveSec=" in open(os.path.join(root, "contrib", "sipedge-firewall.timer")).read()
