"""Firewall apply/sync: sipedge's netlink backends beside `nft -f` and `ipset restore`.

Run (as root; everything happens in namespaces made here):

    python3 -m pytest bench/bench_firewall.py --benchmark-only \
        --benchmark-min-rounds 3 --benchmark-max-time 0.5 -p no:cacheprovider

Each group puts sipedge and its peer side by side in the same run:
  twilio-create   the embedded Twilio allowlist, empty namespace -> full table
  100k-create     100,000 /24 media prefixes (+ Twilio signaling), empty -> full table
  100k-sync-1pct  1% of the 100k prefixes replaced (1,000 out, 1,000 in) on a live table;
                  peers: `nft -f` of the matching delete/add element script (one
                  round: nft 1.0.6 takes minutes), and `nft -f` reloading the whole
                  table (delete + create in one file: a flush-and-refill)
  ipset-100k      the ipset backend vs `ipset restore` of the same sets
  compile-100k    building the desired state from the allowlist (sipedge only; the
                  peer's equivalent is inside its `nft -f` parse)
sipedge's figures include the lock, the snapshot write and reading the
kernel's generation id: everything `sipedge firewall apply` does after it
has compiled the allowlist. The peers' figures include starting the tool.
"""
from __future__ import annotations

import ipaddress
import os
import random
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from netns import Netns  # noqa: E402

from sipedge.allowlist import Allowlist, Entry  # noqa: E402
from sipedge.firewall import nft, nsutil, ops  # noqa: E402
from sipedge.firewall.desired import desired_state, interval_text  # noqa: E402
from sipedge.firewall.ipset import cidrs, set_name  # noqa: E402
from sipedge.firewall.ruleset import render_desired  # noqa: E402

if os.geteuid() != 0:
    pytest.skip("the firewall benchmarks need root (network namespaces)", allow_module_level=True)

N_BIG = 100_000


def _nets(n: int, seed: int) -> list:
    rnd = random.Random(seed)
    out = set()
    while len(out) < n:
        out.add(ipaddress.ip_network((rnd.getrandbits(24) << 8, 24)))
    return sorted(out)


def _allowlist(media) -> Allowlist:
    tw = Allowlist.twilio()
    return Allowlist([e for e in tw if e.role == "signaling"] + [Entry("media", None, n) for n in media],
                     tw.ports, tw.meta)


BIG = _nets(N_BIG, 1)
BIG2 = BIG[1000:] + _nets(1000, 2)


@pytest.fixture(scope="module")
def states():
    d_tw = desired_state(Allowlist.twilio())
    d_big = desired_state(_allowlist(BIG))
    d_big2 = desired_state(_allowlist(BIG2))
    for d in (d_tw, d_big, d_big2):
        for s in d.sets.values():
            s.packed  # noqa: B018 - computed once, as a long-running compile would
    return d_tw, d_big, d_big2


@pytest.fixture(scope="module")
def ns():
    with Netns("bench") as n:
        yield n


@pytest.fixture
def opts(tmp_path, ns):
    return ops.Options(netns=ns.name, lock_file=str(tmp_path / "lock"), state_dir=str(tmp_path / "st"))


def _in_ns(ns):
    path = nsutil.netns_path(ns.name)

    def enter():
        fd = os.open(path, os.O_RDONLY)
        nsutil._setns(fd)
        os.close(fd)
    return enter


