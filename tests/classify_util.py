"""Helpers for the classifier tests: capture writers, scapy frames, a test allowlist.

Only documentation addresses are used (192.0.2.0/24, 198.51.100.0/24,
203.0.113.0/24, 2001:db8::/32).
"""
from __future__ import annotations

import struct
from typing import Iterable, Sequence

#: Twilio's roles and ports, shared by every classifier test allowlist
ROLES = """\
[roles.signaling]
ports = ["5060/udp", "5060/tcp", "5061/tcp"]

[roles.media]
ports = ["10000-60000/udp"]
"""

TEST_ALLOWLIST = """\
[dataset]
name = "classifier-test"

""" + ROLES + """
[[ranges]]
role = "signaling"
edge = "test-east"
prefixes = ["192.0.2.0/25", "2001:db8:5::/48"]

[[ranges]]
role = "signaling"
edge = "test-west"
prefixes = ["192.0.2.128/25"]

[[ranges]]
role = "media"
edge = "*"
prefixes = ["198.51.100.0/24", "2001:db8:6::/48"]
"""


def allowlist():
    from sipedge.allowlist import Allowlist

    return Allowlist.from_toml(TEST_ALLOWLIST, "<test allowlist>")


# ------------------------------------------------------------------ capture writers
def pcap_bytes(frames: Iterable[bytes], linktype: int = 1, big: bool = False,
               nsec: bool = False) -> bytes:
    e = ">" if big else "<"
    magic = 0xA1B23C4D if nsec else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for i, f in enumerate(frames):
        out.append(struct.pack(e + "IIII", 1700000000 + i, 1000 * i, len(f), len(f)))
        out.append(bytes(f))
    return b"".join(out)


def _block(e: str, btype: int, body: bytes) -> bytes:
    body = body + b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def pcapng_bytes(sections: Sequence[tuple[Sequence[int], Sequence[tuple[int, bytes]]]],
                 big: bool = False, simple_first: bool = False) -> bytes:
    """sections: [([linktype per interface], [(interface, frame), ...]), ...].

    Frames use Enhanced Packet Blocks; with simple_first, frames of interface
    0 use Simple Packet Blocks. A name-resolution block is mixed in to be skipped.
    """
    e = ">" if big else "<"
    out = []
    for links, frames in sections:
        out.append(_block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1)))
        for lt in links:
            # if_tsresol option (9) = 9 (ns), then opt_endofopt
            opts = struct.pack(e + "HH", 9, 1) + b"\x09\0\0\0" + struct.pack(e + "HH", 0, 0)
            out.append(_block(e, 1, struct.pack(e + "HHI", lt, 0, 0) + opts))
        out.append(_block(e, 4, struct.pack(e + "HH", 0, 0)))  # empty NRB
        for k, (ifc, f) in enumerate(frames):
            if simple_first and ifc == 0:
                out.append(_block(e, 3, struct.pack(e + "I", len(f)) + f))
            else:
                out.append(_block(e, 6, struct.pack(e + "IIIII", ifc, 0, k, len(f), len(f)) + f))
    return b"".join(out)


