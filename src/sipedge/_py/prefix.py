"""Longest-prefix-match table: the pure-Python twin of ``sipedge._prefix``.

Both implementations share :func:`sipedge.intervals.flatten`, which turns CIDR
blocks (nested or disjoint, never partly overlapping) into disjoint ranges
sorted by start, each with the value of the most specific block that covers
it. A lookup is then one binary search. On two entries for the same network
the first one wins.
"""
from __future__ import annotations

import ipaddress
from array import array
from bisect import bisect_right
from typing import Any, Iterable, Sequence, Tuple, Union

from ..errors import AddressError
from ..intervals import blocks_of, flatten  # noqa: F401  (shared with sipedge._prefix)

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[str, bytes, ipaddress.IPv4Address, ipaddress.IPv6Address]
Range = Tuple[int, int, int]  # (lo, hi, value index)


def parse_address(addr: Address) -> Tuple[int, int]:
    """(version, integer) of an address given as text, packed bytes or object."""
    if isinstance(addr, str):
        if ":" not in addr:
            # ipaddress accepts the same dotted quads as the C parser
            try:
                return 4, int(ipaddress.IPv4Address(addr))
            except ValueError:
                pass
        elif "%" not in addr:  # a scope id (fe80::1%eth0) is not an address to match
            try:
                return 6, int(ipaddress.IPv6Address(addr))
            except ValueError:
                pass
        raise AddressError(f"{addr!r} is not an IPv4 or IPv6 address")
    if isinstance(addr, (bytes, bytearray, memoryview)):
        b = bytes(addr)
        if len(b) == 4:
            return 4, int.from_bytes(b, "big")
        if len(b) == 16:
            return 6, int.from_bytes(b, "big")
        raise AddressError(f"a packed address is 4 or 16 bytes, not {len(b)}")
    if isinstance(addr, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return addr.version, int(addr)
    raise AddressError(f"{addr!r} is not an IPv4 or IPv6 address")


class PrefixTable:
    """Longest-prefix match of addresses against (network, value) entries."""

    __slots__ = ("_lo4", "_r4", "_lo6", "_r6", "_values")

    def __init__(self, entries: Iterable[Tuple[Network, Any]] = ()) -> None:
        r4, r6, values = blocks_of(entries)
        self._r4 = r4
        self._r6 = r6
        self._lo4 = [r[0] for r in r4]
        self._lo6 = [r[0] for r in r6]
        self._values = values

    def _index(self, addr: Address) -> int:
        version, a = parse_address(addr)
        los, ranges = (self._lo4, self._r4) if version == 4 else (self._lo6, self._r6)
        i = bisect_right(los, a) - 1
        if i >= 0 and a <= ranges[i][1]:
            return ranges[i][2]
        return -1

    @classmethod
    def from_ranges(cls, lo4: bytes, hi4: bytes, val4: bytes, lo6: bytes, hi6: bytes,
                    val6: bytes, values: list) -> "PrefixTable":
        """A table from flattened ranges as :meth:`dump` gives them (no flattening)."""
        def arr(code: str, b: bytes, what: str) -> list:
            if type(b) is not bytes:
                raise TypeError(f"{what} must be bytes, not {type(b).__name__}")
            a = array(code)
            if len(b) % a.itemsize:
                raise ValueError(f"{what} holds {len(b)} bytes, not a multiple of {a.itemsize}")
            a.frombytes(b)
            return a.tolist()

        l4, h4, v4 = arr("I", lo4, "lo4"), arr("I", hi4, "hi4"), arr("i", val4, "val4")
        l6, h6, v6 = arr("Q", lo6, "lo6"), arr("Q", hi6, "hi6"), arr("i", val6, "val6")
        if not (len(l4) == len(h4) == len(v4) and len(l6) == len(h6) == 2 * len(v6)):
            raise ValueError("range arrays of different lengths")
        r4 = list(zip(l4, h4, v4))
        r6 = [((l6[2 * i] << 64) | l6[2 * i + 1], (h6[2 * i] << 64) | h6[2 * i + 1], v6[i])
              for i in range(len(v6))]
        for rs in (r4, r6):
            for i, (lo, hi, v) in enumerate(rs):
                if lo > hi or not 0 <= v < len(values) or (i and lo <= rs[i - 1][1]):
                    raise ValueError("prefix table ranges are out of order, overlap, "
                                     "or have a bad value")
        self = cls.__new__(cls)
        self._r4, self._r6 = r4, r6
        self._lo4 = [r[0] for r in r4]
        self._lo6 = [r[0] for r in r6]
        self._values = list(values)
        return self

    def dump(self) -> Tuple[bytes, bytes, bytes, bytes, bytes, bytes]:
        """(lo4, hi4, val4, lo6, hi6, val6) as bytes in native byte order: uint32
        for IPv4 bounds, two uint64 (high, low) per IPv6 bound, int32 values."""
        m = (1 << 64) - 1
        r4, r6 = self._r4, self._r6
        return (array("I", [r[0] for r in r4]).tobytes(), array("I", [r[1] for r in r4]).tobytes(),
                array("i", [r[2] for r in r4]).tobytes(),
                array("Q", [x for r in r6 for x in (r[0] >> 64, r[0] & m)]).tobytes(),
                array("Q", [x for r in r6 for x in (r[1] >> 64, r[1] & m)]).tobytes(),
                array("i", [r[2] for r in r6]).tobytes())

    def get(self, addr: Address) -> Any:
        """The value of the most specific entry covering *addr*, else None (one argument)."""
        i = self._index(addr)
        return None if i < 0 else self._values[i]

    def lookup(self, addr: Address, default: Any = None) -> Any:
        """The value of the most specific entry covering *addr*, else *default*."""
        i = self._index(addr)
        return default if i < 0 else self._values[i]

    def __contains__(self, addr: Address) -> bool:
        return self._index(addr) >= 0

    def __len__(self) -> int:
        return len(self._values)

    def ranges(self, version: int) -> Sequence[Range]:
        """The flattened (lo, hi, value index) ranges of one family."""
        return list(self._r4 if version == 4 else self._r6)

    @property
    def values(self) -> list[Any]:
        return list(self._values)
