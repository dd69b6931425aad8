"""Classifier: scapy-built frames over every link layer, IP variant and payload
kind; both implementations must say the same, and the right thing."""
from __future__ import annotations

import itertools
import struct

import pytest
from scapy.all import (DNS, DNSQR, GRE, ICMP, IP, NTP, SNMP, TCP, UDP, CookedLinux, Dot1AD,
                       Dot1Q, Ether, IPOption_RR, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                       IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, Raw, SCTP, SCTPChunkData,
                       fragment, raw)

import sipedge
from sipedge import _impl
from classify_util import (SIP_200, SIP_INVITE, SIP_OPTIONS_SIPS, allowlist, rtcp_payload,
                           rtp_payload, stun_payload)

from conftest import IMPLEMENTATIONS

MAC = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


# ------------------------------------------------------------------ builders
def sll2(proto: int) -> bytes:
    """A Linux cooked v2 header (scapy has no builder for it in every version)."""
    return struct.pack(">HHIHBB8s", proto, 0, 2, 1, 0, 6, b"\x02\0\0\0\0\x01\0\0")


def link(kind: str, pkt) -> tuple[bytes, int]:
    """Wrap an IP packet in a link layer: (frame bytes, pcap linktype)."""
    v6 = pkt.haslayer(IPv6) and not pkt.haslayer(IP) or isinstance(pkt, IPv6)
    et = 0x86DD if v6 else 0x0800
    if kind == "eth":
        return raw(Ether(**MAC) / pkt), 1
    if kind == "vlan":
        return raw(Ether(**MAC) / Dot1Q(vlan=42) / pkt), 1
    if kind == "qinq":
        return raw(Ether(**MAC) / Dot1AD(vlan=100) / Dot1Q(vlan=42) / pkt), 1
    if kind == "sll":
        return raw(CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x02\0\0\0\0\x01\0\0",
                               proto=et) / pkt), 113
    if kind == "sll2":
        return sll2(et) + raw(pkt), 276
    if kind == "raw":
        return raw(pkt), 101
    if kind == "rawip":
        return raw(pkt), 229 if v6 else 228
    if kind == "null":  # BSD loopback, host order (little-endian here), macOS AF_INET6 30
        return struct.pack("<I", 30 if v6 else 2) + raw(pkt), 0
    if kind == "loop":  # OpenBSD loopback, network order, AF_INET6 24
        return struct.pack(">I", 24 if v6 else 2) + raw(pkt), 108
    raise ValueError(kind)


LINKS = ["eth", "vlan", "qinq", "sll", "sll2", "raw", "rawip", "null", "loop"]


