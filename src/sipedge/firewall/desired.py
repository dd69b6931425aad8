"""The desired firewall state: what sipedge keeps in the kernel, independent of any backend.

The model (the contract both backends render; docs/firewall.md explains it)
is one table (``inet sipedge`` by default, marked as sipedge's) holding, per
role and IP version, one interval set (``signaling_v4``, ``media_v6`` ...) of
the carrier's addresses, and one base chain on the input hook, policy accept,
whose rules are, in order:

1. ``ct state established,related counter accept`` - replies to the host's own
   connections (DNS, NTP, HTTP, RADIUS ...) and flows already accepted;
2. ``iif "lo" counter accept`` - the host talking to itself;
3. with ``--iif eth0,eth1`` only: ``iifname != "eth0" iifname != "eth1" counter
   return`` - the rules below apply only to packets arriving on those interfaces;
4. per role and family: from the role's set to **the SBC's own listening
   ports** for that role -> ``counter accept``;
5. per SBC port range: the rest of the traffic to it -> ``counter drop``
   (``enforce``) or ``counter`` only (``monitor``).

Nothing else is matched; the chain's policy accepts it.

Which port is whose: the allowlist's ``ports`` (:attr:`Allowlist.carrier_ports`)
are the **carrier's** published ports, its own side of the flow (Twilio's
media leaves from its UDP 10000-60000); the firewall never matches them. The
SBC's listening ports are the SBC's configuration (:class:`SbcPorts`:
``--sip-ports``, ``--rtp-ports`` or an ``[sbc]`` section in the allowlist
file): role ``signaling`` (and ``*_signaling``) -> the SIP ports, ``media``
(and ``*_media``) -> the RTP ports, any other role names its ports in
``[sbc.roles]``.

Set contents are kept as sorted, merged, half-open integer intervals
``(start, end)`` so that backends can diff them cheaply.
"""
from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass, field
from typing import Optional, Sequence

from .. import _impl
from ..allowlist import Allowlist, PortRange, parse_ports
from ..errors import InputError, UnsafeConfigError
from ..intervals import (interval_text, merge_networks, pack_intervals,  # noqa: F401
                         unpack_intervals)

_setdiff = _impl.load("setdiff")

MODES = ("enforce", "monitor")
TOP = {4: 1 << 32, 6: 1 << 128}
DEFAULT_TABLE = "sipedge"
DEFAULT_CHAIN = "input"
DEFAULT_PRIORITY = -10
#: the SBC's SIP listening ports unless configured: SIP over UDP and TCP, SIP over TLS
DEFAULT_SIP_PORTS = "5060/udp,5060/tcp,5061/tcp"
#: the SBC's RTP range unless configured: Asterisk's default (rtp.conf), and below
#: Linux's ephemeral range 32768-60999, so the drop rule never meets replies to the
#: host's own UDP clients. FreeSWITCH uses 16384-32768, rtpengine what it is given.
DEFAULT_RTP_PORTS = "10000-20000/udp"
#: the comment nft shows on sipedge's table (NFTA_TABLE_USERDATA, as nft stores comments);
#: a table without it is not sipedge's and is never changed or removed
OWNER_COMMENT = "managed by sipedge"


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
    """One rule of the chain.

    ``kind`` ``"port"`` (the default): ``[ip saddr @set] PROTO dport LOW-HIGH``;
    ``"ct"``: ``ct state established,related``; ``"lo"``: ``iif "lo"``;
    ``"iif"``: ``iifname != NAME ...`` for each of *ifnames* (verdict ``return``).
    Every rule carries a counter. *verdict* is accept, drop, return or count.
    """
    verdict: str  # "accept" | "drop" | "return" | "count"
    proto: str = ""  # "udp" | "tcp" (port rules)
    low: int = 0
    high: int = 0
    role: str = ""
    family: Optional[int] = None  # with a set: 4 | 6
    set: Optional[str] = None
    kind: str = "port"
    ifnames: tuple = ()

    def describe(self) -> str:
        verdict = "" if self.verdict == "count" else f" {self.verdict}"
        if self.kind == "ct":
            return f"ct state established,related counter{verdict}"
        if self.kind == "lo":
            return f'iif "lo" counter{verdict}'
        if self.kind == "iif":
            return " ".join(f'iifname != "{n}"' for n in self.ifnames) + f" counter{verdict}"
        ports = str(self.low) if self.low == self.high else f"{self.low}-{self.high}"
        src = f"ip{'' if self.family == 4 else '6'} saddr @{self.set} " if self.set else ""
        return f"{src}{self.proto} dport {ports} counter{verdict}"


