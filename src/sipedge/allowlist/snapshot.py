"""Compiled allowlist snapshots: a large allowlist loaded in milliseconds.

This module is the file format only: it encodes and decodes a
:class:`Compiled` record (prefix table, ports, meta, carriers, packed spans),
which :class:`~sipedge.allowlist.Allowlist` gives (``compiled()``) and is
built from (``from_compiled()``); ``Allowlist.load``, ``load_snapshot`` and
``save_snapshot`` are the way in for users.

A snapshot is the allowlist after parsing, validation and flattening, stored
with msgpack: the flattened range arrays go straight into the prefix table and
``entries`` are rebuilt only when asked for; the firewall sets of every role
(``Allowlist.packed_spans``) are stored ready to diff,
so ``sipedge firewall apply`` computes nothing. The file starts with
:data:`MAGIC`, then one msgpack map::

    format      snapshot format number (FORMAT)
    sipedge     version of sipedge that wrote it
    dataset     the allowlist's [dataset] meta (name, version, source, read, extends)
    twilio      version of the embedded Twilio dataset it was built against, or None
    source      {"path": ..., "sha256": ...} of the TOML it came from, or None
    byteorder   "little" | "big" (the range arrays are in this order)
    body        msgpack bytes of the content; body_sha256 is its SHA-256

Loading refuses, with :class:`~sipedge.errors.SnapshotError`, a file that is
corrupt (bad magic, msgpack, checksum or arrays), of another format, built
against another version of the embedded Twilio dataset than the installed one
(stale), or whose source TOML still exists and has changed since (stale).
The fix is the same every time: rebuild it with
``sipedge allowlist --file SOURCE.toml --snapshot OUT``.
"""
from __future__ import annotations

import gc
import hashlib
import os
import sys
from itertools import repeat
from operator import add, gt, le
from typing import Any, NamedTuple, Optional

from .. import _files, _impl
from .._version import __version__
from ..errors import SnapshotError
from .model import Match, PortRange
from .parse import embedded

MAGIC = b"SIPEDGE-ALLOWLIST-SNAPSHOT\n"
FORMAT = 1

__all__ = ["MAGIC", "FORMAT", "Compiled", "save", "load", "loads", "dumps"]


class Compiled(NamedTuple):
    """An allowlist after parsing, validation and flattening: what a snapshot holds."""

    table: Any  # the prefix table; its values are Match tuples
    ports: dict  # {role: [PortRange]}
    meta: dict
    carriers: dict  # {role: carrier}
    spans: Optional[dict]  # {role: (packed4, count4, packed6, count6)}, or None: not stored


def _sha256_file(path: str) -> Optional[str]:
    try:
        return hashlib.sha256(_files.read_regular(path, "source", OSError)).hexdigest()
    except OSError:  # missing, unreadable, not a regular file (a FIFO would block) or huge
        return None


