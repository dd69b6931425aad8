"""Frame classifier and capture readers: the pure-Python twin of ``sipedge._classify``.

Both implementations follow these rules, step for step, and give the same
:class:`Verdict` (and the same per-frame code) for every input, including
truncated and random bytes. ``csrc/classify.c`` and ``csrc/capture.c`` are the
C side.

Link layer (pcap LINKTYPE): 1 Ethernet, 113 Linux cooked (SLL), 276 SLL2,
101 raw IP (version from the first nibble), 228 raw IPv4, 229 raw IPv6, 0 and
108 BSD loopback (4-byte address family, either byte order: 2 IPv4; 10, 24,
28, 30 IPv6). Up to
8 VLAN tags (0x8100, 0x88a8, 0x9100) are skipped. Anything that is not IPv4 or
IPv6 is kind ``other`` with ``proto == -1`` and the NOT_IP flag.

IP: IPv4 with options (IHL 5-15); a total length below the header is BAD (0 is
taken as "unknown", as TSO captures write it); IPv6 with up to 8 extension
headers (hop-by-hop, routing, destination options, mobility, HIP, shim6, AH,
fragment). A first fragment (offset 0, more-fragments set) is classified and
flagged FRAG_FIRST; a later fragment is kind ``other`` with its protocol and
the FRAG_LATER flag, no ports. GRE (version 0) carrying IPv4/IPv6, Ethernet
(0x6558) or ERSPAN I/II/III is opened (2 tunnel levels at most) and the inner
packet is reported.

Transport: UDP, TCP, SCTP (the first DATA chunk is looked at for SIP). Other
protocols are kind ``other`` with their number in ``proto``.

Payload, UDP: STUN first (top two bits 0, magic cookie 0x2112A442, message
length a multiple of 4 that ends exactly at the end of the datagram), then
SIP, then -- only when both ports are >= 1024 and neither is a port of a
known non-media UDP service (1194, 1812, 1813, 1900, 4500, 4789, 5060, 5061,
5353, 5355, 6081) -- RTCP, then RTP. DNS (53), NTP (123), SNMP (161/162),
DHCP, syslog and every other service below 1024 can therefore never be RTP.

- SIP: a keep-alive (exactly CRLF or CRLFCRLF, RFC 5626); a status line
  ``SIP/2.0 NNN `` (N 1xx-6xx); or a request line ``METHOD sip:URI SIP/2.0``
  + CR or LF, METHOD one of INVITE ACK BYE CANCEL REGISTER OPTIONS PRACK
  SUBSCRIBE NOTIFY PUBLISH INFO REFER MESSAGE UPDATE (case-sensitive), the URI
  scheme ``sip:`` or ``sips:`` and the version case-insensitive, the URI one or
  more visible ASCII characters. Any port.
- RTCP (RFC 3550/5761): at least 8 bytes; a compound of packets each with
  version 2, packet type 192-213 and a length field that fits, ending exactly
  at the end of the datagram (up to 3 stray bytes after the last packet are
  tolerated).
- RTP: at least 12 bytes, version 2, payload type 0-34 or 96-127 (so never
  72-76, the RTCP range of RFC 5761, nor the unassigned 35-95), the CSRC list,
  the header extension (when X is set) and the padding (when P is set, count
  >= 1) all fit in the datagram.

Payload, TCP: SIP (same start-line check); else a TLS record header
(content type 20-24, version 3.0-3.4, record length <= 18432) on any port, or
any non-empty payload with port 5061 on either side, is ``tls``; else a
WebSocket frame (RFC 6455: FIN set, no RSV bits, text or binary opcode) whose
first 512 unmasked payload bytes pass the SIP check (SIP over WebSocket, RFC
7118) is ``sip``; else ``other``. Empty segments (pure
ACKs) are ``other``.

Trust: the source address is looked up in the allowlist's prefix table. On a
match the verdict carries that entry's role and edge ("*" for an entry valid
at every edge). It is trusted when the role may send this kind (``signaling``:
sip, tls; ``media``: rtp, rtcp, stun; any other role: every kind but
``other``) and the source port lies in one of the role's port ranges for the
transport (udp or tcp).
"""
from __future__ import annotations

