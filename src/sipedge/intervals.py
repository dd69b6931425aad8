"""The one home of sipedge's address-interval arithmetic.

Addresses are plain integers (IPv4 32 bits, IPv6 128 bits); an interval is
half-open, ``[start, end)``. Everything that turns prefixes into firewall sets
uses these functions: the allowlist (merged spans of a role, computed a whole
column at a time with ``map``/``compress``/``accumulate`` so 100,000 prefixes
take milliseconds), the firewall's desired state and its backends (packed
form, CIDR blocks for ipset, text for ``plan``).

- split: :func:`cidrs` (the fewest CIDR blocks covering an interval),
  :func:`cidr_count` (how many blocks, without building them)
- merge: :func:`merge_sorted` (inclusive blocks sorted by start -> merged
  spans), :func:`merge_networks` (ipaddress networks -> merged intervals)
- pack: :func:`pack_columns` / :func:`unpack_columns` and
  :func:`pack_intervals` / :func:`unpack_intervals`: big-endian (first, last)
  address pairs, 8 bytes (v4) or 32 (v6) each, the form the firewall diffs
- :class:`Spans`: merged spans of one role and IP version with their block count
- :func:`interval_text`: ``192.0.2.0/24`` or ``first-last``
- flatten: :func:`blocks_of` (networks -> inclusive blocks) and :func:`flatten`
  (nested blocks -> disjoint ranges, the most specific value each): how both
  prefix tables (``sipedge._prefix`` and its twin) are built
"""
from __future__ import annotations

import ipaddress
import sys
from array import array
from itertools import accumulate, compress, islice, repeat
from operator import add, gt, lshift, rshift, sub, xor
from typing import Any, Iterable, NamedTuple, Tuple, Union

from .errors import AddressError

__all__ = ["BITS", "MASKS", "Spans", "cidrs", "cidr_count", "spans", "merge_sorted",
           "merge_networks", "pack_columns", "unpack_columns", "pack_intervals",
           "unpack_intervals", "interval_text", "flatten", "blocks_of"]

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Range = Tuple[int, int, int]  # (lo, hi, value index), inclusive

#: address width of each IP version
BITS = {4: 32, 6: 128}
#: host-bit masks by prefix length: ``MASKS[version][plen]``
MASKS = {4: [(1 << (32 - p)) - 1 for p in range(33)], 6: [(1 << (128 - p)) - 1 for p in range(129)]}
_ONES = repeat(1)


def cidrs(start: int, end: int, family: int) -> list[tuple[int, int]]:
    """The fewest CIDR blocks (address, prefix length) exactly covering [start, end)."""
    bits = BITS[family]
    size = end - start
    if size <= 0:
        return []
    if size & (size - 1) == 0 and start % size == 0:  # the usual case: one block
        return [(start, bits - size.bit_length() + 1)]
    out = []
    while start < end:
        size = (start & -start) if start else 1 << bits  # the largest block aligned at start
        while size > end - start:
            size >>= 1
        out.append((start, bits - size.bit_length() + 1))
        start += size
    return out


