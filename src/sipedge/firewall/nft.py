"""nftables backend over netlink: one batch transaction per change.

Every message sipedge sends is built here, byte for byte what pyroute2's
nf_tables message classes (``nft_table_msg``, ``nft_set_msg``,
``nft_chain_msg``, ``nft_rule_msg``, ``nft_set_elem_list_msg``) encode for the
same attributes (tests compare them); set elements, which may number in the
hundreds of thousands, are packed straight from the packed intervals
(:func:`pack_interval_elements`). pyroute2 (~0.1 s to import) is used only to
decode what the kernel answers when sipedge must read the live table: an
apply whose snapshot is current, a first apply and a remove never import it.
Every change is one ``NFNL_MSG_BATCH_BEGIN ... BATCH_END`` batch sent in one
``sendmsg``: the kernel applies all of it or none.

* first apply: table + sets + elements + chain + rules in one transaction;
* later syncs: only the set elements that differ (deletes and adds in one
  transaction); if the table's structure differs (ports, mode, priority),
  the table is deleted and re-created inside one transaction, so no packet
  ever meets a half-built table;
* remove: one ``DELTABLE`` of sipedge's table, nothing else.
"""
from __future__ import annotations

import errno
import struct
import sys
from array import array
from dataclasses import dataclass, field
from itertools import repeat
from operator import add
from typing import Dict, List, Optional, Tuple

from .desired import TOP, Desired, RuleSpec, diff_packed
from .nl import (NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
                 NLM_F_REQUEST, NetlinkError, NfSocket)

# nf_tables numbers (linux/netfilter/nf_tables.h, nfnetlink.h); a test checks them
# against pyroute2's, which is imported only to decode the live table
NFNL_SUBSYS_NFTABLES = 10
NFPROTO_INET = 1
(NFT_MSG_NEWTABLE, NFT_MSG_GETTABLE, NFT_MSG_DELTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_GETCHAIN,
 NFT_MSG_DELCHAIN, NFT_MSG_NEWRULE, NFT_MSG_GETRULE, NFT_MSG_DELRULE, NFT_MSG_NEWSET, NFT_MSG_GETSET,
 NFT_MSG_DELSET, NFT_MSG_NEWSETELEM, NFT_MSG_GETSETELEM, NFT_MSG_DELSETELEM, NFT_MSG_NEWGEN,
 NFT_MSG_GETGEN) = range(17)
NFTA_GEN_ID = 1
NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NFNL_BATCH_GENID = 1
NF_INET_LOCAL_IN = 1
NF_ACCEPT, NF_DROP = 1, 0
NFT_SET_INTERVAL = 0x4
NFT_SET_ELEM_INTERVAL_END = 0x1
KEY_TYPE = {4: 7, 6: 8}  # nft datatypes ipv4_addr, ipv6_addr
KEY_LEN = {4: 4, 6: 16}
META_NFPROTO, META_L4PROTO = 15, 16
NFPROTO = {4: 2, 6: 10}
IPPROTO = {"tcp": 6, "udp": 17}
CMP_EQ, CMP_LTE, CMP_GTE = 0, 3, 5
#: elements per NEWSETELEM message: the element list is one attribute (u16 length)
MAX_ELEM_BYTES = 60000

_MSG_NAMES = {NFT_MSG_NEWTABLE: "new table", NFT_MSG_DELTABLE: "delete table",
              NFT_MSG_NEWCHAIN: "new chain", NFT_MSG_NEWSET: "new set",
              NFT_MSG_NEWSETELEM: "new set elements", NFT_MSG_DELSETELEM: "delete set elements",
              NFT_MSG_NEWRULE: "new rule"}


def _pr():
    """pyroute2's nf_tables message classes, imported on first use (decoding the
    live table, reference encodings)."""
    from pyroute2.netlink.nfnetlink import nftsocket

    return nftsocket


def _t(msg_type: int) -> int:
    return (NFNL_SUBSYS_NFTABLES << 8) | msg_type


def encode(cls, msg_type: int, flags: int, seq: int, attrs: list, family: int = NFPROTO_INET) -> bytes:
    """One nf_tables message, encoded by pyroute2's message class *cls*."""
    m = cls()
    m["header"]["type"] = _t(msg_type)
    m["header"]["flags"] = flags
    m["header"]["sequence_number"] = seq
    m["nfgen_family"] = family
    m["attrs"] = attrs
    m.encode()
    return bytes(m.data)


