"""Twilio's edges and regions (facts: ../shared/twilio-facts.md, read 2026-11)."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import CatalogError


@dataclass(frozen=True)
class Edge:
    name: str
    location: str
    legacy_id: str
    kind: str  # "public" | "private" (Interconnect) | "roaming"
    note: str = ""

    @property
    def sip_trunking(self) -> bool:
        """Usable with Elastic SIP Trunking and SIP Domains (roaming is not)."""
        return self.kind != "roaming"


EDGES: dict[str, Edge] = {
    e.name: e
    for e in (
        Edge("ashburn", "US East (Virginia)", "us1", "public", "the default edge"),
        Edge("umatilla", "US West (Oregon)", "us2", "public"),
        Edge("dublin", "Ireland", "ie1", "public"),
        Edge("frankfurt", "Germany", "de1", "public"),
        Edge("sao-paulo", "Brazil", "br1", "public"),
        Edge("singapore", "Singapore", "sg1", "public"),
        Edge("tokyo", "Japan", "jp1", "public"),
        Edge("sydney", "Australia", "au1", "public"),
        Edge("roaming", "Global Low Latency", "gll", "roaming",
             "not usable with SIP Domains or Elastic SIP Trunking"),
        Edge("ashburn-ix", "Virginia", "us1-ix", "private"),
        Edge("san-jose-ix", "San Jose", "us2-ix", "private"),
        Edge("london-ix", "London", "ie1-ix", "private"),
        Edge("frankfurt-ix", "Frankfurt", "de1-ix", "private"),
        Edge("singapore-ix", "Singapore", "sg1-ix", "private"),
        Edge("tokyo-ix", "Tokyo", "jp1-ix", "private"),
        Edge("sydney-ix", "Sydney", "au1-ix", "private"),
        Edge("sao-paulo-ix", "São Paulo", "br1-ix", "private",
             "uncertain: missing from some of Twilio's lists"),
    )
}

DEFAULT_EDGE = "ashburn"

#: Processing regions; us1 is the default.
REGIONS: dict[str, str] = {"us1": "United States", "ie1": "Ireland", "au1": "Australia"}
DEFAULT_REGION = "us1"

_BY_LEGACY = {e.legacy_id: e for e in EDGES.values()}


def edge(name: str) -> Edge:
    """The edge called *name* (or its legacy id, e.g. ``ie1``)."""
    key = name.strip().lower()
    found = EDGES.get(key) or _BY_LEGACY.get(key)
    if found is None:
        raise CatalogError(f"unknown Twilio edge {name!r}; valid edges: {', '.join(EDGES)}")
    return found