import errno
import ipaddress
import socket
import mmap
import operator
import os
import stat
import struct
from bisect import bisect_right
from typing import Any, Callable, Iterator, NamedTuple, Optional

from ..errors import CaptureError
from ..classify._common import (  # noqa: F401  (re-exported for the twin's users)
    KINDS, OTHER, SIP, RTP, RTCP, STUN, TLS, F_FRAG_FIRST, F_FRAG_LATER, F_NOT_IP, F_BAD, ROLE_KINDS, ANY_ROLE_KINDS, ALL_EDGES, MAX_VALUES, linktype_error, check_linktype, frame_bytes, byte_view, Config, code_of, addr_text, proto_name, fragment_name, verdict_repr, FrameInfo, Report, capture_error, PROGRESS_FRAMES, NOT_REGULAR, check_path)

LT_NULL, LT_ETHERNET, LT_RAW, LT_LOOP, LT_SLL, LT_IPV4, LT_IPV6, LT_SLL2 = \
    0, 1, 101, 108, 113, 228, 229, 276

MAX_VLAN_TAGS = 8
MAX_V6_EXT = 8
MAX_TUNNEL_DEPTH = 2
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
MEDIA_DENY_PORTS = frozenset((1194, 1812, 1813, 1900, 4500, 4789, 5060, 5061, 5353, 5355, 6081))
METHODS = (b"INVITE", b"ACK", b"BYE", b"CANCEL", b"REGISTER", b"OPTIONS", b"PRACK",
           b"SUBSCRIBE", b"NOTIFY", b"PUBLISH", b"INFO", b"REFER", b"MESSAGE", b"UPDATE")
_V6_EXT = (0, 43, 60, 135, 139, 140)


def _be16(b: bytes, i: int) -> int:
    return (b[i] << 8) | b[i + 1]


# ---------------------------------------------------------------- payload rules
def is_sip(p: bytes) -> bool:
    n = len(p)
    if p == b"\r\n" or p == b"\r\n\r\n":
        return True
    if n >= 12 and p[:8].upper() == b"SIP/2.0 ":
        return (0x31 <= p[8] <= 0x36 and 0x30 <= p[9] <= 0x39 and 0x30 <= p[10] <= 0x39
                and p[11] == 0x20)
    m = 0
    for meth in METHODS:
        k = len(meth)
        if n > k and p[:k] == meth and p[k] == 0x20:
            m = k + 1
            break
    if not m:
        return False
    q = m
    if n - q >= 4 and p[q:q + 4].upper() == b"SIP:":
        q += 4
    elif n - q >= 5 and p[q:q + 5].upper() == b"SIPS:":
        q += 5
    else:
        return False
    u = q
    while q < n and 0x20 < p[q] < 0x7F:
        q += 1
    if q == u or q >= n or p[q] != 0x20:
        return False
    q += 1
    if n - q < 8 or p[q:q + 7].upper() != b"SIP/2.0":
        return False
    return p[q + 7] in (0x0D, 0x0A)


def is_stun(p: bytes) -> bool:
    n = len(p)
    if n < 20 or p[0] & 0xC0 or p[4:8] != b"\x21\x12\xa4\x42":
        return False
    mlen = _be16(p, 2)
    return mlen & 3 == 0 and mlen + 20 == n


def is_rtcp(p: bytes) -> bool:
    n = len(p)
    if n < 8:
        return False
    q = 0
    while q < n:
        if n - q < 4 or p[q] >> 6 != 2 or not 192 <= p[q + 1] <= 213:
            return False
        plen = (_be16(p, q + 2) + 1) * 4
        if plen > n - q:
            return False
        q += plen
        if n - q < 4:
            return True  # up to 3 stray bytes after the last packet are tolerated
    return True


def is_rtp(p: bytes) -> bool:
    n = len(p)
    if n < 12 or p[0] >> 6 != 2:
        return False
    pt = p[1] & 0x7F
    if 34 < pt < 96:
        return False
    h = 12 + 4 * (p[0] & 0x0F)
    if h > n:
        return False
    if p[0] & 0x10:
        if n - h < 4:
            return False
        ext = 4 + 4 * _be16(p, h + 2)
        if ext > n - h:
            return False
        h += ext
    if p[0] & 0x20:
        pad = p[n - 1]
        if pad == 0 or pad > n - h:
            return False
    return True


