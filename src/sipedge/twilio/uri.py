"""Origination URIs: the ``sip:`` / ``sips:`` addresses Twilio sends calls to.

Form accepted (Twilio's origination URI, a subset of RFC 3261's SIP URI)::

    sip[s]:[user@]host[:port][;transport=udp|tcp|tls][;edge=NAME]

- ``host`` is a DNS name, an IPv4 address or a bracketed IPv6 address
  (``sip:[2001:db8::1]:5060``). Names are compared in lower case.
- ``port`` is 1-65535; when absent it is 5061 for TLS and 5060 otherwise.
- ``transport`` is ``udp``, ``tcp`` or ``tls`` (any case). ``sips:`` means TLS:
  ``sips:...;transport=tcp`` is TLS over TCP as RFC 3261 says, and
  ``sips:...;transport=udp`` is refused.
- ``edge`` names the Twilio edge the call leaves from. The legacy form
  ``;region=ie1`` is accepted and mapped through :func:`sipedge.twilio.catalog.edge`
  (which knows legacy ids). ``roaming`` is refused: it does not work with
  Elastic SIP Trunking.

Deliberately stricter than Twilio: Twilio treats a missing *or invalid* edge as
"the edge where the call entered"; this parser refuses an edge it does not know
(a typo such as ``;edge=dubiln`` would otherwise silently route through another
continent). A missing edge is fine and stays ``None``.

Everything else (other parameters, URI headers ``?...``, spaces, unbracketed
IPv6, ports out of range) raises :class:`sipedge.errors.URIError` whose message
names the bad part and the fix.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Optional, Union

from . import catalog
from ..errors import CatalogError, URIError

TRANSPORTS = ("udp", "tcp", "tls")
DEFAULT_PORT = 5060
DEFAULT_TLS_PORT = 5061
PARAMS = ("transport", "edge", "region")

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_USER = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,?/]|%[0-9A-Fa-f]{2})+\Z")
_DOTTED = re.compile(r"[0-9.]+\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")

_FORM = "sip:host[:port][;transport=udp|tcp|tls][;edge=NAME]"


@dataclass(frozen=True)
class OriginationURI:
    """A parsed origination URI. ``str(uri)`` is its canonical text."""

    scheme: str                  # "sip" or "sips"
    host: str                    # lower-case name, dotted IPv4, or IPv6 without brackets
    host_kind: str               # "name" | "ipv4" | "ipv6"
    port: int                    # effective port (default filled in)
    transport: str               # effective transport: "udp" | "tcp" | "tls"
    edge: Optional[str] = None   # canonical Twilio edge name, or None (the entry edge)
    user: Optional[str] = None
    port_given: bool = False     # the text named a port
    transport_given: bool = False  # the text had ;transport=

    @property
    def tls(self) -> bool:
        return self.transport == "tls"

    def __str__(self) -> str:
        host = f"[{self.host}]" if self.host_kind == "ipv6" else self.host
        out = f"{self.scheme}:" + (f"{self.user}@" if self.user else "") + host
        if self.port_given:
            out += f":{self.port}"
        if self.transport_given:
            # sips: with transport=tcp is stored as tls; write it back as RFC 3261 does
            t = "tcp" if self.scheme == "sips" else self.transport
            out += f";transport={t}"
        if self.edge:
            out += f";edge={self.edge}"
        return out


def _fail(text: str, what: str, fix: str) -> URIError:
    return URIError(f"origination URI {text!r}: {what}; {fix}")


def _edge_of(text: str, param: str, value: str) -> str:
    try:
        e = catalog.edge(value)
    except CatalogError:
        valid = ", ".join(n for n, x in catalog.EDGES.items() if x.sip_trunking)
        raise _fail(text, f"unknown Twilio edge {param}={value!r}",
                    f"use one of: {valid} (or drop ;{param}= to leave from the entry edge)") from None
    if not e.sip_trunking:
        raise _fail(text, f"{param}={value!r} is the {e.name} edge, which does not work with "
                    "Elastic SIP Trunking", "name a specific edge such as edge=ashburn, "
                    "or drop the parameter")
    return e.name


def _host(text: str, hostport: str) -> tuple[str, str, Optional[str]]:
    """(host, kind, port text or None) from the host[:port] part."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise _fail(text, "IPv6 address without a closing ']'", "write sip:[2001:db8::1]:5060")
        inner, rest = hostport[1:end], hostport[end + 1:]
        try:
            addr = ipaddress.IPv6Address(inner)
        except ValueError:
            raise _fail(text, f"{inner!r} inside [...] is not an IPv6 address",
                        "brackets are only for IPv6 addresses") from None
        if addr.scope_id:
            raise _fail(text, f"IPv6 zone index in {inner!r}", "drop the %zone part")
        if rest and not rest.startswith(":"):
            raise _fail(text, f"unexpected {rest!r} after the IPv6 address", "write [addr]:port")
        return str(addr), "ipv6", (rest[1:] if rest else None)
    if hostport.count(":") > 1:
        raise _fail(text, f"{hostport!r} looks like an IPv6 address without brackets",
                    "write it in brackets: sip:[2001:db8::1]:5060")
    host, sep, port = hostport.partition(":")
    if not host:
        raise _fail(text, "no host", f"write {_FORM}")
    if _DOTTED.match(host):
        try:
            return str(ipaddress.IPv4Address(host)), "ipv4", (port if sep else None)
        except ValueError:
            raise _fail(text, f"{host!r} is not a valid IPv4 address",
                        "use four numbers 0-255, or a host name") from None
    name = host.lower()
    if len(name) > 253:
        raise _fail(text, f"host name is {len(name)} characters long", "the limit is 253")
    for label in name.split("."):
        if not _LABEL.match(label):
            raise _fail(text, f"host {host!r} has an invalid label {label!r}",
                        "labels are 1-63 letters, digits or '-', not starting or ending with '-'")
    if name.rsplit(".", 1)[-1].isdigit():
        raise _fail(text, f"host {host!r} ends in a numeric label", "use a host name or an IPv4 address")
    return name, "name", (port if sep else None)