def ip_variant(kind: str, src: str, dst: str, l4):
    if kind == "v4":
        return IP(src=src, dst=dst) / l4
    if kind == "v4opt":
        return IP(src=src, dst=dst, options=[IPOption_RR(routers=["192.0.2.99"])]) / l4
    s6 = "2001:db8:5::10" if src.startswith("192.0.2.") else "2001:db8:6::10" \
        if src.startswith("198.51.100.") else "2001:db8:9::10"
    if kind == "v6":
        return IPv6(src=s6, dst="2001:db8:1::2") / l4
    if kind == "v6ext":
        return (IPv6(src=s6, dst="2001:db8:1::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
                / IPv6ExtHdrRouting(addresses=["2001:db8:1::3"]) / l4)
    raise ValueError(kind)


IPS = ["v4", "v4opt", "v6", "v6ext"]

# (name, l4 builder (sport/dport given), expected kind)
PAYLOADS = [
    ("sip-req-udp", lambda: UDP(sport=5060, dport=5060) / Raw(SIP_INVITE), "sip"),
    ("sip-resp-udp", lambda: UDP(sport=5060, dport=5062) / Raw(SIP_200), "sip"),
    ("sip-sips-odd-port", lambda: UDP(sport=40000, dport=7777) / Raw(SIP_OPTIONS_SIPS), "sip"),
    ("sip-keepalive", lambda: UDP(sport=5060, dport=5060) / Raw(b"\r\n\r\n"), "sip"),
    ("sip-tcp", lambda: TCP(sport=5060, dport=40001, flags="PA") / Raw(SIP_INVITE), "sip"),
    ("sip-sctp", lambda: SCTP(sport=5060, dport=5060) / SCTPChunkData(data=SIP_200), "sip"),
    ("tls-5061", lambda: TCP(sport=5061, dport=40002, flags="PA") / Raw(b"\x17\x03\x03\x00\x10"
                                                                         + b"x" * 16), "tls"),
    ("tls-5061-mid", lambda: TCP(sport=40002, dport=5061, flags="PA") / Raw(b"\xaa" * 40), "tls"),
    ("tcp-ack", lambda: TCP(sport=5060, dport=40001, flags="A"), "other"),
    ("rtp", lambda: UDP(sport=20000, dport=30000) / Raw(rtp_payload()), "rtp"),
    ("rtp-csrc-ext-pad", lambda: UDP(sport=20002, dport=30002)
     / Raw(rtp_payload(pt=96, cc=2, ext_words=2, pad=4)), "rtp"),
    ("rtcp", lambda: UDP(sport=20001, dport=30001) / Raw(rtcp_payload()), "rtcp"),
    ("rtcp-mux", lambda: UDP(sport=20000, dport=30000) / Raw(rtcp_payload()), "rtcp"),
    ("stun", lambda: UDP(sport=3478, dport=50000) / Raw(stun_payload()), "stun"),
    ("dns-rtp-like", lambda: UDP(sport=53, dport=33000)
     / Raw(b"\x80\x00" + raw(DNS(id=0x8000, qd=DNSQR(qname="example.com")))[2:]), "other"),
    ("dns", lambda: UDP(sport=33001, dport=53) / DNS(id=0x8080, qd=DNSQR(qname="a.example")), "other"),
    ("ntp", lambda: UDP(sport=123, dport=123) / NTP(), "other"),
    ("snmp", lambda: UDP(sport=40000, dport=161) / SNMP(), "other"),
    ("rtp-bad-pt", lambda: UDP(sport=20000, dport=30000) / Raw(rtp_payload(pt=50)), "other"),
    ("rtp-rtcp-conflict-pt", lambda: UDP(sport=20000, dport=30000)
     / Raw(rtp_payload(pt=72, marker=False)), "other"),
    ("rtp-csrc-overrun", lambda: UDP(sport=20000, dport=30000)
     / Raw(rtp_payload(cc=15, body=0)[:40]), "other"),
    ("rtp-ext-overrun", lambda: UDP(sport=20000, dport=30000)
     / Raw(rtp_payload(ext_words=200, body=0)[:60]), "other"),
    ("icmp", lambda: ICMP(), "other"),
    ("not-sip-method", lambda: UDP(sport=5060, dport=5060)
     / Raw(b"FETCH sip:x@example.com SIP/2.0\r\n\r\n"), "other"),
    ("sip-no-version", lambda: UDP(sport=5060, dport=5060)
     / Raw(b"INVITE sip:x@example.com HTTP/1.1\r\n\r\n"), "other"),
    ("http", lambda: TCP(sport=40000, dport=80, flags="PA") / Raw(b"GET / HTTP/1.1\r\n\r\n"), "other"),
]



def ws_frame(payload: bytes, mask: bytes = b"\x1f\x2e\x3d\x4c") -> bytes:
    """A masked WebSocket text frame (client to server)."""
    n = len(payload)
    hdr = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0xFE]) + struct.pack(">H", n)
    return hdr + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))


PAYLOADS += [
    ("sip-websocket", lambda: TCP(sport=40100, dport=8080, flags="PA") / Raw(ws_frame(SIP_INVITE)),
     "sip"),
    ("websocket-other", lambda: TCP(sport=40100, dport=8080, flags="PA")
     / Raw(ws_frame(b"hello there, not sip at all")), "other"),
]


def _cases():
    for (name, l4, kind), ipk, lk in itertools.product(PAYLOADS, IPS, LINKS):
        if ipk == "v6" or ipk == "v6ext":
            if name == "icmp":
                continue
        yield pytest.param(name, l4, kind, ipk, lk, id=f"{name}-{ipk}-{lk}")


def both():
    """(native or None, python) Classifier classes over the test allowlist."""
    al = allowlist()
    py = _impl.python("classify").Classifier(al)
    nat = _impl.native("classify").Classifier(al) if "native" in IMPLEMENTATIONS else None
    return nat, py


@pytest.fixture(scope="module")
def classifiers():
    return both()