def is_tls(p: bytes) -> bool:
    return (len(p) >= 5 and 20 <= p[0] <= 24 and p[1] == 3 and p[2] <= 4
            and _be16(p, 3) <= 18432)


def is_ws_sip(p: bytes) -> bool:
    n = len(p)
    if n < 2 or p[0] & 0x70 or (p[0] & 0x0F) not in (1, 2):
        return False
    h, plen = 2, p[1] & 0x7F
    if plen == 126:
        if n < 4:
            return False
        plen, h = _be16(p, 2), 4
    elif plen == 127:
        if n < 10:
            return False
        plen, h = min(int.from_bytes(p[2:10], "big"), 0xFFFFFFFF), 10
    key = None
    if p[1] & 0x80:
        if n - h < 4:
            return False
        key = p[h:h + 4]
        h += 4
    k = min(n - h, plen, 512)
    data = p[h:h + k]
    if key is not None:
        data = bytes(b ^ key[i & 3] for i, b in enumerate(data))
    return is_sip(data)


def media_ports(sport: int, dport: int) -> bool:
    return (sport >= 1024 and dport >= 1024 and sport not in MEDIA_DENY_PORTS
            and dport not in MEDIA_DENY_PORTS)


# ---------------------------------------------------------------- layers
class _V:
    """The mutable verdict of one frame (mirror of C's sx_verdict)."""

    __slots__ = ("kind", "flags", "ipver", "trusted", "proto", "sport", "dport", "match",
                 "src", "dst")

    def __init__(self) -> None:
        self.kind = OTHER
        self.flags = 0
        self.ipver = 0
        self.trusted = 0
        self.proto = -1
        self.sport = 0
        self.dport = 0
        self.match = -1
        self.src = bytes(16)
        self.dst = bytes(16)


def _udp_payload(p: bytes, v: _V) -> None:
    if is_stun(p):
        v.kind = STUN
    elif is_sip(p):
        v.kind = SIP
    elif media_ports(v.sport, v.dport):
        if is_rtcp(p):
            v.kind = RTCP
        elif is_rtp(p):
            v.kind = RTP


def _gre(f: bytes, off: int, end: int, depth: int, v: _V) -> None:
    if depth >= MAX_TUNNEL_DEPTH or end - off < 4:
        return
    fl, pt = _be16(f, off), _be16(f, off + 2)
    if fl & 7:
        return
    hl = 4 + (4 if fl & 0xC000 else 0) + (4 if fl & 0x2000 else 0) + (4 if fl & 0x1000 else 0)
    if end - off < hl:
        return
    off += hl
    if pt in (0x0800, 0x86DD):
        _l3(f, off, end, pt, depth + 1, v)
        return
    if pt == 0x88BE:
        if fl & 0x1000:
            if end - off < 8:
                return
            off += 8
    elif pt == 0x22EB:
        if end - off < 12:
            return
        eh = 20 if f[off + 11] & 1 else 12
        if end - off < eh:
            return
        off += eh
    elif pt != 0x6558:
        return
    if end - off < 14:
        return
    et = _be16(f, off + 12)
    off += 14
    i = 0
    while i < MAX_VLAN_TAGS and et in VLAN_TPIDS:
        if end - off < 4:
            return
        et = _be16(f, off + 2)
        off += 4
        i += 1
    if et in (0x0800, 0x86DD):
        _l3(f, off, end, et, depth + 1, v)


def _ports(f: bytes, off: int, n: int, need: int, v: _V) -> bool:
    """The ports of a transport header of at least *need* bytes; False (and BAD) when cut."""
    if n < need:
        v.flags |= F_BAD
        return False
    v.sport = _be16(f, off)
    v.dport = _be16(f, off + 2)
    return True


