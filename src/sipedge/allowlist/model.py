"""The allowlist's data model: :class:`Match`, :class:`Entry`, :class:`PortRange`.

A :class:`Match` is what a lookup answers (role, edge, prefix text); an
:class:`Entry` is one range as written in a file; a :class:`PortRange` is one
port spec (``5060/udp``, ``10000-60000/udp``) parsed by :func:`parse_ports`.
``edge=None`` means every edge (written ``"*"``, :data:`ALL_EDGES`, in files).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import NamedTuple, Optional

from ..errors import AllowlistError

__all__ = ["Match", "Entry", "PortRange", "parse_ports", "ALL_EDGES", "PROTOCOLS",
           "AllEdgesWarning"]

#: How a range for every edge is written in a file; in Python it is ``edge=None``.
ALL_EDGES = "*"
PROTOCOLS = ("udp", "tcp")


class AllEdgesWarning(UserWarning):
    """An allowlist was narrowed to some edges; Twilio asks to allow all of them."""


class Match(NamedTuple):
    """Where an address is trusted: role, edge (None: every edge) and prefix."""

    role: str
    edge: Optional[str]
    prefix: str


@dataclass(frozen=True)
class PortRange:
    low: int
    high: int
    proto: str  # "udp" | "tcp" (TLS is tcp)

    def __str__(self) -> str:
        ports = str(self.low) if self.low == self.high else f"{self.low}-{self.high}"
        return f"{ports}/{self.proto}"


@dataclass(frozen=True)
class Entry:
    role: str
    edge: Optional[str]  # None: every edge
    network: ipaddress.IPv4Network | ipaddress.IPv6Network


def _is_decimal(text: str) -> bool:
    """ASCII digits only (str.isdigit also takes '²' and other scripts' digits)."""
    return text.isascii() and text.isdigit()


def parse_ports(spec: str, where: str = "") -> PortRange:
    """``"5060/udp"`` or ``"10000-60000/udp"`` -> PortRange."""
    if not isinstance(spec, str):
        raise AllowlistError(f"{where}port spec {spec!r} is not a string: write \"5060/udp\"")
    ports, slash, proto = spec.partition("/")
    low_s, _, high_s = ports.partition("-")
    if not slash or not _is_decimal(low_s) or not _is_decimal(high_s or low_s):
        raise AllowlistError(
            f"{where}bad port spec {spec!r}: write PORT/PROTO or LOW-HIGH/PROTO, e.g. 5060/udp")
    low, high = int(low_s), int(high_s or low_s)
    if proto not in PROTOCOLS:
        raise AllowlistError(f"{where}bad protocol in {spec!r}: use udp or tcp (TLS is tcp)")
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise AllowlistError(f"{where}port out of range in {spec!r}: ports are 1-65535")
    if low > high:
        raise AllowlistError(f"{where}port range {spec!r} is backwards: write {high}-{low}/{proto}")
    return PortRange(low, high, proto)

