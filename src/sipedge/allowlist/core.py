"""Allowlist: which address ranges are trusted for which role (signaling, media).

The embedded default dataset (``data/twilio.toml``) holds Twilio's published
ranges with their source and the date they were read. A user file in the same
TOML format can extend it (``[dataset] extends = "twilio"``), replace it (the
default for a user file: only what the file lists), or add other carriers with
their own roles and ports. See ``contrib/`` and ``sipedge allowlist --help``.

**Edges of a match.** :class:`Match` and :class:`Entry` carry ``edge=None`` for
a range that serves every edge (Twilio's media range 168.86.128.0/18, written
``edge = "*"``): such a range is kept by every edge selection, shown as ``*``
in tables and ``null`` in JSON.

**Overlaps.** Ranges may nest or touch. :meth:`Allowlist.match` answers with
the most specific range (so each address stays attributed to its edge), while
:meth:`Allowlist.networks` merges overlapping and adjacent prefixes of a role
for the firewall. The same network twice in one role is an error.
"""
from __future__ import annotations

import ipaddress
import socket
import sys
import warnings
from array import array
from itertools import compress, islice, repeat
from operator import add, and_, eq, itemgetter, lshift, ne, or_, rshift
from typing import TYPE_CHECKING, Iterable, Iterator, Optional, Sequence

from .. import _files, _impl
from ..errors import AllowlistError
from ..intervals import BITS, Address, MASKS, flatten, Spans, cidrs, merge_sorted, pack_columns, spans, unpack_columns
from . import snapshot
from .model import AllEdgesWarning, Entry, Match, PortRange
from .parse import embedded, parse

if TYPE_CHECKING:  # the native module's stub describes both implementations
    from .. import _prefix
else:
    _prefix = _impl.load("prefix")

__all__ = ["Allowlist"]

_ONES = repeat(1)


# ------------------------------------------------------- the compiled form
# A role's firewall set is the union of its prefixes, overlapping and adjacent
# ones merged. It is computed on integers, a whole column at a time (map,
# compress, accumulate run in C): 100,000 prefixes take milliseconds, not the
# second that ipaddress objects take.
def _bounds_of_text(prefixes: list, version: int) -> tuple[list, list]:
    """(lo, hi) columns (inclusive) of canonical ``str(network)`` prefixes of one
    version, in their order."""
    if not prefixes:
        return [], []
    parts = "/".join(prefixes).split("/")
    if version == 4:
        a = array("I")
        a.frombytes(b"".join(map(socket.inet_aton, parts[0::2])))
        if sys.byteorder == "little":
            a.byteswap()
        lo = a.tolist()
    else:
        packed = list(map(socket.inet_pton, repeat(socket.AF_INET6, len(prefixes)), parts[0::2]))
        lo = list(map(int.from_bytes, packed, repeat("big", len(packed))))  # type: ignore[arg-type]
    return lo, list(map(or_, lo, map(MASKS[version].__getitem__, map(int, parts[1::2]))))


def _blocks_from_text(prefixes: list, version: int) -> tuple[list, list]:
    """(lo, hi) columns of canonical ``str(network)`` prefixes of one version, sorted."""
    if not prefixes:
        return [], []
    lo, hi = _bounds_of_text(prefixes, version)
    bits = BITS[version]
    # one sort of (lo << bits | hi) integers orders by start, then end
    keys = sorted(map(or_, map(lshift, lo, repeat(bits, len(lo))), hi))
    mask = (1 << bits) - 1
    return (list(map(rshift, keys, repeat(bits, len(keys)))),
            list(map(and_, keys, repeat(mask, len(keys)))))


def _table_of(values: list) -> "_prefix.PrefixTable":
    """The prefix table of :class:`Match` *values* (canonical prefix text), built on
    integers: the same table as ``PrefixTable((ip_network(m.prefix), m) for m in
    values)`` without an ipaddress object (a tenth of the time for 100k)."""
    prefixes = list(map(itemgetter(2), values))
    is6 = [":" in p for p in prefixes]
    ranges = []
    for version, pick in ((4, [not x for x in is6]), (6, is6)):
        lo, hi = _bounds_of_text(list(compress(prefixes, pick)), version)
        ranges.append(flatten(zip(lo, hi, compress(range(len(values)), pick))))
    r4, r6 = ranges
    low64 = (1 << 64) - 1

    def col(code: str, xs: Iterable[int]) -> bytes:
        return array(code, xs).tobytes()

    def col6(xs: list) -> bytes:
        flat = [0] * (2 * len(xs))
        flat[0::2] = map(rshift, xs, repeat(64, len(xs)))
        flat[1::2] = map(and_, xs, repeat(low64, len(xs)))
        return array("Q", flat).tobytes()

    lo6, hi6 = [r[0] for r in r6], [r[1] for r in r6]
    return _prefix.PrefixTable.from_ranges(
        col("I", map(itemgetter(0), r4)), col("I", map(itemgetter(1), r4)),
        col("i", map(itemgetter(2), r4)), col6(lo6), col6(hi6),
        col("i", map(itemgetter(2), r6)), values)