def check_same(classifiers, frame: bytes, linktype: int):
    nat, py = classifiers
    vp = py.classify(frame, linktype)
    if nat is not None:
        vn = nat.classify(frame, linktype)
        assert vn._astuple() == vp._astuple(), (frame.hex(), linktype)
        assert nat.code(frame, linktype) == py.code(frame, linktype) == vp.code
    return vp


@pytest.mark.parametrize("name,l4,kind,ipk,lk", list(_cases()))
def test_layer_combinations(classifiers, name, l4, kind, ipk, lk):
    src = "192.0.2.10" if "sip" in name or "tls" in name else "198.51.100.7"
    pkt = ip_variant(ipk, src, "203.0.113.1", l4())
    frame, linktype = link(lk, pkt)
    v = check_same(classifiers, frame, linktype)
    assert v.kind == kind, (name, v)
    assert v.flags & sipedge.classify.NOT_IP == 0
    assert v.ipver == (4 if ipk.startswith("v4") else 6)
    if ipk.startswith("v4"):
        assert v.src == src and v.dst == "203.0.113.1"
    l4p = pkt.payload
    while l4p.name not in ("UDP", "TCP", "SCTP", "ICMP"):
        l4p = l4p.payload
    if l4p.name in ("UDP", "TCP", "SCTP"):
        assert (v.sport, v.dport) == (l4p.sport, l4p.dport)
    assert v.proto == {"UDP": 17, "TCP": 6, "SCTP": 132, "ICMP": 1}[l4p.name]


# ------------------------------------------------------------------ trust
@pytest.mark.parametrize("src,sport,l4,expect", [
    # signaling from a signaling prefix on a signaling port: trusted
    ("192.0.2.10", 5060, "udp-sip", (True, "signaling", "test-east")),
    ("192.0.2.200", 5060, "udp-sip", (True, "signaling", "test-west")),
    ("192.0.2.10", 5060, "tcp-sip", (True, "signaling", "test-east")),
    ("192.0.2.10", 5061, "tls", (True, "signaling", "test-east")),
    # wrong port, wrong kind for the role, unknown source
    ("192.0.2.10", 5070, "udp-sip", (False, "signaling", "test-east")),
    ("192.0.2.10", 20000, "rtp", (False, "signaling", "test-east")),
    ("203.0.113.5", 5060, "udp-sip", (False, None, None)),
    # media from the media prefix on the media range
    ("198.51.100.7", 20000, "rtp", (True, "media", "*")),
    ("198.51.100.7", 20001, "rtcp", (True, "media", "*")),
    ("198.51.100.7", 9000, "rtp", (False, "media", "*")),
    ("198.51.100.7", 5060, "udp-sip", (False, "media", "*")),
    ("2001:db8:5::10", 5060, "udp-sip", (True, "signaling", "test-east")),
    ("2001:db8:6::10", 40000, "rtp", (True, "media", "*")),
    ("2001:db8:7::10", 40000, "rtp", (False, None, None)),
])
def test_trust(classifiers, src, sport, l4, expect):
    l3 = IPv6(src=src, dst="2001:db8:1::2") if ":" in src else IP(src=src, dst="203.0.113.1")
    body = {
        "udp-sip": UDP(sport=sport, dport=5060) / Raw(SIP_INVITE),
        "tcp-sip": TCP(sport=sport, dport=40000, flags="PA") / Raw(SIP_200),
        "tls": TCP(sport=sport, dport=40000, flags="PA") / Raw(b"\x17\x03\x03\x00\x02ab"),
        "rtp": UDP(sport=sport, dport=30000) / Raw(rtp_payload()),
        "rtcp": UDP(sport=sport, dport=30001) / Raw(rtcp_payload()),
    }[l4]
    v = check_same(classifiers, raw(Ether(**MAC) / l3 / body), 1)
    assert (v.trusted, v.role, v.edge) == expect
    m = allowlist().match(src)
    assert (m.role if m else None) == v.role


def test_default_allowlist_is_twilio(impl):
    clf = impl("classify").Classifier()
    f = raw(Ether(**MAC) / IP(src="54.172.60.1", dst="192.0.2.1")
            / UDP(sport=5060, dport=5060) / Raw(SIP_200))
    v = clf.classify(f)
    assert (v.kind, v.trusted, v.role, v.edge) == ("sip", True, "signaling", "ashburn")
    f = raw(Ether(**MAC) / IP(src="168.86.130.9", dst="192.0.2.1")
            / UDP(sport=12000, dport=30000) / Raw(rtp_payload()))
    assert clf.classify(f)._astuple()[:4] == ("rtp", True, "media", "*")