@dataclass(frozen=True)
class SbcPorts:
    """The SBC's own listening ports, by port class, and which class each role reaches.

    *sip* and *rtp* are the two classes every SBC has; *roles* maps a role to
    ``"sip"``, ``"rtp"`` or its own tuple of :class:`PortRange`. A role not in
    *roles* reaches the SIP ports when it is ``signaling`` or ends in
    ``_signaling``, the RTP ports when it is ``media`` or ends in ``_media``.
    """
    sip: tuple = ()
    rtp: tuple = ()
    roles: tuple = ()  # ((role, "sip" | "rtp" | (PortRange, ...)), ...)

    def for_role(self, role: str) -> tuple:
        """The SBC ports traffic of *role* is allowed to reach."""
        cls = dict(self.roles).get(role)
        if cls is None:
            if role == "signaling" or role.endswith("_signaling"):
                cls = "sip"
            elif role == "media" or role.endswith("_media"):
                cls = "rtp"
            else:
                raise InputError(
                    f"role {role!r}: sipedge cannot tell which of the SBC's ports it reaches; "
                    f"add [sbc.roles] {role} = \"sip\" (or \"rtp\", or a port list such as "
                    "[\"5080/udp\"]) to the allowlist file")
        if cls == "sip":
            return self.sip
        if cls == "rtp":
            return self.rtp
        return tuple(cls)

    def describe(self) -> dict:
        return {"sip": [str(p) for p in self.sip], "rtp": [str(p) for p in self.rtp],
                "roles": {r: c if isinstance(c, str) else [str(p) for p in c]
                          for r, c in self.roles}}


@dataclass
class Desired:
    table: str = DEFAULT_TABLE
    chain: str = DEFAULT_CHAIN
    priority: int = DEFAULT_PRIORITY
    mode: str = "enforce"
    sets: dict = field(default_factory=dict)  # name -> SetSpec
    rules: list = field(default_factory=list)  # [RuleSpec]
    sbc: SbcPorts = field(default_factory=SbcPorts)
    iif: tuple = ()  # interface names the port rules are limited to (empty: all)
    force: bool = False  # the safety checks were overridden (--force)

    def drop_ranges(self) -> list:
        """(proto, low, high) of every rule that drops (none in monitor mode)."""
        return [(r.proto, r.low, r.high) for r in self.rules if r.kind == "port"
                and r.verdict == "drop"]

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
    """``"5060/udp,5061/tcp"`` -> [PortRange]; used by --sip-ports / --rtp-ports."""
    if not isinstance(text, str):
        raise InputError(f"{what}: write a comma list such as 5060/udp,5060/tcp,5061/tcp")
    items = [p.strip() for p in text.split(",") if p.strip()]
    if not items:
        raise InputError(f"{what}: empty port list; write e.g. 5060/udp,5060/tcp,5061/tcp")
    return [parse_ports(p, f"{what}: ") for p in items]


def _port_list(value, what: str) -> tuple:
    if isinstance(value, str):
        return tuple(parse_port_list(value, what))
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InputError(f"{what}: write a list of ports such as [\"5060/udp\", \"5061/tcp\"]")
    return tuple(parse_ports(v, f"{what}: ") for v in value)


_SBC_KEYS = ("sip_ports", "rtp_ports", "roles")


def sbc_ports(al: Optional[Allowlist] = None, sip=None, rtp=None) -> SbcPorts:
    """The SBC's ports: *sip* / *rtp* (``--sip-ports`` text or PortRanges) over the
    allowlist file's ``[sbc]`` section over the defaults (:data:`DEFAULT_SIP_PORTS`,
    :data:`DEFAULT_RTP_PORTS`)."""
    section = (al.meta.get("sbc") if al is not None else None) or {}
    src = al.meta.get("source_file", "the allowlist") if al is not None else ""
    if not isinstance(section, dict):
        raise InputError(f"{src}: [sbc] must be a table: [sbc] sip_ports = [\"5060/udp\"]")
    for k in section:
        if k not in _SBC_KEYS:
            raise InputError(f"{src}: unknown key {k!r} in [sbc]; allowed: {', '.join(_SBC_KEYS)}")
    sip_v = _port_list(section["sip_ports"], f"{src}: [sbc] sip_ports") if "sip_ports" in section else None
    rtp_v = _port_list(section["rtp_ports"], f"{src}: [sbc] rtp_ports") if "rtp_ports" in section else None
    if sip is not None:
        sip_v = _port_list(sip, "--sip-ports") if isinstance(sip, str) else tuple(sip)
    if rtp is not None:
        rtp_v = _port_list(rtp, "--rtp-ports") if isinstance(rtp, str) else tuple(rtp)
    roles = []
    raw_roles = section.get("roles", {})
    if not isinstance(raw_roles, dict):
        raise InputError(f"{src}: [sbc.roles] must be a table: role = \"sip\" | \"rtp\" | [ports]")
    for role, v in raw_roles.items():
        if v in ("sip", "rtp"):
            roles.append((role, v))
        else:
            roles.append((role, _port_list(v, f"{src}: [sbc.roles] {role}")))
    return SbcPorts(sip=_dedup(sip_v if sip_v is not None else parse_port_list(DEFAULT_SIP_PORTS, "")),
                    rtp=_dedup(rtp_v if rtp_v is not None else parse_port_list(DEFAULT_RTP_PORTS, "")),
                    roles=tuple(roles))


