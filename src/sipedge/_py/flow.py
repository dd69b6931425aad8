"""Flow mode of the classifier: the pure-Python twin of ``csrc/flow.c``.

The per-frame rules (``sipedge._py.classify``) run first; then, per flow
(the directional 5-tuple):

UDP
  - A SIP message's SDP body (and the SDP of a Megaco text message, as an MGC
    or media gateway beside an SBC sends) is read line by line: ``c=IN IP4|IP6``
    (session or media level), ``m=<media> <port> <proto>``: a proto with
    ``UDPTL`` in it (``udptl``, ``UDPTL``, ``UDP/UDPTL``) announces T.38 fax at
    (c, port); one with ``RTP`` in it (RTP/AVP, RTP/SAVP(F), UDP/TLS/RTP/SAVPF)
    announces RTP at (c, port) and RTCP at (c, port + 1) or ``a=rtcp:<port>``,
    none with ``a=rtcp-mux``. Port 0 and non-numeric ports (Megaco's ``$``)
    announce nothing. The last announcement of an address and port wins.
  - A datagram's flow takes the announcement of its destination, else of its
    source (SDP names where a side receives). Announced UDPTL: every non-empty
    datagram is ``udptl`` (STUN and SIP stay what they are). Announced RTP:
    RTCP (compound check) is ``rtcp`` (rtcp-mux), version 2 with 12 bytes or
    more is ``rtp``, the rest ``other``. Announced RTCP: ``rtcp`` when the
    compound check passes, else ``other``.
  - No announcement: RTP (the per-frame check) is confirmed by 3 packets in a
    row with one SSRC, the sequence number advancing by 1..64 and the
    timestamp not going back; the first two are ``other`` until the third
    comes and are then re-labelled ``rtp`` (when fewer than ``window`` frames
    came since; later ones stay ``other``). RTCP must pass the strict RFC
    3550 A.2 check (first packet SR or RR, no padding bit on it, lengths adding
    up exactly). A bare CRLF / CRLFCRLF keep-alive is ``other`` (RFC 5626
    keep-alives over UDP are STUN; tshark calls these data).
TCP
  - A segment that brings no byte after the newest one seen on its flow is a
    retransmission: ``other``. A SIP message (or a WebSocket frame carrying
    one) longer than its segment is labelled on the segment that completes it
    (as tshark does after reassembly), the earlier ones ``other``; the length
    comes from the end of the headers plus Content-Length (or the WebSocket
    payload length). SDP in the part of the body in the first segment is read.
SCTP
  - A SIP message in a DATA chunk without the E (end) bit is labelled on the
    chunk that ends it.

Memory: ``max_flows`` flow entries and ``max_anns`` announcements (rounded up to
powers of two), each table 4-way set-associative: a new key takes a free way
of its set or evicts the way seen least recently. An evicted flow starts again
(its RTP is confirmed again, a TCP message in progress is forgotten).
"""
from __future__ import annotations

from typing import Optional

from ..classify._common import OTHER, RTCP, RTP, SIP, STUN, UDPTL, Config
from .frame import _be16, _parse, _trust, _V, is_rtcp, is_sip, trusted_as

WAYS = 4
RTP_CONFIRM = 3
RTP_MAX_STEP = 64
A_NONE, A_RTP, A_RTCP, A_UDPTL = 0, 1, 2, 3
R_NONE, R_CAND, R_CONFIRMED = 0, 1, 2
M32 = 0xFFFFFFFF

#: defaults of the flow mode's bounds
MAX_FLOWS = 65536
MAX_ANNS = 16384
WINDOW = 65536


def _be32(b: bytes, i: int) -> int:
    return int.from_bytes(b[i:i + 4], "big")


def _hmix(h: int, w: int) -> int:
    return ((h ^ w) * 0x01000193) & M32


def _hfin(h: int) -> int:
    h ^= h >> 15
    h = (h * 0x2C1B3C6D) & M32
    h ^= h >> 12
    return h


def _haddr(h: int, ipver: int, a: bytes) -> int:
    h = _hmix(h, _be32(a, 0))
    if ipver == 6:
        h = _hmix(h, _be32(a, 4))
        h = _hmix(h, _be32(a, 8))
        h = _hmix(h, _be32(a, 12))
    return h


def _pow2(n: int) -> int:
    p = 4
    while p < n and p < (1 << 40):
        p <<= 1
    return p