def _l4(f: bytes, off: int, end: int, depth: int, v: _V) -> None:
    n = end - off
    proto = v.proto
    if proto == 17:
        if not _ports(f, off, n, 8, v):
            return
        ulen = _be16(f, off + 4)
        plen = n - 8
        if ulen >= 8 and ulen - 8 < plen:
            plen = ulen - 8
        _udp_payload(f[off + 8:off + 8 + plen], v)
    elif proto == 6:
        if not _ports(f, off, n, 20, v):
            return
        doff = (f[off + 12] >> 4) * 4
        if doff < 20 or doff > n:
            v.flags |= F_BAD
            return
        p = f[off + doff:end]
        if is_sip(p):
            v.kind = SIP
        elif is_tls(p) or (p and (v.sport == 5061 or v.dport == 5061)):
            v.kind = TLS
        elif is_ws_sip(p):
            v.kind = SIP
    elif proto == 132:
        if not _ports(f, off, n, 12, v):
            return
        q = 12
        while n - q >= 4:
            clen = _be16(f, off + q + 2)
            if clen < 4 or clen > n - q:
                return
            if f[off + q] == 0:
                if clen >= 16 and is_sip(f[off + q + 16:off + q + clen]):
                    v.kind = SIP
                return
            q += (clen + 3) & ~3
            if q > n:
                return
    elif proto == 47:
        _gre(f, off, end, depth, v)


def _l3(f: bytes, off: int, end: int, et: int, depth: int, v: _V) -> None:
    n = end - off
    v.kind = OTHER
    v.sport = v.dport = 0
    v.proto = -1
    v.flags &= ~(F_NOT_IP | F_FRAG_FIRST | F_FRAG_LATER)
    v.src = v.dst = bytes(16)
    if et == 0x0800:
        v.ipver = 4
        if n < 20 or f[off] >> 4 != 4:
            v.flags |= F_BAD
            return
        ihl = (f[off] & 0x0F) * 4
        if ihl < 20 or ihl > n:
            v.flags |= F_BAD
            return
        v.src = f[off + 12:off + 16] + bytes(12)
        v.dst = f[off + 16:off + 20] + bytes(12)
        v.proto = f[off + 9]
        tot = _be16(f, off + 2)
        if tot >= ihl:
            if tot < n:
                end = off + tot
        elif tot != 0:
            v.flags |= F_BAD
            return
        fo = _be16(f, off + 6)
        if fo & 0x1FFF:
            v.flags |= F_FRAG_LATER
            return
        if fo & 0x2000:
            v.flags |= F_FRAG_FIRST
        _l4(f, off + ihl, end, depth, v)
        return
    v.ipver = 6
    if n < 40 or f[off] >> 4 != 6:
        v.flags |= F_BAD
        return
    v.src = f[off + 8:off + 24]
    v.dst = f[off + 24:off + 40]
    plen = _be16(f, off + 4)
    if plen and plen < n - 40:
        end = off + 40 + plen
    nh = f[off + 6]
    q = off + 40
    for _ in range(MAX_V6_EXT):
        cur = nh
        if cur not in _V6_EXT and cur != 51 and cur != 44:
            break
        if end - q < 8:  # every extension header is 8 bytes or more
            v.proto = cur
            v.flags |= F_BAD
            return
        nh = f[q]
        if cur == 44:  # fragment: 8 bytes
            fo = _be16(f, q + 2)
            q += 8
            if fo & 0xFFF8:
                v.proto = nh
                v.flags |= F_FRAG_LATER
                return
            if fo & 1:
                v.flags |= F_FRAG_FIRST
            continue
        # AH counts 4-byte words minus 2, the others 8-byte words minus 1
        hl = (f[q + 1] + 2) * 4 if cur == 51 else (f[q + 1] + 1) * 8
        if hl > end - q:
            v.proto = nh
            v.flags |= F_BAD
            return
        q += hl
    v.proto = nh
    _l4(f, q, end, depth, v)


#: bytes a frame of each known link type needs before its payload (raw IP: the version nibble)
_LINK_HEADER = {LT_ETHERNET: 14, LT_SLL: 16, LT_SLL2: 20, LT_RAW: 1, LT_NULL: 4, LT_LOOP: 4,
                LT_IPV4: 0, LT_IPV6: 0}


