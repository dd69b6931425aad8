"""Choose where each call goes: RFC 2782 order, health, failover rules.

Origination (Twilio -> your SBCs)::

    ts = TargetSet([Target("sip:sbc1.example.com;edge=dublin", 10, 60),
                    Target("sip:sbc2.example.com", 10, 20),
                    Target("sip:sbc3.example.com", 10, 20),
                    Target("sip:dr.example.com", 20, 10)], seed=1)
    ts.order()                 # every usable target, RFC 2782 failover order
    ts.pick()                  # the first of that order (one draw at most)
    ts.pick(key=call_id)       # sticky: same key, same target while it is healthy
    ts.mark_failed(t); ts.mark_ok(t)
    should_failover(486)       # False: Twilio does not fail over on 486

**Order** (RFC 2782, exactly): groups by priority, lowest first; inside a
group the weight-0 targets are listed first, then the others, each in the
order given; then repeatedly: S = sum of the remaining weights, r = a uniform
integer in [0, S] (both ends included), take the first remaining target whose
running sum reaches r. A weight-0 target is therefore chosen first with
probability 1/(S+1) when it heads the list, as the RFC intends ("a very small
chance"). Random numbers: xoshiro256** and an unbiased draw, defined in
``csrc/rng.h``; the native core and the pure-Python twin give the same order
for the same seed and the same calls.

**Health** (as Kamailio's dispatcher): ``fail_threshold`` consecutive failures
put a target out; an out target is skipped until ``cooldown`` seconds after
its last failure, then offered again ("probing") so that real traffic or your
OPTIONS pings can test it; a failure while out restarts the cool-down and
``ok_threshold`` consecutive successes bring it back. Out and disabled targets
are left out of the draw, so their weight is shared among the usable targets
of the same priority in proportion to their weights (60/20/20 with the 60 out
becomes 21/41 and 20/41, about 50/50: the first listed also takes r = 0; see
``expected_shares()``). When no target is usable, ``order()`` returns
``[dr_url]`` and ``pick()`` returns ``dr_url`` (Twilio's disaster-recovery
URL, a ``str``) if one is set; otherwise both raise
:class:`~sipedge.errors.SelectionError`.

**Sticky** (``pick(key=...)``): weighted rendezvous hashing inside the first
priority with a usable target: each target scores ``w / -ln(u)`` with ``u``
from a hash of the key and the target's URI; the best score wins. Keys spread
in proportion to the weights (w_i / S, not the RFC first-place shares), the
same key keeps its target while that target is usable, and when a target goes
out only its keys move. Weight-0 targets get keys only when no positive-weight
target of their priority is usable. The key is a ``str`` (hashed as UTF-8;
lone surrogates pass through), ``bytes`` or ``int``.

**Threads**: ``order``, ``pick``, ``mark_failed`` and ``mark_ok`` may be called
from many threads at once. The native core does its work inside
``cython.critical_section`` without running Python code in it (atomic under the
GIL, a per-object lock on free-threaded builds); the twin takes a
``threading.Lock``.
"""
from __future__ import annotations

import ipaddress
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

from .. import _impl
from ..twilio import catalog
from ..errors import InputError, SelectionError, URIError
from ..twilio.uri import OriginationURI, parse_uri

_core = _impl.load("select")

#: SIP final responses after which Twilio does NOT try the next URI (plus every 6xx).
NO_FAILOVER_CODES = frozenset({400, 404, 405, 410, 416, 482, 484, 486})
#: Seconds without any SIP answer after which the next target is tried.
NO_ANSWER_TIMEOUT = 4.0
#: Twilio's limit of origination URIs per trunk (sipedge itself takes any number).
TWILIO_MAX_URIS = 10

_U16 = 0xFFFF


def _decimal(value: Any) -> int:
    """An int, or the ASCII decimal digits of text (spaces around allowed);
    ValueError for anything else (int() alone takes '1_0' and non-ASCII digits)."""
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()):
        raise ValueError(value)
    return int(text)


