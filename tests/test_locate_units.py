"""sipedge.locate pieces that need no network: parsing, validation, thresholds, stop()."""
from __future__ import annotations

import asyncio
import time

import pytest

from sipedge.errors import InputError, ProbeError, ResolveError, SipedgeError, URIError
from sipedge.locate import (Destination, LocalHealth, Prober, ProbeTarget, Resolver,
                            parse_reply_codes)
from sipedge.locate.probe import _parse
from sipedge.locate.resolve import as_uri, parse_nameserver


def test_errors_in_hierarchy():
    assert issubclass(ResolveError, SipedgeError) and issubclass(ResolveError, LookupError)
    assert ResolveError.exit_code == 8
    assert issubclass(ProbeError, InputError) and ProbeError.exit_code == 3


@pytest.mark.parametrize("text,want", [
    ("192.0.2.53", ("192.0.2.53", None)), ("192.0.2.53:5353", ("192.0.2.53", 5353)),
    ("2001:db8::53", ("2001:db8::53", None)), ("[2001:db8::53]:53", ("2001:db8::53", 53)),
    ("[2001:db8::53]", ("2001:db8::53", None)),
])
def test_parse_nameserver(text, want):
    assert parse_nameserver(text) == want


@pytest.mark.parametrize("text,msg", [
    ("ns.example.test", "not an IP address"), ("192.0.2.53:0", "port '0'"),
    ("192.0.2.53:x", "port 'x'"), ("[2001:db8::53]x", "write IP"),
])
def test_parse_nameserver_errors(text, msg):
    with pytest.raises(InputError, match=msg):
        parse_nameserver(text)


def test_as_uri():
    assert str(as_uri("sbc.example.test")) == "sip:sbc.example.test"
    assert as_uri("2001:db8::1").host == "2001:db8::1"
    assert as_uri("SIPS:sbc.example.test").transport == "tls"
    with pytest.raises(InputError, match="not a sip: or sips: URI"):
        as_uri("tel:+15551234567")
    with pytest.raises(URIError):
        as_uri("sip:bad host")


def test_resolver_validation():
    for kw, msg in (({"timeout": 0}, "timeout"), ({"timeout": float("inf")}, "timeout"),
                    ({"timeout": float("nan")}, "timeout"), ({"stale_for": float("inf")}, "finite"),
                    ({"stale_for": -1}, "stale_for"),
                    ({"transports": ("sctp",)}, "transports"), ({"families": (5,)}, "families"),
                    ({"port": 70000}, "port")):
        with pytest.raises(InputError, match=msg):
            Resolver(["192.0.2.53"], **kw)
    with pytest.raises(InputError, match="empty"):
        Resolver([])
    r = Resolver(["192.0.2.53:5353", "[2001:db8::53]:5354", "2001:db8::54"], port=5300)
    assert [(n.address, n.port) for n in r._dns.nameservers] == [
        ("192.0.2.53", 5353), ("2001:db8::53", 5354), ("2001:db8::54", 5300)]
    assert r.queries == 0


def test_reply_codes():
    assert parse_reply_codes(None) is None
    assert parse_reply_codes("200, 404") == {200, 404}
    assert parse_reply_codes(["2xx", 486]) == set(range(200, 300)) | {486}
    for bad in ("1xx", "abc", "180", "700", ""):
        with pytest.raises(InputError):
            parse_reply_codes(bad)


def test_local_health_thresholds():
    h = LocalHealth(fail_threshold=2, ok_threshold=3)
    assert h.state("a") == "up"
    assert h.mark_failed("a") is False and h.state("a") == "up"
    assert h.mark_ok("a") is False            # a success resets the failure run
    assert h.mark_failed("a") is False and h.mark_failed("a") is True and h.state("a") == "out"
    assert [h.mark_ok("a") for _ in range(3)] == [False, False, True] and h.state("a") == "up"
    with pytest.raises(InputError):
        LocalHealth(0)


def test_parse_response():
    ok = b"SIP/2.0 200 OK\r\nVia: x\r\ni: abc@h\r\nContent-Length: 0\r\n\r\n"
    assert _parse(ok) == (200, "OK", {"call-id": "abc@h"})
    assert _parse(b"SIP/2.0 503 Service Unavailable\r\nCall-ID: q\r\n\r\n")[0:2] == (
        503, "Service Unavailable")
    for bad in (b"HTTP/1.1 200 OK\r\n\r\n", b"SIP/2.0 2x0 OK\r\n\r\n", b"SIP/2.0 099 x\r\n\r\n",
                b"", b"\x00\x01"):
        assert _parse(bad) is None


