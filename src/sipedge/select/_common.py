"""What both implementations of the selection core share (the pure-Python twin
``sipedge._py.select`` and the native ``sipedge._select`` import it)."""
from __future__ import annotations

from typing import Any, Iterable

from ..errors import InputError

__all__ = ["key_bytes", "parse_exclude", "STATES", "NONE", "LIMITED"]

#: Target states by the code csrc/select.h gives them (SX_UP .. SX_DRAINED).
STATES = ("up", "out", "probing", "disabled", "drained")
#: pick_index() codes: nothing usable / every usable target at its rate limit.
NONE, LIMITED = -1, -2


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


def parse_exclude(exclude: Any, positions: dict, n: int) -> list[int]:
    """Target indices from *exclude*: the text ``TargetSet.tried()`` makes
    (indices joined by ``,``), or targets and/or indices."""
    if isinstance(exclude, str):
        text = exclude.strip()
        items: Iterable[Any] = text.split(",") if text else ()
        out = []
        for part in items:
            p = part.strip()
            if not (p.isascii() and p.isdigit()) or int(p) >= n:
                raise InputError(f"exclude {exclude!r}: {part!r} is not a target index 0-{n - 1}; "
                                 "pass what TargetSet.tried() returned")
            out.append(int(p))
        return out
    if isinstance(exclude, (int,)) and not isinstance(exclude, bool):
        exclude = (exclude,)
    elif not isinstance(exclude, (list, tuple, set, frozenset)) and exclude in positions:
        exclude = (exclude,)
    out = []
    for x in exclude:
        if isinstance(x, int) and not isinstance(x, bool):
            if not 0 <= x < n:
                raise InputError(f"exclude: target index {x} out of range 0-{n - 1}")
            out.append(x)
            continue
        i = positions.get(x)
        if i is None:
            raise InputError(f"exclude: {x!r} is not a target of this set")
        out.append(i)
    return out
