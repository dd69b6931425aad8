"""Weighted-priority order/pick: sipedge (native and pure-Python twin) beside dnspython.

Peer: ``dns.rdataset.Rdataset.processing_order()`` over SRV rdatas with the
same priorities and weights (dnspython's weighted ordering draws a float; it
treats weight 0 as 0.1). sipedge gives the shares Twilio documents (exact
w / S) with an integer draw.

Groups: ``order of N targets`` (the 25x bar: native against dnspython),
``pick from N targets`` in-process (the default private health table) and
with a shared table (``/dev/shm``; the bar: shared <= 2x in-process), and
``sticky pick`` in-process and with a shared table AND a call-rate limit on
every target (high enough never to refuse, so each pick takes the writers'
lock and updates the limiter: the cost of the shared limiter).

Run (short, shared machine):
    make build
    python3 -m pytest bench/bench_select.py --benchmark-only -p no:cacheprovider \
        --benchmark-min-rounds 3 --benchmark-max-time 0.5 --benchmark-min-time 0.0005 \
        --benchmark-columns ops,mean,rounds

Targets (not asserted): order() of 4 targets >= 25x dnspython; pick() with a
shared table <= 2x the in-process pick().
"""
import os

import dns.rdataset
import pytest

from sipedge import _impl, select
from sipedge.select import Target, TargetSet

SIZES = [4, 10, 10_000]
KEY = "a84b4c76e66710@198.51.100.7"


def spec(n):
    if n == 4:  # Twilio's example: 60/20/20 at priority 10, one backup at 20
        return [(10, 60), (10, 20), (10, 20), (20, 10)]
    return [(10 * (i % 3), 1 + (i * 37) % 100) for i in range(n)]


_tables = []


def target_set(n, piece, table=False, cps=None):
    core = _impl.native("select") if piece == "native" else _impl.python("select")
    saved = select._core
    select._core = core
    path = None
    if table:
        path = f"/dev/shm/sipedge-bench-{os.getpid()}-{len(_tables)}"
        _tables.append(path)
    try:
        return TargetSet([Target(f"sip:sbc{i}.example.com", p, w, cps=cps, burst=10**6)
                          for i, (p, w) in enumerate(spec(n))], seed=1, table=path)
    finally:
        select._core = saved


@pytest.fixture(scope="module", autouse=True)
def _remove_tables():
    yield
    for path in _tables:
        if os.path.exists(path):
            os.unlink(path)


def rdataset(n):
    return dns.rdataset.from_text("IN", "SRV", 300, *[f"{p} {w} 5060 sbc{i}.example.com."
                                                      for i, (p, w) in enumerate(spec(n))])


#: Calls timed together in one round for small sets. One call of the native
#: core takes ~100 ns, about what pytest-benchmark's own per-call harness costs,
#: so single calls would measure the harness; a plain loop of CALLS calls costs
#: both sides the same few ns a call. Times shown are per round: divide by CALLS.
CALLS = 1000


def _batched(fn, *args, **kw):
    loop = range(CALLS)

    def run():
        for _ in loop:
            out = fn(*args, **kw)
        return out
    return run


def _pedantic(benchmark, fn, n):
    if n >= 10_000:  # one call takes long: a few rounds, one call each
        return benchmark.pedantic(fn, rounds=3, iterations=1)
    benchmark.extra_info["calls_per_round"] = CALLS
    return benchmark(_batched(fn))


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("who", ["sipedge-native", "sipedge-python", "dnspython"])
def test_order(benchmark, n, who):
    benchmark.group = f"order of {n} targets"
    if who == "dnspython":
        rds = rdataset(n)
        if n >= 10_000:  # O(n^2) in Python: one round only
            result = benchmark.pedantic(rds.processing_order, rounds=1, iterations=1)
        else:
            benchmark.extra_info["calls_per_round"] = CALLS
            result = benchmark(_batched(rds.processing_order))
    else:
        ts = target_set(n, who.split("-")[1])
        result = _pedantic(benchmark, ts.order, n)
    assert len(result) == n


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("table", ["in-process", "shared"])
@pytest.mark.parametrize("who", ["sipedge-native", "sipedge-python"])
def test_pick(benchmark, n, who, table):
    benchmark.group = f"pick from {n} targets"
    ts = target_set(n, who.split("-")[1], table=table == "shared")
    assert isinstance(_pedantic(benchmark, ts.pick, n), Target)


@pytest.mark.parametrize("n", [4, 10])
@pytest.mark.parametrize("table", ["in-process", "shared+rate-limit"])
@pytest.mark.parametrize("who", ["sipedge-native", "sipedge-python"])
def test_sticky_pick(benchmark, n, who, table):
    benchmark.group = f"sticky pick from {n} targets"
    limited = table != "in-process"
    ts = target_set(n, who.split("-")[1], table=limited, cps=1e6 if limited else None)
    benchmark.extra_info["calls_per_round"] = CALLS
    assert isinstance(benchmark(_batched(ts.pick, key=KEY)), Target)
