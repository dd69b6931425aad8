"""RFC 3263 resolution of ``sip:``/``sips:`` URIs with dnspython, cached by TTL.

::

    from sipedge.locate import Resolver
    r = Resolver(nameservers=["192.0.2.53"], port=53, timeout=2.0)
    res = r.resolve("sip:example.test")           # or "sips:...", "host", "sip:h:5080;transport=tcp"
    for d in res.destinations:                     # failover order: try them in turn
        print(d.host, d.address, d.port, d.transport, d.priority, d.weight)

**Steps** (RFC 3263 section 4, client side):

1. *Transport*: ``;transport=`` when the URI has it. Otherwise a numeric host
   or an explicit port means UDP for ``sip:`` and TLS for ``sips:``.
   Otherwise NAPTR records of the host are looked up; the supported ones
   (``SIP+D2U`` udp, ``SIP+D2T`` tcp, ``SIPS+D2T`` tls; only ``SIPS+D2T`` for
   ``sips:``) are tried in (order, preference) order and the first whose SRV
   name has records wins. Without usable NAPTR records the SRV names
   ``_sip._udp``, ``_sip._tcp``, ``_sips._tcp`` (only the last for ``sips:``)
   are tried in that order (restrict with ``transports=``); with none, UDP
   (TLS for ``sips:``) to the host's A/AAAA.
2. *Port and address*: a numeric host is used as it is; an explicit port
   skips SRV (A/AAAA of the host); otherwise the SRV records are ordered by
   sipedge's own selection core (:class:`sipedge.TargetSet`, the share rules
   documented there, not dnspython's ``processing_order()``), and each SRV
   target is expanded to its addresses (IPv4 first, then IPv6; set
   ``families=``). An SRV target of ``.`` or one without any address is
   skipped and said so in the steps.

**Caching**: a resolution is kept until the shortest TTL of its records
(negative answers: the zone's SOA minimum, else ``negative_ttl``) runs out;
each cached :meth:`Resolver.resolve` draws a new SRV order from the cached
records (no DNS traffic). ``refresh=True`` re-resolves at once.

**Failures**: NXDOMAIN of the host (and no records anywhere) is final and
raises :class:`~sipedge.errors.ResolveError`. A transient failure (timeout,
SERVFAIL/REFUSED, no nameserver answering) while a last good answer exists
keeps that answer for up to ``stale_for`` seconds (default 900) after it
expired, returned with ``stale=True`` and ``error`` naming what failed; the
server is asked again at most every ``retry_after`` seconds (default 5) in the
meantime. After ``stale_for`` the failure is raised.
"""
from __future__ import annotations

import ipaddress
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence, Union

import dns.exception
import dns.message
import dns.nameserver
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver

from ..errors import InputError, ResolveError
from ..twilio.uri import OriginationURI, parse_uri

#: NAPTR service field -> transport (RFC 3263 section 4.1)
NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
#: transport -> SRV prefix (RFC 3263 section 4.1)
SRV_PREFIX = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}
DEFAULT_STALE_FOR = 900.0
DEFAULT_RETRY_AFTER = 5.0
DEFAULT_NEGATIVE_TTL = 30.0


@dataclass(frozen=True)
class Destination:
    """One address to send to, in failover order.

    ``host`` is the name the address came from (the SRV target, or the URI's
    host); keep the URI's own host in the Request-URI (Twilio answers a bare IP
    there with 403). ``expires`` is on the resolver's clock (monotonic seconds);
    :meth:`ttl` is what is left of it.
    """

    host: str
    address: str
    port: int
    transport: str
    priority: int = 0
    weight: int = 0
    expires: float = float("inf")
    srv: bool = False

    @property
    def family(self) -> int:
        return 6 if ":" in self.address else 4

    def ttl(self, now: Optional[float] = None) -> float:
        """Seconds left until this record expires (negative when stale)."""
        return self.expires - (time.monotonic() if now is None else now)