class _Flow:
    __slots__ = ("key", "last", "ann", "ann_epoch", "rtp_state", "npend", "seq", "ssrc", "ts",
                 "pend", "tcp_have", "tcp_end", "need", "sctp_pending")

    def __init__(self, key: tuple, frame: int) -> None:
        self.key = key
        self.last = frame
        self.ann = A_NONE
        self.ann_epoch = 0
        self.rtp_state = R_NONE
        self.npend = 0
        self.seq = self.ssrc = self.ts = 0
        self.pend: list[int] = []
        self.tcp_have = 0
        self.tcp_end = 0
        self.need = 0
        self.sctp_pending = 0


class _Ann:
    __slots__ = ("key", "kind", "last")

    def __init__(self, key: tuple, kind: int, last: int) -> None:
        self.key, self.kind, self.last = key, kind, last


def _victim(ways: list) -> int:
    """The way a new key takes: the first free one, else the least recently seen."""
    best = -1
    for i, e in enumerate(ways):
        if e is None:
            return i
        if best < 0 or e.last < ways[best].last:
            best = i
    return best


class Flows:
    """The flow and announcement tables (mirror of C's sx_flows)."""

    def __init__(self, max_flows: int = MAX_FLOWS, max_anns: int = MAX_ANNS,
                 window: int = WINDOW) -> None:
        self.nsets = _pow2(max_flows) // WAYS
        self.ann_nsets = _pow2(max_anns) // WAYS
        self.flows: dict = {}   # set index -> list of WAYS entries (None: free)
        self.anns: dict = {}
        self.frame = 0
        self.epoch = 0
        self.window = max(1, window)
        self.evicted = 0

    # ------------------------------------------------------------ tables
    def flow_get(self, v: _V) -> _Flow:
        al = 16 if v.ipver == 6 else 4
        src, dst = v.src[:al], v.dst[:al]
        h = 0x811C9DC5
        h = _hmix(h, (v.ipver << 8) | (v.proto & 0xFF))
        h = _hmix(h, (v.sport << 16) | v.dport)
        h = _haddr(h, v.ipver, v.src)
        h = _haddr(h, v.ipver, v.dst)
        h = _hfin(h)
        ways = self.flows.setdefault(h & (self.nsets - 1), [None] * WAYS)
        key = (v.ipver, v.proto & 0xFF, v.sport, v.dport, src, dst)
        for e in ways:
            if e is not None and e.key == key:
                e.last = self.frame
                return e
        i = _victim(ways)
        if ways[i] is not None:
            self.evicted += 1
        e = ways[i] = _Flow(key, self.frame)
        return e

    def _ann_ways(self, ipver: int, addr: bytes, port: int) -> list:
        h = 0x811C9DC5
        h = _hmix(h, (ipver << 16) | port)
        h = _haddr(h, ipver, addr)
        h = _hfin(h)
        return self.anns.setdefault(h & (self.ann_nsets - 1), [None] * WAYS)

    def ann_find(self, ipver: int, addr: bytes, port: int) -> int:
        key = (ipver, addr[:16 if ipver == 6 else 4], port)
        for e in self._ann_ways(ipver, addr, port):
            if e is not None and e.key == key:
                return e.kind
        return A_NONE

    def announce(self, ipver: int, addr: bytes, port: int, kind: int) -> None:
        ways = self._ann_ways(ipver, addr, port)
        key = (ipver, addr[:16 if ipver == 6 else 4], port)
        self.epoch += 1
        for e in ways:
            if e is not None and e.key == key:
                e.kind = kind
                e.last = self.frame
                return
        ways[_victim(ways)] = _Ann(key, kind, self.frame)

    def flow_ann(self, fl: _Flow) -> int:
        if fl.ann_epoch != self.epoch:
            ipver, _, sport, dport, src, dst = fl.key
            k = self.ann_find(ipver, dst, dport)
            if k == A_NONE:
                k = self.ann_find(ipver, src, sport)
            fl.ann = k
            fl.ann_epoch = self.epoch
        return fl.ann

    # ------------------------------------------------------------ SDP
    def sdp_scan(self, p: bytes) -> None:
        sess: Optional[tuple] = None
        m: Optional[dict] = None
        n = len(p)
        i = 0
        while i < n:
            e = p.find(b"\n", i)
            if e < 0:
                e = n
            nxt = e + 1 if e < n else e
            while i < e and p[i] in (0x20, 0x09):
                i += 1
            while e > i and p[e - 1] in (0x0D, 0x20, 0x09):
                e -= 1
            line = p[i:e]
            if len(line) >= 2 and line[1] == 0x3D:  # "x="
                t, b = line[0], line[2:]
                if t == 0x76:  # v
                    self._media_end(m, sess)
                    m = None
                    sess = None
                elif t == 0x63:  # c
                    c = _parse_conn(b)
                    if c is not None:
                        if m is not None:
                            m["c"] = c
                        else:
                            sess = c
                elif t == 0x6D:  # m
                    self._media_end(m, sess)
                    m = _parse_m(b)
                elif t == 0x61 and m is not None:  # a
                    if b == b"rtcp-mux":
                        m["mux"] = True
                    elif len(b) > 5 and b[:5] == b"rtcp:":
                        rp, used = _port_of(b[5:])
                        if rp >= 0 and (5 + used == len(b) or b[5 + used] == 0x20):
                            m["rtcp"] = rp
            i = nxt
        self._media_end(m, sess)

    def _media_end(self, m: Optional[dict], sess: Optional[tuple]) -> None:
        if m is None:
            return
        c = m["c"] if m["c"] is not None else sess
        if m["kind"] == A_NONE or m["port"] == 0 or c is None:
            return
        ipver, addr = c
        self.announce(ipver, addr, m["port"], m["kind"])
        if m["kind"] == A_RTP and not m["mux"]:
            rp = m["rtcp"] if m["rtcp"] >= 0 else m["port"] + 1
            if 0 < rp <= 65535:
                self.announce(ipver, addr, rp, A_RTCP)