def dumps(al: Compiled, source: Optional[str] = None) -> bytes:
    """The snapshot bytes of compiled allowlist *al* (``Allowlist.compiled()``, whose
    spans must be given); *source* is the TOML it was read from."""
    import msgpack  # only snapshots need it: plain TOML loading stays dependency-free

    table = al.table
    values = table.values
    roles = list(al.ports)
    if al.spans is None or set(al.spans) != set(roles):
        raise ValueError("a snapshot needs the packed spans of every role")
    role_ix = {r: i for i, r in enumerate(roles)}
    edges: list = []
    edge_ix: dict = {None: -1}
    for m in values:
        if m.edge not in edge_ix:
            edge_ix[m.edge] = len(edges)
            edges.append(m.edge)
    body = {
        "roles": roles,
        "ports": {r: [[p.low, p.high, p.proto] for p in ps] for r, ps in al.ports.items()},
        "carriers": dict(al.carriers),
        "meta": al.meta,
        "edges": edges,
        "value_role": [role_ix[m.role] for m in values],
        "value_edge": [edge_ix[m.edge] for m in values],
        "value_prefix": [m.prefix for m in values],
        "ranges": list(table.dump()),
        # the firewall's sets, computed once here: {role: [packed4, count4, packed6, count6]}
        "spans": {r: list(al.spans[r]) for r in roles},
    }
    body_bytes = msgpack.packb(body, use_bin_type=True)
    src = None
    if source is not None:
        digest = _sha256_file(source)
        if digest is None:
            raise SnapshotError(f"{source}: cannot read the snapshot's source file")
        src = {"path": os.path.abspath(source), "sha256": digest}
    extends = al.meta.get("extends")
    twilio = None
    if al.meta.get("name") == "twilio" or isinstance(extends, dict):
        twilio = embedded().meta.get("version")
    head = {
        "format": FORMAT,
        "sipedge": __version__,
        "dataset": {k: v for k, v in al.meta.items() if isinstance(v, (str, int, dict, list))},
        "twilio": twilio,
        "source": src,
        "byteorder": sys.byteorder,
        "body_sha256": hashlib.sha256(body_bytes).hexdigest(),
        "body": body_bytes,
    }
    return MAGIC + msgpack.packb(head, use_bin_type=True)


def save(al: Compiled, path: str, source: Optional[str] = None) -> None:
    """Write the snapshot of *al* to *path* atomically (temporary file + rename)."""
    data = dumps(al, source)
    try:
        # temporary file in the same directory, unpredictable name, O_EXCL | O_NOFOLLOW
        _files.write_atomic(path, data)
    except OSError as e:
        raise SnapshotError(f"{path}: cannot write snapshot: {e.strerror}") from None


def load(path: str, source: Optional[str] = None) -> Compiled:
    """The compiled allowlist in snapshot *path*; *source*: the TOML it must match (default:
    the recorded source, when it still exists)."""
    data = _files.read_regular(path, "snapshot", SnapshotError)
    return loads(data, path, source)


def _corrupt(path: str, what: str) -> SnapshotError:
    return SnapshotError(f"{path}: corrupt allowlist snapshot ({what}); rebuild it with "
                         "`sipedge allowlist --file SOURCE.toml --snapshot OUT`")


def _swap(b: bytes, code: str) -> bytes:
    from array import array

    a = array(code)
    a.frombytes(b)
    a.byteswap()
    return a.tobytes()


def _ordered(packed: bytes, version: int) -> bool:
    """True when packed (first, last) pairs are what compiling writes: first <= last, and
    each span starts after the previous one ends + 1 (sorted, disjoint, merged)."""
    if version == 4:
        from array import array

        a = array("I")
        a.frombytes(packed)
        if sys.byteorder == "little":
            a.byteswap()
        flat = a.tolist()
    else:
        flat = [int.from_bytes(packed[i:i + 16], "big") for i in range(0, len(packed), 16)]
    first, last = flat[0::2], flat[1::2]
    return all(map(le, first, last)) and all(map(gt, first[1:], map(add, last, repeat(1))))