# ------------------------------------------------------------------ frames
SIP_INVITE = (b"INVITE sip:+15005550006@192.0.2.2:5060;transport=udp SIP/2.0\r\n"
              b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n"
              b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
SIP_200 = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060\r\nContent-Length: 0\r\n\r\n"
SIP_OPTIONS_SIPS = b"OPTIONS sips:ping@example.com SIP/2.0\r\nContent-Length: 0\r\n\r\n"


def rtp_payload(pt: int = 0, cc: int = 0, ext_words: int = -1, pad: int = 0, body: int = 160,
                marker: bool = False) -> bytes:
    b0 = 0x80 | cc | (0x10 if ext_words >= 0 else 0) | (0x20 if pad else 0)
    h = bytes([b0, (0x80 if marker else 0) | pt]) + struct.pack(">HII", 1, 160, 0x1234)
    h += b"\x11\x22\x33\x44" * cc
    if ext_words >= 0:
        h += struct.pack(">HH", 0xBEDE, ext_words) + b"\0" * (4 * ext_words)
    p = h + b"\xd5" * body
    if pad:
        p += b"\0" * (pad - 1) + bytes([pad])
    return p


def rtcp_payload() -> bytes:
    sr = struct.pack(">BBHI", 0x80, 200, 6, 0x1234) + b"\0" * 20
    sdes_items = b"\x01\x05hello\x00\x00"  # CNAME + end, padded
    sdes = struct.pack(">BBHI", 0x81, 202, (4 + len(sdes_items)) // 4, 0x1234) + sdes_items
    return sr + sdes


def stun_payload() -> bytes:
    attr = struct.pack(">HH", 0x8022, 4) + b"test"
    return struct.pack(">HHI", 0x0001, len(attr), 0x2112A442) + b"\x01" * 12 + attr


# ------------------------------------------------------------------ frames of a call (flow mode)
MAC = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01"


def _ip4(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


def udp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    u = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(u), 0, 0, 64, 17, 0, _ip4(src),
                     _ip4(dst))
    return MAC + b"\x08\x00" + ip + u


def tcp(src: str, sport: int, dst: str, dport: int, seq: int, payload: bytes) -> bytes:
    t = struct.pack(">HHIIBBHHH", sport, dport, seq, 0, 0x50, 0x18, 65535, 0, 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(t), 0, 0, 64, 6, 0, _ip4(src),
                     _ip4(dst))
    return MAC + b"\x08\x00" + ip + t


def sctp_data(src: str, sport: int, dst: str, dport: int, flags: int, tsn: int,
              payload: bytes) -> bytes:
    chunk = struct.pack(">BBHIHHI", 0, flags, 16 + len(payload), tsn, 0, 0, 3) + payload
    chunk += b"\0" * (-len(chunk) % 4)
    s = struct.pack(">HHII", sport, dport, 0, 0) + chunk
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(s), 0, 0, 64, 132, 0, _ip4(src),
                     _ip4(dst))
    return MAC + b"\x08\x00" + ip + s


def rtp(seq: int, ts: int = 0, ssrc: int = 0x1234, pt: int = 8, body: int = 40) -> bytes:
    return struct.pack(">BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + b"\xd5" * body


def sdp(addr: str, media: str) -> bytes:
    return (f"v=0\r\no=- 1 1 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\n"
            f"{media}\r\n").encode()


def sip(first: str, body: bytes = b"", extra: str = "") -> bytes:
    head = (f"{first}\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-1\r\n"
            f"Call-ID: t38@example.com\r\nCSeq: 1 INVITE\r\n{extra}"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


UAC, GW = "192.0.2.10", "198.51.100.5"
INVITE = "INVITE sip:+15005550006@198.51.100.5 SIP/2.0"
OK = "SIP/2.0 200 OK"


def t38_call() -> list[bytes]:
    """An audio call re-INVITEd to T.38: the UDPTL datagrams look like RTP."""
    f = [udp(UAC, 5060, GW, 5060, sip(INVITE, sdp(UAC, "m=audio 20000 RTP/AVP 8"))),
         udp(GW, 5060, UAC, 5060, sip(OK, sdp(GW, "m=audio 30000 RTP/AVP 8")))]
    for i in range(5):
        f.append(udp(UAC, 20000, GW, 30000, rtp(100 + i, 160 * i)))
        f.append(udp(GW, 30000, UAC, 20000, rtp(500 + i, 160 * i, ssrc=0x99)))
    f.append(udp(UAC, 5060, GW, 5060, sip(INVITE, sdp(UAC, "m=image 20000 udptl t38"))))
    f.append(udp(GW, 5060, UAC, 5060, sip(OK, sdp(GW, "m=image 30000 udptl t38"))))
    for i in range(6):  # UDPTL: sequence number 0x8000 + i, then an IFP: bytes 0 and 1 look v2
        f.append(udp(GW, 30000, UAC, 20000, struct.pack(">H", 0x8000 + i) + b"\x06\xc0\x01\x80"
                     + bytes(range(12))))
    return f