def _port_of(b: bytes) -> tuple[int, int]:
    i = 0
    x = 0
    while i < len(b) and i < 6 and 0x30 <= b[i] <= 0x39:
        x = x * 10 + b[i] - 0x30
        i += 1
    if i == 0 or i > 5 or x > 65535:
        return -1, i
    return x, i


def _parse_m(b: bytes) -> Optional[dict]:
    s = b.find(b" ")
    if s <= 0:
        return None
    port, used = _port_of(b[s + 1:])
    if port < 0:
        return None
    q = s + 1 + used
    if q < len(b) and b[q] == 0x2F:  # "/count"
        q += 1
        while q < len(b) and 0x30 <= b[q] <= 0x39:
            q += 1
    if q >= len(b) or b[q] != 0x20:
        return None
    q += 1
    pe = b.find(b" ", q)
    if pe < 0:
        pe = len(b)
    proto = b[q:pe].upper()
    kind = A_UDPTL if b"UDPTL" in proto else A_RTP if b"RTP" in proto else A_NONE
    return {"kind": kind, "port": port, "rtcp": -1, "mux": False, "c": None}


def _parse_ip4(b: bytes) -> Optional[bytes]:
    parts = b.split(b".")
    if len(parts) != 4:
        return None
    out = []
    for x in parts:
        if not 1 <= len(x) <= 3 or not all(0x30 <= c <= 0x39 for c in x) or int(x) > 255:
            return None
        out.append(int(x))
    return bytes(out)


def _parse_ip6(b: bytes) -> Optional[bytes]:
    hexd = b"0123456789abcdefABCDEF"
    n = len(b)
    g: list[int] = []
    gap = -1
    i = 0
    if n >= 2 and b[0] == 0x3A and b[1] == 0x3A:
        gap = 0
        i = 2
        if i == n:
            return bytes(16)
    elif n and b[0] == 0x3A:
        return None
    while True:
        d = 0
        x = 0
        while i < n and d < 4 and b[i] in hexd:
            x = (x << 4) | int(chr(b[i]), 16)
            i += 1
            d += 1
        if d == 0 or len(g) >= 8:
            return None
        g.append(x)
        if i == n:
            break
        if b[i] != 0x3A:
            return None
        i += 1
        if i < n and b[i] == 0x3A:
            if gap >= 0:
                return None
            gap = len(g)
            i += 1
            if i == n:
                break
        elif i == n:
            return None
    ng = len(g)
    if (ng != 8) if gap < 0 else (ng > 7):
        return None
    out = [0] * 8
    tail = 0 if gap < 0 else ng - gap
    for k in range(ng):
        pos = k if (gap < 0 or k < gap) else 8 - tail + (k - gap)
        out[pos] = g[k]
    return b"".join(x.to_bytes(2, "big") for x in out)