def test_probe_target_of():
    from sipedge import Target

    t = ProbeTarget.of(Target("sip:sbc.example.test;edge=dublin", 10, 5))
    assert (t.uri, t.address, t.request_uri()) == ("sip:sbc.example.test;edge=dublin", None,
                                                   "sip:sbc.example.test")
    t = ProbeTarget.of("sip:192.0.2.10:5080;transport=tcp")
    assert (t.address, t.port, t.transport, t.request_uri()) == (
        "192.0.2.10", 5080, "tcp", "sip:192.0.2.10:5080;transport=tcp")
    d = Destination("a.example.test", "2001:db8::1", 5061, "tls", 10, 20)
    t = ProbeTarget.of(d)
    assert t.uri == "sips:[2001:db8::1]:5061;transport=tcp" and t.host == "a.example.test"
    assert t.request_uri() == "sips:a.example.test:5061"


def test_prober_validation():
    with pytest.raises(InputError, match="listed twice"):
        Prober(["sip:192.0.2.10", "sip:192.0.2.10"])
    for bad in (0, -1, float("inf"), float("nan"), 86401):
        with pytest.raises(InputError, match="interval"):
            Prober(["sip:192.0.2.10"], interval=bad)
    with pytest.raises(InputError, match="timeout"):
        Prober(["sip:192.0.2.10"], timeout=float("inf"))
    with pytest.raises(InputError, match="mode"):
        Prober(["sip:192.0.2.10"], mode="some")
    with pytest.raises(InputError, match="belong to the health table"):
        Prober(["sip:192.0.2.10"], health=LocalHealth(), fail_threshold=2)
    with pytest.raises(InputError, match="rounds"):
        asyncio.run(Prober(["sip:192.0.2.10"]).run(rounds=0))


def test_stop_ends_run_promptly():
    # mode "out" and nothing out: the loop runs and sends nothing
    p = Prober(["sip:192.0.2.10", "sip:192.0.2.11"], interval=0.05, mode="out")

    async def main():
        asyncio.get_running_loop().call_later(0.3, p.stop)
        t0 = time.monotonic()
        await p.run()
        return time.monotonic() - t0

    took = asyncio.run(main())
    assert 0.25 <= took < 1.0
    assert [s.sent for s in p.status()] == [0, 0]


def test_callback_error_surfaces():
    # loopback only: nothing listens on port 9 here, the probe times out after 10 ms
    p = Prober(["sip:127.0.0.1:9"], interval=0.05, mode="all", timeout=0.01,
               on_result=lambda r: 1 / 0)

    async def main():
        await p.run(rounds=3)
    with pytest.raises(ZeroDivisionError):
        asyncio.run(main())


def test_probe_once_and_stop_drops_in_flight():
    # loopback only: nothing listens on port 9 here
    p = Prober(["sip:127.0.0.1:9"], interval=5, timeout=0.2)
    r = asyncio.run(p.probe("sip:127.0.0.1:9"))
    assert (r.ok, r.code, r.state) == (False, 408, "out")
    assert "no final response from 127.0.0.1:9 in 0.2 s" in r.reason
    assert p.status()[0].sent == 1
    with pytest.raises(InputError, match="not a target"):
        asyncio.run(p.probe("sip:127.0.0.1:10"))

    q = Prober(["sip:127.0.0.1:9"], interval=5, timeout=2)

    async def main():
        asyncio.get_running_loop().call_later(0.2, q.stop)
        await q.run()

    t0 = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - t0 < 1.0
    st = q.status()[0]
    assert (st.sent, st.failures, st.successes, st.state) == (1, 0, 0, "up")


def test_mode_probing_follows_the_target_sets_cooldown():
    """mode="probing": only targets whose cool-down is over (TargetSet state
    "probing") are probed. Loopback only: nothing listens on ports 9 and 11."""
    from sipedge import Target, TargetSet

    now = [1000.0]
    ts = TargetSet([Target("sip:127.0.0.1:9", 10, 1), Target("sip:127.0.0.1:11", 10, 1)],
                   cooldown=60, clock=lambda: now[0])
    ts.mark_failed("sip:127.0.0.1:9")
    p = Prober.for_target_set(ts, interval=0.05, timeout=0.05, mode="probing", stagger=False)
    asyncio.run(p.run(rounds=2))
    assert [s.sent for s in p.status()] == [0, 0]          # out, cooling down; and up
    now[0] += 61
    assert ts.state("sip:127.0.0.1:9") == "probing"
    asyncio.run(p.run(rounds=2))
    assert [s.sent for s in p.status()] == [1, 0]          # probed once: failed, out again
    assert ts.state("sip:127.0.0.1:9") == "out"
