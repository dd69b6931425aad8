"""Allowlist: which address ranges are trusted for which role (signaling, media).

- :mod:`.model`: :class:`Match`, :class:`Entry`, :class:`PortRange`, :func:`parse_ports`
- :mod:`.parse`: the TOML file format, its validation, the embedded Twilio dataset
- :mod:`.core`: :class:`Allowlist` (lookup, merged firewall spans, edge selection);
  its compiled form is reached only through its methods
- :mod:`.snapshot`: the compiled-snapshot file format (msgpack)
"""
from .core import Allowlist
from .model import ALL_EDGES, AllEdgesWarning, Entry, Match, PortRange, parse_ports

__all__ = ["Allowlist", "Match", "Entry", "PortRange", "parse_ports", "ALL_EDGES",
           "AllEdgesWarning"]
