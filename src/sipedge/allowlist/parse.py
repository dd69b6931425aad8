"""Allowlist TOML files: parsing and validation, and the embedded Twilio dataset.

File format::


    [dataset]                      # optional
    name = "my-sbc"
    version = "1"
    extends = "twilio"             # start from the embedded Twilio dataset

    [roles.carrierx]               # a role: the ports its traffic uses
    ports = ["5060/udp", "5060/tcp", "5061/tcp"]
    carrier = "carrierx"           # "twilio": edges must be Twilio edge names

    [[ranges]]
    role = "carrierx"
    edge = "east"                  # "*" (or absent): every edge
    prefixes = ["198.51.100.0/24", "2001:db8::/32"]

Every problem is an :class:`~sipedge.errors.AllowlistError` naming the file,
the line and the fix. :func:`parse` gives the pieces an
:class:`~sipedge.allowlist.Allowlist` is built from; :func:`embedded` parses
the dataset shipped in ``sipedge/twilio/data/twilio.toml`` once.
"""
from __future__ import annotations

import ipaddress
import re
import sys
from importlib import resources
from typing import NamedTuple, Optional, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..errors import AllowlistError
from ..twilio import catalog
from .model import ALL_EDGES, Entry, parse_ports

__all__ = ["Parsed", "parse", "embedded", "embedded_text", "EMBEDDED"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_EDGE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$")
_TOP_KEYS = ("dataset", "roles", "ranges", "sbc")
_DATASET_KEYS = ("name", "version", "source", "read", "extends")
_ROLE_KEYS = ("ports", "carrier", "description")
_RANGE_KEYS = ("role", "edge", "prefixes", "note")
EMBEDDED = "<embedded twilio.toml>"


# ------------------------------------------------------------------ file parsing
class _Source:
    """The text of a file, to say which line a value came from."""

    def __init__(self, text: str, name: str) -> None:
        self.text = text
        self.name = name
        self._lines: Optional[list[str]] = None
        self._headers: Optional[list] = None

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = self.text.splitlines()
        return self._lines

    def header(self, pattern: str, nth: int = 0) -> Optional[int]:
        """0-based line of the *nth* table header matching *pattern*."""
        if self._headers is None:  # one pass over the file, only lines opening a table
            self._headers = [(i, line) for i, line in enumerate(self.lines)
                             if line.lstrip().startswith("[")]
        rx = re.compile(r"^\s*" + pattern + r"\s*(#.*)?$")
        k = 0
        for i, line in self._headers:
            if rx.match(line):
                if k == nth:
                    return i
                k += 1
        return None

    def line_of(self, value, start: Optional[int], fallback: bool = True) -> Optional[int]:
        """1-based line of *value* (a quoted string or a key) at or after line *start*."""
        if start is None:
            return None
        needles = ([f'"{value}"', f"'{value}'"] if isinstance(value, str) else [str(value)])
        for i in range(start, len(self.lines)):
            if any(n in self.lines[i] for n in needles):
                return i + 1
        return start + 1 if fallback else None

    def line_of_key(self, key: str, start: Optional[int]) -> Optional[int]:
        """1-based line where *key* is assigned, at or after line *start*."""
        if start is None:
            return None
        rx = re.compile(r"^\s*[\"']?" + re.escape(key) + r"[\"']?\s*=")
        for i in range(start, len(self.lines)):
            if rx.match(self.lines[i]):
                return i + 1
        return start + 1

    def where(self, line: Optional[int]) -> str:
        return f"{self.name}:{line}: " if line else f"{self.name}: "

    def ranges_block(self, k: int) -> Optional[int]:
        return self.header(r"\[\[\s*ranges\s*\]\]", k)

    def role_block(self, name: str) -> Optional[int]:
        return self.header(r"\[\s*roles\s*\.\s*[\"']?" + re.escape(name) + r"[\"']?\s*\]")


def _check_keys(src: _Source, table: dict, allowed: Sequence[str], what: str,
                start: Optional[int]) -> None:
    for key in table:
        if key not in allowed:
            line = src.line_of_key(key, start)
            raise AllowlistError(f"{src.where(line)}unknown key {key!r} in {what}; "
                                 f"valid keys: {', '.join(allowed)}")


def _strict_network(p, src: _Source, line: Optional[int]):
    where = src.where(line)
    if not isinstance(p, str):
        raise AllowlistError(f"{where}prefix {p!r} is not a string: write \"192.0.2.0/24\"")
    try:
        return ipaddress.ip_network(p)
    except ValueError as e:
        try:
            loose = ipaddress.ip_network(p, strict=False)
        except ValueError:
            raise AllowlistError(
                f"{where}bad prefix {p!r} ({e}): write an IPv4 or IPv6 network such as "
                "192.0.2.0/24 or 2001:db8::/32") from None
        host = p.split("/")[0]
        full = 32 if loose.version == 4 else 128
        raise AllowlistError(
            f"{where}prefix {p!r} has host bits set: did you mean the network {loose} "
            f"or the single host {host}/{full}?") from None


class Parsed(NamedTuple):
    entries: list
    ports: dict
    carriers: dict
    meta: dict


def parse(text: str, source: str, base: Optional[Parsed] = None,
          allow_world: bool = False) -> Parsed:
    src = _Source(text, source)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise AllowlistError(f"{source}: not valid TOML: {e}; check quotes, commas and brackets") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise AllowlistError(f"{source}: arrays or tables nested too deeply for an allowlist; "
                             "an allowlist needs only a few levels (roles.NAME.ports = [...])") from None
    _check_keys(src, doc, _TOP_KEYS, "the top level", 0)

    dataset = doc.get("dataset", {})
    if not isinstance(dataset, dict):
        raise AllowlistError(f"{source}: 'dataset' must be a table: [dataset]")
    _check_keys(src, dataset, _DATASET_KEYS, "[dataset]", src.header(r"\[\s*dataset\s*\]"))
    meta = {k: v for k, v in dataset.items()}
    if "sbc" in doc:
        # the SBC's own listening ports (the firewall's business, sipedge.firewall.desired.sbc_ports)
        if not isinstance(doc["sbc"], dict):
            raise AllowlistError(f"{source}: 'sbc' must be a table: [sbc] sip_ports = [\"5060/udp\"]")
        meta["sbc"] = doc["sbc"]

    extends = dataset.get("extends")
    if extends is not None:
        if extends != "twilio":
            line = src.line_of(extends, src.header(r"\[\s*dataset\s*\]"))
            raise AllowlistError(f"{src.where(line)}extends = {extends!r}: only \"twilio\" "
                                 "(the embedded dataset) can be extended; remove it to replace")
        if base is None:
            base = embedded()
        meta["extends"] = {"name": base.meta.get("name"), "version": base.meta.get("version")}
    else:
        base = None

    ports: dict = dict(base.ports) if base else {}
    carriers: dict = dict(base.carriers) if base else {}
    roles = doc.get("roles", {})
    if not isinstance(roles, dict):
        raise AllowlistError(f"{source}: 'roles' must be tables: [roles.signaling]")
    for name, spec in roles.items():
        start = src.role_block(name)
        where = src.where(start + 1 if start is not None else None)
        if not isinstance(spec, dict):
            raise AllowlistError(f"{where}role {name!r} must be a table: [roles.{name}]")
        if not _NAME.match(name):
            raise AllowlistError(f"{where}bad role name {name!r}: use a lower-case letter then "
                                 "letters, digits or '_' (at most 32), e.g. carrierx_signaling")
        _check_keys(src, spec, _ROLE_KEYS, f"[roles.{name}]", start)
        specs = spec.get("ports")
        if not isinstance(specs, list) or not specs:
            if "ports" in spec:
                where = src.where(src.line_of_key("ports", start))
            raise AllowlistError(f"{where}role {name!r} has no ports: add e.g. "
                                 "ports = [\"5060/udp\", \"5061/tcp\"]")
        prs: list = []
        for p in specs:
            pwhere = src.where(src.line_of(p, start))
            pr = parse_ports(p, pwhere)
            if pr in prs:
                raise AllowlistError(f"{pwhere}duplicate port {p!r} in role {name!r}: list it once")
            prs.append(pr)
        carrier = spec.get("carrier", "")
        if base is not None and name in base.ports:
            if prs != base.ports[name] or carrier != base.carriers.get(name, ""):
                raise AllowlistError(
                    f"{where}duplicate role name {name!r}: the twilio dataset already defines it "
                    f"with ports {', '.join(map(str, base.ports[name]))}; give your role another "
                    f"name (e.g. {name}_2) or drop 'extends' to replace the dataset")
        ports[name] = prs
        carriers[name] = carrier

    ranges = doc.get("ranges", [])
    if not isinstance(ranges, list):
        raise AllowlistError(f"{source}: 'ranges' must be an array of tables: [[ranges]]")
    entries: list = list(base.entries) if base else []
    seen: dict = {(e.role, e.network): (None, None, e.edge) for e in entries}
    for k, r in enumerate(ranges):
        start = src.ranges_block(k)
        hwhere = src.where(start + 1 if start is not None else None)
        if not isinstance(r, dict):
            raise AllowlistError(f"{hwhere}each range must be a table: [[ranges]]")
        _check_keys(src, r, _RANGE_KEYS, "[[ranges]]", start)
        role = r.get("role")
        if role not in ports:
            line = src.line_of(role, start) if isinstance(role, str) else (start + 1 if start is not None else None)
            raise AllowlistError(
                f"{src.where(line)}unknown role {role!r}; roles defined: {', '.join(ports) or 'none'} "
                f"(declare it with [roles.{role if isinstance(role, str) else 'NAME'}] and its ports)")
        edge = r.get("edge", ALL_EDGES)
        if not isinstance(edge, str) or not (edge == ALL_EDGES or _EDGE_NAME.match(edge)):
            line = src.line_of(edge, start)
            raise AllowlistError(f"{src.where(line)}bad edge {edge!r}: a lower-case name such as "
                                 "'ashburn', or \"*\" for every edge")
        if carriers.get(role) == "twilio" and edge != ALL_EDGES:
            twilio_edge = catalog.EDGES.get(edge)
            if twilio_edge is None or not twilio_edge.sip_trunking:
                line = src.line_of(edge, start)
                valid = ", ".join(n for n, x in catalog.EDGES.items() if x.sip_trunking)
                raise AllowlistError(f"{src.where(line)}unknown Twilio edge {edge!r} for role "
                                     f"{role!r}; valid edges: {valid}, or \"*\"")
        prefixes = r.get("prefixes")
        if not isinstance(prefixes, list) or not prefixes:
            line = src.line_of_key("prefixes", start) if "prefixes" in r else (start + 1 if start is not None else None)
            raise AllowlistError(f"{src.where(line)}range of role {role!r} has no prefixes: add "
                                 "e.g. prefixes = [\"192.0.2.0/24\"] or delete the range")
        edge_v = None if edge == ALL_EDGES else edge
        for p in prefixes:
            try:
                net = ipaddress.ip_network(p) if isinstance(p, str) else None
            except ValueError:
                net = None
            if net is None:
                _strict_network(p, src, src.line_of(p, start))
            if net is not None and net.prefixlen == 0 and not allow_world:
                raise AllowlistError(
                    f"{src.where(src.line_of(p, start))}prefix {p!r} in role {role!r} is every "
                    f"IPv{net.version} address: a firewall built from it protects nothing; list the "
                    "carrier's prefixes (or pass --force if that is really meant)")
            key = (role, net)
            if key in seen:
                first_k, first_p, first_edge = seen[key]
                if first_k is None:
                    where_first = "in the twilio dataset"
                    line = src.line_of(p, start)
                else:
                    first_line = src.line_of(first_p, src.ranges_block(first_k))
                    where_first = f"at line {first_line}"
                    # in the same block the repeat is below the first occurrence
                    if first_k == k and first_line:
                        line = src.line_of(p, first_line, fallback=False) or first_line
                    else:
                        line = src.line_of(p, start)
                raise AllowlistError(
                    f"{src.where(line)}duplicate prefix {p!r} in role {role!r}: already listed "
                    f"{where_first} (edge {first_edge or ALL_EDGES}); list each network once per role")
            seen[key] = (k, p, edge_v)
            assert isinstance(role, str) and net is not None  # both checked above
            entries.append(Entry(role, edge_v, net))
    if not entries:
        raise AllowlistError(f"{source}: the allowlist has no ranges: add a [[ranges]] table "
                             "with a role and prefixes, or set extends = \"twilio\" under [dataset]")
    return Parsed(entries, ports, carriers, meta)


_EMBEDDED: Optional[Parsed] = None


def embedded_text() -> str:
    return resources.files("sipedge.twilio").joinpath("data/twilio.toml").read_text("utf-8")


def embedded() -> Parsed:
    global _EMBEDDED
    if _EMBEDDED is None:
        _EMBEDDED = parse(embedded_text(), EMBEDDED)
    return _EMBEDDED

