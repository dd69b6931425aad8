"""RFC 3263 resolution against a real dnsmasq in a namespace this test creates.

The test zone (example.test, plus two twilio.com names that exist only inside
the namespace) uses documentation addresses. Runtime: about 15 s (TTL expiry
and the server that stops answering wait for real TTLs of 1-2 s).
"""
from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter

import pytest

from conftest import require_root, require_tool
from locate_lab import Dnsmasq, InNetns
from netns import Netns

pytestmark = pytest.mark.netns

NS_ADDR = "192.0.2.53"

ZONE = [
    # NAPTR + SRV + A: udp first, then tcp, then tls
    "naptr-record=naptr.example.test,10,50,s,SIP+D2U,,_sip._udp.naptr.example.test",
    "naptr-record=naptr.example.test,20,50,s,SIP+D2T,,_sip._tcp.naptr.example.test",
    "naptr-record=naptr.example.test,30,50,s,SIPS+D2T,,_sips._tcp.naptr.example.test",
    "srv-host=_sip._udp.naptr.example.test,a.example.test,5060,10,60",
    "srv-host=_sip._udp.naptr.example.test,b.example.test,5060,10,20",
    "srv-host=_sip._udp.naptr.example.test,c.example.test,5060,10,20",
    "srv-host=_sip._udp.naptr.example.test,d.example.test,5070,20,10",
    "srv-host=_sip._tcp.naptr.example.test,b.example.test,5062,10,10",
    "srv-host=_sips._tcp.naptr.example.test,a.example.test,5061,10,10",
    "host-record=a.example.test,192.0.2.10",
    "host-record=b.example.test,192.0.2.11",
    "host-record=c.example.test,192.0.2.12",
    "host-record=d.example.test,192.0.2.13",
    # NAPTR whose first record points at an SRV name with no records
    "naptr-record=hole.example.test,10,50,s,SIP+D2U,,_sip._udp.gone.example.test",
    "naptr-record=hole.example.test,20,50,s,SIP+D2T,,_sip._tcp.hole.example.test",
    "srv-host=_sip._tcp.hole.example.test,c.example.test,5080,1,1",
    # SRV only (tcp), no NAPTR
    "srv-host=_sip._tcp.srvonly.example.test,e.example.test,5080,1,1",
    "host-record=e.example.test,192.0.2.20,2001:db8::20",
    # A only / AAAA only / both
    "host-record=aonly.example.test,192.0.2.30",
    "host-record=v6.example.test,2001:db8::30",
    "host-record=dual.example.test,192.0.2.31,2001:db8::31",
    # SRV targets pointing nowhere
    "srv-host=_sip._udp.dangle.example.test,ghost.example.test,5060,1,50",
    "srv-host=_sip._udp.dangle.example.test,a.example.test,5060,1,50",
    "srv-host=_sip._udp.void.example.test,ghost.example.test,5060,1,50",
    # Twilio termination names, only inside this namespace (documentation addresses)
    "addn-hosts={hosts}",
]

TWILIO_HOSTS = "\n".join([
    "192.0.2.60 acme.pstn.ashburn.twilio.com", "192.0.2.61 acme.pstn.ashburn.twilio.com",
    "192.0.2.62 acme.pstn.ashburn.twilio.com", "192.0.2.63 acme.pstn.ashburn.twilio.com",
    "198.51.100.60 acme.pstn.dublin.twilio.com", "198.51.100.61 acme.pstn.dublin.twilio.com",
]) + "\n"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require_root()
    require_tool("dnsmasq", "ip")
    work = tmp_path_factory.mktemp("dns")
    (work / "hosts").write_text(TWILIO_HOSTS)
    zone = [z.replace("{hosts}", str(work / "hosts")) for z in ZONE]
    with Netns("dns") as ns:
        for a in (NS_ADDR, "192.0.2.54", "192.0.2.55"):
            ns.exec("ip", "addr", "add", f"{a}/32", "dev", "lo")
        ns.exec("ip", "-6", "addr", "add", "2001:db8::53/128", "dev", "lo")
        w = InNetns(ns)
        srv = None
        try:
            srv = Dnsmasq(ns, NS_ADDR, zone, work, domains=("example.test", "twilio.com"))
            yield ns, w, work
        finally:
            if srv is not None:
                srv.close()
            w.close()