def _int_in_range(what: str, value: Any, uri: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = _decimal(value)
        except ValueError:
            raise InputError(f"{what} {value!r} of target {uri} is not an integer; "
                             f"use {low}-65535") from None
    if not low <= value <= _U16:
        raise InputError(f"{what} {value} of target {uri} is out of range; use {low}-65535")
    return value


def _enabled(value: Any, where: str) -> bool:
    """A bool, 0/1, or the text true/false (any case; Twilio's API sends text)."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, int) and value in (0, 1):  # bool is an int
        return bool(value)
    raise InputError(f"{where}: enabled={value!r} is not true or false")


@dataclass(frozen=True, repr=False)
class Target:
    """One origination URI with its RFC 2782 priority and weight.

    ``uri`` is parsed by :func:`sipedge.twilio.uri.parse_uri`. ``priority`` 0-65535
    (lowest tried first), ``weight`` 0-65535 (Twilio itself accepts 1-65535;
    RFC 2782 allows 0). A disabled target is never chosen; ``enabled`` is a
    bool, 0/1 or the text "true"/"false" (so "false" disables, unlike ``bool``).
    """

    uri: OriginationURI
    priority: int
    weight: int
    enabled: bool = True

    def __init__(self, uri: Union[str, OriginationURI], priority: int, weight: int,
                 enabled: bool = True) -> None:
        u = parse_uri(uri)
        object.__setattr__(self, "uri", u)
        object.__setattr__(self, "priority", _int_in_range("priority", priority, str(u), 0))
        object.__setattr__(self, "weight", _int_in_range("weight", weight, str(u), 0))
        object.__setattr__(self, "enabled", _enabled(enabled, f"target {u}"))

    def __str__(self) -> str:
        return str(self.uri)

    def __repr__(self) -> str:
        off = "" if self.enabled else ", enabled=False"
        return f"Target({str(self.uri)!r}, priority={self.priority}, weight={self.weight}{off})"


def _destination(u: OriginationURI) -> tuple:
    """What makes two URIs the same target: the effective scheme, user, host,
    port, transport and edge (``sip:h`` and ``sip:h:5060;transport=udp`` are one)."""
    return (u.scheme, u.user, u.host, u.port, u.transport, u.edge)


def _record_field(rec: Any, name: str, n: int) -> Any:
    if isinstance(rec, Mapping):
        if name not in rec:
            raise InputError(f"origination URL record #{n} has no {name!r} field")
        return rec[name]
    if not hasattr(rec, name):
        raise InputError(f"origination URL record #{n} ({type(rec).__name__}) has no "
                         f"{name!r} attribute")
    return getattr(rec, name)


def _check_dr_url(url: Optional[str]) -> Optional[str]:
    if url is None:
        return None
    if not isinstance(url, str) or not re.match(r"https?://[^\s/]+", url.strip()):
        raise URIError(f"disaster-recovery URL {url!r} is not an http:// or https:// URL; "
                       "it is the TwiML webhook Twilio calls when every origination URI failed")
    return url.strip()


class TargetSet:
    """Targets with RFC 2782 selection, health state and a disaster-recovery URL.

    ``seed`` (0 .. 2**64-1) makes the draws reproducible; None seeds from the
    OS. ``clock`` (seconds, monotonic) is read for cool-downs; tests pass a
    fake one. ``order``, ``pick``, ``mark_failed`` and ``mark_ok`` are safe
    from many threads at once.
    """

    def __init__(self, targets: Iterable[Target], *, dr_url: Optional[str] = None,
                 fail_threshold: int = 1, ok_threshold: int = 1, cooldown: float = 30.0,
                 seed: Optional[int] = None, clock: Callable[[], float] = time.monotonic) -> None:
        tl = list(targets)
        pos: dict[tuple, int] = {}
        for i, t in enumerate(tl):
            if not isinstance(t, Target):
                raise InputError(f"target #{i} is a {type(t).__name__}, not a sipedge.Target")
            key = _destination(t.uri)
            if key in pos:
                j = pos[key]
                same = "" if str(tl[j]) == str(t) else f" (as {tl[j]})"
                raise InputError(f"target {t} is listed twice{same} (#{j} and #{i}); "
                                 "keep one and give it the combined weight")
            pos[key] = i
        for what, v in (("fail_threshold", fail_threshold), ("ok_threshold", ok_threshold)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{what} {v!r} must be an integer >= 1")
        if not isinstance(cooldown, (int, float)) or isinstance(cooldown, bool) or not cooldown >= 0:
            raise InputError(f"cooldown {cooldown!r} must be a number of seconds >= 0")
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        elif isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise InputError(f"seed {seed!r} must be an integer 0 .. 2**64-1")
        self._targets = tl
        self._pos = pos
        self.dr_url = _check_dr_url(dr_url)
        self.seed = seed
        if tl:
            names = ", ".join(map(str, tl))
            empty = (f"every target is out of service or disabled ({names}) and no "
                     "disaster-recovery URL is set; mark a target ok when it recovers, "
                     "wait for its cool-down, or set dr_url=")
        else:
            empty = ("the target set has no targets and no disaster-recovery URL; "
                     "add targets or set dr_url=")
        self._core = _core.Core(
            tl, [t.priority for t in tl], [t.weight for t in tl], [t.enabled for t in tl],
            [_core.hash_bytes(str(t).encode()) for t in tl],
            fail_threshold=fail_threshold, ok_threshold=ok_threshold, cooldown=float(cooldown),
            seed=seed, clock=clock, fallback=self.dr_url,
            empty_message=empty)
        # the hot calls go straight to the core (no wrapper frame)
        self.order = self._core.order
        self.pick = self._core.pick

    @classmethod
    def from_twilio(cls, records: Iterable[Any], **kwargs: Any) -> "TargetSet":
        """From Twilio origination URL records: mappings or objects (as the twilio
        helper library returns) with ``sip_url``, ``priority``, ``weight`` and
        ``enabled``. Keyword arguments go to :class:`TargetSet`."""
        targets = []
        for n, rec in enumerate(records):
            url = _record_field(rec, "sip_url", n)
            enabled = _enabled(_record_field(rec, "enabled", n), f"origination URL record #{n}")
            targets.append(Target(url, _record_field(rec, "priority", n),
                                  _record_field(rec, "weight", n), enabled))
        return cls(targets, **kwargs)

    # ------------------------------------------------------------- selection
    # (instances bind these straight to the core; these definitions document them)
    def order(self) -> list:
        """Every usable target in RFC 2782 failover order (one draw per choice).
        No usable target: ``[dr_url]`` if set, else :class:`SelectionError`."""
        return self._core.order()

    def pick(self, key: Any = None):
        """The first target of :meth:`order` (at most one draw), or with *key*
        the sticky choice for that key. No usable target: ``dr_url`` if set,
        else :class:`SelectionError`."""
        return self._core.pick(key)

    # ---------------------------------------------------------------- health
    def index(self, target: Union[Target, OriginationURI, str]) -> int:
        """Position of *target* (a Target, a parsed URI or URI text, in any spelling
        of the same destination) in the set."""
        u = target.uri if isinstance(target, Target) else parse_uri(target)
        try:
            return self._pos[_destination(u)]
        except KeyError:
            raise InputError(f"{u} is not in this target set; targets: "
                             f"{', '.join(map(str, self._targets)) or 'none'}") from None

    def mark_failed(self, target: Union[Target, OriginationURI, str]) -> bool:
        """Record a failed attempt; True when the target just went out of service."""
        return self._core.mark_failed(self.index(target))

    def mark_ok(self, target: Union[Target, OriginationURI, str]) -> bool:
        """Record a successful attempt or probe; True when the target just came back."""
        return self._core.mark_ok(self.index(target))

    def state(self, target: Union[Target, OriginationURI, str]) -> str:
        """``"up"``, ``"out"``, ``"probing"`` (out, cool-down over) or ``"disabled"``."""
        return self._core.state(self.index(target))

    def counters(self, target: Union[Target, OriginationURI, str]) -> tuple[int, int]:
        """(failures, successes) recorded for *target* since the set was made."""
        return self._core.counters(self.index(target))

    def usable(self) -> list[Target]:
        """Targets that can be chosen now (up or probing), in the order given."""
        return [t for i, t in enumerate(self._targets) if self._core.state(i) in ("up", "probing")]

    def _first_group(self) -> list[Target]:
        use = self.usable()
        if not use:
            return []
        low = min(t.priority for t in use)
        return [t for t in use if t.priority == low]

    def expected_shares(self) -> dict[Target, float]:
        """Exact probability that each target comes first in :meth:`order` /
        :meth:`pick` now (RFC 2782: the first of the list also gets r = 0)."""
        group = self._first_group()
        shares = {t: 0.0 for t in self._targets}
        if not group:
            return shares
        listed = [t for t in group if t.weight == 0] + [t for t in group if t.weight > 0]
        total = sum(t.weight for t in listed)
        if len(listed) == 1:
            shares[listed[0]] = 1.0
            return shares
        for j, t in enumerate(listed):
            shares[t] = (t.weight + (1 if j == 0 else 0)) / (total + 1)
        return shares

    def sticky_shares(self) -> dict[Target, float]:
        """Share of keys each target gets from ``pick(key=...)`` now (w_i / S)."""
        group = self._first_group()
        shares = {t: 0.0 for t in self._targets}
        pos = [t for t in group if t.weight > 0]
        if pos:
            total = sum(t.weight for t in pos)
            for t in pos:
                shares[t] = t.weight / total
        elif group:
            for t in group:
                shares[t] = 1 / len(group)
        return shares

    def status(self) -> list[dict[str, Any]]:
        """One dict per target: uri, priority, weight, enabled, state, failures, successes."""
        rows = []
        for i, t in enumerate(self._targets):
            f, o = self._core.counters(i)
            rows.append({"uri": str(t.uri), "priority": t.priority, "weight": t.weight,
                         "enabled": t.enabled, "state": self._core.state(i),
                         "failures": f, "successes": o})
        return rows

    @property
    def targets(self) -> list[Target]:
        return list(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def __iter__(self):
        return iter(list(self._targets))

    def __repr__(self) -> str:
        return f"TargetSet({len(self._targets)} targets, dr_url={self.dr_url!r})"


# ------------------------------------------------------------- failover rules
def should_failover(status: Union[int, str, None]) -> bool:
    """Whether to try the next target after a final SIP *status* (Twilio's rules).

    No failover on 2xx, 400, 404, 405, 410, 416, 482, 484, 486 and every 6xx
    (the callee answered or refused for good). Failover on every other final
    status and on no answer at all: pass ``None`` or ``"timeout"`` after
    :data:`NO_ANSWER_TIMEOUT` seconds without a response.
    """
    if status is None or (isinstance(status, str) and status.strip().lower() == "timeout"):
        return True
    if isinstance(status, bool):
        raise InputError(f"SIP status {status!r} is not a number 100-699")
    try:
        code = _decimal(status)
    except ValueError:
        raise InputError(f"SIP status {status!r} is not a number 100-699 or 'timeout'") from None
    if not 100 <= code <= 699:
        raise InputError(f"SIP status {code} is out of range 100-699; pass None for no answer")
    if code < 200:
        raise InputError(f"SIP status {code} is provisional, not final; wait for a final "
                         "response or pass None after the no-answer timeout")
    if code < 300 or code >= 600 or code in NO_FAILOVER_CODES:
        return False
    return True


# ----------------------------------------------------------- termination side
@dataclass(frozen=True)
class Attempt:
    """One termination attempt: the edge, the host name, the address (or None)."""

    edge: Optional[str]
    host: str
    address: Optional[str] = None
    timeout: float = field(default=NO_ANSWER_TIMEOUT)


def termination_order(domain: str, edges: Sequence[Optional[str]],
                      resolved: Optional[Mapping[str, Sequence[str]]] = None,
                      timeout: float = NO_ANSWER_TIMEOUT) -> list[Attempt]:
    """Failover order for calls to Twilio: edge after edge (in the order given;
    ``None`` = the unlocalized name), and within an edge every address its host
    name resolved to (Twilio publishes 3-4 per name; use them all).

    *resolved* maps host names to the addresses you resolved (sipedge does no
    DNS); without it each attempt has ``address=None``; with it, an edge whose
    host name is not in *resolved* (or maps to no address) is left out.
    A bare ``str`` for *edges* or for an address list is one item. Duplicates
    are dropped. Raises :class:`SelectionError` when nothing is left to try.
    """
    if isinstance(edges, str):
        edges = [edges]
    out: list[Attempt] = []
    seen: set[tuple[str, Optional[str]]] = set()
    for e in edges:
        host = catalog.termination_host(domain, e)
        name = None if e is None else catalog.edge(e).name
        if resolved is None:
            addrs: Sequence[Optional[str]] = [None]
        else:
            addrs = resolved.get(host, ())
            if isinstance(addrs, str):
                addrs = [addrs]
        for a in addrs:
            if a is not None:
                try:
                    a = str(ipaddress.ip_address(a))
                except ValueError:
                    raise InputError(f"resolved address {a!r} of {host} is not an IP "
                                     "address") from None
            if (host, a) in seen:
                continue
            seen.add((host, a))
            out.append(Attempt(name, host, a, timeout))
    if not out:
        raise SelectionError(f"no termination address to try for {domain!r} over edges "
                             f"{list(edges)}: resolve the host names first")
    return out