def parse_uri(text: Union[str, OriginationURI]) -> OriginationURI:
    """Parse and validate an origination URI (see the module docstring)."""
    if isinstance(text, OriginationURI):
        return text
    if not isinstance(text, str):
        raise URIError(f"an origination URI is a string like {_FORM!r}, not {type(text).__name__}")
    raw = text
    text = text.strip()
    if not text:
        raise URIError(f"empty origination URI; write {_FORM}")
    if any(c.isspace() for c in text):
        raise _fail(raw, "contains white space", "remove the spaces")
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in ("sip", "sips"):
        raise _fail(raw, f"scheme {scheme + colon!r} is not sip: or sips:", f"write {_FORM}")
    if rest.startswith("//"):
        raise _fail(raw, "'//' after the scheme", "SIP URIs have no '//': write sip:host")
    if "?" in rest:
        raise _fail(raw, "URI headers ('?...') are not allowed in an origination URI",
                    "remove everything from '?'")
    main, *params = rest.split(";")
    user = None
    if "@" in main:
        user, _, main = main.rpartition("@")
        if not user or not _USER.match(user):
            raise _fail(raw, f"invalid user part {user!r}",
                        "use letters, digits and -_.!~*'()&=+$,/ or %XX escapes")
    host, kind, port_text = _host(raw, main)

    port = None
    if port_text is not None:
        if not _PORT.match(port_text) or not 1 <= int(port_text) <= 65535:
            raise _fail(raw, f"port {port_text!r} is not a number 1-65535", "fix the port or drop it")
        port = int(port_text)

    seen: dict[str, str] = {}
    for p in params:
        name, eq, value = p.partition("=")
        key = name.lower()
        if key not in PARAMS:
            raise _fail(raw, f"unsupported parameter ;{p}" if p else "empty parameter ';;' or trailing ';'",
                        "only ;transport=, ;edge= and ;region= (legacy) are allowed")
        if not eq or not value:
            raise _fail(raw, f";{key} has no value", f"write ;{key}=VALUE or drop it")
        if key in seen:
            raise _fail(raw, f";{key}= given twice", "keep one")
        seen[key] = value

    transport_given = "transport" in seen
    if transport_given:
        transport = seen["transport"].lower()
        if transport not in TRANSPORTS:
            raise _fail(raw, f"transport {seen['transport']!r} is not supported",
                        "use transport=udp, tcp or tls")
        if scheme == "sips":
            if transport == "udp":
                raise _fail(raw, "sips: requires TLS, but transport=udp",
                            "use sips: with transport=tcp or tls, or sip: with transport=udp")
            transport = "tls"
    else:
        transport = "tls" if scheme == "sips" else "udp"

    edge = None
    if "edge" in seen:
        edge = _edge_of(raw, "edge", seen["edge"])
    if "region" in seen:
        legacy = _edge_of(raw, "region", seen["region"])
        if edge is not None and edge != legacy:
            raise _fail(raw, f"edge={seen['edge']} and region={seen['region']} disagree",
                        "keep only ;edge=")
        edge = legacy

    return OriginationURI(
        scheme=scheme, host=host, host_kind=kind,
        port=port if port is not None else (DEFAULT_TLS_PORT if transport == "tls" else DEFAULT_PORT),
        transport=transport, edge=edge, user=user,
        port_given=port is not None, transport_given=transport_given,
    )