def _parse_conn(b: bytes) -> Optional[tuple]:
    if b[:7] == b"IN IP4 ":
        ver = 4
    elif b[:7] == b"IN IP6 ":
        ver = 6
    else:
        return None
    b = b[7:]
    e = 0
    while e < len(b) and b[e] not in (0x2F, 0x20):
        e += 1
    a = _parse_ip4(b[:e]) if ver == 4 else _parse_ip6(b[:e])
    if a is None:
        return None
    return ver, a + bytes(16 - len(a))


def _hname(line: bytes, lit: bytes) -> int:
    m = len(lit)
    if len(line) < m or line[:m].lower() != lit:
        return 0
    i = m
    while i < len(line) and line[i] in (0x20, 0x09):
        i += 1
    return i + 1 if i < len(line) and line[i] == 0x3A else 0


def sip_msg_len(p: bytes) -> tuple[int, int]:
    """(message length, header length) of the SIP message at *p*; (0, 0)
    when the end of the headers is not in *p*."""
    n = len(p)
    h = 0
    i = p.find(b"\n")
    while 0 <= i < n:
        if i + 1 < n and p[i + 1] == 0x0A:
            h = i + 2
            break
        if i + 2 < n and p[i + 1] == 0x0D and p[i + 2] == 0x0A:
            h = i + 3
            break
        i = p.find(b"\n", i + 1)
    if not h:
        return 0, 0
    clen = 0
    i = 0
    while i < h:
        e = p.find(b"\n", i, h)
        if e < 0:
            e = h
        line = p[i:e]
        c = _hname(line, b"content-length") or _hname(line, b"l")
        if c:
            q = c
            while q < len(line) and line[q] in (0x20, 0x09):
                q += 1
            x = 0
            while q < len(line) and 0x30 <= line[q] <= 0x39 and x < 0x1000000:
                x = x * 10 + line[q] - 0x30
                q += 1
            clen = x
            break
        i = e + 1
    return h + clen, h


def is_rtcp_strict(p: bytes) -> bool:
    n = len(p)
    if n < 8 or p[0] >> 6 != 2 or p[0] & 0x20 or p[1] not in (200, 201):
        return False
    q = 0
    while q < n:
        if n - q < 4 or p[q] >> 6 != 2 or not 192 <= p[q + 1] <= 213:
            return False
        plen = (_be16(p, q + 2) + 1) * 4
        if plen > n - q:
            return False
        q += plen
    return True


def _set_kind(cfg: Config, v: _V, kind: int) -> None:
    v.kind = kind
    v.trusted = trusted_as(cfg, v.match, kind, v.proto, v.sport)


def relabel_code(cfg: Config, code: int, sport: int) -> int:
    m = (code >> 8) - 1
    t = trusted_as(cfg, m, RTP, 17, sport)
    return (code & ~0xF) | RTP | (t << 3)


def _rtp_progress(cfg: Config, t: Flows, fl: _Flow, p: bytes, v: _V, r: list) -> None:
    ssrc, ts, seq = _be32(p, 8), _be32(p, 4), _be16(p, 2)
    kind = OTHER
    step = (seq - fl.seq) & 0xFFFF
    if fl.rtp_state == R_CONFIRMED:
        kind = RTP
    elif (fl.rtp_state == R_CAND and ssrc == fl.ssrc and 1 <= step <= RTP_MAX_STEP
          and (ts - fl.ts) & M32 < 0x80000000):
        if fl.npend + 1 >= RTP_CONFIRM:
            r.extend(f for f in fl.pend[:fl.npend] if t.frame - f < t.window)
            fl.npend = 0
            fl.pend = []
            fl.rtp_state = R_CONFIRMED
            kind = RTP
        else:
            fl.pend.append(t.frame)
            fl.npend += 1
    else:
        fl.rtp_state = R_CAND
        fl.npend = 1
        fl.pend = [t.frame]
    fl.ssrc, fl.seq, fl.ts = ssrc, seq, ts
    _set_kind(cfg, v, kind)


def _is_megaco(p: bytes) -> bool:
    return p[:7] == b"MEGACO/" or p[:2] == b"!/"


def _sdp_of_sip(t: Flows, p: bytes) -> None:
    total, hl = sip_msg_len(p)
    if not hl:
        return
    total = min(total, len(p))
    if total > hl:
        t.sdp_scan(p[hl:total])