def _check_spans(role, v) -> tuple:
    """(packed4, count4, packed6, count6) of one role, checked for shape and order.

    Unordered spans would be applied to the firewall as they are and then
    poison every later sync (which diffs sorted records), so they are refused here.
    """
    p4, n4, p6, n6 = v
    if not (type(p4) is bytes and type(p6) is bytes and len(p4) % 8 == 0 and len(p6) % 32 == 0
            and type(n4) is int and type(n6) is int and n4 >= len(p4) // 8 and n6 >= len(p6) // 32):
        raise ValueError(f"bad firewall spans of role {role!r}")
    if not (_ordered(p4, 4) and _ordered(p6, 6)):
        raise ValueError(f"firewall spans of role {role!r} are not sorted, disjoint and merged")
    return p4, n4, p6, n6


def loads(data: bytes, path: str = "<snapshot>", source: Optional[str] = None) -> Compiled:
    """The compiled allowlist in snapshot bytes *data* (see :func:`load`)."""
    import msgpack

    if not data.startswith(MAGIC):
        raise _corrupt(path, "not a sipedge snapshot: wrong magic")
    try:
        head = msgpack.unpackb(data[len(MAGIC):], raw=False)
    except Exception as e:  # msgpack raises several unrelated types
        raise _corrupt(path, f"header does not decode: {e}") from None
    if not isinstance(head, dict) or "format" not in head:
        raise _corrupt(path, "header is not a map with a format")
    if head["format"] != FORMAT:
        raise SnapshotError(
            f"{path}: snapshot format {head['format']!r} (sipedge {head.get('sipedge')}), this "
            f"sipedge reads format {FORMAT}; rebuild it with "
            "`sipedge allowlist --file SOURCE.toml --snapshot OUT`")
    body_bytes = head.get("body")
    if not isinstance(body_bytes, bytes) or hashlib.sha256(body_bytes).hexdigest() != head.get("body_sha256"):
        raise _corrupt(path, "checksum mismatch")
    twilio = head.get("twilio")
    current = embedded().meta.get("version")
    if twilio is not None and twilio != current:
        raise SnapshotError(
            f"{path}: stale snapshot: built against Twilio dataset {twilio}, this sipedge embeds "
            f"{current}; rebuild it with `sipedge allowlist --file SOURCE.toml --snapshot OUT`")
    src = head.get("source")
    want = source if source is not None else (src or {}).get("path")
    if want is not None:
        digest = _sha256_file(want)
        if digest is None and source is not None:
            raise SnapshotError(f"{source}: cannot read the snapshot's source file")
        if digest is not None and (src is None or digest != src.get("sha256")):
            raise SnapshotError(
                f"{path}: stale snapshot: {want} has changed since the snapshot was built; "
                f"rebuild it with `sipedge allowlist --file {want} --snapshot {path}`")
    gc_was_on = gc.isenabled()
    gc.disable()  # 100k small tuples, none of them cyclic: no collector passes meanwhile
    try:
        body = msgpack.unpackb(body_bytes, raw=False)
        roles = body["roles"]
        edges = body["edges"] + [None]  # index -1 is None: every edge
        vr, ve, vp = body["value_role"], body["value_edge"], body["value_prefix"]
        if not len(vr) == len(ve) == len(vp):
            raise ValueError("value arrays of different lengths")
        if vr and not (0 <= min(vr) and max(vr) < len(roles)):
            raise ValueError("a role index out of range")
        if ve and not (-1 <= min(ve) and max(ve) < len(edges) - 1):
            raise ValueError("an edge index out of range")
        # tuple.__new__(Match, ...) straight from C: Match._make would add a Python call each
        values = list(map(tuple.__new__, repeat(Match),
                          zip([roles[i] for i in vr], [edges[i] for i in ve], vp)))
        ranges = body["ranges"]
        if head.get("byteorder") != sys.byteorder:
            ranges = [_swap(b, c) for b, c in zip(ranges, ("I", "I", "i", "Q", "Q", "i"))]
        table = _impl.load("prefix").PrefixTable.from_ranges(*ranges, values)
        ports = {r: [PortRange(lo, hi, proto) for lo, hi, proto in ps]
                 for r, ps in body["ports"].items()}
        meta = body["meta"]
        carriers = body["carriers"]
        spans = body.get("spans")  # absent from older snapshots: computed when asked
        if spans is not None:
            spans = {r: _check_spans(r, v) for r, v in spans.items()}
            if set(spans) != set(ports):
                raise ValueError("firewall spans and roles differ")
    except SnapshotError:
        raise
    except Exception as e:
        raise _corrupt(path, f"{type(e).__name__}: {e}") from None
    finally:
        if gc_was_on:
            gc.enable()
    meta["snapshot"] = path
    return Compiled(table, ports, meta, carriers, spans)
