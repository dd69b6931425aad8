"""Choose the native (C + Cython) or pure-Python implementation.

This is the one place that decides. Each native piece ``sipedge._NAME``
(compiled from ``src/sipedge/_NAME.pyx`` over ``csrc/``) has a pure-Python
twin ``sipedge._py.NAME`` with the same API and bit-for-bit the same results.

``SIPEDGE_NO_EXTENSIONS=1`` (any value but empty or ``0``) selects the twins.
Otherwise the native module is used when it imports and the twin when it does
not (for example on a platform without a wheel); ``implementation()`` tells
which one each piece runs.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

NO_EXTENSIONS = os.environ.get("SIPEDGE_NO_EXTENSIONS", "") not in ("", "0")

#: The pieces with two implementations.
PIECES = ("prefix", "select", "classify", "setdiff")

_chosen: dict[str, str] = {}


def python(name: str) -> ModuleType:
    """The pure-Python twin of piece *name*."""
    return importlib.import_module(f"sipedge._py.{name}")


def native(name: str) -> ModuleType:
    """The compiled module of piece *name*; ImportError if it is not built."""
    return importlib.import_module(f"sipedge._{name}")


def load(name: str) -> ModuleType:
    """The implementation of piece *name* that the library uses."""
    if not NO_EXTENSIONS:
        try:
            mod = native(name)
        except ImportError:
            pass
        else:
            _chosen[name] = "native"
            return mod
    _chosen[name] = "python"
    return python(name)


def implementation() -> dict[str, str]:
    """Which implementation each piece uses: ``{"prefix": "native", ...}``."""
    for name in PIECES:
        if name not in _chosen:
            load(name)
    return {name: _chosen[name] for name in PIECES}
