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
sip, tls; ``media``: rtp, rtcp, stun, udptl; any other role: every kind but
``other``) and the source port lies in one of the role's port ranges for the
transport (udp or tcp).
"""
from __future__ import annotations

import os
import struct
from typing import Any, Callable, Iterator, Optional

from ..classify._common import (  # noqa: F401  (re-exported for the twin's users)
    KINDS, OTHER, SIP, RTP, RTCP, STUN, TLS, UDPTL, F_FRAG_FIRST, F_FRAG_LATER, F_NOT_IP, F_BAD,
    ROLE_KINDS, ANY_ROLE_KINDS, ALL_EDGES, MAX_VALUES, linktype_error, check_linktype,
    frame_bytes, byte_view, Config, code_of, addr_text, proto_name, fragment_name, verdict_repr,
    FrameInfo, Report, capture_error, PROGRESS_FRAMES, NOT_REGULAR, check_path, FlowLimits,
    flow_limits, frame_info, open_capture_fd)
from .frame import (  # noqa: F401  (the per-frame rules, re-exported)
    LT_NULL, LT_ETHERNET, LT_RAW, LT_LOOP, LT_SLL, LT_IPV4, LT_IPV6, LT_SLL2, MAX_VLAN_TAGS,
    MAX_V6_EXT, MAX_TUNNEL_DEPTH, VLAN_TPIDS, MEDIA_DENY_PORTS, METHODS, _be16, is_sip, is_stun,
    is_rtcp, is_rtp, is_tls, is_ws_sip, media_ports, _V, _udp_payload, _gre, _ports, _l4, _l3,
    _LINK_HEADER, _parse, _trust, trusted_as)


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


class _MemReader:
    """read(n) over a buffer held in memory."""

    def __init__(self, buf: Any) -> None:
        self.mv = byte_view(buf)
        self.pos = 0

    def read(self, n: int) -> bytes:
        b = bytes(self.mv[self.pos:self.pos + n])
        self.pos += len(b)
        return b


class _FileReader:
    """read(n) over a file descriptor: reads, never maps, so a file that
    shrinks under the reader ends early (an error naming the offset), never SIGBUS."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pos = 0

    def read(self, n: int) -> bytes:
        parts = []
        got = 0
        while got < n:
            try:
                b = os.read(self.fd, min(n - got, 1 << 20))
            except InterruptedError:  # pragma: no cover - retried by Python itself
                continue
            except OSError as e:
                raise _CapErr("read error on the capture file", self.pos + got, e.errno or 0)
            if not b:
                size = os.fstat(self.fd).st_size
                if size < self.pos + got:
                    raise _CapErr("the capture file shrank while it was read (value: its size now)",
                                  self.pos + got, size)
                break
            parts.append(b)
            got += len(b)
        out = b"".join(parts)
        self.pos += len(out)
        return out


MAX_BLOCK = MAX_FRAME + 65536


def iter_capture(buf: Any) -> Iterator[tuple[int, bytes, int]]:
    """(linktype, frame bytes, offset after the record) of each frame of a
    pcap/pcapng image; _CapErr on errors."""
    return iter_reader(_MemReader(buf))


def iter_reader(rd: Any) -> Iterator[tuple[int, bytes, int]]:
    """As iter_capture, over anything with read(n) (fewer bytes only at the end)."""
    head = rd.read(28)
    n = len(head)
    if n < 4:
        raise _CapErr("file too short for a pcap or pcapng header", 0, n)
    magic = int.from_bytes(head[:4], "little")
    if magic == 0x0A0D0D0A:
        _pcapng_shb(head, 0)
        yield from _iter_pcapng(rd, head)
        return
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        e = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        e = ">"
    else:
        raise _CapErr("not a pcap or pcapng file (unknown magic number)", 0, magic)
    if n < 24:
        raise _CapErr("truncated pcap file header (24 bytes needed)", 0, n)
    major = struct.unpack_from(e + "H", head, 4)[0]
    if major != 2:
        raise _CapErr("unsupported pcap major version", 4, major)
    linktype = struct.unpack_from(e + "I", head, 20)[0] & 0xFFFF
    off = 24
    pending = head[24:]
    hdr = struct.Struct(e + "II")
    while True:
        rec = pending + rd.read(16 - len(pending)) if len(pending) < 16 else pending[:16]
        rest = pending[16:] if len(pending) > 16 else b""
        pending = b""
        if not rec:
            return
        if len(rec) < 16:
            raise _CapErr("truncated pcap record header", off, len(rec))
        incl, _orig = hdr.unpack_from(rec, 8)
        if incl > MAX_FRAME:
            raise _CapErr("pcap record length over the limit of 16 MiB", off + 8, incl)
        data = rest[:incl]
        pending = rest[incl:]
        if len(data) < incl:
            data += rd.read(incl - len(data))
        if len(data) < incl:
            raise _CapErr("truncated pcap record (captured length past the end of the file)",
                          off + 8, incl)
        off += 16 + incl
        yield linktype, data, off


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