def resolver(**kw):
    from sipedge.locate import Resolver

    return Resolver([kw.pop("ns", NS_ADDR)], timeout=kw.pop("timeout", 1.0), **kw)


def test_naptr_srv_a(lab):
    ns, w, _ = lab
    r = resolver()
    res = w.call(r.resolve, "sip:naptr.example.test")
    assert res.transport == "udp"
    assert [s.query for s in res.steps[:2]] == ["NAPTR naptr.example.test",
                                               "SRV _sip._udp.naptr.example.test"]
    assert "SIP+D2U" in res.steps[1].note
    dests = res.destinations
    # every SRV target, each with its address; the priority-20 one last
    assert sorted((d.host, d.address, d.port) for d in dests) == [
        ("a.example.test", "192.0.2.10", 5060), ("b.example.test", "192.0.2.11", 5060),
        ("c.example.test", "192.0.2.12", 5060), ("d.example.test", "192.0.2.13", 5070)]
    assert dests[-1].host == "d.example.test" and dests[-1].priority == 20
    assert all(d.transport == "udp" and d.srv for d in dests)
    assert all(0 < d.ttl() <= 60 for d in dests)


def test_sips_uses_only_sips_naptr(lab):
    _, w, _ = lab
    res = w.call(resolver().resolve, "sips:naptr.example.test")
    assert res.transport == "tls"
    assert [(d.host, d.port, d.transport) for d in res.destinations] == [
        ("a.example.test", 5061, "tls")]


def test_transport_param_skips_naptr(lab):
    _, w, _ = lab
    r = resolver()
    res = w.call(r.resolve, "sip:naptr.example.test;transport=tcp")
    assert not any(s.query.startswith("NAPTR") for s in res.steps)
    assert [(d.address, d.port, d.transport) for d in res.destinations] == [
        ("192.0.2.11", 5062, "tcp")]


def test_explicit_port_skips_naptr_and_srv(lab):
    _, w, _ = lab
    res = w.call(resolver().resolve, "sip:a.example.test:5099")
    assert [s.query.split()[0] for s in res.steps] == ["A", "AAAA"]
    assert [(d.address, d.port, d.transport) for d in res.destinations] == [
        ("192.0.2.10", 5099, "udp")]


def test_numeric_host_needs_no_dns(lab):
    _, w, _ = lab
    r = resolver()
    for uri, want in (("sip:192.0.2.99", ("192.0.2.99", 5060, "udp")),
                      ("sips:[2001:db8::99]", ("2001:db8::99", 5061, "tls")),
                      ("sip:192.0.2.99:5080;transport=tcp", ("192.0.2.99", 5080, "tcp"))):
        res = w.call(r.resolve, uri)
        assert [(d.address, d.port, d.transport) for d in res.destinations] == [want]
    assert r.queries == 0


def test_naptr_record_without_srv_falls_to_next(lab):
    _, w, _ = lab
    res = w.call(resolver().resolve, "sip:hole.example.test")
    assert res.transport == "tcp"
    assert [(d.address, d.port) for d in res.destinations] == [("192.0.2.12", 5080)]
    assert any("points nowhere" in s.note for s in res.steps)


def test_srv_only(lab):
    _, w, _ = lab
    res = w.call(resolver().resolve, "sip:srvonly.example.test")
    assert res.transport == "tcp"
    assert [(d.address, d.port) for d in res.destinations] == [("192.0.2.20", 5080),
                                                               ("2001:db8::20", 5080)]


def test_a_only_aaaa_only_and_family_order(lab):
    _, w, _ = lab
    res = w.call(resolver().resolve, "aonly.example.test")     # a bare host name
    assert [(d.address, d.port, d.transport) for d in res.destinations] == [
        ("192.0.2.30", 5060, "udp")]
    res = w.call(resolver().resolve, "sip:v6.example.test")
    assert [d.address for d in res.destinations] == ["2001:db8::30"]
    assert [d.address for d in w.call(resolver().resolve, "sip:dual.example.test").destinations] \
        == ["192.0.2.31", "2001:db8::31"]
    assert [d.address for d in w.call(resolver(families=(6, 4)).resolve,
                                      "sip:dual.example.test").destinations] \
        == ["2001:db8::31", "192.0.2.31"]
    assert [d.address for d in w.call(resolver(families=(4,)).resolve,
                                      "sip:dual.example.test").destinations] == ["192.0.2.31"]


