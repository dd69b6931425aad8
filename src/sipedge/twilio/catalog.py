"""Twilio's edges, regions and host names (facts: Twilio's public documentation
and helper libraries, read 2026-11).

* :data:`EDGES` — every edge location: public, private (Interconnect, ``-ix``)
  and ``roaming`` (Global Low Latency), with location, legacy id and kind.
* :data:`REGIONS` — the processing regions ``us1`` (default), ``ie1``, ``au1``.
* Host-name builders that follow the rules of Twilio's helper libraries:
  :func:`api_host`, :func:`termination_host`, :func:`sip_registration_host`,
  :func:`sip_domain_host`.

Unknown names raise :class:`~sipedge.errors.CatalogError` listing the valid ones.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from typing import Mapping, Optional

from ..errors import CatalogError

__all__ = [
    "Edge", "Region", "EDGES", "REGIONS", "DEFAULT_EDGE", "DEFAULT_REGION",
    "edge", "region", "public_edges", "private_edges",
    "api_host", "termination_host", "sip_registration_host", "sip_domain_host",
    "RegionOnlyWarning",
]


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

    @property
    def rest(self) -> bool:
        """Usable in REST API host names (roaming is not)."""
        return self.kind != "roaming"


@dataclass(frozen=True)
class Region:
    name: str
    location: str
    default_edge: str  # the edge a client in the region would normally use

    def __str__(self) -> str:
        return self.name


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
             "not usable with SIP Domains or Elastic SIP Trunking, nor for REST"),
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

#: Processing regions (where data is processed and stored); us1 is the default.
#: Regions are isolated: credentials, trunks and ACLs exist in one region only.
#: Any edge can be combined with any region.
REGIONS: dict[str, Region] = {
    r.name: r
    for r in (
        Region("us1", "United States", "ashburn"),
        Region("ie1", "Ireland", "dublin"),
        Region("au1", "Australia", "sydney"),
    )
}
DEFAULT_REGION = "us1"

_BY_LEGACY = {e.legacy_id: e for e in EDGES.values()}
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class RegionOnlyWarning(UserWarning):
    """A region was given without an edge: the deprecated form, processed in US1."""


def edge(name: str) -> Edge:
    """The edge called *name* (or its legacy id, e.g. ``ie1``)."""
    key = str(name).strip().lower()
    found = EDGES.get(key) or _BY_LEGACY.get(key)
    if found is None:
        raise CatalogError(f"unknown Twilio edge {name!r}; valid edges: {', '.join(EDGES)}")
    return found


def region(name: str) -> Region:
    """The processing region called *name* (us1, ie1, au1)."""
    key = str(name).strip().lower()
    found = REGIONS.get(key)
    if found is None:
        hint = ""
        if key in _BY_LEGACY:
            hint = f" ({key!r} is an edge id, not a processing region)"
        raise CatalogError(
            f"unknown Twilio region {name!r}{hint}; valid regions: {', '.join(REGIONS)}")
    return found


_get_edge = edge  # the api_host parameters shadow the function names
_get_region = region


def public_edges() -> list[str]:
    """Names of the public edges usable for SIP (not roaming)."""
    return [e.name for e in EDGES.values() if e.kind == "public"]


def private_edges() -> list[str]:
    """Names of the Interconnect (``-ix``) edges."""
    return [e.name for e in EDGES.values() if e.kind == "private"]


def _sip_edge(name: str, what: str) -> Edge:
    e = edge(name)
    if not e.sip_trunking:
        usable = ", ".join(n for n, x in EDGES.items() if x.sip_trunking)
        raise CatalogError(
            f"edge {e.name!r} cannot be used for {what}: roaming does not work with SIP "
            f"Domains or Elastic SIP Trunking; use one of: {usable}")
    return e


def _domain_label(domain: str, suffix: str) -> str:
    """The first label of a trunk or SIP domain, accepting the full host name too."""
    d = str(domain).strip().lower().rstrip(".")
    if d.endswith(".twilio.com") and suffix in d:
        d = d.split(".", 1)[0]
    if not _LABEL.match(d):
        raise CatalogError(
            f"bad domain {domain!r}: give the trunk or SIP domain name itself, e.g. "
            f"'mycompany' for mycompany{suffix}twilio.com (letters, digits, '-', at most 63)")
    return d


def api_host(product: str = "api", edge: Optional[str] = None, region: Optional[str] = None,
             *, env: Optional[Mapping[str, str]] = None) -> str:
    """The REST API host of *product* for an edge and region, as the helper libraries build it.

    * neither edge nor region: ``{product}.twilio.com`` (ashburn, us1);
    * edge only: region us1, ``{product}.{edge}.us1.twilio.com``;
    * region only: ``{product}.{region}.twilio.com``, a deprecated form that Twilio
      processes in US1 — a :class:`RegionOnlyWarning` says to give an edge too;
    * both: ``{product}.{edge}.{region}.twilio.com``.

    Like the helper libraries, ``TWILIO_EDGE`` and ``TWILIO_REGION`` in *env*
    (default: ``os.environ``) are used when the argument is not given.
    ``roaming`` is refused: it does not work for REST.
    """
    env = os.environ if env is None else env
    edge = edge or env.get("TWILIO_EDGE") or None
    region = region or env.get("TWILIO_REGION") or None
    prod = str(product).strip().lower()
    if not _LABEL.match(prod):
        raise CatalogError(f"bad product {product!r}: a host label such as api, voice, messaging")
    e = None
    if edge is not None:
        e = _get_edge(edge)
        if not e.rest:
            usable = ", ".join(n for n, x in EDGES.items() if x.rest)
            raise CatalogError(f"edge {e.name!r} does not work for the REST API; use one of: {usable}")
    r = None if region is None else _get_region(region)
    if e is None and r is None:
        return f"{prod}.twilio.com"
    if e is None:
        warnings.warn(
            f"region {r.name!r} without an edge gives the deprecated host {prod}.{r.name}.twilio.com, "
            f"which Twilio processes in US1; set an edge too (e.g. edge={r.default_edge!r})",
            RegionOnlyWarning, stacklevel=2)
        return f"{prod}.{r.name}.twilio.com"
    return f"{prod}.{e.name}.{(r.name if r else DEFAULT_REGION)}.twilio.com"


def termination_host(domain: str, edge: Optional[str] = None) -> str:
    """Elastic SIP Trunking termination host: ``{domain}.pstn[.{edge}].twilio.com``.

    The localized form pins the ingress edge, not the processing region. The
    name resolves to several addresses (3-4); use them all, failing over to the
    next after no answer. Environment variables are not used (the helper
    libraries apply them to REST only).
    """
    d = _domain_label(domain, ".pstn.")
    if edge is None:
        return f"{d}.pstn.twilio.com"
    return f"{d}.pstn.{_sip_edge(edge, 'termination').name}.twilio.com"


def sip_registration_host(domain: str, edge: str) -> str:
    """Where SIP endpoints register to a SIP Domain: ``{domain}.sip.{edge}.twilio.com``."""
    if edge is None:
        raise CatalogError("sip_registration_host needs an edge, e.g. 'ashburn'; "
                           "calls to registered endpoints use sip_domain_host(domain)")
    d = _domain_label(domain, ".sip.")
    return f"{d}.sip.{_sip_edge(edge, 'SIP registration').name}.twilio.com"


def sip_domain_host(domain: str) -> str:
    """Host for calls to registered endpoints: ``{domain}.sip.twilio.com``.

    An edge-specific URI there is refused by Twilio (error 32220), so there is no edge.
    """
    return f"{_domain_label(domain, '.sip.')}.sip.twilio.com"