def _iter_pcapng(rd: Any, pending: bytes) -> Iterator[tuple[int, bytes, int]]:
    off = 0
    e = "<"
    ifs: list[int] = []

    def take(have: bytes, k: int) -> bytes:
        """*have* topped up from pending bytes, then the reader, to k bytes."""
        nonlocal pending
        if len(have) < k and pending:
            t = k - len(have)
            have, pending = have + pending[:t], pending[t:]
        if len(have) < k:
            have += rd.read(k - len(have))
        return have

    while True:
        blk = take(b"", 12)
        if not blk:
            return
        if len(blk) < 12:
            raise _CapErr("truncated pcapng block header", off, len(blk))
        btype = int.from_bytes(blk[:4], "little")
        if btype == 0x0A0D0D0A:
            blk = take(blk, 28)
            e = _pcapng_shb(blk, 0)
            ifs = []
        blen = struct.unpack_from(e + "I", blk, 4)[0]
        if blen < 12 or blen & 3:
            raise _CapErr("bad pcapng block length (under 12 or not a multiple of 4)",
                          off + 4, blen)
        if blen > MAX_BLOCK:
            raise _CapErr("pcapng block length over the limit of 16 MiB + 64 KiB", off + 4, blen)
        if len(blk) > blen:  # an SHB shorter than the 28 bytes read: give them back
            pending = blk[blen:] + pending
            blk = blk[:blen]
        blk = take(blk, blen)
        if len(blk) < blen:
            raise _CapErr("truncated pcapng block (length past the end of the file)", off + 4, blen)
        if btype == 0x0A0D0D0A and blen < 28:
            raise _CapErr("pcapng section header block too short (28 bytes at least)", off + 4,
                          blen)
        tail = struct.unpack_from(e + "I", blk, blen - 4)[0]
        if tail != blen:
            raise _CapErr("pcapng block length at the end of the block differs from the start",
                          off + blen - 4, tail)
        start = off
        off += blen
        if btype != 0x0A0D0D0A:
            btype = struct.unpack_from(e + "I", blk, 0)[0]
        body = blen - 12
        if btype == 1:
            if blen < 20:
                raise _CapErr("pcapng interface description block too short", start + 4, blen)
            if len(ifs) >= MAX_IF:
                raise _CapErr("too many pcapng interfaces in one section (limit 1024)", start,
                              len(ifs))
            ifs.append(struct.unpack_from(e + "H", blk, 8)[0])
        elif btype in (6, 2):
            if body < 20:
                raise _CapErr("pcapng packet block too short", start + 4, blen)
            if btype == 6:
                ifc = struct.unpack_from(e + "I", blk, 8)[0]
            else:
                ifc = struct.unpack_from(e + "H", blk, 8)[0]
            incl = struct.unpack_from(e + "I", blk, 20)[0]
            if ifc >= len(ifs):
                raise _CapErr("pcapng packet block names an undeclared interface", start + 8, ifc)
            if incl > body - 20:
                raise _CapErr("pcapng captured length past the end of its block", start + 20, incl)
            yield ifs[ifc], blk[28:28 + incl], off
        elif btype == 3:
            if body < 4:
                raise _CapErr("pcapng simple packet block too short", start + 4, blen)
            if not ifs:
                raise _CapErr("pcapng simple packet block before any interface", start, 0)
            orig = struct.unpack_from(e + "I", blk, 8)[0]
            incl = min(body - 4, orig)
            yield ifs[0], blk[12:12 + incl], off


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

    def frame_info(self, number: int, code: int) -> FrameInfo:
        """FrameInfo of frame *number* (1-based) from its code."""
        return frame_info(self._cfg, number, code)

    def _codes(self, rd: Any, source: str, flows: bool, limits: FlowLimits,
               progress: Optional[Callable[[int, int], None]], total: int,
               counts: list) -> Iterator[int]:
        """Final codes in capture order; counts filled as they come out."""
        cfg = self._cfg
        width = len(cfg.edges) + 1
        k = 0
        try:
            if not flows:
                for linktype, f, pos in iter_reader(rd):
                    v = self._verdict(f, linktype)
                    slot = cfg.val_edge[v.match] + 1 if v.match >= 0 else 0
                    counts[(v.kind * 2 + v.trusted) * width + slot] += 1
                    k += 1
                    if progress is not None and k % PROGRESS_FRAMES == 0:
                        progress(pos, total)
                    yield code_of(v.kind, v.trusted, v.flags, v.match)
                return
            from .flow import Flows, flow_classify, relabel_code

            t = Flows(*limits)
            w = t.window
            ring: dict = {}
            emitted = 0

            def emit(i: int) -> int:
                c = ring.pop(i % w)
                slot = cfg.val_edge[(c >> 8) - 1] + 1 if (c >> 8) else 0
                counts[((c & 7) * 2 + ((c >> 3) & 1)) * width + slot] += 1
                return c

            for linktype, f, pos in iter_reader(rd):
                if k - emitted >= w:
                    yield emit(emitted)
                    emitted += 1
                v, rl = flow_classify(cfg, t, f, linktype)
                ring[k % w] = code_of(v.kind, v.trusted, v.flags, v.match)
                for i in rl:
                    ring[i % w] = relabel_code(cfg, ring[i % w], v.sport)
                k += 1
                if progress is not None and k % PROGRESS_FRAMES == 0:
                    progress(pos, total)
            while emitted < k:
                yield emit(emitted)
                emitted += 1
        except _CapErr as e:
            raise capture_error(source, e.msg, e.off, e.val) from None

    def _run(self, rd: Any, source: str, frames: bool,
             progress: Optional[Callable[[int, int], None]], total: int, flows: bool,
             limits: FlowLimits) -> Report:
        import array

        cfg = self._cfg
        counts = [0] * (len(KINDS) * 2 * (len(cfg.edges) + 1))
        gen = self._codes(rd, source, flows, limits, progress, total, counts)
        if frames:
            codes: Any = array.array("I", gen)
            n = len(codes)
        else:
            codes = None
            n = 0
            for _ in gen:
                n += 1
        return Report(source, n, counts, cfg, codes)

    def classify_buffer(self, buf: Any, frames: bool = False,
                        progress: Optional[Callable[[int, int], None]] = None,
                        source: str = "<buffer>", flows: bool = False,
                        limits: FlowLimits = FlowLimits()) -> Report:
        """Classify every frame of a pcap/pcapng image held in memory
        (``flows=True``: the flow mode, see sipedge._py.flow)."""
        rd = _MemReader(buf)
        return self._run(rd, source, frames, progress, len(rd.mv), flows, flow_limits(limits))

    def classify_pcap(self, path: Any, frames: bool = False,
                      progress: Optional[Callable[[int, int], None]] = None,
                      flows: bool = False, limits: FlowLimits = FlowLimits()) -> Report:
        """Classify every frame of a pcap or pcapng file, read in chunks
        (``flows=True``: the flow mode, see sipedge._py.flow)."""
        fd = open_capture_fd(path)
        try:
            total = os.fstat(fd).st_size
            return self._run(_FileReader(fd), os.fspath(path), frames, progress, total, flows,
                             flow_limits(limits))
        finally:
            os.close(fd)

    def iter_pcap(self, path: Any, flows: bool = True, limits: FlowLimits = FlowLimits(),
                  chunk: int = 65536) -> "FrameStream":
        """The frame codes of a capture as they come, in arrays of up to
        *chunk* codes, with constant memory; ``.report`` once exhausted."""
        return FrameStream(self, path, flows, flow_limits(limits), chunk)

    def flow_session(self, limits: FlowLimits = FlowLimits()) -> "FlowSession":
        """Flow mode over frames fed one by one (a live tap)."""
        return FlowSession(self._cfg, flow_limits(limits))


