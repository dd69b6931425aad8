"""Difference of two sorted sets of fixed-size big-endian records (pure Python twin).

*a* and *b* are concatenations of *rec*-byte records in strictly ascending
byte order (the firewall packs intervals that way, see
``sipedge.firewall.desired.pack_intervals``). Returns the records only in
*a* and those only in *b*, each packed and ascending.
"""
from __future__ import annotations


def _records(data: bytes, rec: int, which: str) -> list:
    out = [bytes(data[i:i + rec]) for i in range(0, len(data), rec)]
    for i in range(1, len(out)):
        if out[i - 1] >= out[i]:
            raise ValueError(f"input {which} is not strictly ascending")
    return out


def sorted_diff(a: bytes, b: bytes, rec: int) -> tuple:
    """(records only in *a*, records only in *b*) of two strictly ascending packed sets."""
    if rec <= 0 or len(a) % rec or len(b) % rec:
        raise ValueError(f"record size {rec} does not divide the inputs ({len(a)}, {len(b)} bytes)")
    ra, rb = _records(a, rec, "a"), _records(b, rec, "b")
    sb = set(rb)
    sa = set(ra)
    return (b"".join(r for r in ra if r not in sb), b"".join(r for r in rb if r not in sa))