def _run_in(ns, *cmd, stdin=None):
    subprocess.run(cmd, preexec_fn=_in_ns(ns), check=True, input=stdin,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _reset(ns, tmp_path):
    nft._EXPR_CACHE.clear()  # every round pays what one `sipedge firewall apply` run pays
    ns.exec("nft", "flush", "ruleset")
    for f in (tmp_path / "st").glob("*") if (tmp_path / "st").exists() else []:
        f.unlink()


# -- create ---------------------------------------------------------------------------
@pytest.mark.benchmark(group="twilio-create")
def test_sipedge_apply_twilio(benchmark, states, ns, opts, tmp_path):
    d = states[0]
    r = benchmark.pedantic(lambda: ops.apply(d, opts), setup=lambda: _reset(ns, tmp_path),
                           rounds=15, warmup_rounds=1)
    assert r["action"] == "create"


@pytest.mark.benchmark(group="twilio-create")
def test_nft_f_twilio(benchmark, states, ns, tmp_path):
    f = tmp_path / "tw.nft"
    f.write_text(render_desired(states[0]))
    benchmark.pedantic(lambda: _run_in(ns, "nft", "-f", str(f)), setup=lambda: _reset(ns, tmp_path),
                       rounds=15, warmup_rounds=1)
    assert "54.172.60.0/30" in ns.exec("nft", "list", "set", "inet", "sipedge", "signaling_v4").stdout


@pytest.mark.benchmark(group="100k-create")
def test_sipedge_apply_100k(benchmark, states, ns, opts, tmp_path):
    d = states[1]
    r = benchmark.pedantic(lambda: ops.apply(d, opts), setup=lambda: _reset(ns, tmp_path), rounds=3)
    assert r["action"] == "create" and r["prefixes"] > N_BIG // 2


@pytest.mark.benchmark(group="100k-create")
def test_nft_f_100k(benchmark, states, ns, tmp_path):
    f = tmp_path / "big.nft"
    f.write_text(render_desired(states[1]))
    benchmark.pedantic(lambda: _run_in(ns, "nft", "-f", str(f)), setup=lambda: _reset(ns, tmp_path),
                       rounds=3)


# -- 1% sync --------------------------------------------------------------------------
@pytest.mark.benchmark(group="100k-sync-1pct")
def test_sipedge_sync_1pct(benchmark, states, ns, opts, tmp_path):
    _, d1, d2 = states
    _reset(ns, tmp_path)
    ops.apply(d1, opts)
    flip = [d2, d1]

    def run():
        d = flip[0]
        flip.reverse()
        return ops.apply(d, opts)

    r = benchmark.pedantic(run, rounds=6)
    assert r["action"] == "sync" and r["added"] > 900 and r["deleted"] > 900


@pytest.mark.benchmark(group="100k-sync-1pct")
def test_nft_f_sync_1pct(benchmark, states, ns, tmp_path):
    _, d1, d2 = states
    _reset(ns, tmp_path)
    f = tmp_path / "big.nft"
    f.write_text(render_desired(d1))
    _run_in(ns, "nft", "-f", str(f))
    a, b = set(d1.sets["media_v4"].intervals), set(d2.sets["media_v4"].intervals)

    def script(old, new):
        dele = ", ".join(interval_text(s, e, 4) for s, e in sorted(old - new))
        add = ", ".join(interval_text(s, e, 4) for s, e in sorted(new - old))
        return (f"delete element inet sipedge media_v4 {{ {dele} }}\n"
                f"add element inet sipedge media_v4 {{ {add} }}\n")

    fwd, back = tmp_path / "fwd.nft", tmp_path / "back.nft"
    fwd.write_text(script(a, b))
    back.write_text(script(b, a))
    flip = [fwd, back]

    def run():
        p = flip[0]
        flip.reverse()
        _run_in(ns, "nft", "-f", str(p))

    # nft 1.0.6 needs minutes for this (it re-checks the whole interval set per
    # element): one round only
    benchmark.pedantic(run, rounds=1, iterations=1)


@pytest.mark.benchmark(group="100k-sync-1pct")
def test_nft_f_reload_1pct(benchmark, states, ns, tmp_path):
    """The other way nft users sync: reload the whole table (delete + create in one -f)."""
    _, d1, d2 = states
    _reset(ns, tmp_path)
    f1, f2 = tmp_path / "a.nft", tmp_path / "b.nft"
    f1.write_text(render_desired(d1))
    f2.write_text(render_desired(d2))
    _run_in(ns, "nft", "-f", str(f1))
    for f in (f1, f2):
        f.write_text("delete table inet sipedge\n" + f.read_text())
    flip = [f2, f1]

    def run():
        p = flip[0]
        flip.reverse()
        _run_in(ns, "nft", "-f", str(p))

    benchmark.pedantic(run, rounds=4)


# -- ipset ----------------------------------------------------------------------------
def _reset_ipset(ns, tmp_path):
    ns.exec("iptables", "-F")
    ns.exec("iptables", "-X")
    ns.exec("ip6tables", "-F")
    ns.exec("ip6tables", "-X")
    ns.exec("ipset", "destroy")
    _reset(ns, tmp_path)


@pytest.mark.benchmark(group="ipset-100k")
def test_sipedge_ipset_apply_100k(benchmark, states, ns, tmp_path):
    o = ops.Options(netns=ns.name, backend="ipset", lock_file=str(tmp_path / "lock"),
                    state_dir=str(tmp_path / "st"))
    r = benchmark.pedantic(lambda: ops.apply(states[1], o), setup=lambda: _reset_ipset(ns, tmp_path),
                           rounds=3)
    assert r["action"] == "create"


@pytest.mark.benchmark(group="ipset-100k")
def test_ipset_restore_100k(benchmark, states, ns, tmp_path):
    d = states[1]
    lines = []
    for st in d.sets.values():
        name = set_name(d.table, st.role, st.family)
        fam = "inet" if st.family == 4 else "inet6"
        lines.append(f"create {name} hash:net family {fam} maxelem {max(65536, 2 * len(st.intervals))}")
        for s, e in st.intervals:
            for addr, c in cidrs(s, e, st.family):
                ip = ipaddress.ip_address(addr) if st.family == 4 else ipaddress.IPv6Address(addr)
                lines.append(f"add {name} {ip}/{c}")
    f = tmp_path / "big.ipset"
    f.write_text("\n".join(lines) + "\n")
    benchmark.pedantic(lambda: _run_in(ns, "ipset", "restore", "-file", str(f)),
                       setup=lambda: _reset_ipset(ns, tmp_path), rounds=3)


# -- compile --------------------------------------------------------------------------
@pytest.mark.benchmark(group="compile-100k")
def test_sipedge_compile_100k(benchmark):
    al = _allowlist(BIG)
    d = benchmark.pedantic(lambda: desired_state(al), rounds=2)
    assert d.prefix_count > N_BIG // 2
