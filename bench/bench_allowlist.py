"""Allowlist benchmarks, sipedge beside its peer in one run.

* ``match``: ``Allowlist.match(str)`` per call from Python, sipedge native and
  pure-Python beside pytricia (``PyTricia.get``), on the embedded Twilio
  dataset and on a 100k-prefix allowlist; 10,000 addresses per round, half of
  them inside a range. Each round calls the function once per address from a
  Python ``for`` loop (group ``*-loop``) and through ``map`` (group ``*-map``,
  no bytecode between calls); ``extra_info["Mcalls_per_s"]`` is the rate.
* ``load``: building the 100k-prefix allowlist from its TOML file and from its
  compiled snapshot, native and pure-Python (pytricia: inserting the same prefixes).

Run (short, the machine is shared)::

    make build
    PYTHONPATH=src python3 -m pytest bench/bench_allowlist.py --benchmark-only \
        --benchmark-min-rounds 3 --benchmark-max-time 0.5 -p no:cacheprovider \
        --benchmark-columns=min,mean,rounds --benchmark-group-by=group
"""
from __future__ import annotations

import collections
import ipaddress
import random

import pytest

import pytricia  # a test dependency: missing -> ImportError, not a skip

from sipedge import _impl  # noqa: E402
from sipedge.allowlist import core as almod  # noqa: E402
from sipedge.allowlist import Allowlist, Match  # noqa: E402

N_ADDR = 10_000
N_BIG = 100_000
IMPLS = ["native", "python"]


def _big_entries(seed: int = 7) -> list[tuple[str, str]]:
    """100k (edge, prefix) pairs: mostly IPv4 /16-/32 with nesting, some IPv6."""
    rnd = random.Random(seed)
    seen: set = set()
    out = []
    while len(out) < N_BIG:
        if rnd.random() < 0.9:
            plen = rnd.choice((16, 20, 22, 24, 24, 24, 28, 30, 32))
            a = rnd.randrange(1 << 32) >> (32 - plen) << (32 - plen)
            net = ipaddress.IPv4Network((a, plen))
        else:
            plen = rnd.choice((32, 40, 48, 56, 64))
            a = ((0x2000 << 112) | rnd.randrange(1 << 112)) >> (128 - plen) << (128 - plen)
            net = ipaddress.IPv6Network((a, plen))
        if net in seen:
            continue
        seen.add(net)
        out.append((f"e{rnd.randrange(40)}", str(net)))
    return out


def _toml(entries) -> str:
    by_edge: dict = {}
    for edge, p in entries:
        by_edge.setdefault(edge, []).append(p)
    parts = ['[dataset]\nname = "bench"\nversion = "1"\n\n[roles.sig]\nports = ["5060/udp"]\n']
    for edge, ps in by_edge.items():
        parts.append(f'\n[[ranges]]\nrole = "sig"\nedge = "{edge}"\nprefixes = [\n')
        parts.extend(f'  "{p}",\n' for p in ps)
        parts.append("]\n")
    return "".join(parts)


def _addresses(al: Allowlist, seed: int = 3) -> list[str]:
    """Half inside a range of *al* (IPv4), half random IPv4 (mostly misses)."""
    rnd = random.Random(seed)
    v4 = [e.network for e in al.entries if e.network.version == 4]
    out = []
    for i in range(N_ADDR):
        if i % 2:
            n = rnd.choice(v4)
            out.append(str(n.network_address + rnd.randrange(n.num_addresses)))
        else:
            out.append(str(ipaddress.IPv4Address(rnd.randrange(1, 0xE0000000))))
    return out


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    toml = d / "big.toml"
    toml.write_text(_toml(_big_entries()))
    al = Allowlist.load(str(toml))
    snap = d / "big.snap"
    al.save_snapshot(str(snap), source=str(toml))
    return {"toml": str(toml), "snap": str(snap), "al": al}


def _with_impl(al: Allowlist, which: str) -> Allowlist:
    mod = _impl.native("prefix") if which == "native" else _impl.python("prefix")
    al2 = Allowlist._from_table(mod.PrefixTable(
        (e.network, Match(e.role, e.edge, str(e.network))) for e in al.entries),
        al.ports, al.meta, al.carriers)
    return al2


def _pytricia(al: Allowlist):
    t4, t6 = pytricia.PyTricia(32), pytricia.PyTricia(128)
    for e in al.entries:
        (t4 if e.network.version == 4 else t6)[str(e.network)] = \
            Match(e.role, e.edge, str(e.network))
    return t4


def _rate(benchmark, fn, addrs, style):
    if style == "map":
        def run():
            collections.deque(map(fn, addrs), maxlen=0)
    else:
        def run():
            for a in addrs:
                fn(a)
    benchmark(run)
    benchmark.extra_info["Mcalls_per_s"] = round(len(addrs) / benchmark.stats.stats.min / 1e6, 2)


@pytest.fixture(scope="module")
def lookups(big):
    """(addresses, {who: one-argument lookup}) per dataset, built once."""
    cache: dict = {}

    def get(dataset):
        if dataset not in cache:
            al = Allowlist.twilio() if dataset == "twilio" else big["al"]
            fns = {"sipedge-native": _with_impl(al, "native").match,
                   "sipedge-python": _with_impl(al, "python").match,
                   "pytricia": _pytricia(al).get}
            cache[dataset] = (_addresses(al), fns)
        return cache[dataset]

    return get


@pytest.mark.parametrize("style", ["loop", "map"])
@pytest.mark.parametrize("who", ["sipedge-native", "sipedge-python", "pytricia"])
@pytest.mark.parametrize("dataset", ["twilio", "100k"])
def test_match(benchmark, lookups, dataset, who, style):
    addrs, fns = lookups(dataset)
    fn = fns[who]
    ref = fns["sipedge-python"]
    assert [fn(a) for a in addrs[:500]] == [ref(a) for a in addrs[:500]]  # same answers
    benchmark.group = f"match-{dataset}-{style}"
    _rate(benchmark, fn, addrs, style)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("source", ["snapshot", "toml"])
def test_load_100k(benchmark, big, monkeypatch, source, which):
    mod = _impl.native("prefix") if which == "native" else _impl.python("prefix")
    monkeypatch.setattr(almod, "_prefix", mod)
    path = big["snap"] if source == "snapshot" else big["toml"]
    benchmark.group = "load-100k"
    al = benchmark.pedantic(Allowlist.load, (path,), rounds=3 if source == "toml" else 10,
                            iterations=1)
    assert len(al) == N_BIG
    assert type(al._table).__module__ == mod.__name__


def test_load_100k_pytricia_insert(benchmark, big):
    pairs = [(str(e.network), e.edge) for e in big["al"].entries]

    def build():
        t = pytricia.PyTricia(128)
        for p, edge in pairs:
            t[p] = edge
        return t

    benchmark.group = "load-100k"
    t = benchmark.pedantic(build, rounds=3, iterations=1)
    assert len(t) == N_BIG


def test_networks_100k(benchmark, big):
    """Snapshot load plus the merged networks of the role (what a firewall sync needs)."""
    def run():
        al = Allowlist.load(big["snap"])
        return al.networks("sig", 4), al.networks("sig", 6)

    benchmark.group = "networks-100k"
    v4, v6 = benchmark.pedantic(run, rounds=3, iterations=1)
    assert v4 == list(ipaddress.collapse_addresses(
        [e.network for e in big["al"].entries if e.network.version == 4]))