def _check_ifname(name: str) -> str:
    if not name or len(name) > 15 or any(c in name for c in "/ \t\n*\0") or name in (".", ".."):
        raise InputError(f"--iif: bad interface name {name!r}: use names from `ip link`, "
                         "1-15 characters, no '/', spaces or '*'")
    return name


def desired_state(al: Allowlist, table: str = DEFAULT_TABLE, mode: str = "enforce",
                  priority: int = DEFAULT_PRIORITY, chain: str = DEFAULT_CHAIN,
                  sbc: Optional[SbcPorts] = None, iif: Sequence[str] = (),
                  force: bool = False) -> Desired:
    """The state sipedge keeps in the kernel for *al* (see the module docstring for the rules).

    *sbc*: the SBC's listening ports (default: :func:`sbc_ports` of *al*);
    *iif*: limit the port rules to packets arriving on these interfaces.
    A set that holds every address of a family (``0.0.0.0/0``, ``::/0``) is
    refused (:class:`~sipedge.errors.UnsafeConfigError`) unless *force*.
    """
    if mode not in MODES:
        raise InputError(f"bad mode {mode!r}: use enforce or monitor")
    if not isinstance(table, str) or not table or len(table) > 64 or not all(
            c.isascii() and (c.isalnum() or c in "_-") for c in table):
        raise InputError(f"bad table name {table!r}: use 1-64 letters, digits, _ or -")
    if not isinstance(priority, int) or not -400 <= priority <= 400:
        raise InputError(f"hook priority {priority} out of range: use -400..400")
    if sbc is None:
        sbc = sbc_ports(al)
    ifnames = tuple(dict.fromkeys(_check_ifname(n) for n in iif))
    roles = list(al.roles)
    role_ports = {role: _dedup(sbc.for_role(role)) for role in roles}
    for role, _c in sbc.roles:
        if role not in roles:
            raise InputError(f"[sbc.roles] names role {role!r}, but the allowlist has roles "
                             f"{', '.join(roles) or 'none'}")
    d = Desired(table=table, chain=chain, priority=priority, mode=mode, sbc=sbc, iif=ifnames,
                force=force)
    for role in roles:
        for fam in (4, 6):
            name = f"{role}_v{fam}"
            # = merge_networks(al.networks(role), fam), computed on integers (or read
            # from a compiled snapshot) and already packed
            packed, count = al.packed_spans(role, fam)
            st = d.sets[name] = SetSpec(name, role, fam, None, count, packed=packed)
            if not force and st.interval_count and st.intervals[0] == (0, TOP[fam]):
                raise UnsafeConfigError(
                    f"role {role!r} trusts every IPv{fam} address ({'0.0.0.0/0' if fam == 4 else '::/0'}): "
                    "the firewall would protect nothing; list the carrier's prefixes, or pass "
                    "--force if that is really meant")
    d.rules.append(RuleSpec("accept", kind="ct"))
    d.rules.append(RuleSpec("accept", kind="lo"))
    if ifnames:
        d.rules.append(RuleSpec("return", kind="iif", ifnames=ifnames))
    for role in roles:
        for pr in role_ports[role]:
            for fam in (4, 6):
                d.rules.append(RuleSpec("accept", pr.proto, pr.low, pr.high, role,
                                        fam, f"{role}_v{fam}"))
    closing = "drop" if mode == "enforce" else "count"
    done = set()
    for role in roles:
        for pr in role_ports[role]:
            if (pr.proto, pr.low, pr.high) not in done:
                done.add((pr.proto, pr.low, pr.high))
                d.rules.append(RuleSpec(closing, pr.proto, pr.low, pr.high, role))
    return d


def _dedup(prs: Sequence[PortRange]) -> tuple:
    seen, out = set(), []
    for p in prs:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return tuple(out)