def cidr_count(starts: list[int], ends: list[int]) -> int:
    """How many CIDR blocks :func:`cidrs` splits the half-open spans into, summed.

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


class Spans(NamedTuple):
    """Merged spans of one role and IP version: half-open [starts[i], ends[i])."""

    starts: list
    ends: list
    count: int  # CIDR blocks the spans split into (the collapsed networks)


def spans(starts: list[int], ends: list[int]) -> Spans:
    """:class:`Spans` of merged half-open spans, their CIDR count computed."""
    return Spans(starts, ends, cidr_count(starts, ends))


def merge_sorted(lo: list[int], hi: list[int]) -> tuple[list[int], list[int]]:
    """Half-open merged spans of blocks [lo, hi] (inclusive) sorted by lo, then hi.
    Overlapping and adjacent blocks are joined."""
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


def merge_networks(nets: Iterable, family: int) -> tuple:
    """Sorted, merged half-open intervals covering the ipaddress networks *nets*
    of version *family* (the others are skipped; adjacent ones joined)."""
    blocks = sorted((int(n.network_address), int(n.broadcast_address))
                    for n in nets if n.version == family)
    starts, ends = merge_sorted([b[0] for b in blocks], [b[1] for b in blocks])
    return tuple(zip(starts, ends))


def pack_columns(starts: list[int], ends: list[int], family: int) -> bytes:
    """Half-open spans as big-endian (first, last) address pairs, 8 bytes (v4) or
    32 (v6) each. Sorted spans give sorted records, so equal states give equal
    bytes and a diff can work on 64-bit integers (v4) instead of tuples."""
    if family == 4:
        flat = [0] * (2 * len(starts))
        flat[0::2] = starts
        flat[1::2] = map(sub, ends, repeat(1, len(ends)))
        a = array("I", flat)
        if sys.byteorder == "little":
            a.byteswap()
        return a.tobytes()
    return b"".join(s.to_bytes(16, "big") + (e - 1).to_bytes(16, "big")
                    for s, e in zip(starts, ends))


def unpack_columns(data: bytes, family: int) -> tuple[list[int], list[int]]:
    """(starts, ends) of the half-open spans packed by :func:`pack_columns`."""
    if family == 4:
        a = array("I")
        a.frombytes(data)
        if sys.byteorder == "little":
            a.byteswap()
        flat = a.tolist()
        return flat[0::2], list(map(add, flat[1::2], _ONES))
    pairs = [int.from_bytes(data[i:i + 16], "big") for i in range(0, len(data), 16)]
    return pairs[0::2], list(map(add, pairs[1::2], _ONES))


def pack_intervals(intervals: Iterable[tuple[int, int]], family: int) -> bytes:
    """:func:`pack_columns` of ``(start, end)`` pairs."""
    ivs = list(intervals)
    return pack_columns([s for s, _ in ivs], [e for _, e in ivs], family)


def unpack_intervals(data: bytes, family: int) -> tuple:
    """The ``(start, end)`` pairs of :func:`pack_intervals`' bytes."""
    return tuple(zip(*unpack_columns(data, family)))


def interval_text(start: int, end: int, family: int) -> str:
    """``192.0.2.0/24`` for a CIDR-aligned interval, else ``first-last``."""
    cls = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
    blocks = cidrs(start, end, family)
    if len(blocks) == 1:
        return f"{cls(blocks[0][0])}/{blocks[0][1]}"
    return f"{cls(start)}-{cls(end - 1)}"


def flatten(blocks: Iterable[Tuple[int, int, int]]) -> list[Range]:
    """Disjoint sorted ranges from (lo, hi, value) CIDR blocks of one family.

    Blocks are nested or disjoint. The most specific block wins; on equal
    blocks the first given wins. Adjacent ranges with one value are merged.
    """
    # one block per network, the first given wins; then by start, widest first
    seen: dict[Tuple[int, int], int] = {}
    for lo, hi, v in blocks:
        seen.setdefault((lo, hi), v)
    items = sorted(seen.items(), key=lambda kv: (kv[0][0], -kv[0][1]))
    out: list[Range] = []

    def emit(lo: int, hi: int, v: int) -> None:
        if lo > hi:
            return
        if out and out[-1][2] == v and out[-1][1] + 1 == lo:
            out[-1] = (out[-1][0], hi, v)
        else:
            out.append((lo, hi, v))

    stack: list[Tuple[int, int]] = []  # (hi, value) of open blocks, innermost last
    pos = 0  # first address not yet emitted
    for (lo, hi), v in items:
        while stack and stack[-1][0] < lo:
            top_hi, top_v = stack.pop()
            emit(pos, top_hi, top_v)
            pos = top_hi + 1
        if stack:
            emit(pos, lo - 1, stack[-1][1])
        stack.append((hi, v))
        pos = lo
    while stack:
        top_hi, top_v = stack.pop()
        emit(pos, top_hi, top_v)
        pos = top_hi + 1
    return out


def blocks_of(entries: Iterable[Tuple[Network, Any]]) -> tuple[list, list, list]:
    """Split (network, value) entries into v4 and v6 (lo, hi, index) blocks."""
    v4: list[Tuple[int, int, int]] = []
    v6: list[Tuple[int, int, int]] = []
    values: list[Any] = []
    for net, value in entries:
        if not isinstance(net, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            try:
                net = ipaddress.ip_network(net)
            except ValueError as e:
                raise AddressError(f"{net!r} is not an IP network: {e}") from None
        lo = int(net.network_address)
        block = (lo, lo | ((1 << (net.max_prefixlen - net.prefixlen)) - 1), len(values))
        (v4 if net.version == 4 else v6).append(block)
        values.append(value)
    return flatten(v4), flatten(v6), values