def _nfgen(msg_type: int, flags: int, seq: int, family: int, res_id: int = 0) -> bytes:
    """A netlink header and ``struct nfgenmsg`` (version 0, *res_id* big-endian), no attributes."""
    return struct.pack("=IHHIIBB", 20, msg_type, flags, seq, 0, family, 0) + struct.pack(">H", res_id)


#: (attribute type, kind) of every attribute sipedge writes, by pyroute2's names
#: (linux/netfilter/nf_tables.h); integers are big-endian, as nf_tables wants
_ATTRS = {
    "NFTA_TABLE_NAME": (1, "str"),
    "NFTA_SET_TABLE": (1, "str"), "NFTA_SET_NAME": (2, "str"), "NFTA_SET_FLAGS": (3, "u32"),
    "NFTA_SET_KEY_TYPE": (4, "u32"), "NFTA_SET_KEY_LEN": (5, "u32"), "NFTA_SET_ID": (10, "u32"),
    "NFTA_CHAIN_TABLE": (1, "str"), "NFTA_CHAIN_NAME": (3, "str"), "NFTA_CHAIN_HOOK": (4, "nest"),
    "NFTA_HOOK_HOOKNUM": (1, "u32"), "NFTA_HOOK_PRIORITY": (2, "s32"),
    "NFTA_CHAIN_POLICY": (5, "u32"), "NFTA_CHAIN_TYPE": (7, "str"),
    "NFTA_EXPR_NAME": (1, "str"), "NFTA_EXPR_DATA": (2, "nest"),
    "NFTA_META_DREG": (1, "u32"), "NFTA_META_KEY": (2, "u32"),
    "NFTA_CMP_SREG": (1, "u32"), "NFTA_CMP_OP": (2, "u32"), "NFTA_CMP_DATA": (3, "nest"),
    "NFTA_DATA_VALUE": (1, "bytes"), "NFTA_DATA_VERDICT": (2, "nest"), "NFTA_VERDICT_CODE": (1, "s32"),
    "NFTA_PAYLOAD_DREG": (1, "u32"), "NFTA_PAYLOAD_BASE": (2, "u32"),
    "NFTA_PAYLOAD_OFFSET": (3, "u32"), "NFTA_PAYLOAD_LEN": (4, "u32"),
    "NFTA_LOOKUP_SET": (1, "str"), "NFTA_LOOKUP_SREG": (2, "u32"), "NFTA_LOOKUP_SET_ID": (4, "u32"),
    "NFTA_COUNTER_BYTES": (1, "u64"), "NFTA_COUNTER_PACKETS": (2, "u64"),
    "NFTA_IMMEDIATE_DREG": (1, "u32"), "NFTA_IMMEDIATE_DATA": (2, "nest"),
}
_PACK = {"u32": struct.Struct(">I").pack, "s32": struct.Struct(">i").pack,
         "u64": struct.Struct(">Q").pack}
#: the classes pyroute2 encodes each message type with (reference: :func:`message_pyroute2`)
_CLASS = {NFT_MSG_NEWTABLE: "nft_table_msg", NFT_MSG_GETTABLE: "nft_table_msg",
          NFT_MSG_DELTABLE: "nft_table_msg", NFT_MSG_NEWSET: "nft_set_msg",
          NFT_MSG_NEWCHAIN: "nft_chain_msg", NFT_MSG_NEWRULE: "nft_rule_msg"}


def encode_attrs(attrs: list) -> bytes:
    """``[(name, value), ...]`` as netlink attributes: what pyroute2 encodes for them."""
    out = []
    for name, value in attrs:
        typ, kind = _ATTRS[name]
        if kind == "str":
            payload = value.encode() + b"\0"
        elif kind == "bytes":
            payload = bytes(value)
        elif kind == "nest":
            payload = encode_attrs(value["attrs"])
        else:
            payload = _PACK[kind](value)
        out.append(_attr(typ, payload))
    return b"".join(out)


