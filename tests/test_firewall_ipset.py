"""The ipset backend (issue 9, finding 6): the model as ipset sets + iptables rules.

Every role read back and removed, sipedge's mark on its sets and chain and a
refusal of what is not sipedge's, recovery from a run killed with kill -9 (no
stray ``-new`` set, no mixed lists after the next apply, no trusted packet lost
meanwhile), tools run by absolute path. Everything runs in namespaces these
tests create, with documentation addresses for every packet sent.
"""
from __future__ import annotations

import ipaddress
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from sipedge import errors
from sipedge.allowlist import Allowlist
from sipedge.firewall import ops
from sipedge.firewall.backends import ipset as ipb
from sipedge.firewall.desired import desired_state

from conftest import SRC, require_root, require_tool
from netns import Netns, link
from test_firewall import (AL_A, AL_B, SBC, SBC_U, TRUSTED, UDP_TOOL, UNTRUSTED, al_files,  # noqa: F401
                           allowlist_toml, opts_for, sipp_uac, sipp_uas, udp_burst)

#: the firewall code is the same Python in both passes (its one twin, _setdiff, has its
#: own tests over both implementations): run once, in the native pass of make test
pytestmark = pytest.mark.once

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_STREAM_S = 900  # the traffic tests' senders stop by then whatever happens
IPT_TOOLS = ("ipset", "iptables", "ip6tables", "iptables-restore", "ip6tables-restore")

# the shipped example has a third role; a role the old backend never read back
EXTRA = textwrap.dedent("""\
    [dataset]
    name = "three roles"
    [roles.signaling]
    ports = ["5060/udp"]
    [roles.media]
    ports = ["10000-60000/udp"]
    [roles.acme_signaling]
    ports = ["5060/udp"]
    [[ranges]]
    role = "signaling"
    prefixes = ["192.0.2.0/25", "2001:db8:1::/48"]
    [[ranges]]
    role = "media"
    prefixes = ["198.51.100.0/24"]
    [[ranges]]
    role = "acme_signaling"
    prefixes = ["203.0.113.0/25", "2001:db8:7::/48"]
    """)


def members(ns: Netns) -> dict:
    """{set name: sorted members} of every set in *ns* (``ipset save`` lines)."""
    out: dict = {}
    for line in ns.exec("ipset", "save").stdout.splitlines():
        parts = line.split()
        if parts[0] == "create":
            out[parts[1]] = []
        elif parts[0] == "add":
            out[parts[1]].append(parts[2])
    return {k: sorted(v) for k, v in out.items()}


def ipt(ns: Netns, tool: str = "iptables") -> str:
    return ns.exec(tool, "-S").stdout


@pytest.fixture
def ipset_ns():
    require_root()
    require_tool(*IPT_TOOLS)
    with Netns("ips") as ns:
        yield ns


def _cli(ns, *args, env=None, tmp):
    return subprocess.run([sys.executable, "-m", "sipedge", "firewall", *args, "--netns", ns.name,
                           "--backend", "ipset", "--lock-file", str(tmp / "lock"),
                           "--state-dir", str(tmp / "state")],
                          capture_output=True, text=True, timeout=120, env=env)


# ------------------------------------------------------------------ every role
def test_every_role_is_read_back_synced_and_removed(ipset_ns, opts_for, tmp_path):
    ns = ipset_ns
    al = Allowlist.from_toml(EXTRA)
    o = opts_for(ns, backend="ipset")
    d = desired_state(al)
    assert ops.apply(d, o)["action"] == "create"
    m = members(ns)
    assert m["sipedge-acme_signaling-v4"] == ["203.0.113.0/25"]
    assert m["sipedge-acme_signaling-v6"] == ["2001:db8:7::/48"]
    # the second apply used to crash (AlreadyExists) and status reported drift
    assert ops.apply(d, o)["action"] == "none"
    st = ops.status(d, o)
    assert st["drift"] is False and st["structure_ok"] is True
    assert st["sets"]["acme_signaling_v4"]["live"] == 1
    # a change in the third role is seen and synced
    al2 = Allowlist.from_toml(EXTRA.replace("203.0.113.0/25", "203.0.113.128/25"))
    assert ops.status(desired_state(al2), o)["drift"] is True
    r = ops.apply(desired_state(al2), o)
    assert (r["action"], r["added"], r["deleted"]) == ("sync", 1, 1)
    assert members(ns)["sipedge-acme_signaling-v4"] == ["203.0.113.128/25"]
    # a role dropped from the allowlist: its sets go, after no rule refers to them
    al3 = Allowlist.from_toml(AL_A)
    assert ops.apply(desired_state(al3), o)["action"] == "replace"
    assert not [k for k in members(ns) if "acme" in k]
    assert ops.remove("sipedge", o)["removed"] is True
    assert members(ns) == {}
    assert "SIPEDGE" not in ipt(ns) and "SIPEDGE" not in ipt(ns, "ip6tables")


