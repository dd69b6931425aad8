"""Allowlist: which address ranges are trusted for which role (signaling, media).

The embedded default dataset (``data/twilio.toml``) holds Twilio's published
ranges; user files of the same format extend or replace it.
"""
from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass
from importlib import resources
from typing import Iterable, Iterator, NamedTuple, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from . import _impl
from .errors import AllowlistError

_prefix = _impl.load("prefix")

ALL_EDGES = "*"


class Match(NamedTuple):
    """Where an address is trusted: its role, edge (None: every edge) and prefix."""

    role: str
    edge: Optional[str]
    prefix: str


@dataclass(frozen=True)
class PortRange:
    low: int
    high: int
    proto: str  # "udp" | "tcp"

    def __str__(self) -> str:
        ports = str(self.low) if self.low == self.high else f"{self.low}-{self.high}"
        return f"{ports}/{self.proto}"


@dataclass(frozen=True)
class Entry:
    role: str
    edge: Optional[str]
    network: ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ports(spec: str, where: str = "") -> PortRange:
    """``"5060/udp"`` or ``"10000-60000/udp"`` -> PortRange."""
    try:
        ports, proto = spec.split("/")
        low_s, _, high_s = ports.partition("-")
        low, high = int(low_s), int(high_s or low_s)
    except ValueError:
        raise AllowlistError(
            f"{where}bad port spec {spec!r}: write PORT/PROTO or LOW-HIGH/PROTO, e.g. 5060/udp"
        ) from None
    if proto not in ("udp", "tcp"):
        raise AllowlistError(f"{where}bad protocol in {spec!r}: use udp or tcp (TLS is tcp)")
    if not (1 <= low <= high <= 65535):
        raise AllowlistError(f"{where}port out of range in {spec!r}: ports are 1-65535, low <= high")
    return PortRange(low, high, proto)


class Allowlist:
    """Trusted address ranges by role and edge, with the ports of each role."""

    def __init__(self, entries: Iterable[Entry], ports: dict[str, list[PortRange]],
                 meta: Optional[dict] = None) -> None:
        self.entries: list[Entry] = list(entries)
        self.ports: dict[str, list[PortRange]] = dict(ports)
        self.meta: dict = dict(meta or {})
        self._table = _prefix.PrefixTable(
            (e.network, Match(e.role, e.edge, str(e.network))) for e in self.entries
        )

    # -- construction -----------------------------------------------------------------
    @classmethod
    def twilio(cls) -> "Allowlist":
        """The embedded Twilio dataset (see ``meta`` for its source and date)."""
        text = resources.files("sipedge").joinpath("data/twilio.toml").read_text("utf-8")
        return cls.from_toml(text, "<embedded twilio.toml>")

    @classmethod
    def load(cls, path: str) -> "Allowlist":
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8")
        except OSError as e:
            raise AllowlistError(f"{path}: cannot read allowlist: {e.strerror}") from None
        return cls.from_toml(text, path)

    @classmethod
    def from_toml(cls, text: str, source: str = "<string>") -> "Allowlist":
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise AllowlistError(f"{source}: not valid TOML: {e}") from None
        where = f"{source}: "
        ports = {
            role: [parse_ports(p, where) for p in spec.get("ports", [])]
            for role, spec in doc.get("roles", {}).items()
        }
        entries = []
        for r in doc.get("ranges", []):
            role = r.get("role")
            if role not in ports:
                raise AllowlistError(
                    f"{where}unknown role {role!r}; roles defined: {', '.join(ports) or 'none'}"
                )
            edge = r.get("edge", ALL_EDGES)
            for p in r.get("prefixes", []):
                try:
                    net = ipaddress.ip_network(p)
                except ValueError as e:
                    raise AllowlistError(f"{where}bad prefix {p!r}: {e}") from None
                entries.append(Entry(role, None if edge == ALL_EDGES else edge, net))
        return cls(entries, ports, doc.get("dataset", {}))

    # -- queries ----------------------------------------------------------------------
    def match(self, addr) -> Optional[Match]:
        """Role, edge and prefix of the most specific range holding *addr*, or None."""
        return self._table.lookup(addr)

    def __contains__(self, addr) -> bool:
        return addr in self._table

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def networks(self, role: str, version: Optional[int] = None) -> list:
        """The networks of one role (optionally one IP version), collapsed for a firewall."""
        nets = [e.network for e in self.entries
                if e.role == role and (version is None or e.network.version == version)]
        v4 = [n for n in nets if n.version == 4]
        v6 = [n for n in nets if n.version == 6]
        return list(ipaddress.collapse_addresses(v4)) + list(ipaddress.collapse_addresses(v6))

    @property
    def roles(self) -> list[str]:
        return list(self.ports)