@dataclass(frozen=True)
class Step:
    """One RFC 3263 step, for people: what was asked, what came back, what was chosen."""

    query: str        # e.g. "NAPTR example.test"
    answer: list      # lines of text, one per record (or the failure)
    note: str = ""    # e.g. "chose SIP+D2U -> _sip._udp.example.test"

    def to_dict(self) -> dict:
        return {"query": self.query, "answer": list(self.answer), "note": self.note}


@dataclass
class Resolution:
    """The result of :meth:`Resolver.resolve`: destinations in failover order."""

    uri: OriginationURI
    transport: str
    destinations: list
    steps: list
    resolved_at: float
    expires: float
    stale: bool = False
    error: Optional[str] = None

    def to_dict(self, now: Optional[float] = None) -> dict:
        now = time.monotonic() if now is None else now
        return {
            "uri": str(self.uri), "transport": self.transport, "stale": self.stale,
            "error": self.error, "steps": [s.to_dict() for s in self.steps],
            "destinations": [
                {"host": d.host, "address": d.address, "port": d.port, "transport": d.transport,
                 "priority": d.priority, "weight": d.weight,
                 "ttl": None if d.expires == float("inf") else round(d.ttl(now), 3)}
                for d in self.destinations],
        }


class _Transient(Exception):
    """A DNS failure that may pass (timeout, SERVFAIL, REFUSED, unreachable)."""


@dataclass
class _Entry:
    """One SRV target (or the host itself) with its addresses."""

    host: str
    port: int
    priority: int
    weight: int
    dests: list = field(default_factory=list)


@dataclass
class _Plan:
    uri: OriginationURI
    transport: str
    steps: list
    entries: list
    order: Optional[Callable[[], list]]   # SRV order from TargetSet, or None (one entry)
    by_target: dict               # id(Target) -> _Entry (Target hashing is slow)
    resolved_at: float
    expires: float
    failed_at: float = -1.0
    error: Optional[str] = None

    def destinations(self) -> list:
        if self.order is None:
            return list(self.entries[0].dests) if self.entries else []
        out: list = []
        for t in self.order():
            out.extend(self.by_target[id(t)].dests)
        return out


