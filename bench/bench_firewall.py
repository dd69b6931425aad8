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
  100k-structure  a structural change (hook priority -10 <-> -5) of the 100k table: sipedge's
                  gapless steps (sets kept, new chain beside the old, old removed) vs
                  `nft -f` reloading the table (delete + create in one file: the old,
                  lossy replace) and `nft -f` of the same chain swap
  ipset-100k      the ipset backend vs `ipset restore` of the same sets (sipedge's figure
                  also loads its iptables/ip6tables rules, two iptables-restore runs)
  ipset-100k-sync-1pct  1% of the 100k prefixes replaced: the ipset backend (reads the live
                  sets, fills NAME-new, swaps) vs `ipset restore` of a NAME-new + swap script
  compile-100k    building the desired state from the allowlist's prefix table
                  (sipedge only; the peer's equivalent is inside its `nft -f` parse;
                  a compiled snapshot stores the result, see the cli groups)
sipedge's figures in these groups include the lock, the snapshot write and
reading the kernel's generation id: everything `sipedge firewall apply` does
after it has compiled the allowlist. The peers' figures include starting the tool.

End to end, the whole command as a systemd timer runs it (a new Python process:
start-up, imports, loading the compiled allowlist snapshot, desired state,
netlink), beside `nft -f` of the same ruleset:
  cli-100k-create    `python -m sipedge firewall apply --allowlist big.snap` on an
                     empty namespace (big.snap: the 100k allowlist above, compiled
                     with `sipedge allowlist --file big.toml --snapshot big.snap`)
  cli-100k-sync-1pct the same command alternating between big.snap and big2.snap
                     (1% replaced); peer: `nft -f` reloading the whole table
  cli-100k-nochange  the same command again with nothing to change; peer: the
                     same `nft -f` reload (nft has no "only if different")
The CLI runs with a bytecode cache (PYTHONPYCACHEPREFIX in the temporary
directory, filled by the warm-up round) as an installed package has one.
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

from sipedge.allowlist import ALL_EDGES, Allowlist, Entry  # noqa: E402
from sipedge.firewall import nsutil, ops  # noqa: E402
from sipedge.firewall.backends import nft  # noqa: E402
from sipedge.firewall.desired import desired_state, interval_text  # noqa: E402
from sipedge.firewall.backends.ipset import cidrs, set_name  # noqa: E402
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


# -- structural change -----------------------------------------------------------------
@pytest.fixture(scope="module")
def structures(states):
    d1 = states[1]
    d2 = desired_state(_allowlist(BIG), priority=-5)
    for s in d2.sets.values():
        s.packed  # noqa: B018
    return d1, d2


@pytest.mark.benchmark(group="100k-structure")
def test_sipedge_structure_change_100k(benchmark, structures, ns, opts, tmp_path):
    d1, d2 = structures
    _reset(ns, tmp_path)
    ops.apply(d1, opts)
    flip = [d2, d1]

    def run():
        d = flip[0]
        flip.reverse()
        return ops.apply(d, opts)

    r = benchmark.pedantic(run, rounds=4)
    assert r["action"] == "replace"


@pytest.mark.benchmark(group="100k-structure")
def test_nft_f_reload_structure_100k(benchmark, structures, ns, tmp_path):
    d1, d2 = structures
    _reset(ns, tmp_path)
    f1, f2 = tmp_path / "a.nft", tmp_path / "b.nft"
    f1.write_text(render_desired(d1))
    f2.write_text("delete table inet sipedge\n" + render_desired(d2))
    _run_in(ns, "nft", "-f", str(f1))
    f1.write_text("delete table inet sipedge\n" + f1.read_text())
    flip = [f2, f1]

    def run():
        p = flip[0]
        flip.reverse()
        _run_in(ns, "nft", "-f", str(p))

    benchmark.pedantic(run, rounds=4)


@pytest.mark.benchmark(group="100k-structure")
def test_nft_f_chain_swap_structure_100k(benchmark, structures, ns, tmp_path):
    d1, d2 = structures
    _reset(ns, tmp_path)
    f = tmp_path / "a.nft"
    f.write_text(render_desired(d1))
    _run_in(ns, "nft", "-f", str(f))

    def swap(d, new, old):
        rules = "\n".join(f"add rule inet sipedge {new} {r.describe()}" for r in d.rules)
        return (f"add chain inet sipedge {new} {{ type filter hook input priority {d.priority}; "
                f"policy accept; }}\n{rules}\ndelete chain inet sipedge {old}\n")

    fwd, back = tmp_path / "fwd.nft", tmp_path / "back.nft"
    fwd.write_text(swap(d2, "input_b", "input"))
    back.write_text(swap(d1, "input", "input_b"))
    flip = [fwd, back]

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


