"""The desired firewall state of an Allowlist, independent of any backend.

sipedge owns one table (``inet sipedge`` by default) holding, per role and IP
version, one interval set (``signaling_v4``, ``media_v6`` ...) and one base
chain ``input`` on the input hook. The chain's rules match only the SBC's
ports: traffic to a role's ports from that role's sets is accepted, the rest
of the traffic to those ports is dropped (``enforce``) or only counted
(``monitor``). Every rule carries a counter; other ports are never matched.

Set contents are kept as sorted, merged, half-open integer intervals
``(start, end)`` so that backends can diff them cheaply.
"""
from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass, field
from typing import Optional, Sequence

from .. import _impl
from ..allowlist import Allowlist, PortRange, parse_ports
from ..errors import InputError
from ..intervals import (interval_text, merge_networks, pack_intervals,  # noqa: F401
                         unpack_intervals)

_setdiff = _impl.load("setdiff")

MODES = ("enforce", "monitor")
TOP = {4: 1 << 32, 6: 1 << 128}
DEFAULT_TABLE = "sipedge"
DEFAULT_CHAIN = "input"
DEFAULT_PRIORITY = -10


class SetSpec:
    """One interval set: its name, role, family (4 | 6), contents and prefix count.

    The contents are sorted, merged half-open intervals ``((start, end), ...)``
    (``intervals``) or the same as bytes (``packed``, see :func:`pack_intervals`).
    Either may be given; the other is computed once, on first use, so a sync,
    which diffs the packed forms, never builds 100,000 interval tuples.
    Immutable, and equal when name, role, family, contents and count are.
    """

    __slots__ = ("name", "role", "family", "prefix_count", "_intervals", "_packed")

    def __init__(self, name: str, role: str, family: int, intervals: Optional[tuple] = None,
                 prefix_count: int = 0, *, packed: Optional[bytes] = None) -> None:
        if intervals is None and packed is None:
            intervals = ()
        put = object.__setattr__
        put(self, "name", name)
        put(self, "role", role)
        put(self, "family", family)
        put(self, "prefix_count", prefix_count)  # collapsed allowlist prefixes behind the set
        put(self, "_intervals", None if intervals is None else tuple(intervals))
        put(self, "_packed", packed)

    @property
    def intervals(self) -> tuple:
        """((start, end_exclusive), ...) sorted, merged."""
        if self._intervals is None:
            object.__setattr__(self, "_intervals", unpack_intervals(self._packed, self.family))
        return self._intervals

    @property
    def packed(self) -> bytes:
        """The intervals as bytes (see :func:`pack_intervals`), computed once."""
        if self._packed is None:
            object.__setattr__(self, "_packed", pack_intervals(self._intervals, self.family))
        return self._packed

    @property
    def interval_count(self) -> int:
        """``len(intervals)``, without unpacking them."""
        if self._packed is not None:
            return len(self._packed) // (8 if self.family == 4 else 32)
        return len(self._intervals)

    def __setattr__(self, name: str, value) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def _key(self) -> tuple:
        return (self.name, self.role, self.family, self.packed, self.prefix_count)

    def __eq__(self, other) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"SetSpec(name={self.name!r}, role={self.role!r}, family={self.family!r}, "
                f"intervals={self.intervals!r}, prefix_count={self.prefix_count!r})")


@dataclass(frozen=True)
class RuleSpec:
    verdict: str  # "accept" | "drop" | "count"
    proto: str  # "udp" | "tcp"
    low: int
    high: int
    role: str
    family: Optional[int] = None  # with a set: 4 | 6
    set: Optional[str] = None

    def describe(self) -> str:
        ports = str(self.low) if self.low == self.high else f"{self.low}-{self.high}"
        src = f"ip{'' if self.family == 4 else '6'} saddr @{self.set} " if self.set else ""
        verdict = "" if self.verdict == "count" else f" {self.verdict}"
        return f"{src}{self.proto} dport {ports} counter{verdict}"


@dataclass
class Desired:
    table: str = DEFAULT_TABLE
    chain: str = DEFAULT_CHAIN
    priority: int = DEFAULT_PRIORITY
    mode: str = "enforce"
    sets: dict = field(default_factory=dict)  # name -> SetSpec
    rules: list = field(default_factory=list)  # [RuleSpec]

    @property
    def prefix_count(self) -> int:
        return sum(s.prefix_count for s in self.sets.values())


def diff_packed(want: bytes, have: bytes, family: int) -> tuple:
    """(to_add, to_delete) interval tuples between two packed states.

    One merge walk over the sorted records (native ``sipedge._setdiff``, or
    its pure-Python twin).
    """
    if want == have:
        return (), ()
    add, delete = _setdiff.sorted_diff(want, have, 8 if family == 4 else 32)
    return unpack_intervals(add, family), unpack_intervals(delete, family)


def parse_port_list(text: str, what: str) -> list:
    """``"5060/udp,5061/tcp"`` -> [PortRange]; used by --signaling-ports / --media-ports."""
    items = [p.strip() for p in text.split(",") if p.strip()]
    if not items:
        raise InputError(f"{what}: empty port list; write e.g. 5060/udp,5060/tcp,5061/tcp")
    return [parse_ports(p, f"{what}: ") for p in items]


def desired_state(al: Allowlist, table: str = DEFAULT_TABLE, mode: str = "enforce",
                  priority: int = DEFAULT_PRIORITY, chain: str = DEFAULT_CHAIN,
                  ports: Optional[dict] = None) -> Desired:
    """The state sipedge keeps in the kernel for *al*.

    *ports* overrides the allowlist's ports per role, e.g.
    ``{"media": [PortRange(16384, 32767, "udp")]}``.
    """
    if mode not in MODES:
        raise InputError(f"bad mode {mode!r}: use enforce or monitor")
    if not table or len(table) > 64 or not all(c.isalnum() or c in "_-" for c in table):
        raise InputError(f"bad table name {table!r}: use 1-64 letters, digits, _ or -")
    if not -400 <= priority <= 400:
        raise InputError(f"hook priority {priority} out of range: use -400..400")
    role_ports: dict = {r: list(p) for r, p in al.ports.items()}
    for role, prs in (ports or {}).items():
        if role not in role_ports:
            raise InputError(f"ports given for role {role!r}, but the allowlist has roles "
                             f"{', '.join(role_ports) or 'none'}")
        role_ports[role] = list(prs)
    d = Desired(table=table, chain=chain, priority=priority, mode=mode)
    for role in al.roles:
        for fam in (4, 6):
            name = f"{role}_v{fam}"
            # = merge_networks(al.networks(role), fam), computed on integers (or read
            # from a compiled snapshot) and already packed
            packed, count = al.packed_spans(role, fam)
            d.sets[name] = SetSpec(name, role, fam, None, count, packed=packed)
    for role in al.roles:
        for pr in _dedup(role_ports[role]):
            for fam in (4, 6):
                d.rules.append(RuleSpec("accept", pr.proto, pr.low, pr.high, role,
                                        fam, f"{role}_v{fam}"))
    closing = "drop" if mode == "enforce" else "count"
    for role in al.roles:
        for pr in _dedup(role_ports[role]):
            d.rules.append(RuleSpec(closing, pr.proto, pr.low, pr.high, role))
    return d


def _dedup(prs: Sequence[PortRange]) -> list:
    seen, out = set(), []
    for p in prs:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out
