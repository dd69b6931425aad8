"""Random and mutated bytes: neither implementation crashes, and both agree.

Native vs Python runs only in the normal build (the native module must be
there); the Python twin alone is still exercised for robustness otherwise.
"""
from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings, strategies as st

from sipedge import _impl
from classify_util import allowlist, rtcp_payload, rtp_payload, SIP_INVITE, stun_payload

from conftest import IMPLEMENTATIONS, scaled

AL = allowlist()
PY = _impl.python("classify").Classifier(AL)
NAT = _impl.native("classify").Classifier(AL) if "native" in IMPLEMENTATIONS else None
LINKTYPES = st.sampled_from([1, 113, 276, 101, 228, 229, 0, 108, 147])
SETTINGS = settings(max_examples=scaled(1500), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def agree(frame: bytes, linktype: int):
    vp = PY.classify(frame, linktype)
    t = vp._astuple()
    assert vp.kind in ("sip", "rtp", "rtcp", "stun", "tls", "other")
    if NAT is not None:
        assert NAT.classify(frame, linktype)._astuple() == t, (frame.hex(), linktype)
        assert NAT.code(frame, linktype) == PY.code(frame, linktype)
    return vp


@SETTINGS
@given(st.binary(max_size=300), LINKTYPES)
def test_random_bytes(frame, linktype):
    agree(frame, linktype)


def _eth_ip(src: bytes, proto: int, l4: bytes, ihl: int = 5, flags_frag: int = 0) -> bytes:
    tot = 4 * ihl + len(l4)
    ip = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, tot & 0xFFFF, 1, flags_frag, 64, proto, 0,
                     src, b"\xcb\x00\x71\x01") + b"\x01" * (4 * ihl - 20)
    return b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00" + ip + l4


PAYLOAD_SEEDS = [b"", SIP_INVITE, rtp_payload(), rtcp_payload(), stun_payload(), b"\r\n\r\n",
                 b"SIP/2.0 180 Ringing\r\n", b"\x17\x03\x03\x00\x05hello"]


@SETTINGS
@given(st.sampled_from([b"\xc0\x00\x02\x0a", b"\xc6\x33\x64\x07", b"\xcb\x00\x71\x05"]),
       st.sampled_from([17, 6, 132, 47, 1]), st.integers(0, 65535), st.integers(0, 65535),
       st.sampled_from(PAYLOAD_SEEDS), st.binary(max_size=40), st.integers(0, 80),
       st.integers(5, 15), st.sampled_from([0, 0x2000, 0x0010, 0x4000]))
def test_mutated_packets(src, proto, sport, dport, seed, noise, cut, ihl, ff):
    """Valid outer headers, payloads near the real thing, cut and garbled."""
    payload = bytearray(seed + noise)
    if payload and noise:
        payload[noise[0] % len(payload)] ^= noise[-1]
    if proto == 17:
        l4 = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + bytes(payload)
    elif proto == 6:
        l4 = struct.pack(">HHIIBBHHH", sport, dport, 1, 1, 0x50, 0x18, 1000, 0, 0) + bytes(payload)
    else:
        l4 = struct.pack(">HH", sport, dport) + bytes(payload)
    frame = _eth_ip(src, proto, l4, ihl, ff)
    agree(frame, 1)
    agree(frame[:len(frame) - cut] if cut < len(frame) else b"", 1)


@SETTINGS
@given(st.sampled_from([53, 67, 68, 69, 123, 137, 138, 161, 162, 500, 514, 520, 1812, 1900,
                        5353, 4789]),
       st.integers(0, 65535), st.booleans(), st.binary(min_size=0, max_size=120))
def test_well_known_services_never_media(port, other, port_is_src, tail):
    """DNS, DHCP, TFTP, NTP, NetBIOS, SNMP, IKE, syslog, RIP, RADIUS, SSDP, mDNS,
    VXLAN: whatever the payload (even RTP/RTCP-shaped), never rtp or rtcp."""
    payload = (rtp_payload()[:12] if tail[:1] < b"\x80" else rtcp_payload()) + tail
    sport, dport = (port, other) if port_is_src else (other, port)
    l4 = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    v = agree(_eth_ip(b"\xc6\x33\x64\x07", 17, l4), 1)
    assert v.kind not in ("rtp", "rtcp")
