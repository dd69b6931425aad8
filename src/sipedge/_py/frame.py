"""The per-frame rules of the pure-Python classifier (link, IP, transport,
payload checks, trust), written out in the docstring of ``sipedge._py.classify``.
Shared by the twin's per-frame and flow modes (``sipedge._py.flow``)."""
from __future__ import annotations

from ..classify._common import (F_BAD, F_FRAG_FIRST, F_FRAG_LATER, F_NOT_IP, OTHER, RTCP, RTP,
                                SIP, STUN, TLS, Config)

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
                 "src", "dst", "l4off", "l4end")

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
        self.l4off = 0
        self.l4end = 0


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
    v.l4off, v.l4end = off, end
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
    v.l4off = v.l4end = 0
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
    v.trusted = trusted_as(cfg, m, v.kind, v.proto, v.sport)


def trusted_as(cfg: Config, m: int, kind: int, proto: int, sport: int) -> int:
    """Whether a source of allowlist value index *m* may send *kind* from *sport*."""
    if m < 0 or m >= len(cfg.values):
        return 0
    r = cfg.val_role[m]
    if not cfg.role_kinds[r] & (1 << kind):
        return 0
    if proto not in (17, 6):
        return 0
    for lo, hi, p in cfg.role_ports[r]:
        if p == proto and lo <= sport <= hi:
            return 1
    return 0