def test_srv_target_pointing_nowhere(lab):
    from sipedge.errors import ResolveError

    _, w, _ = lab
    res = w.call(resolver().resolve, "sip:dangle.example.test")
    assert [d.host for d in res.destinations] == ["a.example.test"]
    assert any(line.startswith("ghost.example.test:5060: NXDOMAIN")
               for s in res.steps for line in s.answer)
    with pytest.raises(ResolveError, match=r"void.example.test: every SRV target .* "
                                           r"ghost.example.test:5060: NXDOMAIN"):
        w.call(resolver().resolve, "sip:void.example.test")


def test_nxdomain_and_refused(lab):
    from sipedge.errors import ResolveError

    _, w, _ = lab
    with pytest.raises(ResolveError, match=r"nope.example.test: NXDOMAIN"):
        w.call(resolver().resolve, "sip:nope.example.test")
    # a name the server does not serve: REFUSED -> every nameserver failed
    with pytest.raises(ResolveError, match=r"NAPTR sbc.other.test: every nameserver failed "
                                           r"\(.*192.0.2.53.*: REFUSED\)"):
        w.call(resolver().resolve, "sip:sbc.other.test")


def test_cached_until_ttl(lab):
    _, w, _ = lab
    r = resolver()
    w.call(r.resolve, "sip:naptr.example.test")
    sent = r.queries
    assert sent >= 6
    for _ in range(100):
        res = w.call(r.resolve, "sip:naptr.example.test")
    assert r.queries == sent and not res.stale
    w.call(r.resolve, "sip:naptr.example.test", refresh=True)
    assert r.queries == 2 * sent


def test_srv_first_place_shares(lab):
    """First place over many cached resolves follows TargetSet's share rule
    (the same targets, the same rule: expected_shares()), within 5 sigma."""
    from sipedge import Target, TargetSet

    _, w, _ = lab
    r = resolver(seed=7)
    w.call(r.resolve, "sip:naptr.example.test")
    n = 20000
    first = Counter(r.resolve("sip:naptr.example.test").destinations[0].host
                    for _ in range(n))      # cached: no DNS, any thread
    ts = TargetSet([Target("sip:a.example.test", 10, 60), Target("sip:b.example.test", 10, 20),
                    Target("sip:c.example.test", 10, 20), Target("sip:d.example.test:5070", 20, 10)])
    want = {str(t.uri.host): p for t, p in ts.expected_shares().items()}
    assert first["d.example.test"] == 0
    for host in ("a.example.test", "b.example.test", "c.example.test"):
        p = want[host]
        sigma = math.sqrt(n * p * (1 - p))
        assert abs(first[host] - n * p) < 5 * sigma, (host, first[host], n * p)


def test_ttl_expiry_and_re_resolution(lab):
    ns, w, work = lab
    srv = Dnsmasq(ns, "192.0.2.54", ["host-record=ttl.example.test,192.0.2.40,2"], work / "ttl")
    try:
        r = resolver(ns="192.0.2.54")
        res = w.call(r.resolve, "sip:ttl.example.test")
        assert [d.address for d in res.destinations] == ["192.0.2.40"]
        assert res.expires - res.resolved_at == pytest.approx(2, abs=0.01)
        srv.close()
        srv = Dnsmasq(ns, "192.0.2.54", ["host-record=ttl.example.test,192.0.2.41,2"],
                      work / "ttl")
        # still cached: the old answer, no query
        q = r.queries
        assert [d.address for d in w.call(r.resolve, "sip:ttl.example.test").destinations] \
            == ["192.0.2.40"]
        assert r.queries == q
        end = time.monotonic() + 6
        while True:
            got = [d.address for d in w.call(r.resolve, "sip:ttl.example.test").destinations]
            if got == ["192.0.2.41"]:
                break
            assert got == ["192.0.2.40"] and time.monotonic() < end, got
            time.sleep(0.1)
        assert time.monotonic() - res.resolved_at >= 2
    finally:
        srv.close()