def message(msg_type: int, flags: int, seq: int, attrs: list, family: int = NFPROTO_INET) -> bytes:
    """One nf_tables message built here (no pyroute2 import): byte for byte what
    :func:`encode` gives with pyroute2's class for *msg_type* (a test checks)."""
    body = struct.pack("=BBH", family, 0, 0) + encode_attrs(attrs)
    return struct.pack("=IHHII", 16 + len(body), _t(msg_type), flags, seq, 0) + body


def message_pyroute2(msg_type: int, flags: int, seq: int, attrs: list, family: int = NFPROTO_INET) -> bytes:
    """The same message encoded by pyroute2 (reference, slow to import)."""
    # pyroute2 takes set flags by name
    attrs = [(n, {"NFT_SET_INTERVAL"} if n == "NFTA_SET_FLAGS" and v == NFT_SET_INTERVAL else v)
             for n, v in attrs]
    return encode(getattr(_pr(), _CLASS[msg_type]), msg_type, flags, seq, attrs, family)


def batch_marker(kind: int, seq: int, genid: Optional[int] = None) -> bytes:
    """NFNL_MSG_BATCH_BEGIN / _END for nf_tables: the bytes pyroute2's ``nfgen_msg``
    encodes (a test checks), plus NFNL_BATCH_GENID when *genid* is given."""
    data = _nfgen(kind, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES)
    if genid is not None:  # the kernel refuses the batch if the ruleset changed since
        data += struct.pack("=HH", 8, NFNL_BATCH_GENID) + struct.pack(">I", genid)
        data = struct.pack("=I", len(data)) + data[4:]
    return data


def genid_request(seq: int) -> bytes:
    """NFT_MSG_GETGEN: what pyroute2's ``nft_gen_msg`` encodes without attributes."""
    return _nfgen(_t(NFT_MSG_GETGEN), NLM_F_REQUEST, seq, 0)


def parse_genid(msg: bytes) -> Optional[int]:
    """NFTA_GEN_ID of a NEWGEN answer, or None when it carries none."""
    a = _parse_attrs(msg, 20, len(msg)).get(NFTA_GEN_ID)
    if a is None or a[1] - a[0] < 4:
        return None
    return struct.unpack_from(">I", msg, a[0])[0]


# -- expressions -----------------------------------------------------------------------
def _expr(name: str, *attrs) -> dict:
    return {"attrs": [("NFTA_EXPR_NAME", name), ("NFTA_EXPR_DATA", {"attrs": list(attrs)})]}


def _meta(key: int) -> dict:
    return _expr("meta", ("NFTA_META_DREG", 1), ("NFTA_META_KEY", key))


def _cmp(op: int, value: bytes) -> dict:
    return _expr("cmp", ("NFTA_CMP_SREG", 1), ("NFTA_CMP_OP", op),
                 ("NFTA_CMP_DATA", {"attrs": [("NFTA_DATA_VALUE", value)]}))


def _payload(base: int, offset: int, length: int) -> dict:
    return _expr("payload", ("NFTA_PAYLOAD_DREG", 1), ("NFTA_PAYLOAD_BASE", base),
                 ("NFTA_PAYLOAD_OFFSET", offset), ("NFTA_PAYLOAD_LEN", length))


def _lookup(set_name: str, set_id: int) -> dict:
    return _expr("lookup", ("NFTA_LOOKUP_SET", set_name), ("NFTA_LOOKUP_SREG", 1),
                 ("NFTA_LOOKUP_SET_ID", set_id))


def _counter() -> dict:
    return _expr("counter", ("NFTA_COUNTER_BYTES", 0), ("NFTA_COUNTER_PACKETS", 0))


def _verdict(code: int) -> dict:
    return _expr("immediate", ("NFTA_IMMEDIATE_DREG", 0),
                 ("NFTA_IMMEDIATE_DATA", {"attrs": [("NFTA_DATA_VERDICT", {
                     "attrs": [("NFTA_VERDICT_CODE", code)]})]}))


