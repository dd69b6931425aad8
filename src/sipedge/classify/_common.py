"""What both classifier implementations share, and the public result types.

The pure-Python twin (``sipedge._py.classify``) and the native module
(``sipedge._classify``) import this module, never each other: the kinds and
flag bits (defined once for Python here and once for C in
``csrc/classify.h``; a test checks that they agree), the allowlist
configuration a Classifier derives (:class:`Config`), the frame code layout
(:func:`code_of`), naming helpers and the result types :class:`Report` and
:class:`FrameInfo`.
"""
from __future__ import annotations

import ipaddress
import mmap
import operator
import socket
from bisect import bisect_right
from typing import Any, Iterator, NamedTuple, Optional

from ..errors import AllowlistError, CaptureError, InputError

KINDS = ("other", "sip", "rtp", "rtcp", "stun", "tls")
OTHER, SIP, RTP, RTCP, STUN, TLS = range(6)

#: flag bits of Verdict.flags and of the per-frame codes (bits 4-7); csrc/classify.h
#: defines the same values for C (tests/test_classify.py checks they agree)
F_FRAG_FIRST = 1
F_FRAG_LATER = 2
F_NOT_IP = 4
F_BAD = 8


ROLE_KINDS = {
    "signaling": (1 << SIP) | (1 << TLS),
    "media": (1 << RTP) | (1 << RTCP) | (1 << STUN),
}
ANY_ROLE_KINDS = (1 << SIP) | (1 << RTP) | (1 << RTCP) | (1 << STUN) | (1 << TLS)
ALL_EDGES = "*"


#: most allowlist values a Classifier takes: a frame code keeps (index + 1) in 24 bits
MAX_VALUES = 0xFFFFFF


def linktype_error(linktype: int) -> InputError:
    return InputError(f"link type {linktype} is out of range: a pcap LINKTYPE_ value is "
                      "0..4294967295 (1 Ethernet, 101 raw IP, 113 Linux cooked, 276 SLL2)")


def check_linktype(linktype: Any) -> int:
    """*linktype* as an int: TypeError when it is not an integer, InputError
    when it is outside 0..2**32-1 (the native side takes a uint32)."""
    lt = operator.index(linktype)
    if not 0 <= lt <= 0xFFFFFFFF:
        raise linktype_error(lt)
    return lt


def frame_bytes(frame: Any) -> bytes:
    """The bytes of a bytes-like *frame* (a strided view is copied in order);
    TypeError for anything else (``bytes(40)`` would be 40 zero bytes)."""
    if type(frame) is bytes:
        return frame
    with memoryview(frame) as m:
        return m.tobytes()


def byte_view(buf: Any) -> Any:
    """A buffer indexed by byte: bytes and mmap as they are (slicing them
    copies, so no export outlives a walk and an mmap can be closed), any other
    bytes-like object as an unsigned-byte memoryview, a strided one copied."""
    if isinstance(buf, (bytes, mmap.mmap)):
        return buf
    m = memoryview(buf)
    if not m.c_contiguous:
        m = memoryview(m.tobytes())
    return m.cast("B") if m.format != "B" or m.ndim != 1 else m


# ---------------------------------------------------------------- allowlist config
class Config:
    """What a Classifier derives from an allowlist, once (shared by both twins).

    ``values``: the prefix table's values (Match objects); ``val_role`` and
    ``val_edge`` map a value index to a role index and an edge index; ``edges``
    are the edge names ("*" for entries valid at every edge); ``role_kinds``
    the kind bitmask and ``role_ports`` the (low, high, proto number) port
    ranges of each role.
    """

    def __init__(self, allowlist: Any) -> None:
        self.allowlist = allowlist
        table = allowlist.table if allowlist is not None else None
        self.table = table
        if table is not None and len(table.values) > MAX_VALUES:
            raise AllowlistError(f"an allowlist of {len(table.values)} entries: a frame code holds "
                                 f"the entry index in 24 bits, at most {MAX_VALUES} entries; "
                                 "split the allowlist or merge adjacent prefixes")
        self.values: list = list(table.values) if table is not None else []
        self.roles: list[str] = list(allowlist.ports) if allowlist is not None else []
        self.edges: list[str] = []
        self.val_role: list[int] = []
        self.val_edge: list[int] = []
        for m in self.values:
            if m.role not in self.roles:
                self.roles.append(m.role)
            edge = ALL_EDGES if m.edge is None else m.edge
            if edge not in self.edges:
                self.edges.append(edge)
            self.val_role.append(self.roles.index(m.role))
            self.val_edge.append(self.edges.index(edge))
        if len(self.roles) > 65535 or len(self.edges) > 65535:
            raise ValueError("an allowlist with more than 65535 roles or edges")
        self.role_kinds = [ROLE_KINDS.get(r, ANY_ROLE_KINDS) for r in self.roles]
        self.role_ports = []
        for r in self.roles:
            ports = allowlist.ports.get(r, []) if allowlist is not None else []
            self.role_ports.append([(p.low, p.high, 17 if p.proto == "udp" else 6) for p in ports])
        # flattened ranges for the twin's own search
        self._r4 = table.ranges(4) if table is not None else []
        self._r6 = table.ranges(6) if table is not None else []
        self._lo4 = [r[0] for r in self._r4]
        self._lo6 = [r[0] for r in self._r6]

    def lookup(self, ipver: int, addr: bytes) -> int:
        if ipver == 4:
            a, los, rs = int.from_bytes(addr[:4], "big"), self._lo4, self._r4
        else:
            a, los, rs = int.from_bytes(addr, "big"), self._lo6, self._r6
        i = bisect_right(los, a) - 1
        if i >= 0 and a <= rs[i][1]:
            return rs[i][2]
        return -1

    def edge_of(self, match: int) -> Optional[str]:
        return self.edges[self.val_edge[match]] if 0 <= match < len(self.val_edge) else None

    def role_of(self, match: int) -> Optional[str]:
        return self.roles[self.val_role[match]] if 0 <= match < len(self.val_role) else None