def _parse(f: bytes, linktype: int) -> _V:
    """The verdict of one frame, before the allowlist is consulted."""
    v = _V()
    n = len(f)
    need = _LINK_HEADER.get(linktype)
    if need is None:
        v.flags = F_NOT_IP
        return v
    if n < need:
        v.flags = F_NOT_IP | F_BAD
        return v
    off = need
    if linktype == LT_ETHERNET:
        et = _be16(f, 12)
    elif linktype == LT_SLL:
        et = _be16(f, 14)
    elif linktype == LT_SLL2:
        et = _be16(f, 0)
    elif linktype == LT_RAW:
        ver = f[0] >> 4
        et, off = (0x0800 if ver == 4 else 0x86DD if ver == 6 else 0), 0
    elif linktype == LT_NULL or linktype == LT_LOOP:
        le = int.from_bytes(f[:4], "little")
        fam = le if le < 256 else int.from_bytes(f[:4], "big")
        et = 0x0800 if fam == 2 else 0x86DD if fam in (10, 24, 28, 30) else 0
    else:
        et = 0x0800 if linktype == LT_IPV4 else 0x86DD
    i = 0
    while i < MAX_VLAN_TAGS and et in VLAN_TPIDS:
        if n - off < 4:
            v.flags = F_NOT_IP | F_BAD
            return v
        et = _be16(f, off + 2)
        off += 4
        i += 1
    if et != 0x0800 and et != 0x86DD:
        v.flags = F_NOT_IP
        return v
    _l3(f, off, n, et, 0, v)
    return v


def _trust(cfg: Config, v: _V) -> None:
    if cfg.table is None or v.ipver == 0 or (v.flags & F_BAD and v.proto < 0):
        return
    m = cfg.lookup(v.ipver, v.src)
    if m < 0 or m >= len(cfg.values):
        return
    v.match = m
    r = cfg.val_role[m]
    if not cfg.role_kinds[r] & (1 << v.kind):
        return
    if v.proto not in (17, 6):
        return
    for lo, hi, proto in cfg.role_ports[r]:
        if proto == v.proto and lo <= v.sport <= hi:
            v.trusted = 1
            return


class Verdict:
    """What one frame is and whether its source is trusted.

    ``kind``: sip, rtp, rtcp, stun, tls or other; ``trusted``; ``role`` and
    ``edge`` of the allowlist entry holding the source (None when none does;
    edge "*" for an entry valid at every edge); ``src``/``dst`` addresses (None
    when not IP); ``proto``: the IP protocol number (-1 when not IP);
    ``sport``/``dport`` (0 without a transport header); ``fragment``: None,
    "first" or "later"; ``flags``: FRAG_FIRST 1, FRAG_LATER 2, NOT_IP 4, BAD 8.
    """

    __slots__ = ("_v", "_cfg")

    def __init__(self, v: _V, cfg: Config) -> None:
        self._v = v
        self._cfg = cfg

    kind = property(lambda self: KINDS[self._v.kind])
    trusted = property(lambda self: bool(self._v.trusted))
    role = property(lambda self: self._cfg.role_of(self._v.match))
    edge = property(lambda self: self._cfg.edge_of(self._v.match))
    src = property(lambda self: addr_text(self._v.ipver, self._v.src))
    dst = property(lambda self: addr_text(self._v.ipver, self._v.dst))
    proto = property(lambda self: self._v.proto)
    sport = property(lambda self: self._v.sport)
    dport = property(lambda self: self._v.dport)
    flags = property(lambda self: self._v.flags)
    ipver = property(lambda self: self._v.ipver)
    fragment = property(lambda self: fragment_name(self._v.flags))
    transport = property(lambda self: proto_name(self._v.proto))
    code = property(lambda self: code_of(self._v.kind, self._v.trusted, self._v.flags,
                                         self._v.match))

    def _astuple(self) -> tuple:
        return (self.kind, self.trusted, self.role, self.edge, self.src, self.dst, self.proto,
                self.sport, self.dport, self.fragment, self.flags)

    def __eq__(self, other: object) -> bool:
        if not hasattr(other, "_astuple"):
            return NotImplemented
        return self._astuple() == other._astuple()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._astuple())

    def __repr__(self) -> str:
        return verdict_repr(self)


# ---------------------------------------------------------------- capture reading
MAX_FRAME = 16 * 1024 * 1024
MAX_IF = 1024


class _CapErr(Exception):
    def __init__(self, msg: str, off: int, val: int) -> None:
        super().__init__(msg)
        self.msg, self.off, self.val = msg, off, val


