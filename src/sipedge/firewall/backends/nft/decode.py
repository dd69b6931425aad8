"""Decoding what the kernel answers: set elements (by hand, fast), rules and
chains (pyroute2's classes, imported on first use), the table's owner mark."""
from __future__ import annotations

import struct
from typing import Dict, List, Optional, Tuple

from ...desired import TOP
from .encode import NFT_SET_ELEM_INTERVAL_END, _parse_attrs


def _pr():
    """pyroute2's nf_tables message classes, imported on first use (decoding the live table)."""
    from pyroute2.netlink.nfnetlink import nftsocket

    return nftsocket


#: how the kernel dumps a plain interval-set element: NFTA_LIST_ELEM{NFTA_SET_ELEM_KEY{
#: NFTA_DATA_VALUE key}} (+ NFTA_SET_ELEM_FLAGS on an end element); by key length
_KEY_HEAD = {klen: struct.pack("=HHHH", 8 + klen, 1, 4 + klen, 1) for klen in (4, 16)}
_FLAGS_HEAD = struct.pack("=HH", 8, 3)


def parse_elements(msgs: List[bytes]) -> List[Tuple[int, bool]]:
    """(key, is_end) of every element in GETSETELEM dump answers.

    The element shapes the kernel dumps for sipedge's sets are recognised by
    their fixed headers (a few byte comparisons per element); anything else
    goes through the generic attribute parser.
    """
    out = []
    append = out.append
    frombytes = int.from_bytes
    unpack = struct.unpack_from
    for m in msgs:
        top = _parse_attrs(m, 20, len(m))
        if 3 not in top:
            continue
        off, end = top[3]
        while off + 4 <= end:
            alen = m[off] | (m[off + 1] << 8)
            if alen < 4:
                break
            klen = alen - 12 if alen in (16, 28) else alen - 20 if alen in (24, 36) else 0
            head = _KEY_HEAD.get(klen)
            if head is not None and m[off + 4:off + 12] == head:
                key = frombytes(m[off + 12:off + 12 + klen], "big")
                if alen == 12 + klen:
                    append((key, False))
                    off += alen
                    continue
                if m[off + 12 + klen:off + 16 + klen] == _FLAGS_HEAD:
                    append((key, bool(unpack(">I", m, off + 16 + klen)[0] & NFT_SET_ELEM_INTERVAL_END)))
                    off += alen
                    continue
            ea = _parse_attrs(m, off + 4, off + alen)
            key = 0
            if 1 in ea:
                ka = _parse_attrs(m, *ea[1])
                if 1 in ka:
                    s, e = ka[1]
                    key = frombytes(m[s:e], "big")
            flags = 0
            if 3 in ea:
                flags = unpack(">I", m, ea[3][0])[0]
            append((key, bool(flags & NFT_SET_ELEM_INTERVAL_END)))
            off += (alen + 3) & ~3
    return out


def elements_to_intervals(elems: List[Tuple[int, bool]], family: int) -> tuple:
    """Pair interval start and end elements back into ``(start, end)`` intervals."""
    top = TOP[family]
    out, open_start = [], None
    for key, is_end in sorted(elems, key=lambda x: (x[0], not x[1])):
        if is_end:
            if open_start is not None:
                out.append((open_start, key))
                open_start = None
        else:
            if open_start is not None:  # a start without its end: ends where the next starts
                out.append((open_start, key))
            open_start = key
    if open_start is not None:
        out.append((open_start, top))
    return tuple(out)


# -- rules -----------------------------------------------------------------------------
_IGNORED = ("NFTA_COUNTER_BYTES", "NFTA_COUNTER_PACKETS", "NFTA_LOOKUP_SET_ID")


def _canon(v):
    if hasattr(v, "get") and isinstance(v.get("attrs", None), list):
        # the kernel answers attributes in its own order and adds empty flag sets
        return tuple(sorted((n, _canon(x)) for n, x in v["attrs"]
                            if n not in _IGNORED and x != frozenset()))
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, list):
        return tuple(_canon(x) for x in v)
    if isinstance(v, frozenset):
        return tuple(sorted(v))
    return v


def canon_rule(msg_bytes: bytes) -> tuple:
    m = _pr().nft_rule_msg(msg_bytes)
    m.decode()
    return _canon(m.get_attr("NFTA_RULE_EXPRESSIONS") or [])


def rule_counter(msg_bytes: bytes) -> Tuple[int, int]:
    m = _pr().nft_rule_msg(msg_bytes)
    m.decode()
    for e in m.get_attr("NFTA_RULE_EXPRESSIONS") or []:
        if e.get_attr("NFTA_EXPR_NAME") == "counter":
            d = e.get_attr("NFTA_EXPR_DATA")
            return d.get_attr("NFTA_COUNTER_PACKETS") or 0, d.get_attr("NFTA_COUNTER_BYTES") or 0
    return 0, 0