def rule_exprs(r: RuleSpec, set_ids: Dict[str, int]) -> list:
    """The expressions nft(8) would generate for ``r.describe()`` in an inet table."""
    ex = []
    if r.set:
        ex.append(_meta(META_NFPROTO))
        ex.append(_cmp(CMP_EQ, bytes([NFPROTO[r.family]])))
        ex.append(_payload(1, 12 if r.family == 4 else 8, KEY_LEN[r.family]))
        ex.append(_lookup(r.set, set_ids.get(r.set, 0)))
    ex.append(_meta(META_L4PROTO))
    ex.append(_cmp(CMP_EQ, bytes([IPPROTO[r.proto]])))
    ex.append(_payload(2, 2, 2))
    if r.low == r.high:
        ex.append(_cmp(CMP_EQ, struct.pack(">H", r.low)))
    else:
        ex.append(_cmp(CMP_GTE, struct.pack(">H", r.low)))
        ex.append(_cmp(CMP_LTE, struct.pack(">H", r.high)))
    ex.append(_counter())
    if r.verdict == "accept":
        ex.append(_verdict(NF_ACCEPT))
    elif r.verdict == "drop":
        ex.append(_verdict(NF_DROP))
    return ex


_EXPR_CACHE: Dict[str, Tuple[int, bytes]] = {}


def _expr_bytes(expr: dict) -> Tuple[int, bytes]:
    """(attribute type, payload) of one expression inside NFTA_RULE_EXPRESSIONS:
    one NFTA_LIST_ELEM; memoized, since a ruleset repeats a handful of expressions."""
    key = repr(expr)
    hit = _EXPR_CACHE.get(key)
    if hit is None:
        hit = _EXPR_CACHE[key] = (4, _attr(1, encode_attrs(expr["attrs"])))
    return hit


def _expr_bytes_pyroute2(expr: dict) -> Tuple[int, bytes]:
    """The same from pyroute2's encoding of a one-expression rule (reference)."""
    m = encode(_pr().nft_rule_msg, NFT_MSG_NEWRULE, 0, 0, [("NFTA_RULE_EXPRESSIONS", [expr])])
    off, end = _parse_attrs(m, 20, len(m))[4]  # NFTA_RULE_EXPRESSIONS
    return struct.unpack_from("=H", m, off - 2)[0], m[off:end]


def rule_message(flags: int, seq: int, table: str, chain: str, exprs: list) -> bytes:
    """NEWRULE: the bytes pyroute2's ``nft_rule_msg`` encodes for these attributes
    (a test checks), built from memoized expression encodings."""
    typ = 0
    parts = []
    for e in exprs:
        typ, payload = _expr_bytes(e)
        parts.append(payload)
    body = (struct.pack("=BBH", NFPROTO_INET, 0, 0) + _attr(1, table.encode() + b"\0")
            + _attr(2, chain.encode() + b"\0") + _attr(typ or 4, b"".join(parts)))
    return struct.pack("=IHHII", 16 + len(body), _t(NFT_MSG_NEWRULE), flags, seq, 0) + body


# -- set elements ----------------------------------------------------------------------
def _attr(typ: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, typ) + payload + b"\0" * ((4 - n % 4) % 4)


def _elem_bytes(key: int, klen: int, end: bool) -> bytes:
    """One element, attribute by attribute (reference for the packed form below)."""
    k = _attr(1, _attr(1, key.to_bytes(klen, "big")))  # NFTA_SET_ELEM_KEY{NFTA_DATA_VALUE}
    if end:
        k += _attr(3, struct.pack(">I", NFT_SET_ELEM_INTERVAL_END))  # NFTA_SET_ELEM_FLAGS
    return _attr(1, k)  # NFTA_LIST_ELEM


def interval_keys(intervals, family: int) -> List[Tuple[int, bool]]:
    """Interval set elements: the start key, then the end key flagged INTERVAL_END."""
    top = TOP[family]
    out = []
    for s, e in intervals:
        out.append((s, False))
        if e < top:
            out.append((e, True))
    return out


def _heads(klen: int) -> Tuple[bytes, bytes, bytes]:
    start = struct.pack("=HHHHHH", 12 + klen, 1, 8 + klen, 1, 4 + klen, 1)
    end = struct.pack("=HHHHHH", 20 + klen, 1, 8 + klen, 1, 4 + klen, 1)
    flags = struct.pack("=HH", 8, 3) + struct.pack(">I", NFT_SET_ELEM_INTERVAL_END)
    return start, end, flags