def _ipset_script(d, suffix: str = "") -> list:
    lines = []
    for st in d.sets.values():
        name = set_name(d.table, st.role, st.family) + suffix
        fam = "inet" if st.family == 4 else "inet6"
        lines.append(f"create {name} hash:net family {fam} maxelem {max(65536, 2 * len(st.intervals))}")
        for s, e in st.intervals:
            for addr, c in cidrs(s, e, st.family):
                ip = ipaddress.ip_address(addr) if st.family == 4 else ipaddress.IPv6Address(addr)
                lines.append(f"add {name} {ip}/{c}")
    return lines


@pytest.mark.benchmark(group="ipset-100k-sync-1pct")
def test_sipedge_ipset_sync_1pct_100k(benchmark, states, ns, tmp_path):
    """1% of the 100k media prefixes replaced on a live ipset table: the backend reads the
    live sets, fills a -new set for each changed one and swaps it in."""
    o = ops.Options(netns=ns.name, backend="ipset", lock_file=str(tmp_path / "lock"),
                    state_dir=str(tmp_path / "st"))
    _reset_ipset(ns, tmp_path)
    ops.apply(states[1], o)
    flip = [states[2], states[1]]

    def run():
        d = flip[0]
        flip.reverse()
        return ops.apply(d, o)
    r = benchmark.pedantic(run, rounds=4)
    assert r["action"] == "sync"


@pytest.mark.benchmark(group="ipset-100k-sync-1pct")
def test_ipset_restore_swap_1pct_100k(benchmark, states, ns, tmp_path):
    """The same change as an ipset script would make it gaplessly: `ipset restore` of the
    changed set as NAME-new, `ipset swap`, `ipset destroy` (no reading of the live set)."""
    _reset_ipset(ns, tmp_path)
    ops.apply(states[1], ops.Options(netns=ns.name, backend="ipset", lock_file=str(tmp_path / "lock"),
                                     state_dir=str(tmp_path / "st")))
    files = []
    for i, d in enumerate((states[2], states[1])):
        other = states[1] if d is states[2] else states[2]
        changed = [k for k in d.sets if d.sets[k].packed != other.sets[k].packed]
        assert changed
        sub = type(d)(table=d.table, sets={k: d.sets[k] for k in changed})
        lines = _ipset_script(sub, "-new")
        for k in changed:
            name = set_name(d.table, d.sets[k].role, d.sets[k].family)
            lines += [f"swap {name}-new {name}", f"destroy {name}-new"]
        f = tmp_path / f"sync{i}.ipset"
        f.write_text("\n".join(lines) + "\n")
        files.append(f)

    def run():
        f = files[0]
        files.reverse()
        _run_in(ns, "ipset", "restore", "-file", str(f))
    benchmark.pedantic(run, rounds=4)


# -- compile --------------------------------------------------------------------------
@pytest.mark.benchmark(group="compile-100k")
def test_sipedge_compile_100k(benchmark):
    al = _allowlist(BIG)

    def fresh():  # the allowlist keeps its sets once computed: every round computes them again
        al.__dict__.pop("_spans", None)

    d = benchmark.pedantic(lambda: desired_state(al), setup=fresh, rounds=3)
    assert d.prefix_count > N_BIG // 2


# -- end to end: the CLI in a new process ---------------------------------------------------
SRC = os.path.join(HERE, "..", "src")