def test_server_stops_answering(lab):
    from sipedge.errors import ResolveError

    ns, w, work = lab
    srv = Dnsmasq(ns, "192.0.2.55", ["host-record=stop.example.test,192.0.2.50,1"],
                  work / "stop")
    try:
        r = resolver(ns="192.0.2.55", timeout=0.3, stale_for=2.0, retry_after=0.5)
        good = w.call(r.resolve, "sip:stop.example.test")
        srv.pause()
        end = time.monotonic() + 5
        while time.monotonic() < good.expires:   # wait out the 1 s TTL
            assert time.monotonic() < end
            time.sleep(0.05)
        stale = w.call(r.resolve, "sip:stop.example.test")
        assert stale.stale and [d.address for d in stale.destinations] == ["192.0.2.50"]
        assert "timeout" in stale.error and "192.0.2.55" in stale.error
        # within retry_after the dead server is not asked again
        q = r.queries
        t0 = time.monotonic()
        assert w.call(r.resolve, "sip:stop.example.test").stale
        assert r.queries == q and time.monotonic() - t0 < 0.1
        # beyond stale_for: the documented failure
        with pytest.raises(ResolveError, match=r"NAPTR stop.example.test: no answer from "
                                               r"192.0.2.55:53 within 0.3 s \(timeout\).*"
                                               r"stale_for=2"):
            while True:
                assert time.monotonic() < end + 5
                w.call(r.resolve, "sip:stop.example.test")
                time.sleep(0.1)
        assert time.monotonic() - good.expires >= 2
    finally:
        srv.close()


def test_ipv6_nameserver_with_port(lab):
    ns, w, work = lab
    srv = Dnsmasq(ns, "2001:db8::53", ["host-record=six.example.test,2001:db8::66"],
                  work / "six")
    try:
        res = w.call(resolver(ns="[2001:db8::53]:53").resolve, "sip:six.example.test")
        assert [d.address for d in res.destinations] == ["2001:db8::66"]
    finally:
        srv.close()


def test_termination_order_resolves(lab):
    from sipedge.errors import ResolveError
    from sipedge.locate import termination_order

    _, w, _ = lab
    r = resolver()
    attempts = w.call(termination_order, "acme", ["ashburn", "umatilla", "dublin"], resolver=r)
    assert [(a.edge, a.host) for a in attempts[:4]] == [("ashburn",
                                                         "acme.pstn.ashburn.twilio.com")] * 4
    assert sorted(a.address for a in attempts[:4]) == [f"192.0.2.{i}" for i in range(60, 64)]
    # umatilla has no record in this zone: left out, dublin follows
    assert [(a.edge, a.address) for a in attempts[4:]] in (
        [("dublin", "198.51.100.60"), ("dublin", "198.51.100.61")],
        [("dublin", "198.51.100.61"), ("dublin", "198.51.100.60")])
    assert all(a.timeout == 4.0 for a in attempts)
    with pytest.raises(ResolveError, match="no termination host resolved.*NXDOMAIN"):
        w.call(termination_order, "acme", ["umatilla"], resolver=r)


def _cli(ns, *args):
    return ns.exec(sys.executable, "-m", "sipedge", *args, check=False, timeout=60)


def test_cli_resolve(lab):
    ns, _, _ = lab
    p = _cli(ns, "resolve", "sip:naptr.example.test", "--nameserver", f"{NS_ADDR}:53", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["transport"] == "udp" and len(out["destinations"]) == 4
    assert out["steps"][0]["query"] == "NAPTR naptr.example.test"
    assert {"host", "address", "port", "transport", "priority", "weight", "ttl"} \
        <= set(out["destinations"][0])
    p = _cli(ns, "resolve", "sip:naptr.example.test", "--nameserver", NS_ADDR)
    assert p.returncode == 0 and "failover order (transport udp)" in p.stdout
    assert "SRV _sip._udp.naptr.example.test" in p.stdout


@pytest.mark.parametrize("args,code,msg", [
    (["sip:nope.example.test", "--nameserver", NS_ADDR], 8, "nope.example.test: NXDOMAIN"),
    (["sip:x.example.test", "--nameserver", "192.0.2.254", "--dns-timeout", "0.3"], 8,
     "x.example.test"),
    (["sip:a.example.test", "--nameserver", "not-an-ip"], 3, "nameserver 'not-an-ip'"),
    (["http://a.example.test", "--nameserver", NS_ADDR], 3, "not a sip: or sips: URI"),
])
def test_cli_resolve_errors(lab, args, code, msg):
    ns, _, _ = lab
    p = _cli(ns, "resolve", *args)
    assert p.returncode == code, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sipedge: error: ") and msg in lines[0]
    assert "Traceback" not in p.stderr
