"""What both implementations of the selection core share (the pure-Python twin
``sipedge._py.select`` and the native ``sipedge._select`` import it)."""
from __future__ import annotations

from typing import Any

__all__ = ["key_bytes"]


def key_bytes(key: Any) -> bytes:
    """The bytes a sticky key is hashed as: str as UTF-8 (a lone surrogate, as
    errors="surrogateescape" decoding leaves in a Call-ID, passed through as
    its 3 bytes), bytes as is, int as decimal text."""
    if isinstance(key, str):
        try:
            return key.encode("utf-8")
        except UnicodeEncodeError:
            return key.encode("utf-8", "surrogatepass")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key).encode("ascii")
    raise TypeError(f"a sticky key is a str, bytes or int (a Call-ID), not {type(key).__name__}")