def test_what_is_not_sipedges_survives_apply_sync_and_remove(ipset_ns, opts_for):
    ns = ipset_ns
    ns.exec("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
    ns.exec("ipset", "create", "someone-else", "hash:ip")
    ns.exec("ipset", "add", "someone-else", "203.0.113.9")
    before_ipt = (ipt(ns), ipt(ns, "ip6tables"))
    o = opts_for(ns, backend="ipset")
    assert ops.apply(desired_state(Allowlist.from_toml(AL_A)), o)["action"] == "create"
    r = ops.apply(desired_state(Allowlist.from_toml(AL_B)), o)
    assert r["action"] == "sync" and r["fast"] is False
    m = members(ns)
    assert m["sipedge-signaling-v4"] == ["192.0.2.0/24", "198.51.100.128/27"]
    assert m["someone-else"] == ["203.0.113.9"]
    assert "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT" in ipt(ns)
    assert ops.remove("sipedge", o)["removed"] is True
    assert members(ns) == {"someone-else": ["203.0.113.9"]}
    assert (ipt(ns), ipt(ns, "ip6tables")) == before_ipt
    assert ops.remove("sipedge", o)["removed"] is False


def test_rules_follow_the_model_and_counters_are_reported_by_model_rule(ipset_ns, opts_for, tmp_path):
    ns = ipset_ns
    o = opts_for(ns, backend="ipset")
    d = desired_state(Allowlist.from_toml(AL_A))
    ops.apply(d, o)
    got = [line for line in ipt(ns).splitlines() if line.startswith("-A")]
    assert got == [
        '-A INPUT -m comment --comment "managed by sipedge" -j SIPEDGE',
        '-A SIPEDGE -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "managed by sipedge" -j ACCEPT',
        "-A SIPEDGE -i lo -j ACCEPT",
        "-A SIPEDGE -p udp -m udp --dport 5060 -m set --match-set sipedge-signaling-v4 src -j ACCEPT",
        "-A SIPEDGE -p tcp -m tcp --dport 5060 -m set --match-set sipedge-signaling-v4 src -j ACCEPT",
        "-A SIPEDGE -p tcp -m tcp --dport 5061 -m set --match-set sipedge-signaling-v4 src -j ACCEPT",
        "-A SIPEDGE -p udp -m udp --dport 10000:20000 -m set --match-set sipedge-media-v4 src -j ACCEPT",
        "-A SIPEDGE -p udp -m udp --dport 5060 -j DROP",
        "-A SIPEDGE -p tcp -m tcp --dport 5060 -j DROP",
        "-A SIPEDGE -p tcp -m tcp --dport 5061 -j DROP",
        "-A SIPEDGE -p udp -m udp --dport 10000:20000 -j DROP",
    ]
    assert "--match-set sipedge-media-v6 src -j ACCEPT" in ipt(ns, "ip6tables")
    report = ops.status(d, o)["rules"]
    assert [r["rule"] for r in report] == [r.describe() for r in d.rules]
    # ct, lo and the drop rules exist in both families
    assert len(report[0]["tools"]) == 2 and len(report[-1]["tools"]) == 2
    # monitor: the closing rules count without a target; --iif: per interface
    dm = desired_state(Allowlist.from_toml(AL_A), mode="monitor", iif=("eth9", "eth8"))
    assert ops.apply(dm, o)["action"] == "replace"
    rules = ipt(ns)
    assert "DROP" not in rules
    assert "-A SIPEDGE -i eth9 -p udp -m udp --dport 5060 -m set --match-set sipedge-signaling-v4 src -j ACCEPT" in rules
    assert "-A SIPEDGE -i eth8 -p udp -m udp --dport 5060\n" in rules
    assert ops.status(dm, o)["drift"] is False
    assert ops.apply(dm, o)["action"] == "none"
    # the model's iif rule has no iptables rule of its own: reported as None, printed as "-"
    assert [x["packets"] for x in ops.status(dm, o)["rules"] if x["rule"].startswith("iifname")] == [None]
    al = tmp_path / "a.toml"
    al.write_text(AL_A)
    r = subprocess.run([sys.executable, "-m", "sipedge", "firewall", "status", "--allowlist", str(al),
                        "--mode", "monitor", "--iif", "eth9,eth8", "--netns", ns.name, "--backend", "ipset",
                        "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert '         - pkts            - bytes  iifname != "eth9" iifname != "eth8" counter return' in r.stdout


# ------------------------------------------------------------------ ownership
def test_a_set_with_sipedges_name_but_not_its_mark_is_refused(ipset_ns, opts_for, tmp_path):
    ns = ipset_ns
    ns.exec("ipset", "create", "sipedge-media-v4", "hash:net")  # the admin's, no initval mark
    ns.exec("ipset", "add", "sipedge-media-v4", "198.51.100.0/24")
    before = (members(ns), ipt(ns), ipt(ns, "ip6tables"))
    o = opts_for(ns, backend="ipset")
    with pytest.raises(errors.OwnershipError, match="owner check failed: ipset sipedge-media-v4 .*initval"):
        ops.apply(desired_state(Allowlist.from_toml(AL_A)), o)
    assert (members(ns), ipt(ns), ipt(ns, "ip6tables")) == before  # nothing created, nothing changed
    with pytest.raises(errors.OwnershipError):
        ops.remove("sipedge", o)
    assert members(ns) == before[0]
    al = tmp_path / "a.toml"
    al.write_text(AL_A)
    r = _cli(ns, "apply", "--allowlist", str(al), tmp=tmp_path)
    assert r.returncode == errors.EXIT_REFUSED, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "owner check" in r.stderr
    assert (members(ns), ipt(ns)) == before[:2]


def test_a_chain_sipedge_did_not_create_is_refused(ipset_ns, opts_for):
    ns = ipset_ns
    ns.exec("iptables", "-N", "SIPEDGE")
    ns.exec("iptables", "-A", "SIPEDGE", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
    before = ipt(ns)
    o = opts_for(ns, backend="ipset")
    with pytest.raises(errors.OwnershipError, match="iptables chain SIPEDGE has no rule marked"):
        ops.apply(desired_state(Allowlist.from_toml(AL_A)), o)
    with pytest.raises(errors.OwnershipError):
        ops.remove("sipedge", o)
    assert ipt(ns) == before and members(ns) == {}


def test_table_input_never_touches_the_builtin_input_chain(ipset_ns, opts_for):
    ns = ipset_ns
    ns.exec("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
    ns.exec("ip6tables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
    before = (ipt(ns), ipt(ns, "ip6tables"))
    o = opts_for(ns, backend="ipset")
    d = desired_state(Allowlist.from_toml(AL_A), table="input")
    assert ops.apply(d, o)["action"] == "create"
    rules = ipt(ns)
    assert "-N SIPEDGE-INPUT" in rules and "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT" in rules
    assert "input-signaling-v4" in members(ns)
    assert ops.status(d, o)["drift"] is False
    # the old backend flushed and deleted iptables' INPUT here
    assert ops.remove("input", o)["removed"] is True
    assert (ipt(ns), ipt(ns, "ip6tables")) == before
    assert members(ns) == {}


def test_chain_and_set_names_stay_within_the_kernels_limits():
    assert ipb.chain_name("sipedge") == "SIPEDGE"
    assert ipb.chain_name("input") == "SIPEDGE-INPUT"
    with pytest.raises(errors.FirewallError, match="at most 20"):
        ipb.chain_name("a" * 21)
    with pytest.raises(errors.FirewallError, match="too long"):
        ipb.set_name("t" * 20, "signaling", 4)


# ------------------------------------------------------------------ tools by absolute path
def test_tools_on_path_are_never_run(ipset_ns, tmp_path):
    ns = ipset_ns
    fake = tmp_path / "fakebin"
    fake.mkdir()
    marker = tmp_path / "ran"
    for tool in ("ip", "iptables", "ip6tables", "iptables-restore", "ip6tables-restore", "ipset"):
        p = fake / tool
        p.write_text(f"#!/bin/sh\necho {tool} >> {marker}\nexit 0\n")
        p.chmod(0o755)
    al = tmp_path / "a.toml"
    al.write_text(AL_A)
    env = dict(os.environ, PATH=f"{fake}:{os.environ.get('PATH', '')}")
    r = _cli(ns, "apply", "--allowlist", str(al), env=env, tmp=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not marker.exists(), marker.read_text()  # not one fake tool ran as root
    assert "-A SIPEDGE -p udp -m udp --dport 5060 -j DROP" in ipt(ns)  # the real ones did
    assert members(ns)["sipedge-signaling-v4"] == ["192.0.2.0/25", "198.51.100.64/26"]


def test_tool_lookup_ignores_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    (tmp_path / "iptables-restore").write_text("#!/bin/sh\n")
    (tmp_path / "iptables-restore").chmod(0o755)
    if not any(os.path.exists(os.path.join(d, "iptables-restore")) for d in ipb.TOOL_DIRS):
        pytest.skip("iptables-restore is not installed")
    assert os.path.dirname(ipb.tool_path("iptables-restore")) in ipb.TOOL_DIRS
    with pytest.raises(errors.KernelSupportError, match="not-a-tool is not installed"):
        ipb.tool_path("not-a-tool")


# ------------------------------------------------------------------ recovery
def test_leftovers_of_a_killed_run_are_cleaned_and_mixed_lists_repaired(ipset_ns, opts_for):
    ns = ipset_ns
    o = opts_for(ns, backend="ipset")
    da = desired_state(Allowlist.from_toml(AL_A))
    db = desired_state(Allowlist.from_toml(AL_B))
    ops.apply(da, o)
    # what a run killed after its first swap leaves: signaling from B, media from A, and a
    # filled temporary set that was never swapped in
    with ipb.IpsetBackend(ns.name) as be:
        be._make("sipedge-signaling-v4-new", db.sets["signaling_v4"].intervals, 4)
        be._swap("sipedge-signaling-v4-new", "sipedge-signaling-v4")
        be._make("sipedge-media-v4-new", db.sets["media_v4"].intervals, 4)
    m = members(ns)
    assert "sipedge-media-v4-new" in m and "sipedge-signaling-v4-new" in m
    assert ops.status(db, o)["drift"] is True
    r = ops.apply(db, o)
    assert r["action"] == "sync"
    m = members(ns)
    assert not [k for k in m if k.endswith("-new")]
    assert m["sipedge-signaling-v4"] == ["192.0.2.0/24", "198.51.100.128/27"]
    assert m["sipedge-media-v4"] == ["192.0.2.0/24"]
    assert ops.status(db, o)["drift"] is False


def _big_allowlist(path, n: int, seed: int, trusted: str) -> None:
    """n random /24s (never sent to: they only fill the sets) plus the trusted /24."""
    rnd = random.Random(seed)
    nets = set()
    while len(nets) < n:
        a = rnd.randrange(16 << 24, 220 << 24) & ~0xFF
        nets.add(str(ipaddress.ip_network((a, 24))))
    nets.discard(trusted)
    nets = sorted(nets) + [trusted]
    path.write_text(allowlist_toml(nets, nets))


@pytest.mark.slow
@pytest.mark.netns
def test_kill_9_at_random_points_loses_no_trusted_packet_and_the_next_apply_restores(lab_ipset, tmp_path):
    """Done-when 2, the ipset part: a trusted sender at 1000 pps to the SIP port and an RTP
    port for the whole run; applies alternating two 100k-prefix allowlists are killed with
    kill -9 at random points; after each kill the next apply restores the desired state."""
    sbc, tr = lab_ipset
    snaps, want = [], {}
    for name, seed in (("a", 1), ("b", 2)):
        toml, snap = tmp_path / f"{name}.toml", tmp_path / f"{name}.snap"
        _big_allowlist(toml, 100_000, seed, "192.0.2.0/24")
        al = Allowlist.load(str(toml))
        al.save_snapshot(str(snap), source=str(toml))  # so each run loads in milliseconds
        snaps.append(snap)
        want[snap] = desired_state(al)
    a, b = snaps
    st_opts = ops.Options(netns=sbc.name, backend="ipset", state_dir=str(tmp_path / "state"))
    base = ["--netns", sbc.name, "--backend", "ipset", "--lock-file", str(tmp_path / "lock"),
            "--state-dir", str(tmp_path / "state")]
    env = dict(os.environ, PYTHONPATH=SRC)

    def apply(path, **kw):
        return subprocess.Popen([sys.executable, "-m", "sipedge", "firewall", "apply", "--allowlist",
                                 str(path), *base], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **kw)

    t0 = time.monotonic()
    p = apply(a)
    assert p.wait(timeout=120) == 0, p.stderr.read()
    full = time.monotonic() - t0
    kills, rounds = 10, []
    rnd = random.Random(9)
    rate = 1000
    tx: list = []
    rx = [sbc.popen(sys.executable, UDP_TOOL, "recv", SBC, str(port), str(MAX_STREAM_S + 30), "2.0",
                    stdout=subprocess.PIPE, text=True) for port in (5060, 12000)]
    try:
        for r in rx:
            assert r.stdout.readline().strip() == "ready"
        # streams until told to stop (SIGTERM), bounded by MAX_STREAM_S
        tx = [tr.popen(sys.executable, UDP_TOOL, "stream", SBC, str(port), str(rate), str(MAX_STREAM_S),
                       TRUSTED, stdout=subprocess.PIPE, text=True) for port in (5060, 12000)]
        for t in tx:
            assert t.stdout.readline().strip() == "sending"
        time.sleep(1.0)
        for i in range(kills):
            target = b if i % 2 == 0 else a
            p = apply(target)
            time.sleep(rnd.uniform(0.05, full))  # a random point of the run (bounded: <= one apply)
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
            r = apply(target)
            out, err = r.communicate(timeout=120)
            assert r.returncode == 0, err
            rounds.append(p.returncode)
            m = [line for line in sbc.exec("ipset", "list", "-n").stdout.split() if line.endswith("-new")]
            assert m == []
            st = ops.status(want[target], st_opts)
            assert st["drift"] is False, st["sets"]  # the desired state, whatever the kill left
        assert all(t.poll() is None for t in tx)  # every kill happened under traffic
        time.sleep(1.0)
        for t in tx:
            t.terminate()
        sent = [int(t.communicate(timeout=30)[0].strip()) for t in tx]
        received = [int(r.communicate(timeout=60)[0].strip()) for r in rx]
    finally:
        for proc in rx + tx:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(f"\nkill -9: one 100k apply {full:.1f} s; {sum(rc == -signal.SIGKILL for rc in rounds)} of "
          f"{kills} runs killed mid-way; sent {sent}, received {received}")
    assert any(rc == -signal.SIGKILL for rc in rounds)  # the kills really landed mid-run
    assert min(sent) >= rate * 10  # the stream really ran (>= 10 s at 1000 pps)
    assert received == sent  # 0 trusted packets lost
    drops = sum(int(line.split()[line.split().index("-c") + 1])
                for line in sbc.exec("iptables", "-S", "SIPEDGE", "-v").stdout.splitlines()
                if line.startswith("-A") and "-j DROP" in line)
    assert drops == 0


@pytest.mark.slow
@pytest.mark.netns
def test_structural_changes_of_a_100k_table_lose_no_trusted_packet(lab_ipset, tmp_path):
    """Done-when 2's second phase for ipset: mode, SBC-port and interface changes of a
    100k-prefix table, alternating, under 1000 pps of trusted traffic: each is one
    iptables-restore commit per family over sets that stay; 0 packets lost, 0 drops."""
    from sipedge.firewall.desired import sbc_ports

    sbc, tr = lab_ipset
    toml = tmp_path / "big.toml"
    _big_allowlist(toml, 100_000, 3, "192.0.2.0/24")
    al = Allowlist.load(str(toml))
    veth = [line.split(":")[1].strip().split("@")[0] for line in sbc.exec("ip", "-o", "link").stdout.splitlines()
            if "sxa" in line or "sxb" in line][0]
    variants = [
        desired_state(al, mode="enforce"),
        desired_state(al, mode="monitor"),
        desired_state(al, sbc=sbc_ports(al, rtp="11000-21000/udp")),
        desired_state(al, sbc=sbc_ports(al, sip="5060/udp,5080/udp,5060/tcp")),
        desired_state(al, iif=(veth,)),
    ]
    o = ops.Options(netns=sbc.name, backend="ipset", lock_file=str(tmp_path / "lock"),
                    state_dir=str(tmp_path / "state"))
    assert ops.apply(variants[0], o)["action"] == "create"
    changes, rate = 10, 1000
    tx: list = []
    rx = [sbc.popen(sys.executable, UDP_TOOL, "recv", SBC, str(port), str(MAX_STREAM_S + 30), "2.0",
                    stdout=subprocess.PIPE, text=True) for port in (5060, 12000)]
    try:
        for r in rx:
            assert r.stdout.readline().strip() == "ready"
        tx = [tr.popen(sys.executable, UDP_TOOL, "stream", SBC, str(port), str(rate), str(MAX_STREAM_S),
                       TRUSTED, stdout=subprocess.PIPE, text=True) for port in (5060, 12000)]
        for t in tx:
            assert t.stdout.readline().strip() == "sending"
        time.sleep(1.0)
        actions = []
        for i in range(changes):
            d = variants[1 + i % (len(variants) - 1)] if i % 2 == 0 else variants[0]
            actions.append(ops.apply(d, o)["action"])
            assert ops.status(d, o)["drift"] is False
        assert all(t.poll() is None for t in tx)  # every change happened under traffic
        time.sleep(1.0)
        for t in tx:
            t.terminate()
        sent = [int(t.communicate(timeout=30)[0].strip()) for t in tx]
        received = [int(r.communicate(timeout=60)[0].strip()) for r in rx]
    finally:
        for proc in rx + tx:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(f"\nstructural changes: {actions.count('replace')} replaces; sent {sent}, received {received}")
    assert actions == ["replace"] * changes
    assert min(sent) >= rate * 5 and received == sent  # 0 trusted packets lost
    drops = sum(int(line.split()[line.split().index("-c") + 1])
                for line in sbc.exec("iptables", "-S", "SIPEDGE", "-v").stdout.splitlines()
                if line.startswith("-A") and "-j DROP" in line)
    assert drops == 0


@pytest.fixture
def lab_ipset():
    require_root()
    require_tool(*IPT_TOOLS)
    with Netns("sbc") as sbc, Netns("tr") as tr:
        link(sbc, tr, f"{SBC}/24", f"{TRUSTED}/24")
        yield sbc, tr


# ------------------------------------------------------------------ real traffic
def test_ipset_backend_real_traffic_and_sync_under_traffic(lab, al_files, opts_for):  # noqa: F811
    require_tool(*IPT_TOOLS)
    sbc, tr, un = lab
    o = opts_for(sbc, backend="ipset")
    da = desired_state(Allowlist.load(al_files[0]))
    db = desired_state(Allowlist.load(al_files[1]))
    ops.apply(da, o)
    uas = sipp_uas(sbc, SBC, 2)
    try:
        r = sipp_uac(tr, TRUSTED, SBC, 2, "20s")
        assert r.returncode == 0, r.stdout[-2000:]
    finally:
        uas.terminate()
        uas.wait(timeout=10)

    def drops(st):
        return sum(x["packets"] for x in st["rules"] if x["rule"] == "udp dport 5060 counter drop")
    before = drops(ops.status(da, o))
    assert udp_burst(sbc, un, SBC_U, UNTRUSTED, 5060, 20, 500, max_s=2.0) == 0
    assert drops(ops.status(da, o)) >= before + 20
    rx = sbc.popen(sys.executable, UDP_TOOL, "recv", SBC, "12000", "15", "1.0",
                   stdout=subprocess.PIPE, text=True)
    try:
        assert rx.stdout.readline().strip() == "ready"
        tx = tr.popen(sys.executable, UDP_TOOL, "send", SBC, "12000", "1500", "1500", TRUSTED,
                      stdout=subprocess.PIPE, text=True)
        actions = [ops.apply(db if i % 2 == 0 else da, o)["action"] for i in range(4)]
        # and a structural change (mode) under the same stream
        actions.append(ops.apply(desired_state(Allowlist.load(al_files[0]), mode="monitor"), o)["action"])
        sent = int(tx.communicate(timeout=20)[0].strip())
        received = int(rx.communicate(timeout=20)[0].strip())
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
    assert actions == ["sync"] * 4 + ["replace"]
    assert received == sent == 1500


from test_firewall import lab  # noqa: E402,F401  (the sbc/trusted/untrusted namespaces)