_HEADS = {4: _heads(4), 6: _heads(16)}
#: elements per message: as many end elements (the longer kind) as fit in MAX_ELEM_BYTES
_PER = {f: MAX_ELEM_BYTES // (len(h[1]) + KEY_LEN[f] + len(h[2])) for f, h in _HEADS.items()}
assert all(p % 2 == 0 for p in _PER.values())  # whole intervals per message


def pack_elements(keys: List[Tuple[int, bool]], family: int) -> List[bytes]:
    """Element-list attribute payloads, each small enough for one message.

    Byte for byte what :func:`_elem_bytes` builds, with the constant headers
    precomputed (tens of nanoseconds per element instead of microseconds).
    """
    klen = KEY_LEN[family]
    hs, he, fl = _HEADS[family]
    elems = [(he + k.to_bytes(klen, "big") + fl) if end else (hs + k.to_bytes(klen, "big"))
             for k, end in keys]
    per = _PER[family]
    return [b"".join(elems[i:i + per]) for i in range(0, len(elems), per)]


def pack_interval_elements(packed: bytes, family: int) -> List[bytes]:
    """:func:`pack_elements` of the interval set *packed* (:func:`~.desired.pack_intervals`),
    built straight from those bytes.

    Each interval is a start element and an end element (the one that reaches
    the top of the address space only a start), so the records have a fixed
    layout: a template repeated, the keys written in column by column with
    slice assignments, no Python work per element. Same bytes, same message split.
    """
    klen = KEY_LEN[family]
    pair = 2 * klen
    n = len(packed) // pair
    if not n:
        return []
    hs, he, fl = _HEADS[family]
    top = packed[-klen:] == b"\xff" * klen  # the last interval has no end element
    m = n - 1 if top else n
    if family == 4:
        a = array("I")
        a.frombytes(packed[:m * pair])
        if sys.byteorder == "little":
            a.byteswap()
        ends = array("I", map(add, a[1::2], repeat(1, m)))
        if sys.byteorder == "little":
            ends.byteswap()
        end_bytes = ends.tobytes()
    else:
        end_bytes = b"".join((int.from_bytes(packed[i + klen:i + pair], "big") + 1).to_bytes(klen, "big")
                             for i in range(0, m * pair, pair))
    rec = len(hs) + klen + len(he) + klen + len(fl)
    buf = bytearray((hs + bytes(klen) + he + bytes(klen) + fl) * m)
    at_start, at_end = len(hs), len(hs) + klen + len(he)
    for j in range(klen):
        buf[at_start + j::rec] = packed[j:m * pair:pair]
        buf[at_end + j::rec] = end_bytes[j::klen]
    if top:
        buf += hs + packed[m * pair:m * pair + klen]
    # a message holds `per` elements: per // 2 whole intervals (per is even, see _PER)
    step = _PER[family] // 2 * rec
    return [bytes(buf[i:i + step]) for i in range(0, len(buf), step)]


def elem_message(msg_type: int, flags: int, seq: int, table: str, set_name: str,
                 payload: bytes) -> bytes:
    body = (struct.pack("=BBH", NFPROTO_INET, 0, 0)
            + _attr(1, table.encode() + b"\0") + _attr(2, set_name.encode() + b"\0")
            + _attr(3, payload))
    return struct.pack("=IHHII", 16 + len(body), _t(msg_type), flags, seq, 0) + body


def elem_message_pyroute2(msg_type: int, flags: int, seq: int, table: str, set_name: str,
                          keys: List[Tuple[int, bool]], family: int) -> bytes:
    """The same message built attribute by attribute with pyroute2 (reference, slow)."""
    klen = KEY_LEN[family]
    elems = []
    for key, end in keys:
        attrs = [("NFTA_SET_ELEM_KEY", {"attrs": [("NFTA_DATA_VALUE", key.to_bytes(klen, "big"))]})]
        if end:
            # pyroute2's flag map for this attribute is keyed {1: name}: bit 0 is selected by 1
            attrs.append(("NFTA_SET_ELEM_FLAGS", {1}))
        elems.append({"attrs": attrs})
    return encode(_pr().nft_set_elem_list_msg, msg_type, flags, seq,
                  [("NFTA_SET_ELEM_LIST_TABLE", table), ("NFTA_SET_ELEM_LIST_SET", set_name),
                   ("NFTA_SET_ELEM_LIST_ELEMENTS", elems)])


def _parse_attrs(buf: bytes, off: int, end: int) -> Dict[int, Tuple[int, int]]:
    out = {}
    while off + 4 <= end:
        alen, atyp = struct.unpack_from("=HH", buf, off)
        if alen < 4:
            break
        out[atyp & 0x3FFF] = (off + 4, off + alen)
        off += (alen + 3) & ~3
    return out


def parse_elements(msgs: List[bytes]) -> List[Tuple[int, bool]]:
    """(key, is_end) of every element in GETSETELEM dump answers (fast path)."""
    out = []
    unpack = struct.unpack_from
    for m in msgs:
        top = _parse_attrs(m, 20, len(m))
        if 3 not in top:
            continue
        off, end = top[3]
        while off + 4 <= end:
            alen, _ = unpack("=HH", m, off)
            if alen < 4:
                break
            ea = _parse_attrs(m, off + 4, off + alen)
            key = 0
            if 1 in ea:
                ka = _parse_attrs(m, *ea[1])
                if 1 in ka:
                    s, e = ka[1]
                    key = int.from_bytes(m[s:e], "big")
            flags = 0
            if 3 in ea:
                flags = unpack(">I", m, ea[3][0])[0]
            out.append((key, bool(flags & NFT_SET_ELEM_INTERVAL_END)))
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


# -- live state ------------------------------------------------------------------------
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


@dataclass
class LiveSet:
    name: str
    key_type: int
    flags: int
    intervals: tuple


@dataclass
class Live:
    exists: bool = False
    genid: int = 0
    chains: list = field(default_factory=list)  # [(name, hooknum, priority, type, policy)]
    sets: dict = field(default_factory=dict)  # name -> LiveSet
    rules: list = field(default_factory=list)  # [(canon, packets, bytes, handle)]


class NftBackend:
    """Reads and changes sipedge's table in one network namespace."""

    name = "nft"

    def __init__(self, netns: Optional[str] = None) -> None:
        self.sock = NfSocket(netns)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "NftBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------
    def genid(self) -> int:
        s = self.sock
        msgs = s.request(genid_request(s.next_seq()), "read the ruleset generation")
        for m in msgs:
            return parse_genid(m) or 0
        return 0

    def _dump(self, cls, msg_type, attrs, what) -> List[bytes]:
        s = self.sock
        return s.request(encode(cls, msg_type, NLM_F_REQUEST | NLM_F_DUMP, s.next_seq(), attrs),
                         what)

    def table_exists(self, table: str) -> bool:
        s = self.sock
        try:
            s.request(message(NFT_MSG_GETTABLE, NLM_F_REQUEST | NLM_F_ACK, s.next_seq(),
                              [("NFTA_TABLE_NAME", table)]), f"read table {table}")
        except NetlinkError as e:
            if e.code == errno.ENOENT:
                return False
            raise
        return True

    def set_intervals(self, table: str, name: str, family: int) -> tuple:
        msgs = self._dump(_pr().nft_set_elem_list_msg, NFT_MSG_GETSETELEM,
                          [("NFTA_SET_ELEM_LIST_TABLE", table), ("NFTA_SET_ELEM_LIST_SET", name)],
                          f"read set {name}")
        return elements_to_intervals(parse_elements(msgs), family)

    def read(self, table: str, with_elements: bool = True) -> Live:
        live = Live(genid=self.genid())
        if not self.table_exists(table):
            return live
        live.exists = True
        for m in self._dump(_pr().nft_chain_msg, NFT_MSG_GETCHAIN, [("NFTA_CHAIN_TABLE", table)],
                            "read chains"):
            c = _pr().nft_chain_msg(m)
            c.decode()
            if c.get_attr("NFTA_CHAIN_TABLE") != table:
                continue
            hook = c.get_attr("NFTA_CHAIN_HOOK")
            live.chains.append((c.get_attr("NFTA_CHAIN_NAME"),
                                hook.get_attr("NFTA_HOOK_HOOKNUM") if hook else None,
                                hook.get_attr("NFTA_HOOK_PRIORITY") if hook else None,
                                c.get_attr("NFTA_CHAIN_TYPE"), c.get_attr("NFTA_CHAIN_POLICY")))
        for m in self._dump(_pr().nft_set_msg, NFT_MSG_GETSET, [("NFTA_SET_TABLE", table)], "read sets"):
            st = _pr().nft_set_msg(m)
            st.decode()
            if st.get_attr("NFTA_SET_TABLE") != table:
                continue
            name = st.get_attr("NFTA_SET_NAME")
            ktype = st.get_attr("NFTA_SET_KEY_TYPE")
            flags = struct.unpack_from(">I", m, _set_flags_offset(m))[0] if _set_flags_offset(m) else 0
            fam = 4 if ktype == KEY_TYPE[4] else 6
            ivs = self.set_intervals(table, name, fam) if with_elements else ()
            live.sets[name] = LiveSet(name, ktype, flags, ivs)
        for m in self._dump(_pr().nft_rule_msg, NFT_MSG_GETRULE, [("NFTA_RULE_TABLE", table)],
                            "read rules"):
            r = _pr().nft_rule_msg(m)
            r.decode()
            if r.get_attr("NFTA_RULE_TABLE") != table:
                continue
            pk, by = rule_counter(m)
            live.rules.append((r.get_attr("NFTA_RULE_CHAIN"), canon_rule(m), pk, by,
                               r.get_attr("NFTA_RULE_HANDLE")))
        return live

    # -- comparing ----------------------------------------------------------------
    @staticmethod
    def desired_rules(d: Desired) -> list:
        ids = {name: i + 1 for i, name in enumerate(d.sets)}
        return [canon_rule(rule_message(0, 0, d.table, d.chain, rule_exprs(r, ids))) for r in d.rules]

    def structure_matches(self, d: Desired, live: Live) -> bool:
        """True when the live table has exactly the desired chain, sets and rules."""
        if not live.exists:
            return False
        if live.chains != [(d.chain, NF_INET_LOCAL_IN, d.priority, "filter", NF_ACCEPT)]:
            return False
        if set(live.sets) != set(d.sets):
            return False
        for name, s in d.sets.items():
            ls = live.sets[name]
            if ls.key_type != KEY_TYPE[s.family] or ls.flags != NFT_SET_INTERVAL:
                return False
        return [(c, r) for c, r, *_ in live.rules] == [(d.chain, r) for r in self.desired_rules(d)]

    def rule_report(self, d: Desired, live: Live) -> list:
        """Per-rule counters, named by the desired rule they match."""
        want = {c: r.describe() for c, r in zip(self.desired_rules(d), d.rules)}
        return [{"handle": h, "chain": chain, "rule": want.get(c, "(not a sipedge rule)"),
                 "packets": pk, "bytes": by} for chain, c, pk, by, h in live.rules]

    # -- changing -----------------------------------------------------------------
    def _batch(self, body: List[Tuple[int, bytes]], genid: Optional[int] = None) -> None:
        s = self.sock
        msgs = [batch_marker(NFNL_MSG_BATCH_BEGIN, s.next_seq(), genid)]
        kinds = ["batch begin"]
        for kind, m in body:
            msgs.append(m)
            kinds.append(kind)
        msgs.append(batch_marker(NFNL_MSG_BATCH_END, s.next_seq()))
        kinds.append("batch end")

        def what(i: int) -> str:
            k = kinds[i] if 0 <= i < len(kinds) else "the batch"
            return f"message {i} ({k}) of a {len(msgs)}-message transaction"

        s.send_batch(msgs, what)

    def create_messages(self, d: Desired, replace: bool = False) -> List[Tuple[int, bytes]]:
        s = self.sock
        f = NLM_F_REQUEST | NLM_F_ACK
        out: List[Tuple[str, bytes]] = []
        if replace:
            out.append(("delete table", message(NFT_MSG_DELTABLE, f, s.next_seq(),
                                                [("NFTA_TABLE_NAME", d.table)])))
        out.append(("new table", message(NFT_MSG_NEWTABLE, f | NLM_F_CREATE | NLM_F_EXCL,
                                         s.next_seq(), [("NFTA_TABLE_NAME", d.table)])))
        ids = {}
        for i, (name, st) in enumerate(d.sets.items()):
            ids[name] = i + 1
            out.append((f"new set {name}", message(
                NFT_MSG_NEWSET, f | NLM_F_CREATE | NLM_F_EXCL, s.next_seq(),
                [("NFTA_SET_TABLE", d.table), ("NFTA_SET_NAME", name),
                 ("NFTA_SET_FLAGS", NFT_SET_INTERVAL), ("NFTA_SET_KEY_TYPE", KEY_TYPE[st.family]),
                 ("NFTA_SET_KEY_LEN", KEY_LEN[st.family]), ("NFTA_SET_ID", i + 1)])))
            out += self._elem_msgs(NFT_MSG_NEWSETELEM, d.table, name,
                                   payloads=pack_interval_elements(st.packed, st.family))
        out.append((f"new chain {d.chain}", message(
            NFT_MSG_NEWCHAIN, f | NLM_F_CREATE | NLM_F_EXCL, s.next_seq(),
            [("NFTA_CHAIN_TABLE", d.table), ("NFTA_CHAIN_NAME", d.chain),
             ("NFTA_CHAIN_HOOK", {"attrs": [("NFTA_HOOK_HOOKNUM", NF_INET_LOCAL_IN),
                                            ("NFTA_HOOK_PRIORITY", d.priority)]}),
             ("NFTA_CHAIN_POLICY", NF_ACCEPT), ("NFTA_CHAIN_TYPE", "filter")])))
        for r in d.rules:
            out.append((f"new rule `{r.describe()}`", rule_message(
                f | NLM_F_CREATE | NLM_F_APPEND, s.next_seq(), d.table, d.chain, rule_exprs(r, ids))))
        return out

    def _elem_msgs(self, msg_type, table, name, keys=None, family=4, payloads=None):
        s = self.sock
        if payloads is None:
            payloads = pack_elements(keys, family)
        flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE | NLM_F_EXCL if msg_type == NFT_MSG_NEWSETELEM else 0)
        kind = ("add" if msg_type == NFT_MSG_NEWSETELEM else "delete") + f" elements of set {name}"
        return [(kind, elem_message(msg_type, flags, s.next_seq(), table, name, p))
                for p in payloads]

    def create(self, d: Desired, replace: bool = False, genid: Optional[int] = None) -> None:
        """Create the whole table in one transaction (replacing an existing one if asked)."""
        self._batch(self.create_messages(d, replace), genid)

    def sync_messages(self, d: Desired, live_packed: Dict[str, bytes]) -> Tuple[list, int, int]:
        """Element deletes then adds turning the live sets into *d*'s sets.

        *live_packed* maps set name -> :func:`~sipedge.firewall.desired.pack_intervals`
        of its live intervals.
        """
        dels, adds, nd, na = [], [], 0, 0
        for name, st in d.sets.items():
            new, gone = diff_packed(st.packed, live_packed.get(name, b""), st.family)
            nd += len(gone)
            na += len(new)
            if gone:
                dels += self._elem_msgs(NFT_MSG_DELSETELEM, d.table, name,
                                        interval_keys(gone, st.family), st.family)
            if new:
                adds += self._elem_msgs(NFT_MSG_NEWSETELEM, d.table, name,
                                        interval_keys(new, st.family), st.family)
        return dels + adds, na, nd

    def sync(self, d: Desired, live_packed: Dict[str, bytes], genid: Optional[int] = None) -> Tuple[int, int]:
        """Change only the elements that differ, in one transaction; (added, deleted)."""
        msgs, na, nd = self.sync_messages(d, live_packed)
        if msgs:
            self._batch(msgs, genid)
        return na, nd

    def remove(self, table: str) -> bool:
        if not self.table_exists(table):
            return False
        s = self.sock
        self._batch([("delete table", message(NFT_MSG_DELTABLE, NLM_F_REQUEST | NLM_F_ACK,
                                              s.next_seq(), [("NFTA_TABLE_NAME", table)]))])
        return True


def _set_flags_offset(m: bytes) -> int:
    a = _parse_attrs(m, 20, len(m))
    return a[3][0] if 3 in a else 0