def _toml(al: Allowlist) -> str:
    """*al* as an allowlist file (roles, then one [[ranges]] per role and edge)."""
    q = lambda xs: ", ".join(f'"{x}"' for x in xs)  # noqa: E731
    out = ['[dataset]\nname = "bench"\nversion = "1"\n']
    for role, prs in al.ports.items():
        carrier = al.carriers.get(role, "")
        out.append(f"[roles.{role}]\nports = [{q(map(str, prs))}]\n"
                   + (f'carrier = "{carrier}"\n' if carrier else ""))
    groups: dict = {}
    for e in al:
        groups.setdefault((e.role, e.edge), []).append(str(e.network))
    for (role, edge), nets in groups.items():
        out.append(f'[[ranges]]\nrole = "{role}"\nedge = "{edge or ALL_EDGES}"\n'
                   f"prefixes = [{q(nets)}]\n")
    return "\n".join(out)


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    """big.snap / big2.snap compiled by the CLI from TOML, their `nft -f` files, the env."""
    d = tmp_path_factory.mktemp("cli")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="", PYTHONPYCACHEPREFIX=str(d / "pycache"))
    if not os.environ.get("SIPEDGE_TEST_INSTALLED"):
        env["PYTHONPATH"] = os.pathsep.join([SRC] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    files = {}
    # BIG2 may list a network twice, which a file may not: once each
    for name, media in (("big", BIG), ("big2", list(dict.fromkeys(BIG2)))):
        al = _allowlist(media)
        (d / f"{name}.toml").write_text(_toml(al))
        subprocess.run([sys.executable, "-m", "sipedge", "allowlist", "--file", str(d / f"{name}.toml"),
                        "--snapshot", str(d / f"{name}.snap")], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        nft_text = render_desired(desired_state(al))
        (d / f"{name}.nft").write_text(nft_text)
        (d / f"{name}.reload.nft").write_text("delete table inet sipedge\n" + nft_text)
        files[name] = d / name
    return env, files


def _cli(ns, tmp_path, env, snap) -> str:
    out = subprocess.run([sys.executable, "-m", "sipedge", "firewall", "apply", "--allowlist", str(snap),
                          "--netns", ns.name, "--lock-file", str(tmp_path / "lock"),
                          "--state-dir", str(tmp_path / "st")],
                         env=env, check=True, capture_output=True, text=True)
    return out.stdout


@pytest.mark.benchmark(group="cli-100k-create")
def test_cli_apply_100k(benchmark, cli_env, ns, tmp_path):
    env, f = cli_env
    out = benchmark.pedantic(lambda: _cli(ns, tmp_path, env, f"{f['big']}.snap"),
                             setup=lambda: _reset(ns, tmp_path), rounds=3, warmup_rounds=1)
    assert out.startswith("applied (create)")


@pytest.mark.benchmark(group="cli-100k-create")
def test_cli_nft_f_100k(benchmark, cli_env, ns, tmp_path):
    _, f = cli_env
    benchmark.pedantic(lambda: _run_in(ns, "nft", "-f", f"{f['big']}.nft"),
                       setup=lambda: _reset(ns, tmp_path), rounds=3)


@pytest.mark.benchmark(group="cli-100k-sync-1pct")
def test_cli_sync_1pct(benchmark, cli_env, ns, tmp_path):
    env, f = cli_env
    _reset(ns, tmp_path)
    _cli(ns, tmp_path, env, f"{f['big']}.snap")
    flip = [f"{f['big2']}.snap", f"{f['big']}.snap"]

    def run():
        p = flip[0]
        flip.reverse()
        return _cli(ns, tmp_path, env, p)

    out = benchmark.pedantic(run, rounds=6, warmup_rounds=1)
    assert out.startswith("applied (sync)")


@pytest.mark.benchmark(group="cli-100k-sync-1pct")
def test_cli_nft_f_reload_1pct(benchmark, cli_env, ns, tmp_path):
    _, f = cli_env
    _reset(ns, tmp_path)
    _run_in(ns, "nft", "-f", f"{f['big']}.nft")
    flip = [f"{f['big2']}.reload.nft", f"{f['big']}.reload.nft"]

    def run():
        p = flip[0]
        flip.reverse()
        _run_in(ns, "nft", "-f", p)

    benchmark.pedantic(run, rounds=4)


@pytest.mark.benchmark(group="cli-100k-nochange")
def test_cli_nochange(benchmark, cli_env, ns, tmp_path):
    env, f = cli_env
    _reset(ns, tmp_path)
    _cli(ns, tmp_path, env, f"{f['big']}.snap")
    out = benchmark.pedantic(lambda: _cli(ns, tmp_path, env, f"{f['big']}.snap"), rounds=6,
                             warmup_rounds=1)
    assert out.startswith("no change")


@pytest.mark.benchmark(group="cli-100k-nochange")
def test_cli_nft_f_reload_nochange(benchmark, cli_env, ns, tmp_path):
    _, f = cli_env
    _reset(ns, tmp_path)
    _run_in(ns, "nft", "-f", f"{f['big']}.nft")
    benchmark.pedantic(lambda: _run_in(ns, "nft", "-f", f"{f['big']}.reload.nft"), rounds=4)
