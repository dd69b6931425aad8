"""Allowlist.select works on the compiled table (no entry objects): the result
is the same table, the same lookups and the same firewall spans as building
the allowlist again from the kept entries, and it is fast on a snapshot."""
from __future__ import annotations

import ipaddress
import random
import warnings

import pytest

from sipedge.allowlist import Allowlist, Entry, PortRange

PORTS = {"signaling": [PortRange(5060, 5061, "udp")], "media": [PortRange(10000, 20000, "udp")]}
EDGES = ["east", "west", "north"]


def _random_allowlist(rng: random.Random, n: int) -> Allowlist:
    """Nested, touching and repeated networks of both versions, over three edges
    and every-edge ranges, in two roles."""
    entries, seen = [], set()
    while len(entries) < n:
        if rng.random() < 0.7:
            plen = rng.randint(20, 32)
            base = 0xC0000200 if rng.random() < 0.5 else 0xC6336400  # 192.0.2.0, 198.51.100.0
            net = ipaddress.IPv4Network((base + rng.randrange(1 << 12) & ~((1 << (32 - plen)) - 1), plen))
        else:
            plen = rng.randint(100, 128)
            base = int(ipaddress.IPv6Address("2001:db8::"))
            net = ipaddress.IPv6Network((base + (rng.randrange(1 << 32) & ~((1 << (128 - plen)) - 1)), plen))
        role = rng.choice(["signaling", "media"])
        if (role, net) in seen:
            continue
        seen.add((role, net))
        entries.append(Entry(role, rng.choice(EDGES + [None]), net))
    return Allowlist(entries, PORTS)


def _same(a: Allowlist, b: Allowlist) -> None:
    assert a.table.dump() == b.table.dump()
    assert a.table.values == b.table.values
    for role in PORTS:
        for v in (4, 6):
            assert a.spans(role, v) == b.spans(role, v)
            assert a.packed_spans(role, v) == b.packed_spans(role, v)


@pytest.mark.parametrize("seed", range(12))
def test_select_equals_a_rebuild_from_the_kept_entries(seed):
    rng = random.Random(seed)
    al = _random_allowlist(rng, rng.choice([1, 5, 40, 300]))
    want = rng.sample(al.edges, rng.randint(1, len(al.edges))) if al.edges else []
    if not want:
        pytest.skip("no named edge drawn")
    got = al.select(want, warn=False)
    rebuilt = Allowlist([e for e in al if e.edge is None or e.edge in want], al.ports)
    _same(got, rebuilt)
    assert [(e.role, e.edge, e.network) for e in got] == [(e.role, e.edge, e.network) for e in rebuilt]
    for _ in range(200):
        addr = (f"192.0.2.{rng.randrange(256)}" if rng.random() < 0.5
                else str(ipaddress.IPv6Address(int(ipaddress.IPv6Address("2001:db8::"))
                                               + rng.randrange(1 << 32))))
        assert got.match(addr) == rebuilt.match(addr)
    assert got.meta["selected_edges"] == want


def test_select_of_the_twilio_dataset_and_its_snapshot(tmp_path):
    al = Allowlist.twilio()
    snap = tmp_path / "t.snap"
    al.save_snapshot(str(snap))
    loaded = Allowlist.load(str(snap))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = al.select(["ashburn", "dublin"])
        b = loaded.select(["ashburn", "dublin"])
    _same(a, b)
    assert a.match("54.172.60.1").edge == "ashburn"
    assert a.match("54.244.51.1") is None  # umatilla's signaling range left out
    assert a.match("168.86.128.1").edge is None  # the every-edge media range stays
    assert a.carriers == al.carriers and a.edges == ["ashburn", "dublin"]