# ------------------------------------------------------------------ fragments, tunnels
def test_ipv4_fragments(classifiers):
    pkt = IP(src="192.0.2.10", dst="203.0.113.1") / UDP(sport=5060, dport=5060) / Raw(
        SIP_INVITE * 30)
    frags = fragment(pkt, fragsize=512)
    assert len(frags) > 2
    first = check_same(classifiers, raw(Ether(**MAC) / frags[0]), 1)
    assert (first.kind, first.fragment, first.trusted) == ("sip", "first", True)
    for fr in frags[1:]:
        v = check_same(classifiers, raw(Ether(**MAC) / fr), 1)
        assert (v.kind, v.fragment, v.proto, v.sport, v.dport) == ("other", "later", 17, 0, 0)
        assert v.src == "192.0.2.10" and not v.trusted


def test_ipv6_fragments(classifiers):
    base = IPv6(src="2001:db8:5::10", dst="2001:db8:1::2")
    first = base / IPv6ExtHdrFragment(offset=0, m=1, nh=17) / UDP(sport=5060, dport=5060) / Raw(
        SIP_INVITE)
    later = base / IPv6ExtHdrFragment(offset=100, m=0, nh=17) / Raw(b"\x80" * 100)
    v = check_same(classifiers, raw(Ether(**MAC) / first), 1)
    assert (v.kind, v.fragment) == ("sip", "first")
    v = check_same(classifiers, raw(Ether(**MAC) / later), 1)
    assert (v.kind, v.fragment, v.proto) == ("other", "later", 17)


def test_gre_tunnel_inner_packet(classifiers):
    inner = IP(src="192.0.2.10", dst="203.0.113.1") / UDP(sport=5060, dport=5060) / Raw(SIP_200)
    outer = Ether(**MAC) / IP(src="203.0.113.50", dst="203.0.113.51") / GRE() / inner
    v = check_same(classifiers, raw(outer), 1)
    assert (v.kind, v.src, v.trusted) == ("sip", "192.0.2.10", True)
    eth_in = Ether(**MAC) / IP(src="203.0.113.50", dst="203.0.113.51") / GRE(proto=0x6558) / Ether(
        **MAC) / Dot1Q(vlan=5) / inner
    assert check_same(classifiers, raw(eth_in), 1).kind == "sip"


def test_not_ip_and_unknown_linktype(classifiers):
    from scapy.all import ARP

    v = check_same(classifiers, raw(Ether(**MAC) / ARP()), 1)
    assert (v.kind, v.proto, v.src, v.flags & sipedge.classify.NOT_IP) == ("other", -1, None, 4)
    v = check_same(classifiers, b"\x45" + b"\0" * 40, 147)
    assert v.flags & sipedge.classify.NOT_IP and v.kind == "other"


@pytest.mark.parametrize("cut", [0, 1, 13, 14, 20, 33, 34, 41, 42, 50])
def test_truncated_frames(classifiers, cut):
    f = raw(Ether(**MAC) / IP(src="192.0.2.10", dst="203.0.113.1") / UDP(sport=5060, dport=5060)
            / Raw(SIP_INVITE))
    v = check_same(classifiers, f[:cut], 1)
    assert v.kind == "other"
    assert v.flags & sipedge.classify.BAD or cut >= 42


def test_buffer_types_accepted(impl):
    clf = impl("classify").Classifier(allowlist())
    f = raw(Ether(**MAC) / IP(src="192.0.2.10", dst="203.0.113.1") / UDP(sport=5060, dport=5060)
            / Raw(SIP_200))
    for buf in (f, bytearray(f), memoryview(f)):
        assert clf.classify(buf, linktype=1).kind == "sip"


def test_public_api_exports():
    assert sipedge.Classifier is sipedge.classify.Classifier
    assert sipedge.Verdict is sipedge.classify.Verdict
    clf = sipedge.Classifier()
    v = clf.classify(raw(Ether(**MAC) / IP() / UDP(sport=5060, dport=5060) / Raw(SIP_200)))
    assert isinstance(v, sipedge.Verdict)
    assert "kind='sip'" in repr(v)
    assert v.transport == "udp"