def _udp_flow(cfg: Config, t: Flows, f: bytes, v: _V, r: list) -> None:
    n = v.l4end - v.l4off
    ulen = _be16(f, v.l4off + 4)
    plen = n - 8
    if ulen >= 8 and ulen - 8 < plen:
        plen = ulen - 8
    p = f[v.l4off + 8:v.l4off + 8 + plen]
    k = v.kind
    if k == SIP:
        if plen in (2, 4):
            _set_kind(cfg, v, OTHER)
        else:
            _sdp_of_sip(t, p)
        return
    if k == STUN:
        return
    if k == OTHER and _is_megaco(p):
        t.sdp_scan(p)
        return
    if t.epoch == 0 and k != RTP:
        if k == RTCP and not is_rtcp_strict(p):
            _set_kind(cfg, v, OTHER)
        return
    fl = t.flow_get(v)
    a = t.flow_ann(fl)
    if a == A_UDPTL:
        _set_kind(cfg, v, UDPTL if plen else OTHER)
        return
    if a == A_RTP:
        if is_rtcp(p):
            _set_kind(cfg, v, RTCP)
        elif plen >= 12 and p[0] >> 6 == 2:
            _set_kind(cfg, v, RTP)
        else:
            _set_kind(cfg, v, OTHER)
        return
    if a == A_RTCP:
        _set_kind(cfg, v, RTCP if is_rtcp(p) else OTHER)
        return
    if k == RTP:
        _rtp_progress(cfg, t, fl, p, v, r)
    elif k == RTCP and not is_rtcp_strict(p):
        _set_kind(cfg, v, OTHER)


def _ws_len(p: bytes) -> int:
    n = len(p)
    if n < 2:
        return 0
    h, plen = 2, p[1] & 0x7F
    if plen == 126:
        if n < 4:
            return 0
        plen, h = _be16(p, 2), 4
    elif plen == 127:
        if n < 10:
            return 0
        plen, h = min(int.from_bytes(p[2:10], "big"), 0xFFFFFFFF), 10
    if p[1] & 0x80:
        h += 4
    return h + plen


def _tcp_flow(cfg: Config, t: Flows, f: bytes, v: _V) -> None:
    s = v.l4off
    doff = (f[s + 12] >> 4) * 4
    p = f[s + doff:v.l4end]
    plen = len(p)
    if plen == 0:
        return
    seq = _be32(f, s + 4)
    end = (seq + plen) & M32
    fl = t.flow_get(v)
    if fl.tcp_have and ((end - fl.tcp_end) & M32 == 0 or (end - fl.tcp_end) & M32 >= 0x80000000):
        _set_kind(cfg, v, OTHER)
        return
    fl.tcp_have = 1
    fl.tcp_end = end
    if fl.need:
        if plen >= fl.need:
            fl.need = 0
            _set_kind(cfg, v, SIP)
        else:
            fl.need -= plen
            _set_kind(cfg, v, OTHER)
        return
    if v.kind != SIP:
        return
    if is_sip(p):
        total, hl = sip_msg_len(p)
        if not hl:
            return
        body_end = min(total, plen)
        if body_end > hl:
            t.sdp_scan(p[hl:body_end])
    else:
        total = _ws_len(p)
    if total > plen:
        fl.need = min(total - plen, M32)
        _set_kind(cfg, v, OTHER)


def _sctp_flow(cfg: Config, t: Flows, f: bytes, v: _V) -> None:
    off = v.l4off
    n = v.l4end - off
    q = 12
    while n - q >= 4:
        clen = _be16(f, off + q + 2)
        if clen < 4 or clen > n - q:
            return
        if f[off + q] == 0:
            break
        q += (clen + 3) & ~3
        if q > n:
            return
    if n - q < 4 or f[off + q] != 0:
        return
    bits = f[off + q + 1]
    fl = t.flow_get(v)
    if v.kind == SIP:
        if not bits & 1:
            fl.sctp_pending = 1
            _set_kind(cfg, v, OTHER)
        else:
            fl.sctp_pending = 0
    elif not bits & 2 and fl.sctp_pending:
        if bits & 1:
            fl.sctp_pending = 0
            _set_kind(cfg, v, SIP)


def flow_classify(cfg: Config, t: Flows, f: bytes, linktype: int) -> tuple[_V, list]:
    """The verdict of the next frame in flow mode and the earlier frames (by
    number, 0-based) it confirmed as RTP."""
    v = _parse(f, linktype)
    _trust(cfg, v)
    r: list = []
    if v.l4end > v.l4off and not v.flags & (2 | 8):
        if v.proto == 17:
            _udp_flow(cfg, t, f, v, r)
        elif v.proto == 6:
            _tcp_flow(cfg, t, f, v)
        elif v.proto == 132:
            _sctp_flow(cfg, t, f, v)
    t.frame += 1
    return v, r
