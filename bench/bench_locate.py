"""RFC 3263 resolution and OPTIONS probing: sipedge beside dnspython, and the prober's CPU.

Needs root (a network namespace this run creates), dnsmasq and sipp.

1. A cached ``Resolver.resolve("sip:x.example.test")`` (NAPTR -> SRV of 4
   targets 60/20/20 at priority 10 + 10 at 20 -> A of each, all in the cache:
   no DNS traffic while timed) beside dnspython with its own cache doing
   ``resolve(SRV)`` + ``processing_order()``, and the same plus ``resolve(A)``
   of each target in that order (the same work as sipedge's answer).
2. The prober keeping 1,000 UDP targets at a 1 s interval for 10 s (4 sipp
   UAS on the namespace's loopback, 250 targets each, told apart by the user
   part of their URI): CPU seconds of the prober process per wall second
   (user and system apart: on loopback the kernel delivers each datagram to
   the receiver inside the sender's sendto(), so system time includes sipp's
   receive path), probes answered, and the worst gap between two probes of
   one target.

Run:
    make build
    python3 -m pytest bench/bench_locate.py --benchmark-only -p no:cacheprovider \
        --benchmark-min-rounds 3 --benchmark-max-time 0.5 --benchmark-columns ops,mean,rounds -s
"""
from __future__ import annotations

import asyncio
import os
import sys
import time

import dns.resolver
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from conftest import require_root, require_tool  # noqa: E402
from locate_lab import Dnsmasq, InNetns, sipp_uas, stop  # noqa: E402
from netns import Netns  # noqa: E402

CALLS = 1000
ZONE = [
    "naptr-record=x.example.test,10,50,s,SIP+D2U,,_sip._udp.x.example.test",
    "srv-host=_sip._udp.x.example.test,a.example.test,5060,10,60",
    "srv-host=_sip._udp.x.example.test,b.example.test,5060,10,20",
    "srv-host=_sip._udp.x.example.test,c.example.test,5060,10,20",
    "srv-host=_sip._udp.x.example.test,d.example.test,5060,20,10",
    "host-record=a.example.test,192.0.2.10",
    "host-record=b.example.test,192.0.2.11",
    "host-record=c.example.test,192.0.2.12",
    "host-record=d.example.test,192.0.2.13",
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require_root()
    require_tool("dnsmasq", "sipp")
    work = tmp_path_factory.mktemp("bench-locate")
    with Netns("bl") as ns:
        ns.exec("ip", "addr", "add", "192.0.2.53/32", "dev", "lo")
        w = InNetns(ns)
        srv = Dnsmasq(ns, "192.0.2.53", ZONE, work, ttl=3600)
        try:
            yield ns, w, work
        finally:
            srv.close()
            w.close()


def _batched(fn, *args):
    loop = range(CALLS)

    def run():
        for _ in loop:
            out = fn(*args)
        return out
    return run


@pytest.mark.parametrize("who", ["sipedge", "dnspython-srv-order", "dnspython-srv-order-a"])
def test_cached_resolve(benchmark, lab, who):
    from sipedge import implementation
    from sipedge.locate import Resolver

    _, w, _ = lab
    benchmark.group = "cached RFC 3263 resolve of a 4-target SRV name"
    benchmark.extra_info["calls_per_round"] = CALLS
    benchmark.extra_info["select"] = implementation()["select"]
    if who == "sipedge":
        r = Resolver(["192.0.2.53"], seed=1)
        w.call(r.resolve, "sip:x.example.test")
        q = r.queries
        out = benchmark(_batched(r.resolve, "sip:x.example.test"))
        assert r.queries == q and len(out.destinations) == 4
        return
    d = dns.resolver.Resolver(configure=False)
    d.nameservers = ["192.0.2.53"]
    d.cache = dns.resolver.Cache()

    def srv_order():
        return d.resolve("_sip._udp.x.example.test", "SRV").rrset.processing_order()

    def srv_order_a():
        return [d.resolve(rr.target, "A").rrset[0].address for rr in srv_order()]

    fn = srv_order if who == "dnspython-srv-order" else srv_order_a
    w.call(srv_order_a)             # fill dnspython's cache inside the namespace
    out = benchmark(_batched(fn))
    assert len(out) == 4


def _cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _udp_rcvbuf_errors(ns) -> int:
    lines = [ln.split() for ln in ns.exec("cat", "/proc/net/snmp").stdout.splitlines()
             if ln.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def test_prober_1000_targets(benchmark, lab):
    from sipedge.locate import Prober

    ns, w, work = lab
    ports = [5070, 5071, 5072, 5073]
    uas = [sipp_uas(ns, "127.0.0.1", work, 200, port=p) for p in ports]
    seconds = 10
    try:
        targets = [f"sip:t{i:04d}@127.0.0.1:{ports[i % 4]}" for i in range(1000)]
        gaps: dict[str, list] = {}
        last: dict[str, float] = {}

        def on_result(r):
            k = r.target.uri
            if k in last:
                gaps.setdefault(k, []).append(r.at - last[k])
            last[k] = r.at

        prober = Prober(targets, interval=1.0, timeout=0.9, on_result=on_result)
        cpu_uas0 = sum(_cpu_of(p.pid) for p in uas)
        drops0 = _udp_rcvbuf_errors(ns)

        def run():
            t0, c0 = time.monotonic(), os.times()
            w.call(asyncio.run, prober.run(rounds=seconds))
            c1 = os.times()
            return time.monotonic() - t0, c1.user - c0.user, c1.system - c0.system

        wall, user, system = benchmark.pedantic(run, rounds=1, iterations=1)
        cpu = user + system
        cpu_uas = sum(_cpu_of(p.pid) for p in uas) - cpu_uas0
        drops = _udp_rcvbuf_errors(ns) - drops0
    finally:
        for p in uas:
            stop(p)
    st = prober.status()
    answered = sum(s.answered for s in st)
    sent = sum(s.sent for s in st)
    worst = max(max(g) for g in gaps.values())
    benchmark.group = "prober: 1000 UDP targets at 1 s"
    benchmark.extra_info.update({
        "targets": len(targets), "seconds": round(wall, 2), "probes_sent": sent,
        "probes_answered": answered, "prober_cpu_s": round(cpu, 3),
        "prober_cpu_percent": round(100 * cpu / wall, 1),
        "prober_user_percent": round(100 * user / wall, 1),
        "prober_system_percent": round(100 * system / wall, 1),
        "sipp_cpu_percent": round(100 * cpu_uas / wall, 1),
        "worst_gap_s": round(worst, 3),
        # datagrams the kernel dropped for a full receive buffer (sipp's or the prober's)
        "udp_rcvbuf_drops": drops,
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "median_latency_ms": round(1000 * sorted(s.latency for s in st if s.latency)[500], 3),
    })
    print("\nprober:", benchmark.extra_info)
    assert sent == 1000 * seconds