class FrameStream:
    """Iterator of code arrays (see Classifier.iter_pcap); ``report`` at the end."""

    def __init__(self, clf: Classifier, path: Any, flows: bool, limits: FlowLimits,
                 chunk: int) -> None:
        import array

        self.report: Optional[Report] = None
        fd = open_capture_fd(path)
        cfg = clf._cfg
        counts = [0] * (len(KINDS) * 2 * (len(cfg.edges) + 1))

        def gen() -> Iterator[Any]:
            n = 0
            try:
                buf = array.array("I")
                for c in clf._codes(_FileReader(fd), os.fspath(path), flows, limits, None, 0,
                                    counts):
                    buf.append(c)
                    if len(buf) >= chunk:
                        n += len(buf)
                        yield buf
                        buf = array.array("I")
                if buf:
                    n += len(buf)
                    yield buf
                self.report = Report(os.fspath(path), n, counts, cfg, None)
            finally:
                os.close(fd)

        self._gen = gen()

    def __iter__(self) -> "FrameStream":
        return self

    def __next__(self) -> Any:
        return next(self._gen)


class FlowSession:
    """Flow mode over frames fed one by one: ``classify(frame)`` gives the
    verdict now; ``relabelled`` lists the earlier frames (1-based numbers)
    that this frame confirmed as RTP."""

    def __init__(self, cfg: Config, limits: FlowLimits) -> None:
        from .flow import Flows

        self._cfg = cfg
        self._t = Flows(*limits)
        self.relabelled: tuple = ()

    @property
    def frames(self) -> int:
        return self._t.frame

    def classify(self, frame: Any, linktype: int = 1) -> Verdict:
        from .flow import flow_classify

        v, rl = flow_classify(self._cfg, self._t, frame_bytes(frame), check_linktype(linktype))
        self.relabelled = tuple(i + 1 for i in rl)
        return Verdict(v, self._cfg)
