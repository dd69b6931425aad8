"""Reference encodings by pyroute2's nf_tables message classes: the test oracles
that sipedge's hand-built messages (sipedge.firewall.backends.nft.encode) must
equal byte for byte. Test-only: sipedge never imports pyroute2 to encode."""
from __future__ import annotations

import struct
from typing import List, Tuple

from sipedge.firewall.backends.nft.decode import _pr
from sipedge.firewall.backends.nft.encode import (_CLASS, KEY_LEN, NFPROTO_INET, NFT_MSG_NEWRULE,
                                                  NFT_SET_INTERVAL, _parse_attrs, _t,
                                                  table_comment)


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


def message_pyroute2(msg_type: int, flags: int, seq: int, attrs: list, family: int = NFPROTO_INET) -> bytes:
    """The same message encoded by pyroute2 (reference, slow to import)."""
    # pyroute2 takes set flags by name
    attrs = [(n, {"NFT_SET_INTERVAL"} if n == "NFTA_SET_FLAGS" and v == NFT_SET_INTERVAL else v)
             for n, v in attrs]
    # and a table comment as text (its ">H length" + text + NUL is libnftnl's udata TLV
    # of type 0, NFTNL_UDATA_TABLE_COMMENT, for comments under 256 bytes)
    attrs = [(n, table_comment(v) if n == "NFTA_TABLE_USERDATA" else v) for n, v in attrs]
    return encode(getattr(_pr(), _CLASS[msg_type]), msg_type, flags, seq, attrs, family)


def _expr_bytes_pyroute2(expr: dict) -> Tuple[int, bytes]:
    """The same from pyroute2's encoding of a one-expression rule (reference)."""
    m = encode(_pr().nft_rule_msg, NFT_MSG_NEWRULE, 0, 0, [("NFTA_RULE_EXPRESSIONS", [expr])])
    off, end = _parse_attrs(m, 20, len(m))[4]  # NFTA_RULE_EXPRESSIONS
    return struct.unpack_from("=H", m, off - 2)[0], m[off:end]


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