def code_of(kind: int, trusted: int, flags: int, match: int) -> int:
    return kind | (trusted << 3) | (flags << 4) | ((match + 1) << 8)


# ---------------------------------------------------------------- results
def addr_text(ipver: int, raw: bytes) -> Optional[str]:
    if ipver == 4:  # inet_ntop: the same text as ipaddress, 5x faster
        return _inet_ntop(_AF_INET, raw[:4])
    if ipver == 6:
        return str(ipaddress.IPv6Address(raw[:16]))
    return None


_inet_ntop = socket.inet_ntop
_AF_INET = socket.AF_INET

_PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 58: "icmpv6", 132: "sctp"}


def proto_name(proto: int) -> Optional[str]:
    if proto < 0:
        return None
    return _PROTO_NAMES.get(proto, str(proto))


def fragment_name(flags: int) -> Optional[str]:
    if flags & F_FRAG_LATER:
        return "later"
    if flags & F_FRAG_FIRST:
        return "first"
    return None


def verdict_repr(v: Any) -> str:
    return (f"Verdict(kind={v.kind!r}, trusted={v.trusted}, role={v.role!r}, edge={v.edge!r}, "
            f"src={v.src!r}, dst={v.dst!r}, proto={v.proto}, sport={v.sport}, dport={v.dport}, "
            f"fragment={v.fragment!r})")


class FrameInfo(NamedTuple):
    number: int  # 1-based, as tshark counts
    kind: str
    trusted: bool
    role: Optional[str]
    edge: Optional[str]
    fragment: Optional[str]
    flags: int


class Report:
    """The result of classifying a capture: counts and, on request, frame codes.

    ``counts``: {(kind, trusted, edge): frames} for every non-zero cell (edge
    None: the source matched no allowlist entry). ``codes``: one 32-bit code
    per frame (``kind | trusted << 3 | flags << 4 | (match + 1) << 8``) when
    asked for, else None.
    """

    def __init__(self, source: str, frames: int, raw_counts: list, cfg: Config,
                 codes: Any = None) -> None:
        self.source = source
        self.frames = frames
        self._cfg = cfg
        slots = [None] + list(cfg.edges)
        counts: dict = {}
        width = len(slots)
        for i, n in enumerate(raw_counts):
            if n:
                kt, slot = divmod(i, width)
                kind, trusted = divmod(kt, 2)
                counts[(KINDS[kind], bool(trusted), slots[slot])] = n
        self.counts = counts
        self.codes = codes

    def by_kind(self) -> dict:
        out = {k: 0 for k in KINDS}
        for (kind, _, _), n in self.counts.items():
            out[kind] += n
        return out

    @property
    def trusted(self) -> int:
        return sum(n for (_, t, _), n in self.counts.items() if t)

    def frame(self, i: int) -> FrameInfo:
        """Frame *i* (0-based index, 0 .. frames-1) from the codes; needs ``frames=True``."""
        if self.codes is None:
            raise ValueError("this report has no per-frame codes: classify with frames=True")
        if not 0 <= i < len(self.codes):
            raise IndexError(f"frame index {i} out of range 0-{len(self.codes) - 1} "
                             "(0-based: frame number 1 is index 0)")
        c = self.codes[i]
        m = (c >> 8) - 1
        return FrameInfo(i + 1, KINDS[c & 7], bool(c & 8), self._cfg.role_of(m),
                         self._cfg.edge_of(m), fragment_name((c >> 4) & 15), (c >> 4) & 15)

    def iter_frames(self) -> Iterator[FrameInfo]:
        """Every frame in capture order; needs ``frames=True`` (ValueError without)."""
        if self.codes is None:
            raise ValueError("this report has no per-frame codes: classify with frames=True")
        return (self.frame(i) for i in range(len(self.codes)))

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "frames": self.frames,
            "by_kind": self.by_kind(),
            "trusted": self.trusted,
            "counts": [{"kind": k, "trusted": t, "edge": e, "frames": n}
                       for (k, t, e), n in sorted(self.counts.items(),
                                                  key=lambda kv: (KINDS.index(kv[0][0]),
                                                                  not kv[0][1], kv[0][2] or ""))],
        }

    def __repr__(self) -> str:
        return f"Report(source={self.source!r}, frames={self.frames}, by_kind={self.by_kind()})"


def capture_error(source: str, msg: str, off: int, val: int) -> CaptureError:
    return CaptureError(f"{source}: byte offset {off}: {msg} (value {val}); "
                        "the file is not a valid pcap/pcapng capture or was cut short")


#: progress(bytes_done, bytes_total) is called after every this many frames
PROGRESS_FRAMES = 1 << 20


NOT_REGULAR = "not a regular file (a pipe, socket or device); save the capture to a file first"


def check_path(path: Any) -> None:
    """CaptureError for a path with a NUL byte (no file has such a name)."""
    if ("\0" if isinstance(path, str) else b"\0") in path:
        raise CaptureError(f"{path!r}: cannot open capture: the path contains a NUL byte")