def iter_capture(buf: Any) -> Iterator[tuple[int, bytes, int]]:
    """(linktype, frame bytes, offset after the record) of each frame of a
    pcap/pcapng image; _CapErr on errors."""
    mv = byte_view(buf)
    n = len(mv)
    if n < 4:
        raise _CapErr("file too short for a pcap or pcapng header", 0, n)
    magic = int.from_bytes(mv[:4], "little")
    if magic == 0x0A0D0D0A:
        yield from _iter_pcapng(mv)
        return
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        e = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        e = ">"
    else:
        raise _CapErr("not a pcap or pcapng file (unknown magic number)", 0, magic)
    if n < 24:
        raise _CapErr("truncated pcap file header (24 bytes needed)", 0, n)
    major = struct.unpack_from(e + "H", mv, 4)[0]
    if major != 2:
        raise _CapErr("unsupported pcap major version", 4, major)
    linktype = struct.unpack_from(e + "I", mv, 20)[0] & 0xFFFF
    off = 24
    hdr = struct.Struct(e + "II")
    while off != n:
        if n - off < 16:
            raise _CapErr("truncated pcap record header", off, n - off)
        incl, _orig = hdr.unpack_from(mv, off + 8)
        if incl > MAX_FRAME:
            raise _CapErr("pcap record length over the limit of 16 MiB", off + 8, incl)
        if incl > n - off - 16:
            raise _CapErr("truncated pcap record (captured length past the end of the file)",
                          off + 8, incl)
        off += 16 + incl
        yield linktype, bytes(mv[off - incl:off]), off


def _pcapng_shb(mv: Any, off: int) -> str:
    """Check the section header block at *off*; its byte order ("<" or ">")."""
    if len(mv) - off < 28:
        raise _CapErr("truncated pcapng section header block", off, 0)
    bom = int.from_bytes(mv[off + 8:off + 12], "little")
    if bom == 0x1A2B3C4D:
        e = "<"
    elif bom == 0x4D3C2B1A:
        e = ">"
    else:
        raise _CapErr("bad byte-order magic in pcapng section header block", off + 8, bom)
    major = struct.unpack_from(e + "H", mv, off + 12)[0]
    if major != 1:
        raise _CapErr("unsupported pcapng major version", off + 12, major)
    return e


def _iter_pcapng(mv: Any) -> Iterator[tuple[int, bytes, int]]:
    _pcapng_shb(mv, 0)
    n = len(mv)
    off = 0
    e = "<"
    ifs: list[int] = []
    while off != n:
        if n - off < 12:
            raise _CapErr("truncated pcapng block header", off, n - off)
        btype = int.from_bytes(mv[off:off + 4], "little")
        if btype == 0x0A0D0D0A:
            e = _pcapng_shb(mv, off)
            ifs = []
        blen = struct.unpack_from(e + "I", mv, off + 4)[0]
        if blen < 12 or blen & 3:
            raise _CapErr("bad pcapng block length (under 12 or not a multiple of 4)",
                          off + 4, blen)
        if blen > n - off:
            raise _CapErr("truncated pcapng block (length past the end of the file)", off + 4, blen)
        if btype == 0x0A0D0D0A and blen < 28:
            raise _CapErr("pcapng section header block too short (28 bytes at least)", off + 4,
                          blen)
        tail = struct.unpack_from(e + "I", mv, off + blen - 4)[0]
        if tail != blen:
            raise _CapErr("pcapng block length at the end of the block differs from the start",
                          off + blen - 4, tail)
        start = off
        off += blen
        if btype != 0x0A0D0D0A:
            btype = struct.unpack_from(e + "I", mv, start)[0]
        body = blen - 12
        if btype == 1:
            if blen < 20:
                raise _CapErr("pcapng interface description block too short", start + 4, blen)
            if len(ifs) >= MAX_IF:
                raise _CapErr("too many pcapng interfaces in one section (limit 1024)", start,
                              len(ifs))
            ifs.append(struct.unpack_from(e + "H", mv, start + 8)[0])
        elif btype in (6, 2):
            if body < 20:
                raise _CapErr("pcapng packet block too short", start + 4, blen)
            if btype == 6:
                ifc = struct.unpack_from(e + "I", mv, start + 8)[0]
            else:
                ifc = struct.unpack_from(e + "H", mv, start + 8)[0]
            incl = struct.unpack_from(e + "I", mv, start + 20)[0]
            if ifc >= len(ifs):
                raise _CapErr("pcapng packet block names an undeclared interface", start + 8, ifc)
            if incl > body - 20:
                raise _CapErr("pcapng captured length past the end of its block", start + 20, incl)
            yield ifs[ifc], bytes(mv[start + 28:start + 28 + incl]), off
        elif btype == 3:
            if body < 4:
                raise _CapErr("pcapng simple packet block too short", start + 4, blen)
            if not ifs:
                raise _CapErr("pcapng simple packet block before any interface", start, 0)
            orig = struct.unpack_from(e + "I", mv, start + 8)[0]
            incl = min(body - 4, orig)
            yield ifs[0], bytes(mv[start + 12:start + 12 + incl]), off


