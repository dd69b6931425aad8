"""Allowlist: which address ranges are trusted for which role (signaling, media).

The embedded default dataset (``data/twilio.toml``) holds Twilio's published
ranges with their source and the date they were read. A user file in the same
TOML format can extend it (``[dataset] extends = "twilio"``), replace it (the
default for a user file: only what the file lists), or add other carriers with
their own roles and ports. See ``contrib/`` and ``sipedge allowlist --help``.

File format::

    [dataset]                      # optional
    name = "my-sbc"
    version = "1"
    extends = "twilio"             # start from the embedded Twilio dataset

    [roles.carrierx]               # a role: the ports its traffic uses
    ports = ["5060/udp", "5060/tcp", "5061/tcp"]
    carrier = "carrierx"           # "twilio": edges must be Twilio edge names

    [[ranges]]
    role = "carrierx"
    edge = "east"                  # "*" (or absent): every edge
    prefixes = ["198.51.100.0/24", "2001:db8::/32"]

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
import re
import socket
import sys
import warnings
from array import array
from dataclasses import dataclass
from importlib import resources
from itertools import accumulate, compress, islice, repeat
from operator import add, and_, eq, gt, itemgetter, lshift, ne, or_, rshift, sub, xor
from typing import Iterable, Iterator, NamedTuple, Optional, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from . import _files, _impl, catalog
from .errors import AllowlistError

_prefix = _impl.load("prefix")

__all__ = ["Allowlist", "Match", "Entry", "PortRange", "parse_ports", "ALL_EDGES",
           "AllEdgesWarning"]

#: How a range for every edge is written in a file; in Python it is ``edge=None``.
ALL_EDGES = "*"
PROTOCOLS = ("udp", "tcp")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_EDGE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$")
_TOP_KEYS = ("dataset", "roles", "ranges")
_DATASET_KEYS = ("name", "version", "source", "read", "extends")
_ROLE_KEYS = ("ports", "carrier", "description")
_RANGE_KEYS = ("role", "edge", "prefixes", "note")
EMBEDDED = "<embedded twilio.toml>"


class AllEdgesWarning(UserWarning):
    """An allowlist was narrowed to some edges; Twilio asks to allow all of them."""


class Match(NamedTuple):
    """Where an address is trusted: role, edge (None: every edge) and prefix."""

    role: str
    edge: Optional[str]
    prefix: str


@dataclass(frozen=True)
class PortRange:
    low: int
    high: int
    proto: str  # "udp" | "tcp" (TLS is tcp)

    def __str__(self) -> str:
        ports = str(self.low) if self.low == self.high else f"{self.low}-{self.high}"
        return f"{ports}/{self.proto}"


@dataclass(frozen=True)
class Entry:
    role: str
    edge: Optional[str]  # None: every edge
    network: ipaddress.IPv4Network | ipaddress.IPv6Network


def _is_decimal(text: str) -> bool:
    """ASCII digits only (str.isdigit also takes '²' and other scripts' digits)."""
    return text.isascii() and text.isdigit()


def parse_ports(spec: str, where: str = "") -> PortRange:
    """``"5060/udp"`` or ``"10000-60000/udp"`` -> PortRange."""
    if not isinstance(spec, str):
        raise AllowlistError(f"{where}port spec {spec!r} is not a string: write \"5060/udp\"")
    ports, slash, proto = spec.partition("/")
    low_s, _, high_s = ports.partition("-")
    if not slash or not _is_decimal(low_s) or not _is_decimal(high_s or low_s):
        raise AllowlistError(
            f"{where}bad port spec {spec!r}: write PORT/PROTO or LOW-HIGH/PROTO, e.g. 5060/udp")
    low, high = int(low_s), int(high_s or low_s)
    if proto not in PROTOCOLS:
        raise AllowlistError(f"{where}bad protocol in {spec!r}: use udp or tcp (TLS is tcp)")
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise AllowlistError(f"{where}port out of range in {spec!r}: ports are 1-65535")
    if low > high:
        raise AllowlistError(f"{where}port range {spec!r} is backwards: write {high}-{low}/{proto}")
    return PortRange(low, high, proto)


# ------------------------------------------------------------------ file parsing
class _Source:
    """The text of a file, to say which line a value came from."""

    def __init__(self, text: str, name: str) -> None:
        self.text = text
        self.name = name
        self._lines: Optional[list[str]] = None
        self._headers: Optional[list] = None

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = self.text.splitlines()
        return self._lines

    def header(self, pattern: str, nth: int = 0) -> Optional[int]:
        """0-based line of the *nth* table header matching *pattern*."""
        if self._headers is None:  # one pass over the file, only lines opening a table
            self._headers = [(i, line) for i, line in enumerate(self.lines)
                             if line.lstrip().startswith("[")]
        rx = re.compile(r"^\s*" + pattern + r"\s*(#.*)?$")
        k = 0
        for i, line in self._headers:
            if rx.match(line):
                if k == nth:
                    return i
                k += 1
        return None

    def line_of(self, value, start: Optional[int], fallback: bool = True) -> Optional[int]:
        """1-based line of *value* (a quoted string or a key) at or after line *start*."""
        if start is None:
            return None
        needles = ([f'"{value}"', f"'{value}'"] if isinstance(value, str) else [str(value)])
        for i in range(start, len(self.lines)):
            if any(n in self.lines[i] for n in needles):
                return i + 1
        return start + 1 if fallback else None

    def line_of_key(self, key: str, start: Optional[int]) -> Optional[int]:
        """1-based line where *key* is assigned, at or after line *start*."""
        if start is None:
            return None
        rx = re.compile(r"^\s*[\"']?" + re.escape(key) + r"[\"']?\s*=")
        for i in range(start, len(self.lines)):
            if rx.match(self.lines[i]):
                return i + 1
        return start + 1

    def where(self, line: Optional[int]) -> str:
        return f"{self.name}:{line}: " if line else f"{self.name}: "

    def ranges_block(self, k: int) -> Optional[int]:
        return self.header(r"\[\[\s*ranges\s*\]\]", k)

    def role_block(self, name: str) -> Optional[int]:
        return self.header(r"\[\s*roles\s*\.\s*[\"']?" + re.escape(name) + r"[\"']?\s*\]")


def _check_keys(src: _Source, table: dict, allowed: Sequence[str], what: str,
                start: Optional[int]) -> None:
    for key in table:
        if key not in allowed:
            line = src.line_of_key(key, start)
            raise AllowlistError(f"{src.where(line)}unknown key {key!r} in {what}; "
                                 f"valid keys: {', '.join(allowed)}")


def _strict_network(p, src: _Source, line: Optional[int]):
    where = src.where(line)
    if not isinstance(p, str):
        raise AllowlistError(f"{where}prefix {p!r} is not a string: write \"192.0.2.0/24\"")
    try:
        return ipaddress.ip_network(p)
    except ValueError as e:
        try:
            loose = ipaddress.ip_network(p, strict=False)
        except ValueError:
            raise AllowlistError(
                f"{where}bad prefix {p!r} ({e}): write an IPv4 or IPv6 network such as "
                "192.0.2.0/24 or 2001:db8::/32") from None
        host = p.split("/")[0]
        full = 32 if loose.version == 4 else 128
        raise AllowlistError(
            f"{where}prefix {p!r} has host bits set: did you mean the network {loose} "
            f"or the single host {host}/{full}?") from None


class _Parsed(NamedTuple):
    entries: list
    ports: dict
    carriers: dict
    meta: dict


def _parse(text: str, source: str, base: Optional[_Parsed] = None) -> _Parsed:
    src = _Source(text, source)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise AllowlistError(f"{source}: not valid TOML: {e}; check quotes, commas and brackets") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise AllowlistError(f"{source}: arrays or tables nested too deeply for an allowlist; "
                             "an allowlist needs only a few levels (roles.NAME.ports = [...])") from None
    _check_keys(src, doc, _TOP_KEYS, "the top level", 0)

    dataset = doc.get("dataset", {})
    if not isinstance(dataset, dict):
        raise AllowlistError(f"{source}: 'dataset' must be a table: [dataset]")
    _check_keys(src, dataset, _DATASET_KEYS, "[dataset]", src.header(r"\[\s*dataset\s*\]"))
    meta = {k: v for k, v in dataset.items()}

    extends = dataset.get("extends")
    if extends is not None:
        if extends != "twilio":
            line = src.line_of(extends, src.header(r"\[\s*dataset\s*\]"))
            raise AllowlistError(f"{src.where(line)}extends = {extends!r}: only \"twilio\" "
                                 "(the embedded dataset) can be extended; remove it to replace")
        if base is None:
            base = _embedded()
        meta["extends"] = {"name": base.meta.get("name"), "version": base.meta.get("version")}
    else:
        base = None

    ports: dict = dict(base.ports) if base else {}
    carriers: dict = dict(base.carriers) if base else {}
    roles = doc.get("roles", {})
    if not isinstance(roles, dict):
        raise AllowlistError(f"{source}: 'roles' must be tables: [roles.signaling]")
    for name, spec in roles.items():
        start = src.role_block(name)
        where = src.where(start + 1 if start is not None else None)
        if not isinstance(spec, dict):
            raise AllowlistError(f"{where}role {name!r} must be a table: [roles.{name}]")
        if not _NAME.match(name):
            raise AllowlistError(f"{where}bad role name {name!r}: use a lower-case letter then "
                                 "letters, digits or '_' (at most 32), e.g. carrierx_signaling")
        _check_keys(src, spec, _ROLE_KEYS, f"[roles.{name}]", start)
        specs = spec.get("ports")
        if not isinstance(specs, list) or not specs:
            if "ports" in spec:
                where = src.where(src.line_of_key("ports", start))
            raise AllowlistError(f"{where}role {name!r} has no ports: add e.g. "
                                 "ports = [\"5060/udp\", \"5061/tcp\"]")
        prs: list = []
        for p in specs:
            pwhere = src.where(src.line_of(p, start))
            pr = parse_ports(p, pwhere)
            if pr in prs:
                raise AllowlistError(f"{pwhere}duplicate port {p!r} in role {name!r}: list it once")
            prs.append(pr)
        carrier = spec.get("carrier", "")
        if base is not None and name in base.ports:
            if prs != base.ports[name] or carrier != base.carriers.get(name, ""):
                raise AllowlistError(
                    f"{where}duplicate role name {name!r}: the twilio dataset already defines it "
                    f"with ports {', '.join(map(str, base.ports[name]))}; give your role another "
                    f"name (e.g. {name}_2) or drop 'extends' to replace the dataset")
        ports[name] = prs
        carriers[name] = carrier

    ranges = doc.get("ranges", [])
    if not isinstance(ranges, list):
        raise AllowlistError(f"{source}: 'ranges' must be an array of tables: [[ranges]]")
    entries: list = list(base.entries) if base else []
    seen: dict = {(e.role, e.network): (None, None, e.edge) for e in entries}
    for k, r in enumerate(ranges):
        start = src.ranges_block(k)
        hwhere = src.where(start + 1 if start is not None else None)
        if not isinstance(r, dict):
            raise AllowlistError(f"{hwhere}each range must be a table: [[ranges]]")
        _check_keys(src, r, _RANGE_KEYS, "[[ranges]]", start)
        role = r.get("role")
        if role not in ports:
            line = src.line_of(role, start) if isinstance(role, str) else (start + 1 if start is not None else None)
            raise AllowlistError(
                f"{src.where(line)}unknown role {role!r}; roles defined: {', '.join(ports) or 'none'} "
                f"(declare it with [roles.{role if isinstance(role, str) else 'NAME'}] and its ports)")
        edge = r.get("edge", ALL_EDGES)
        if not isinstance(edge, str) or not (edge == ALL_EDGES or _EDGE_NAME.match(edge)):
            line = src.line_of(edge, start)
            raise AllowlistError(f"{src.where(line)}bad edge {edge!r}: a lower-case name such as "
                                 "'ashburn', or \"*\" for every edge")
        if carriers.get(role) == "twilio" and edge != ALL_EDGES:
            e = catalog.EDGES.get(edge)
            if e is None or not e.sip_trunking:
                line = src.line_of(edge, start)
                valid = ", ".join(n for n, x in catalog.EDGES.items() if x.sip_trunking)
                raise AllowlistError(f"{src.where(line)}unknown Twilio edge {edge!r} for role "
                                     f"{role!r}; valid edges: {valid}, or \"*\"")
        prefixes = r.get("prefixes")
        if not isinstance(prefixes, list) or not prefixes:
            line = src.line_of_key("prefixes", start) if "prefixes" in r else (start + 1 if start is not None else None)
            raise AllowlistError(f"{src.where(line)}range of role {role!r} has no prefixes: add "
                                 "e.g. prefixes = [\"192.0.2.0/24\"] or delete the range")
        edge_v = None if edge == ALL_EDGES else edge
        for p in prefixes:
            try:
                net = ipaddress.ip_network(p) if isinstance(p, str) else None
            except ValueError:
                net = None
            if net is None:
                _strict_network(p, src, src.line_of(p, start))
            key = (role, net)
            if key in seen:
                first_k, first_p, first_edge = seen[key]
                if first_k is None:
                    where_first = "in the twilio dataset"
                    line = src.line_of(p, start)
                else:
                    first_line = src.line_of(first_p, src.ranges_block(first_k))
                    where_first = f"at line {first_line}"
                    # in the same block the repeat is below the first occurrence
                    if first_k == k and first_line:
                        line = src.line_of(p, first_line, fallback=False) or first_line
                    else:
                        line = src.line_of(p, start)
                raise AllowlistError(
                    f"{src.where(line)}duplicate prefix {p!r} in role {role!r}: already listed "
                    f"{where_first} (edge {first_edge or ALL_EDGES}); list each network once per role")
            seen[key] = (k, p, edge_v)
            entries.append(Entry(role, edge_v, net))
    if not entries:
        raise AllowlistError(f"{source}: the allowlist has no ranges: add a [[ranges]] table "
                             "with a role and prefixes, or set extends = \"twilio\" under [dataset]")
    return _Parsed(entries, ports, carriers, meta)


_EMBEDDED: Optional[_Parsed] = None


def _embedded_text() -> str:
    return resources.files("sipedge").joinpath("data/twilio.toml").read_text("utf-8")


def _embedded() -> _Parsed:
    global _EMBEDDED
    if _EMBEDDED is None:
        _EMBEDDED = _parse(_embedded_text(), EMBEDDED)
    return _EMBEDDED


# ------------------------------------------------------------ firewall merging
# A role's firewall set is the union of its prefixes, overlapping and adjacent
# ones merged. It is computed on integers, a whole column at a time (map,
# compress, accumulate run in C): 100,000 prefixes take milliseconds, not the
# second that ipaddress objects take.
_MASK = {4: [(1 << (32 - p)) - 1 for p in range(33)], 6: [(1 << (128 - p)) - 1 for p in range(129)]}
_ONES = repeat(1)


def _cidrs(lo: int, hi: int, bits: int) -> Iterator[tuple[int, int]]:
    """The fewest CIDR blocks (first address, prefix length) covering lo..hi exactly."""
    while lo <= hi:
        size = (lo & -lo) if lo else 1 << bits  # the largest block aligned at lo
        while lo + size - 1 > hi:
            size >>= 1
        yield lo, bits - size.bit_length() + 1
        lo += size


def _cidr_count(starts: list, ends: list) -> int:
    """How many CIDR blocks :func:`_cidrs` splits the half-open spans into, summed.

    With m the highest bit where start and end differ and c the end with the
    bits below m cleared, [start, c) takes popcount(c - start) blocks and
    [c, end) popcount(end - c): the greedy split from the start, counted.
    """
    if not starts:
        return 0
    m = list(map(int.bit_length, map(xor, starts, ends)))
    m = list(map(sub, m, repeat(1, len(m))))
    c = list(map(lshift, map(rshift, ends, m), m))
    return (sum(map(int.bit_count, map(sub, c, starts)))
            + sum(map(int.bit_count, map(sub, ends, c))))


class _Spans(NamedTuple):
    """Merged spans of one role and IP version: half-open [starts[i], ends[i])."""

    starts: list
    ends: list
    count: int  # CIDR blocks the spans split into (the collapsed networks)


def _spans(starts: list, ends: list) -> _Spans:
    return _Spans(starts, ends, _cidr_count(starts, ends))


def _merge_sorted(lo: list, hi: list) -> tuple[list, list]:
    """Half-open merged spans of blocks [lo, hi] (inclusive) sorted by lo, then hi."""
    if not lo:
        return [], []
    top = list(accumulate(hi, max))  # the furthest end so far
    # block i opens a new span when it starts after the furthest end so far + 1
    new = [True]
    new += map(gt, islice(lo, 1, None), map(add, top, _ONES))
    starts = list(compress(lo, new))
    last = list(compress(top, islice(new, 1, None)))  # each span ends before the next opens
    last.append(top[-1])
    return starts, list(map(add, last, _ONES))


def _blocks_from_text(prefixes: list, version: int) -> tuple[list, list]:
    """(lo, hi) columns of canonical ``str(network)`` prefixes of one version, sorted."""
    if not prefixes:
        return [], []
    parts = "/".join(prefixes).split("/")
    if version == 4:
        a = array("I")
        a.frombytes(b"".join(map(socket.inet_aton, parts[0::2])))
        if sys.byteorder == "little":
            a.byteswap()
        lo = a.tolist()
        bits = 32
    else:
        packed = list(map(socket.inet_pton, repeat(socket.AF_INET6, len(prefixes)), parts[0::2]))
        lo = list(map(int.from_bytes, packed, repeat("big", len(packed))))
        bits = 128
    hi = list(map(or_, lo, map(_MASK[version].__getitem__, map(int, parts[1::2]))))
    # one sort of (lo << bits | hi) integers orders by start, then end
    keys = sorted(map(or_, map(lshift, lo, repeat(bits, len(lo))), hi))
    mask = (1 << bits) - 1
    return (list(map(rshift, keys, repeat(bits, len(keys)))),
            list(map(and_, keys, repeat(mask, len(keys)))))


def _role_spans_exact(values: Sequence[Match], role: str) -> tuple[_Spans, _Spans]:
    """Merged v4 and v6 spans of *role* from its prefixes' text (always exact)."""
    mine = list(compress(map(itemgetter(2), values), map(role.__eq__, map(itemgetter(0), values))))
    v6 = [p for p in mine if ":" in p]
    v4 = [p for p in mine if ":" not in p] if v6 else mine
    return (_spans(*_merge_sorted(*_blocks_from_text(v4, 4))),
            _spans(*_merge_sorted(*_blocks_from_text(v6, 6))))


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


def _pack_spans(sp: _Spans, version: int) -> bytes:
    """Spans as big-endian (first, last) address pairs, 8 bytes (v4) or 32 (v6) each:
    the form the firewall diffs (``sipedge.firewall.desired.pack_intervals``)."""
    if version == 4:
        flat = [0] * (2 * len(sp.starts))
        flat[0::2] = sp.starts
        flat[1::2] = map(sub, sp.ends, repeat(1, len(sp.ends)))
        a = array("I", flat)
        if sys.byteorder == "little":
            a.byteswap()
        return a.tobytes()
    return b"".join(s.to_bytes(16, "big") + (e - 1).to_bytes(16, "big")
                    for s, e in zip(sp.starts, sp.ends))


def _unpack_spans(data: bytes, count: int, version: int) -> _Spans:
    if version == 4:
        a = array("I")
        a.frombytes(data)
        if sys.byteorder == "little":
            a.byteswap()
        flat = a.tolist()
        return _Spans(flat[0::2], list(map(add, flat[1::2], _ONES)), count)
    pairs = [int.from_bytes(data[i:i + 16], "big") for i in range(0, len(data), 16)]
    return _Spans(pairs[0::2], list(map(add, pairs[1::2], _ONES)), count)


def _networks_of(sp: _Spans, version: int) -> list:
    cls, bits = (ipaddress.IPv4Network, 32) if version == 4 else (ipaddress.IPv6Network, 128)
    return [cls((a, plen)) for lo, end in zip(sp.starts, sp.ends) for a, plen in _cidrs(lo, end - 1, bits)]


def _role_spans_all(table, roles: Sequence[str]) -> dict:
    """{role: (v4 _Spans, v6 _Spans)} of every role, read off the flattened table.

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
            fams.append(_spans(*_merge_sorted(lo, hi)))
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

    # -- construction -----------------------------------------------------------------
    @classmethod
    def twilio(cls) -> "Allowlist":
        """The embedded Twilio dataset (see ``meta`` for its source, version and date)."""
        p = _embedded()
        return cls(p.entries, p.ports, p.meta, p.carriers)

    @classmethod
    def load(cls, path: str) -> "Allowlist":
        """An allowlist TOML file, or a compiled snapshot (see :meth:`save_snapshot`)."""
        # a FIFO, device or directory is refused at once, a huge file by its size
        data = _files.read_regular(path, "allowlist", AllowlistError)
        from . import snapshot

        if data.startswith(snapshot.MAGIC):
            return snapshot.loads(data, path)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise AllowlistError(f"{path}: not UTF-8 text at byte {e.start}: save the file as UTF-8") from None
        return cls.from_toml(text, path)

    @classmethod
    def from_toml(cls, text: str, source: str = "<string>") -> "Allowlist":
        p = _parse(text, source)
        al = cls(p.entries, p.ports, p.meta, p.carriers)
        al.meta.setdefault("source_file", source)
        return al

    @classmethod
    def load_snapshot(cls, path: str, source: Optional[str] = None) -> "Allowlist":
        """A compiled snapshot; refused when corrupt or stale (see :mod:`sipedge.snapshot`)."""
        from . import snapshot

        return snapshot.load(path, source)

    def save_snapshot(self, path: str, source: Optional[str] = None) -> None:
        """Write a compiled snapshot (msgpack) that :meth:`load` reads back fast."""
        from . import snapshot

        snapshot.save(self, path, source)

    # -- queries ----------------------------------------------------------------------
    def match(self, addr) -> Optional[Match]:  # replaced per instance by the table's get
        """Role, edge and prefix of the most specific range holding *addr*, or None."""
        return self._table.get(addr)

    def __contains__(self, addr) -> bool:
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

    def spans(self, role: str, version: int) -> "_Spans":
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
                    cache[r] = (_unpack_spans(p4, n4, 4), _unpack_spans(p6, n6, 6))
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
            return _Spans([], [], 0)
        sp = got[0] if version == 4 else got[1]
        return _Spans(list(sp.starts), list(sp.ends), sp.count)  # copies: the cache stays intact

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
        return _pack_spans(sp, version), sp.count

    @property
    def roles(self) -> list[str]:
        return list(self.ports)

    @property
    def edges(self) -> list[str]:
        """The edge names that have ranges of their own, in file order."""
        seen: dict = {}
        for e in self.entries:
            if e.edge is not None:
                seen.setdefault(e.edge, None)
        return list(seen)

    def select(self, edges: Iterable[str], warn: bool = True) -> "Allowlist":
        """Only the ranges of *edges* (and those of every edge, ``edge=None``).

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
        keep = set(want)
        meta = dict(self.meta, selected_edges=want)
        return Allowlist([e for e in self.entries if e.edge is None or e.edge in keep],
                         self.ports, meta, self.carriers)

    def to_dict(self) -> dict:
        """Plain data for JSON: meta, ports, ranges (edge None -> null)."""
        return {
            "meta": self.meta,
            "ports": {r: [str(p) for p in ps] for r, ps in self.ports.items()},
            "ranges": [{"role": e.role, "edge": e.edge, "prefix": str(e.network)}
                       for e in self.entries],
        }