def _role_spans_exact(values: Sequence[Match], role: str) -> tuple[Spans, Spans]:
    """Merged v4 and v6 spans of *role* from its prefixes' text (always exact)."""
    mine = list(compress(map(itemgetter(2), values), map(role.__eq__, map(itemgetter(0), values))))
    v6 = [p for p in mine if ":" in p]
    v4 = [p for p in mine if ":" not in p] if v6 else mine
    return (spans(*merge_sorted(*_blocks_from_text(v4, 4))),
            spans(*merge_sorted(*_blocks_from_text(v6, 6))))


def _table_columns(table) -> list:
    """[(lo, hi, value index) columns of v4, the same of v6] of a prefix table."""
    lo4, hi4, val4, lo6, hi6, val6 = table.dump()

    def col(code: str, b: bytes) -> list:
        a = array(code)
        a.frombytes(b)
        return a.tolist()

    l6, h6 = col("Q", lo6), col("Q", hi6)
    return [(col("I", lo4), col("I", hi4), col("i", val4)),
            (list(map(or_, map(lshift, l6[0::2], repeat(64, len(l6) // 2)), l6[1::2])),
             list(map(or_, map(lshift, h6[0::2], repeat(64, len(h6) // 2)), h6[1::2])),
             col("i", val6))]


def _networks_of(sp: Spans, version: int) -> list:
    cls = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    return [cls((a, plen)) for lo, end in zip(sp.starts, sp.ends) for a, plen in cidrs(lo, end, version)]


def _role_spans_all(table, roles: Sequence[str]) -> dict:
    """{role: (v4 Spans, v6 Spans)} of every role, read off the flattened table.

    The table holds disjoint ranges, each with its most specific prefix, so a
    role's ranges are exactly its prefixes' union unless a prefix of the role
    holds a prefix of another role (nested, or the same network twice). Then
    either that prefix left no range of its own, or within it ranges of two
    roles touch. Both are checked; the roles concerned are computed from
    their prefixes' text instead (:func:`_role_spans_exact`).
    """
    values = table.values
    ix = {r: i for i, r in enumerate(roles)}
    vrole = list(map(ix.__getitem__, map(itemgetter(0), values)))
    cols = _table_columns(table)
    suspect: set = set()
    seen: set = set()
    for lo, hi, val in cols:
        rr = list(map(vrole.__getitem__, val))
        seen.update(val)
        # neighbours that touch (hi + 1 == next lo) and belong to different roles
        touch = map(eq, islice(lo, 1, None), map(add, hi, _ONES))
        for i in compress(range(1, len(lo)), map(and_, touch, map(ne, islice(rr, 1, None), rr))):
            suspect.add(rr[i - 1])
            suspect.add(rr[i])
    if len(seen) != len(values):  # a prefix hidden entirely by more specific ones
        suspect.update(vrole[i] for i in set(range(len(values))) - seen)
    out = {}
    for k, role in enumerate(roles):
        if k in suspect:
            out[role] = _role_spans_exact(values, role)
            continue
        fams = []
        for lo, hi, val in cols:
            if len(ix) > 1:
                pick = list(map(k.__eq__, map(vrole.__getitem__, val)))
                lo, hi = list(compress(lo, pick)), list(compress(hi, pick))
            fams.append(spans(*merge_sorted(lo, hi)))
        out[role] = (fams[0], fams[1])
    return out


# --------------------------------------------------------------------- Allowlist
class Allowlist:
    """Trusted address ranges by role and edge, with the ports of each role.

    ``match`` is bound straight to the native lookup of the compiled table, so a
    call from Python costs no extra frame.
    """

    def __init__(self, entries: Iterable[Entry], ports: dict[str, list[PortRange]],
                 meta: Optional[dict] = None, carriers: Optional[dict] = None) -> None:
        self._entries: Optional[list[Entry]] = list(entries)
        self.ports: dict[str, list[PortRange]] = {r: list(p) for r, p in ports.items()}
        self.meta: dict = dict(meta or {})
        self.carriers: dict[str, str] = dict(carriers or {})
        for e in self._entries:
            if e.role not in self.ports:
                raise AllowlistError(f"unknown role {e.role!r} for {e.network}; roles defined: "
                                     f"{', '.join(self.ports) or 'none'}")
        self._set_table(_prefix.PrefixTable(
            (e.network, Match(e.role, e.edge, str(e.network))) for e in self._entries))

    def _set_table(self, table) -> None:
        self._table = table
        # instance attribute: Allowlist.match(x) goes straight to the table (no Python frame)
        self.match = table.get  # type: ignore[method-assign]

    @classmethod
    def _from_table(cls, table, ports: dict, meta: dict, carriers: dict,
                    spans: Optional[dict] = None) -> "Allowlist":
        """An allowlist over a ready table (from a snapshot); entries are built lazily.
        *spans*: the snapshot's :meth:`packed_spans` of every role,
        ``{role: (packed4, count4, packed6, count6)}``."""
        self = cls.__new__(cls)
        self._entries = None
        self.ports = ports
        self.meta = meta
        self.carriers = carriers
        self._set_table(table)
        if spans is not None:
            self.__dict__["_packed_spans"] = spans
        return self

    @classmethod
    def from_compiled(cls, c: "snapshot.Compiled") -> "Allowlist":
        """The allowlist of a :class:`~sipedge.allowlist.snapshot.Compiled` record
        (what a snapshot file holds)."""
        return cls._from_table(c.table, c.ports, c.meta, c.carriers, c.spans)

    def compiled(self) -> "snapshot.Compiled":
        """This allowlist's compiled form (prefix table, ports, meta, carriers and the
        packed firewall spans of every role), as a snapshot stores it."""
        return snapshot.Compiled(self._table, self.ports, self.meta, self.carriers,
                                 {r: tuple(x for v in (4, 6) for x in self.packed_spans(r, v))
                                  for r in self.ports})

    @property
    def table(self) -> "_prefix.PrefixTable":
        """The compiled prefix table (read-only use: its ``values`` are :class:`Match`
        tuples in table order; the classifier looks addresses up in it)."""
        return self._table

    # -- construction -----------------------------------------------------------------
    @classmethod
    def twilio(cls) -> "Allowlist":
        """The embedded Twilio dataset (see ``meta`` for its source, version and date)."""
        p = embedded()
        return cls(p.entries, p.ports, p.meta, p.carriers)

    @property
    def carrier_ports(self) -> dict[str, list[PortRange]]:
        """The carrier's published ports per role: ITS side of the flow (Twilio's media
        leaves from UDP 10000-60000). The classifier uses them; the firewall matches the
        SBC's own listening ports instead (:class:`sipedge.firewall.desired.SbcPorts`).
        Same dict as :attr:`ports`."""
        return self.ports

    @classmethod
    def load(cls, path: str, allow_world: bool = False) -> "Allowlist":
        """An allowlist TOML file, or a compiled snapshot (see :meth:`save_snapshot`).

        A prefix that is every address (``0.0.0.0/0``, ``::/0``) is refused unless
        *allow_world*."""
        # a FIFO, device or directory is refused at once, a huge file by its size
        data = _files.read_regular(path, "allowlist", AllowlistError)
        if data.startswith(snapshot.MAGIC):
            return cls.from_compiled(snapshot.loads(data, path))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise AllowlistError(f"{path}: not UTF-8 text at byte {e.start}: save the file as UTF-8") from None
        return cls.from_toml(text, path, allow_world=allow_world)

    @classmethod
    def from_toml(cls, text: str, source: str = "<string>", allow_world: bool = False) -> "Allowlist":
        p = parse(text, source, allow_world=allow_world)
        al = cls(p.entries, p.ports, p.meta, p.carriers)
        al.meta.setdefault("source_file", source)
        return al

    @classmethod
    def load_snapshot(cls, path: str, source: Optional[str] = None) -> "Allowlist":
        """A compiled snapshot; refused when corrupt or stale (see
        :mod:`sipedge.allowlist.snapshot`)."""
        return cls.from_compiled(snapshot.load(path, source))

    def save_snapshot(self, path: str, source: Optional[str] = None) -> None:
        """Write a compiled snapshot (msgpack) that :meth:`load` reads back fast."""
        snapshot.save(self.compiled(), path, source)

    # -- queries ----------------------------------------------------------------------
    def match(self, addr: Address) -> Optional[Match]:  # replaced per instance by the table's get
        """Role, edge and prefix of the most specific range holding *addr*, or None."""
        return self._table.get(addr)

    def __contains__(self, addr: object) -> bool:
        return addr in self._table

    @property
    def entries(self) -> list[Entry]:
        if self._entries is None:
            ip_network = ipaddress.ip_network
            self._entries = [Entry(m.role, m.edge, ip_network(m.prefix)) for m in self._table.values]
        return self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self._table)

    def networks(self, role: str, version: Optional[int] = None) -> list:
        """The networks of one role (optionally one IP version), overlapping and adjacent
        prefixes merged for a firewall; v4 first, then v6. Computed once, on integers."""
        cache = self.__dict__.setdefault("_networks", {})
        if role not in cache:
            v4, v6 = self.spans(role, 4), self.spans(role, 6)
            cache[role] = (_networks_of(v4, 4), _networks_of(v6, 6))
        v4, v6 = cache[role]
        if version == 4:
            return list(v4)
        if version == 6:
            return list(v6)
        return v4 + v6

    def spans(self, role: str, version: int) -> "Spans":
        """What :meth:`networks` covers, as integers: ``(starts, ends, count)`` with the
        merged half-open spans ``[starts[i], ends[i])`` in order and *count* the number
        of networks they split into. Computed once for all roles from the prefix
        table, without ipaddress objects, or read from a compiled snapshot."""
        if version not in (4, 6):
            raise ValueError(f"IP version {version!r}: use 4 or 6")
        cache = self.__dict__.get("_spans")
        if cache is None:
            cache = {}  # published whole, below: another thread never sees it half filled
            stored = self.__dict__.get("_packed_spans")
            if stored is not None:  # from a snapshot: {role: (packed4, n4, packed6, n6)}
                for r, (p4, n4, p6, n6) in stored.items():
                    cache[r] = (Spans(*unpack_columns(p4, 4), n4), Spans(*unpack_columns(p6, 6), n6))
            else:
                roles = list(self.ports)
                try:
                    cache.update(_role_spans_all(self._table, roles))
                except KeyError:  # a range of a role without ports: never made by the loaders
                    roles += sorted({m.role for m in self._table.values} - set(roles))
                    cache.update(_role_spans_all(self._table, roles))
            self.__dict__["_spans"] = cache
        got = cache.get(role)
        if got is None:
            return Spans([], [], 0)
        sp = got[0] if version == 4 else got[1]
        return Spans(list(sp.starts), list(sp.ends), sp.count)  # copies: the cache stays intact

    def packed_spans(self, role: str, version: int) -> tuple[bytes, int]:
        """:meth:`spans` as ``(bytes, count)``: big-endian (first, last) address pairs,
        4 + 4 bytes (v4) or 16 + 16 (v6) each, the form the firewall diffs."""
        stored = self.__dict__.get("_packed_spans")
        if stored is not None:
            got = stored.get(role)
            if got is None:
                return b"", 0
            return (got[0], got[1]) if version == 4 else (got[2], got[3])
        sp = self.spans(role, version)
        return pack_columns(sp.starts, sp.ends, version), sp.count

    @property
    def roles(self) -> list[str]:
        return list(self.ports)

    @property
    def edges(self) -> list[str]:
        """The edge names that have ranges of their own, in file order."""
        seen = dict.fromkeys(map(itemgetter(1), self._table.values))
        seen.pop(None, None)
        return list(seen)

    def select(self, edges: Iterable[str], warn: bool = True) -> "Allowlist":
        """Only the ranges of *edges* (and those of every edge, ``edge=None``).
        Works on the compiled table (a 100k-prefix snapshot selects in a fraction
        of a second): no entry objects are built.

        Twilio asks customers to allow all edges, since calls can arrive through
        any of them; an :class:`AllEdgesWarning` says so unless *warn* is False.
        """
        want = [e.strip() for e in edges if e.strip()]
        if not want:
            raise AllowlistError("no edges selected: name one or more, e.g. --edges ashburn,umatilla")
        known = self.edges
        for i, e in enumerate(want):
            if e not in known:
                raise AllowlistError(f"unknown edge {e!r} in the selection; edges in this "
                                     f"allowlist: {', '.join(known)}")
            if e in want[:i]:
                raise AllowlistError(f"edge {e!r} selected twice; name each edge once")
        if warn:
            left = [e for e in known if e not in want]
            if left:
                warnings.warn(
                    f"allowing only edges {', '.join(want)}: Twilio asks you to allow ALL edges "
                    f"(calls can arrive through any); left out: {', '.join(left)}",
                    AllEdgesWarning, stacklevel=2)
        keep: set[Optional[str]] = set(want)
        meta = dict(self.meta, selected_edges=want)
        keep.add(None)
        values = self._table.values
        kept = list(compress(values, map(keep.__contains__, map(itemgetter(1), values))))
        return Allowlist._from_table(_table_of(kept), {r: list(p) for r, p in self.ports.items()},
                                     meta, dict(self.carriers))

    def to_dict(self) -> dict:
        """Plain data for JSON: meta, ports, ranges (edge None -> null)."""
        return {
            "meta": self.meta,
            "ports": {r: [str(p) for p in ps] for r, ps in self.ports.items()},
            "ranges": [{"role": e.role, "edge": e.edge, "prefix": str(e.network)}
                       for e in self.entries],
        }