def parse_nameserver(text: str) -> tuple[str, Optional[int]]:
    """``IP``, ``IP:PORT``, ``[IPv6]:PORT`` or a bare IPv6 -> (address, port or None)."""
    t = text.strip()
    port: Optional[str] = None
    if t.startswith("["):
        host, _, rest = t[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise InputError(f"nameserver {text!r}: write IP, IP:PORT or [IPv6]:PORT")
            port = rest[1:]
    elif t.count(":") == 1:
        host, port = t.split(":")
    else:
        host = t
    try:
        addr = str(ipaddress.ip_address(host))
    except ValueError:
        raise InputError(f"nameserver {text!r} is not an IP address; write IP, IP:PORT "
                         "or [IPv6]:PORT") from None
    if port is None:
        return addr, None
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise InputError(f"nameserver {text!r}: port {port!r} is not a number 1-65535")
    return addr, int(port)


def as_uri(uri: Union[str, OriginationURI]) -> OriginationURI:
    """A ``sip:``/``sips:`` URI, or a bare host name / address taken as ``sip:HOST``."""
    if isinstance(uri, OriginationURI):
        return uri
    if not isinstance(uri, str):
        raise InputError(f"a URI to resolve is a string like 'sip:example.com', not "
                         f"{type(uri).__name__}")
    text = uri.strip()
    low = text.lower()
    if not (low.startswith("sip:") or low.startswith("sips:")):
        if "://" in text or low.startswith(("tel:", "http:", "https:")):
            raise InputError(f"{uri!r} is not a sip: or sips: URI or a host name")
        try:
            ipaddress.IPv6Address(text)
            text = f"[{text}]"
        except ValueError:
            pass
        text = "sip:" + text
    return parse_uri(text)


class Resolver:
    """RFC 3263 resolver with a TTL cache (see the module docstring).

    ``nameservers``: addresses (``"192.0.2.53"``, ``"192.0.2.53:5353"``,
    ``"[2001:db8::53]:53"``); None reads ``/etc/resolv.conf``. ``port``: the
    default port of the nameservers (53). ``timeout``: seconds for the whole of
    one DNS query including retries (dnspython's lifetime). ``transports``: the
    ones this client supports, in preference order for the SRV-only step.
    ``families``: address families to use and their order (4 = A, 6 = AAAA).
    ``clock``: monotonic seconds (tests pass a fake one). ``seed``: for the
    SRV order draws (reproducible tests). Safe to call from many threads.
    """

    def __init__(self, nameservers: Optional[Sequence[str]] = None, *, port: int = 53,
                 timeout: float = 2.0, transports: Sequence[str] = ("udp", "tcp", "tls"),
                 families: Sequence[int] = (4, 6), stale_for: float = DEFAULT_STALE_FOR,
                 retry_after: float = DEFAULT_RETRY_AFTER,
                 negative_ttl: float = DEFAULT_NEGATIVE_TTL,
                 clock: Callable[[], float] = time.monotonic, seed: Optional[int] = None) -> None:
        if isinstance(nameservers, str):
            nameservers = [nameservers]
        for what, v in (("timeout", timeout), ("stale_for", stale_for),
                        ("retry_after", retry_after), ("negative_ttl", negative_ttl)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise InputError(f"{what} {v!r} must be a number of seconds >= 0")
        if not 0 < timeout <= 300:
            raise InputError(f"timeout {timeout!r} must be > 0 and at most 300 seconds")
        for what, v in (("stale_for", stale_for), ("retry_after", retry_after),
                        ("negative_ttl", negative_ttl)):
            if v == float("inf"):
                raise InputError(f"{what} must be a finite number of seconds")
        bad = [t for t in transports if t not in SRV_PREFIX]
        if bad or not transports:
            raise InputError(f"transports {list(transports)!r}: use a non-empty list of udp, tcp, tls")
        if not families or any(f not in (4, 6) for f in families):
            raise InputError(f"families {list(families)!r}: use 4, 6 or both")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise InputError(f"nameserver port {port!r} is not a number 1-65535")
        if nameservers is None:
            try:
                dr = dns.resolver.Resolver(configure=True)
            except dns.resolver.NoResolverConfiguration as e:
                raise ResolveError(f"no nameserver configured ({e}); pass nameservers= "
                                   "or --nameserver IP") from None
        else:
            dr = dns.resolver.Resolver(configure=False)
            servers = [parse_nameserver(text) for text in nameservers]
            if not servers:
                raise InputError("nameservers is empty; give at least one address")
            # dnspython takes per-server ports through nameserver objects
            dr.nameservers = [dns.nameserver.Do53Nameserver(a, port if p is None else p)
                              for a, p in servers]
        dr.port = port
        dr.timeout = timeout
        dr.lifetime = timeout
        self._dns = dr
        self.timeout = float(timeout)
        self.transports = tuple(transports)
        self.families = tuple(families)
        self.stale_for = float(stale_for)
        self.retry_after = float(retry_after)
        self.negative_ttl = float(negative_ttl)
        self._clock = clock
        self._seed = seed
        self._plans: dict[str, _Plan] = {}
        self._lock = threading.Lock()          # guards _plans and _key_locks
        self._key_locks: dict[str, threading.Lock] = {}
        self.queries = 0          # DNS queries sent (for tests and the bench)

    @property
    def nameservers(self) -> list[str]:
        return [str(n) for n in self._dns.nameservers]

    # ----------------------------------------------------------------- public
    def resolve(self, uri: Union[str, OriginationURI], *, refresh: bool = False) -> Resolution:
        """Destinations for *uri* in failover order (see the module docstring).

        Raises :class:`~sipedge.errors.ResolveError` (naming the host and what
        failed) or :class:`~sipedge.errors.URIError` for a bad URI."""
        now = self._clock()
        if not refresh and isinstance(uri, str):
            plan = self._plans.get(uri)          # also kept under the text as given
            if plan is not None and now < plan.expires:
                return self._result(plan, now)
        u = as_uri(uri)
        key = str(u)
        plan = self._plans.get(key)
        if plan is not None and not refresh and now < plan.expires:
            return self._result(plan, now)
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:     # one resolution of a URI at a time; other URIs go on
            plan = self._plans.get(key)
            now = self._clock()
            if plan is not None and not refresh and now < plan.expires:
                return self._result(plan, now)
            if (plan is not None and not refresh and plan.failed_at >= 0
                    and now - plan.failed_at < self.retry_after
                    and now - plan.expires < self.stale_for):
                return self._result(plan, now)      # stale, asked again only after retry_after
            try:
                fresh = self._resolve(u)
            except _Transient as e:
                msg = f"{e}"
                if plan is not None and now - plan.expires < self.stale_for:
                    plan.failed_at = now
                    plan.error = (f"{msg}; keeping the answer of "
                                  f"{now - plan.resolved_at:.0f} s ago (expired "
                                  f"{max(0.0, now - plan.expires):.0f} s ago, kept up to "
                                  f"{self.stale_for:.0f} s)")
                    return self._result(plan, now)
                if plan is not None:
                    msg += (f"; the last good answer expired {now - plan.expires:.0f} s ago, "
                            f"beyond stale_for={self.stale_for:.0f} s")
                with self._lock:
                    self._forget(key)
                raise ResolveError(msg + "; check the nameserver (--nameserver) and the zone") from None
            with self._lock:
                self._forget(key)
                self._plans[key] = fresh
                if isinstance(uri, str) and uri != key:
                    self._plans[uri] = fresh
            return self._result(fresh, now)

    def _forget(self, key: str) -> None:
        """Drop *key* and its aliases (the caller holds ``self._lock``)."""
        old = self._plans.pop(key, None)
        if old is not None:
            for k in [k for k, v in self._plans.items() if v is old]:
                del self._plans[k]

    def invalidate(self, uri: Union[str, OriginationURI, None] = None) -> None:
        """Forget the cached answer for *uri*, or every cached answer."""
        with self._lock:
            if uri is None:
                self._plans.clear()
            else:
                self._forget(str(as_uri(uri)))

    # --------------------------------------------------------------- internal
    def _result(self, plan: _Plan, now: float) -> Resolution:
        stale = now >= plan.expires
        return Resolution(plan.uri, plan.transport, plan.destinations(), plan.steps,
                          plan.resolved_at, plan.expires, stale,
                          plan.error if stale else None)

    def _query(self, name: str, rdtype: str) -> tuple[list, float, str]:
        """(records, ttl, status) with status "ok", "nodata" or "nxdomain"."""
        self.queries += 1
        try:
            ans = self._dns.resolve(dns.name.from_text(name), rdtype, search=False,
                                    raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as e:
            return [], self._negative_ttl(e.responses().values()), "nxdomain"
        except dns.resolver.LifetimeTimeout:
            raise _Transient(f"{rdtype} {name}: no answer from {self._servers()} within "
                             f"{self.timeout:g} s (timeout)") from None
        except dns.resolver.NoNameservers as e:
            raise _Transient(f"{rdtype} {name}: every nameserver failed "
                             f"({_first_error(e)})") from None
        except dns.exception.DNSException as e:
            raise _Transient(f"{rdtype} {name}: {e}") from None
        if ans.rrset is None:
            return [], self._negative_ttl([ans.response]), "nodata"
        return list(ans.rrset), float(ans.rrset.ttl), "ok"

    def _servers(self) -> str:
        out = []
        for n in self._dns.nameservers:
            a, p = getattr(n, "address", str(n)), getattr(n, "port", self._dns.port)
            out.append(f"[{a}]:{p}" if ":" in a else f"{a}:{p}")
        return ", ".join(out)

    def _negative_ttl(self, responses: Iterable) -> float:
        for r in responses:
            for rrset in getattr(r, "authority", ()):
                if rrset.rdtype == dns.rdatatype.SOA:
                    return float(min(rrset.ttl, rrset[0].minimum))
        return self.negative_ttl

    def _addresses(self, host: str, port: int, transport: str, prio: int, weight: int,
                   srv: bool, steps: list, now: float) -> tuple[list, float, str]:
        """Destinations of *host* (A/AAAA), the shortest TTL, and "" or why there are none."""
        dests: list = []
        ttl = float("inf")
        why = []
        for fam in self.families:
            rdtype = "A" if fam == 4 else "AAAA"
            recs, t, status = self._query(host, rdtype)
            ttl = min(ttl, t)
            steps.append(Step(f"{rdtype} {host}", [r.address for r in recs] or [status.upper()]))
            if status == "nxdomain":
                why.append("NXDOMAIN (no such name)")
                break
            for r in recs:
                dests.append((r.address, t))
            if not recs:
                why.append(f"no {rdtype} record")
        out = [Destination(host, a, port, transport, prio, weight, now + t, srv) for a, t in dests]
        return out, ttl, "; ".join(why) if not out else ""

    def _resolve(self, u: OriginationURI) -> _Plan:
        now = self._clock()
        steps: list = []
        host = u.host
        if u.host_kind != "name":
            d = Destination(host, host, u.port, u.transport, 0, 0, float("inf"), False)
            steps.append(Step(f"numeric host {host}", [host],
                              f"transport {u.transport}, port {u.port}: no DNS"))
            e = _Entry(host, u.port, 0, 0, [d])
            return _Plan(u, u.transport, steps, [e], None, {}, now, float("inf"))

        min_ttl = float("inf")
        transport: Optional[str] = u.transport if (u.transport_given or u.port_given) else None
        srv_name: Optional[str] = None
        srv_recs: list = []
        if transport is None:
            # RFC 3263 4.1: NAPTR
            recs, ttl, status = self._query(host, "NAPTR")
            min_ttl = min(min_ttl, ttl)
            if status == "nxdomain":   # nothing exists at or below the name
                raise ResolveError(f"{host}: NXDOMAIN (no such name); check the host name "
                                   "and the zone")
            lines = [f"{r.order} {r.preference} {r.flags.decode(errors='replace')} "
                     f"{r.service.decode(errors='replace')} -> {r.replacement}" for r in recs]
            cands = []
            for r in sorted(recs, key=lambda r: (r.order, r.preference)):
                svc = r.service.decode(errors="replace").upper()
                t = NAPTR_SERVICES.get(svc)
                if (t is None or t not in self.transports or r.flags.lower() != b"s"
                        or (u.scheme == "sips" and t != "tls")):
                    continue
                cands.append((t, r.replacement.to_text(omit_final_dot=True).lower(), svc))
            steps.append(Step(f"NAPTR {host}", lines or [status.upper()],
                              "" if cands else ("no supported NAPTR record: SRV next"
                                                if recs else "no NAPTR records: SRV next")))
            if not cands:
                order = [t for t in self.transports if u.scheme == "sip" or t == "tls"]
                cands = [(t, f"{SRV_PREFIX[t]}.{host}", None) for t in order]
            for t, name, svc in cands:
                srecs, ttl, status = self._query(name, "SRV")
                lines = [f"{r.priority} {r.weight} {r.port} {r.target}" for r in srecs]
                if srecs:
                    min_ttl = min(min_ttl, ttl)
                    note = (f"chose {svc} -> {name}: transport {t}" if svc
                            else f"transport {t}")
                    steps.append(Step(f"SRV {name}", lines, note))
                    transport, srv_name, srv_recs = t, name, srecs
                    break
                steps.append(Step(f"SRV {name}", [status.upper()],
                                  f"{svc} record points nowhere" if svc else ""))
            if transport is None:
                transport = "tls" if u.scheme == "sips" else "udp"
                steps.append(Step("fallback", [], f"no SRV records: {transport} to A/AAAA of {host}"))
        elif not u.port_given:
            # transport given, no port: SRV of that transport
            name = f"{SRV_PREFIX[transport]}.{host}"
            srecs, ttl, status = self._query(name, "SRV")
            if srecs:
                min_ttl = min(min_ttl, ttl)
                srv_name, srv_recs = name, srecs
                steps.append(Step(f"SRV {name}", [f"{r.priority} {r.weight} {r.port} {r.target}"
                                                  for r in srecs], f"transport {transport} (URI)"))
            else:
                steps.append(Step(f"SRV {name}", [status.upper()], "no SRV: A/AAAA of the host"))

        if srv_name is None:
            port = u.port if u.port_given else (5061 if transport == "tls" else 5060)
            dests, ttl, why = self._addresses(host, port, transport, 0, 0, False, steps, now)
            min_ttl = min(min_ttl, ttl)
            if not dests:
                tried = [s.query.split()[1] for s in steps if s.query.startswith("SRV ")]
                srv = f"no SRV records ({', '.join(tried)}) and " if tried else ""
                raise ResolveError(f"{host}: {srv}{why}; check the host name and the zone")
            e = _Entry(host, port, 0, 0, dests)
            return _Plan(u, transport, steps, [e], None, {}, now, now + min_ttl)
        return self._srv_plan(u, transport, srv_name, srv_recs, steps, min_ttl, now)

    def _srv_plan(self, u: OriginationURI, transport: str, srv_name: str, srecs: list,
                  steps: list, min_ttl: float, now: float) -> _Plan:
        from ..select import Target, TargetSet

        entries: list[_Entry] = []
        seen: dict[tuple, _Entry] = {}
        nowhere = []
        for r in srecs:
            target = r.target.to_text(omit_final_dot=True).lower()
            if target in ("", "."):
                nowhere.append(f"{srv_name}: target '.' (service not available there)")
                continue
            key = (target, r.port)
            if key in seen:   # the same host:port twice: one target with the combined weight
                e = seen[key]
                e.weight = min(0xFFFF, e.weight + r.weight)
                e.priority = min(e.priority, r.priority)
                continue
            e = _Entry(target, r.port, r.priority, r.weight)
            seen[key] = e
            entries.append(e)
        usable = []
        for e in entries:
            dests, ttl, why = self._addresses(e.host, e.port, transport, e.priority, e.weight,
                                              True, steps, now)
            min_ttl = min(min_ttl, ttl)
            if dests:
                e.dests = dests
                usable.append(e)
            else:
                nowhere.append(f"{e.host}:{e.port}: {why}")
        if nowhere:
            steps.append(Step("skipped", nowhere))
        if not usable:
            raise ResolveError(f"{u.host}: every SRV target of {srv_name} points nowhere: "
                               + "; ".join(nowhere))
        scheme = "sips" if transport == "tls" else "sip"
        targets = []
        by_target = {}
        for e in usable:
            t = Target(f"{scheme}:{e.host}:{e.port};transport={'tcp' if scheme == 'sips' else transport}",
                       e.priority, e.weight)
            targets.append(t)
            by_target[id(t)] = e   # the set keeps t alive: its id is stable
        ts = TargetSet(targets, seed=self._seed, cooldown=0.0)
        return _Plan(u, transport, steps, usable, ts.order, by_target, now, now + min_ttl)


def _first_error(e: Exception) -> str:
    """'SERVER: what it said' for the first server dnspython reports in *e*."""
    errs = getattr(e, "kwargs", {}).get("errors") or []
    if not errs:
        return str(e)
    server, _tcp, _port, err = tuple(errs[0])[:4]
    if isinstance(err, dns.message.Message):
        err = dns.rcode.to_text(err.rcode())
    return f"{server}: {err}"


_default: Optional[Resolver] = None
_default_lock = threading.Lock()


def resolve(uri: Union[str, OriginationURI], *, nameservers: Optional[Sequence[str]] = None,
            refresh: bool = False) -> Resolution:
    """:meth:`Resolver.resolve` with a process-wide resolver (system nameservers), or a
    new one for *nameservers*."""
    global _default
    if nameservers is not None:
        return Resolver(nameservers).resolve(uri, refresh=refresh)
    with _default_lock:
        if _default is None:
            _default = Resolver()
    return _default.resolve(uri, refresh=refresh)