def open_capture(path: str) -> tuple[Any, Callable[[], None]]:
    """Map *path* read-only: (buffer, close). CaptureError when it cannot be read."""
    path = os.fspath(path)
    check_path(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        raise CaptureError(f"{path}: cannot open capture: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            why = os.strerror(errno.EISDIR) if stat.S_ISDIR(st.st_mode) else NOT_REGULAR
            raise CaptureError(f"{path}: cannot open capture: {why}")
        size = st.st_size
        if size == 0:
            return b"", lambda: None
        m = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    except OSError as e:
        raise CaptureError(f"{path}: cannot map capture: {e.strerror}") from None
    except ValueError as e:
        raise CaptureError(f"{path}: cannot map capture: {e}") from None
    finally:
        os.close(fd)
    return m, m.close


# ---------------------------------------------------------------- the classifier
class Classifier:
    """Classify frames against an allowlist (the pure-Python twin)."""

    def __init__(self, allowlist: Any = None) -> None:
        if allowlist is None:
            from ..allowlist import Allowlist

            allowlist = Allowlist.twilio()
        self.allowlist = allowlist
        self._cfg = Config(allowlist)

    @property
    def edges(self) -> list[str]:
        return list(self._cfg.edges)

    def _verdict(self, frame: bytes, linktype: int) -> _V:
        v = _parse(frame, linktype)
        _trust(self._cfg, v)
        return v

    def classify(self, frame: Any, linktype: int = 1) -> Verdict:
        """The verdict of one frame (bytes-like) of pcap link type *linktype*."""
        return Verdict(self._verdict(frame_bytes(frame), check_linktype(linktype)), self._cfg)

    def code(self, frame: Any, linktype: int = 1) -> int:
        """The compact code of one frame (as in ``Report.codes``)."""
        v = self._verdict(frame_bytes(frame), check_linktype(linktype))
        return code_of(v.kind, v.trusted, v.flags, v.match)

    def _run(self, buf: Any, source: str, frames: bool,
             progress: Optional[Callable[[int, int], None]]) -> Report:
        cfg = self._cfg
        width = len(cfg.edges) + 1
        counts = [0] * (len(KINDS) * 2 * width)
        codes = [] if frames else None
        buf = byte_view(buf)
        total = len(buf)
        k = 0
        try:
            for linktype, f, pos in iter_capture(buf):
                v = self._verdict(f, linktype)
                slot = cfg.val_edge[v.match] + 1 if v.match >= 0 else 0
                counts[(v.kind * 2 + v.trusted) * width + slot] += 1
                if codes is not None:
                    codes.append(code_of(v.kind, v.trusted, v.flags, v.match))
                k += 1
                if progress is not None and k % PROGRESS_FRAMES == 0:
                    progress(pos, total)
        except _CapErr as e:
            raise capture_error(source, e.msg, e.off, e.val) from None
        if codes is not None:
            import array

            codes = array.array("I", codes)
        return Report(source, k, counts, cfg, codes)

    def classify_buffer(self, buf: Any, frames: bool = False,
                        progress: Optional[Callable[[int, int], None]] = None,
                        source: str = "<buffer>") -> Report:
        """Classify every frame of a pcap/pcapng image held in memory."""
        return self._run(buf, source, frames, progress)

    def classify_pcap(self, path: str, frames: bool = False,
                      progress: Optional[Callable[[int, int], None]] = None) -> Report:
        """Classify every frame of a pcap or pcapng file (memory-mapped)."""
        buf, close = open_capture(path)
        try:
            return self._run(buf, os.fspath(path), frames, progress)
        finally:
            close()
