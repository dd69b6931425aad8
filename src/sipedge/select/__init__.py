"""Choose where each call goes: the shares Twilio documents, health shared by
every worker process, drain, call-rate limits, failover rules.

Origination (Twilio -> your SBCs), or any SIP destination list::

    ts = TargetSet([Target("sip:sbc1.example.com;edge=dublin", 10, 60),
                    Target("sip:sbc2.example.com", 10, 20, cps=30),
                    Target("sip:sbc3.example.com", 10, 20),
                    Target("sip:dr.example.com", 20, 10)],
                   table="sbc")          # shared by every process that names it
    ts.order()                 # every usable target in failover order
    ts.pick()                  # the target for a new call (always a Target)
    t = ts.pick(key=call_id)   # sticky: the call's own order, same in every process
    t2 = ts.pick(key=call_id, exclude=ts.tried(t))   # failover: the next untried one
    ts.mark_failed(t); ts.mark_ok(t); ts.drain(t); ts.undrain(t)
    t.destination              # 'sip:sbc1.example.com:5060;transport=udp' ($du)
    should_failover(486)       # False: Twilio does not fail over on 486
    counts_against_health(503) # True: a 503 or a timeout says the target is unwell

**Shares** (as Twilio documents them): groups by priority, lowest first.
Inside a group a usable positive-weight target comes first with probability
``weight / sum of the usable positive weights`` exactly: equal weights split
equally, and an out or drained target's share goes to its peers in
proportion (60/20/20 with the 60 out is 50/50). The draw is an exact integer
``r`` uniform in ``[0, S)``; the first target whose running sum exceeds ``r``
goes next. RFC 2782's prose draws in ``[0, S]`` inclusive, which hands the
first-listed target an extra ``1/(S+1)`` (20/20 would split 51.2/48.8): not
used, as in Go's ``net`` package and dnspython. **Weight 0** (RFC 2782 SRV
data; Twilio takes 1-65535) never takes a share from a positive weight: the
weight-0 targets of a group come after all its positive-weight ones, in a
uniformly random order, so a group with only weight-0 targets splits evenly.
Random numbers: xoshiro256** and exact integer draws defined in
``csrc/rng.h`` and ``csrc/select.h``; the native core and the pure-Python twin
give the same results for the same seed.

**Keyed order** (``order(key=)``, ``pick(key=, exclude=)``): weighted
rendezvous hashing of the key (a Call-ID) over the targets, so a call's whole
failover sequence follows from its key in any process, with the same shares
over keys (first place ``w / S``); when a target goes out or is drained only
its keys move. :meth:`TargetSet.tried` writes what was tried as a short
string (target indices, e.g. ``"0,2"``) for a Kamailio AVP or a header, and
``exclude=`` takes it back.

**Health** (as Kamailio's dispatcher): ``fail_threshold`` consecutive failures
put a target out; an out target is skipped until ``cooldown`` seconds after
its last failure; then ``pick()`` hands it to ONE call (the trial; every other
worker keeps skipping it for another cool-down), your OPTIONS pings may test
it too, and ``ok_threshold`` consecutive successes bring it back (a failure
restarts the cool-down). ``order()`` lists an out target whose cool-down is
over without claiming the trial. :func:`counts_against_health` says which
outcomes to report with ``mark_failed``.

**Shared table**: ``TargetSet(..., table="NAME")`` keeps the health in
``/dev/shm/sipedge-NAME`` (or a path), mapped by every process that opens it
(Kamailio children, gunicorn workers, a pool); see :mod:`sipedge.select.health`.
Without ``table=`` the health is private to the process (the default).

**Drain**: ``drain(t)`` takes a target out for maintenance: no new calls, its
sticky keys move to their next target, calls in progress are yours to finish
(``mark_ok``/``mark_failed`` still count). ``undrain(t)`` brings it back.

**Call-rate limits**: ``Target(..., cps=30, burst=1)`` limits the calls per
second ``pick()`` hands to that target, over all processes sharing the table
(a token bucket of ``burst`` calls refilled at ``cps`` per second: at most
``burst + cps - 1`` calls in any one-second window, so the default burst 1
makes ``cps`` a hard cap per second). Twilio's published limit is 30 calls
per second from one customer IP to one Twilio IP. ``pick()`` passes over a
target at its limit to the next one in order; when every usable target is at
its limit it raises :class:`~sipedge.errors.RateLimited` with ``.wait``
seconds. ``order()`` does not consult or consume the limits.

**Results**: ``pick()`` always returns a :class:`Target`. When no target is
usable it raises :class:`~sipedge.errors.DisasterRecovery` (with ``.url``,
Twilio's disaster-recovery webhook) if ``dr_url`` is set, otherwise
:class:`~sipedge.errors.SelectionError` (DisasterRecovery and RateLimited are
SelectionErrors too). ``order()`` raises the same way when nothing is usable.

**Processes**: an unseeded set reseeds its generator in a child after
``fork()`` (no two workers draw the same sequence). A set made with
``seed=S`` stays reproducible: in the k-th child a process forks after the
set was made, the set continues with seed ``mix64(S ^ mix64(k))`` (see
:func:`child_seed`), the same in every run.

**Threads**: every method may be called from many threads at once. The native
core does its work inside ``cython.critical_section`` without running Python
code in it; the twin takes a ``threading.Lock``.
"""
from __future__ import annotations

import ipaddress
import os
import re
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional, Sequence, Union

from .. import _impl
from ..errors import DisasterRecovery, InputError, RateLimited, SelectionError, URIError
from ..twilio import catalog
from ..twilio.uri import OriginationURI, parse_uri
from .health import HealthTable

if TYPE_CHECKING:  # the native module's stub describes both implementations
    from .. import _select as _core
else:
    _core = _impl.load("select")

#: SIP final responses after which Twilio does NOT try the next URI (plus every 6xx).
NO_FAILOVER_CODES = frozenset({400, 404, 405, 410, 416, 482, 484, 486})
#: Seconds without any SIP answer after which the next target is tried.
NO_ANSWER_TIMEOUT = 4.0
#: Twilio's limit of origination URIs per trunk (sipedge itself takes any number).
TWILIO_MAX_URIS = 10
#: Twilio's published limit: calls per second from one customer IP to one Twilio IP.
TWILIO_CPS_PER_ADDRESS = 30

_U16 = 0xFFFF
_M64 = 0xFFFFFFFFFFFFFFFF


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


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True, repr=False)
class Target:
    """One SIP destination with its priority, weight and optional call-rate limit.

    ``uri``: any SIP URI (``parse_uri(strict=False)``: ordinary parameters
    such as ``;lr``, ``;maddr=``, ``;user=phone`` are kept); Twilio origination
    records go through the strict Twilio check in :meth:`TargetSet.from_twilio`.
    ``priority`` 0-65535 (lowest tried first), ``weight`` 0-65535 (Twilio
    itself accepts 1-65535; RFC 2782 allows 0: see the module docstring).
    ``enabled`` is a bool, 0/1 or the text "true"/"false" (so "false"
    disables, unlike ``bool``). ``cps``: at most this many calls per second
    from ``pick()`` (None: no limit), ``burst`` (default 1) calls at once.
    ``address``: the IP address to send to when the host name was resolved
    (the locate module does that); the request URI keeps the name.
    """

    uri: OriginationURI
    priority: int
    weight: int
    enabled: bool = True
    cps: Optional[float] = None
    burst: int = 1
    address: Optional[str] = None

    def __init__(self, uri: Union[str, OriginationURI], priority: int, weight: int,
                 enabled: bool = True, *, cps: Optional[float] = None, burst: int = 1,
                 address: Optional[str] = None) -> None:
        u = parse_uri(uri, strict=False)
        object.__setattr__(self, "uri", u)
        object.__setattr__(self, "priority", _int_in_range("priority", priority, str(u), 0))
        object.__setattr__(self, "weight", _int_in_range("weight", weight, str(u), 0))
        object.__setattr__(self, "enabled", _enabled(enabled, f"target {u}"))
        if cps is not None:
            if isinstance(cps, bool) or not isinstance(cps, (int, float)) or not 0 < cps <= 1e6:
                raise InputError(f"cps {cps!r} of target {u} is not a number of calls per "
                                 "second in (0, 1000000]; use e.g. cps=30 or leave it out")
            cps = float(cps)
        if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= 1_000_000:
            raise InputError(f"burst {burst!r} of target {u} is not an integer 1-1000000")
        object.__setattr__(self, "cps", cps)
        object.__setattr__(self, "burst", burst)
        if address is not None:
            try:
                address = str(ipaddress.ip_address(str(address).strip("[]")))
            except ValueError:
                raise InputError(f"address {address!r} of target {u} is not an IP address") from None
        object.__setattr__(self, "address", address)
        object.__setattr__(self, "_hash", hash((str(u), self.priority, self.weight,
                                                self.enabled, cps, burst, address)))
        maddr = u.param("maddr")
        host = address or maddr or u.host
        object.__setattr__(self, "_dest", f"sip:{_host_text(host)}:{u.port};transport={u.transport}")

    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined,no-any-return]

    def __reduce__(self) -> tuple:
        # rebuilt through __init__ in the receiving process (str hashes differ per process)
        return (_target, (str(self.uri), self.priority, self.weight, self.enabled, self.cps,
                          self.burst, self.address))

    @property
    def destination(self) -> str:
        """Where to send: ``sip:HOST:PORT;transport=T`` (Kamailio ``$du``, an
        outbound proxy), HOST being ``address`` if set, else ``;maddr=``, else
        the URI's host. Not the request URI (see :attr:`request_uri`)."""
        return self._dest  # type: ignore[attr-defined,no-any-return]

    @property
    def request_uri(self) -> str:
        """The request URI: the URI as written, without Twilio's ``;edge=``
        (an instruction to Twilio, not a SIP parameter). It keeps the host
        name: Twilio answers 403 when the request URI host is a bare edge IP."""
        u = self.uri
        out = f"{u.scheme}:" + (f"{u.user}@" if u.user else "") + _host_text(u.host)
        if u.port_given:
            out += f":{u.port}"
        if u.transport_given:
            out += f";transport={'tcp' if u.scheme == 'sips' else u.transport}"
        for name, value in u.params:
            out += f";{name}" if value is None else f";{name}={value}"
        return out

    def __str__(self) -> str:
        return str(self.uri)

    def __repr__(self) -> str:
        extra = "" if self.enabled else ", enabled=False"
        if self.cps is not None:
            extra += f", cps={self.cps:g}" + (f", burst={self.burst}" if self.burst != 1 else "")
        if self.address is not None:
            extra += f", address={self.address!r}"
        return f"Target({str(self.uri)!r}, priority={self.priority}, weight={self.weight}{extra})"


def _target(uri: str, priority: int, weight: int, enabled: bool, cps: Optional[float],
            burst: int, address: Optional[str]) -> Target:
    return Target(uri, priority, weight, enabled, cps=cps, burst=burst, address=address)


def _destination(u: OriginationURI) -> tuple:
    """What makes two URIs the same target: the effective scheme, user, host,
    port, transport, edge and other parameters (``sip:h`` and
    ``sip:h:5060;transport=udp`` are one)."""
    return (u.scheme, u.user, u.host, u.port, u.transport, u.edge, tuple(sorted(u.params)))


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


def child_seed(seed: int, k: int) -> int:
    """The seed a set made with *seed* continues with in the k-th child (k >= 1)
    its process forks."""
    return int(_core.mix64((seed ^ _core.mix64(k & _M64)) & _M64))


#: live target sets, for the fork hooks
_SETS: "weakref.WeakSet[TargetSet]" = weakref.WeakSet()


def _after_fork_parent() -> None:
    for ts in list(_SETS):
        ts._forks += 1


def _after_fork_child() -> None:
    for ts in list(_SETS):
        ts._reseed_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_parent=_after_fork_parent, after_in_child=_after_fork_child)

Lookup = Union["Target", OriginationURI, str, int]
#: a sticky key: a Call-ID as str (UTF-8), bytes, or int (its decimal text)
Key = Union[str, bytes, int, None]
#: what pick(exclude=) takes: the string from TargetSet.tried(), or targets / indices
Exclude = Union[str, Iterable[Lookup], "Target", int, None]


class TargetSet:
    """Targets with weighted-priority selection, health, drain, call-rate
    limits and a disaster-recovery URL (see the module docstring).

    ``seed`` (0 .. 2**64-1) makes the draws reproducible (also in forked
    children, see :func:`child_seed`); None seeds from the OS and reseeds after
    ``fork()``. ``clock`` (seconds, monotonic) is read for cool-downs and rate
    limits; tests pass a fake one (processes sharing a table must share the
    clock: the default ``time.monotonic`` is system-wide). ``table``: None for
    health private to this process, or a name/path of a shared table
    (:mod:`sipedge.select.health`); every process opening it must give the same
    targets and settings. ``table_mode``: permissions of a table file this set
    creates (default 0600; 0o660 to share it with a group).
    """

    def __init__(self, targets: Iterable[Target], *, dr_url: Optional[str] = None,
                 fail_threshold: int = 1, ok_threshold: int = 1, cooldown: float = 30.0,
                 seed: Optional[int] = None, clock: Callable[[], float] = time.monotonic,
                 table: Union[str, "os.PathLike[str]", None] = None,
                 table_mode: int = 0o600) -> None:
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
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 0xFFFFFFFF:
                raise InputError(f"{what} {v!r} must be an integer >= 1")
        if not isinstance(cooldown, (int, float)) or isinstance(cooldown, bool) or not cooldown >= 0:
            raise InputError(f"cooldown {cooldown!r} must be a number of seconds >= 0")
        self.seeded = seed is not None
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        elif isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise InputError(f"seed {seed!r} must be an integer 0 .. 2**64-1")
        self._targets = tl
        self._pos = pos
        self.dr_url = _check_dr_url(dr_url)
        self.seed = seed
        self._forks = 0
        self.fail_threshold = fail_threshold
        self.ok_threshold = ok_threshold
        self.cooldown = float(cooldown)
        limits = [(t.cps or 0.0, float(t.burst)) for t in tl]
        fp_text = "\n".join(
            [f"v1 {fail_threshold} {ok_threshold} {float(cooldown)!r}"]
            + [f"{t.uri} {t.priority} {t.weight} {int(t.enabled)} {t.cps!r} {t.burst}" for t in tl])
        self.fingerprint = _core.hash_bytes(fp_text.encode())
        if table is None:
            self.table = HealthTable.private(
                len(tl), fingerprint=self.fingerprint, fail_threshold=fail_threshold,
                ok_threshold=ok_threshold, cooldown=float(cooldown), limits=limits)
        else:
            self.table = HealthTable.open(
                table, len(tl), fingerprint=self.fingerprint, fail_threshold=fail_threshold,
                ok_threshold=ok_threshold, cooldown=float(cooldown), limits=limits,
                mode=table_mode)
        names = ", ".join(map(str, tl))
        self._names = names
        positions: dict[Any, int] = {t: i for i, t in enumerate(tl)}
        self._core = _core.Core(
            tl, [t.priority for t in tl], [t.weight for t in tl], [t.enabled for t in tl],
            [_core.hash_bytes(str(t).encode()) for t in tl], self.table,
            seed=seed, clock=clock, on_empty=self._on_empty, positions=positions)
        # lookups without a re-parse: URI text as given, destination, source address
        self._by_id: dict[int, int] = {id(t): i for i, t in enumerate(tl)}
        self._by_text: dict[str, int] = {}
        self._by_dest: dict[str, int] = {}
        self._by_addr: dict[str, list[int]] = {}
        for i, t in enumerate(tl):
            self._by_text.setdefault(str(t), i)
            self._by_dest.setdefault(t.destination, i)
            for a in (t.address, t.uri.host if t.uri.host_kind != "name" else None,
                      t.uri.param("maddr")):
                if a:
                    try:
                        a = str(ipaddress.ip_address(a))
                    except ValueError:
                        continue
                    if i not in self._by_addr.setdefault(a, []):
                        self._by_addr[a].append(i)
        self._text_lock = threading.Lock()
        # the hot calls go straight to the core (no wrapper frame)
        self.order = self._core.order  # type: ignore[method-assign]
        self.pick = self._core.pick  # type: ignore[method-assign]
        _SETS.add(self)

    def _on_empty(self, code: int, wait: float) -> Any:
        if code == -2:
            raise RateLimited(f"every usable target is at its call-rate limit ({self._names}); "
                              f"retry in {wait:.3f} s or raise the targets' cps", wait)
        if not self._targets:
            msg = "the target set has no targets"
            fix = "add targets or set dr_url="
        else:
            msg = f"every target is out of service, drained or disabled ({self._names})"
            fix = ("mark a target ok when it recovers, undrain one, or wait for a cool-down")
        if self.dr_url is not None:
            raise DisasterRecovery(f"{msg}: use the disaster-recovery URL {self.dr_url}",
                                   self.dr_url)
        raise SelectionError(f"{msg} and no disaster-recovery URL is set; {fix}, or set dr_url=")

    def _reseed_in_child(self) -> None:
        if self.seeded:
            self._forks += 1
            self.seed = child_seed(self.seed, self._forks)
        else:
            self.seed = int.from_bytes(os.urandom(8), "little")
        self._forks = 0
        self._core.reseed(self.seed)

    def reseed(self, seed: Optional[int] = None) -> None:
        """Restart the generator from *seed* (None: from the OS)."""
        self.seeded = seed is not None
        self.seed = int.from_bytes(os.urandom(8), "little") if seed is None else seed
        self._forks = 0
        self._core.reseed(self.seed)

    @classmethod
    def from_twilio(cls, records: Iterable[Any], **kwargs: Any) -> "TargetSet":
        """From Twilio origination URL records: mappings or objects (as the twilio
        helper library returns) with ``sip_url``, ``priority``, ``weight`` and
        ``enabled``; each URL passes Twilio's strict origination-URI check.
        Keyword arguments go to :class:`TargetSet`."""
        targets = []
        for n, rec in enumerate(records):
            url = parse_uri(_record_field(rec, "sip_url", n), strict=True)
            enabled = _enabled(_record_field(rec, "enabled", n), f"origination URL record #{n}")
            targets.append(Target(url, _record_field(rec, "priority", n),
                                  _record_field(rec, "weight", n), enabled))
        return cls(targets, **kwargs)

    # ------------------------------------------------------------- selection
    # (instances bind these straight to the core; these definitions document them)
    def order(self, key: Key = None) -> list[Target]:  # type: ignore[no-redef]
        """Every usable target in failover order (one draw per place); with
        *key* the call's own order (the same in every process). Rate limits are
        not consulted. Nothing usable: raises like :meth:`pick`."""
        return self._core.order(key)  # type: ignore[no-any-return]

    def pick(self, key: Key = None, exclude: Exclude = None) -> Target:  # type: ignore[no-redef]
        """The target for a new call: the first of :meth:`order` (of
        ``order(key)`` with *key*) that is not in *exclude* (the string from
        :meth:`tried`, or targets/indices) and is under its rate limit.
        Raises :class:`~sipedge.errors.RateLimited` (``.wait``) when every usable
        target is at its limit, :class:`~sipedge.errors.DisasterRecovery`
        (``.url``) when none is usable and ``dr_url`` is set, else
        :class:`~sipedge.errors.SelectionError`."""
        return self._core.pick(key, exclude)  # type: ignore[no-any-return]

    def tried(self, *targets: Lookup) -> str:
        """What was tried, as a short string for ``pick(exclude=)`` in any
        process (a Kamailio AVP, a header): the target indices, e.g. ``"0,2"``."""
        return ",".join(str(i) for i in sorted({self.index(t) for t in targets}))

    # ---------------------------------------------------------------- lookups
    def index(self, target: Lookup) -> int:
        """Position of *target* (a Target of this set, its index, or a URI in
        any spelling of the same destination; text seen once is not parsed again)."""
        if isinstance(target, Target):
            i = self._by_id.get(id(target))
            if i is not None and self._targets[i] is target:
                return i  # one of this set's own Target objects: no hashing, no parse
            i = self._core_positions_get(target)
            if i is not None:
                return i
            target = target.uri
        elif isinstance(target, str):
            i = self._by_text.get(target)
            if i is not None:
                return i
        elif isinstance(target, int) and not isinstance(target, bool):
            if 0 <= target < len(self._targets):
                return target
            raise InputError(f"target index {target} out of range 0-{len(self._targets) - 1}")
        u = parse_uri(target, strict=False) if isinstance(target, str) else target
        if not isinstance(u, OriginationURI):
            raise InputError(f"{target!r} is not a target, an index or a SIP URI")
        try:
            i = self._pos[_destination(u)]
        except KeyError:
            raise InputError(f"{u} is not in this target set; targets: "
                             f"{self._names or 'none'}") from None
        if isinstance(target, str):
            with self._text_lock:
                if len(self._by_text) < 4096 + len(self._targets):
                    self._by_text[target] = i
        return i

    def _core_positions_get(self, t: Target) -> Optional[int]:
        i = self._pos.get(_destination(t.uri))
        return i if i is not None and self._targets[i] == t else None

    def get(self, target: Lookup) -> Target:
        """The Target of this set for *target* (see :meth:`index`)."""
        return self._targets[self.index(target)]

    def by_destination(self, destination: str) -> Optional[Target]:
        """The target whose :attr:`Target.destination` is *destination* (as
        Kamailio's ``$du``), or None."""
        i = self._by_dest.get(destination)
        return None if i is None else self._targets[i]

    def by_source(self, address: str, port: Optional[int] = None) -> Optional[Target]:
        """The target a reply from *address* (and *port*, if given) belongs to:
        matched against each target's ``address``, IP host or ``;maddr=``; None
        when no target has that address."""
        hits = self._by_addr.get(address)
        if hits is None:
            try:
                hits = self._by_addr.get(str(ipaddress.ip_address(address)))
            except ValueError:
                return None
            if hits is None:
                return None
        if port is not None:
            for i in hits:
                if self._targets[i].uri.port == port:
                    return self._targets[i]
            return None
        return self._targets[hits[0]]

    # ---------------------------------------------------------------- health
    def mark_failed(self, target: Lookup) -> bool:
        """Record a failed attempt (see :func:`counts_against_health`); True
        when the target just went out of service."""
        return self._core.mark_failed(self.index(target))  # type: ignore[no-any-return]

    def mark_ok(self, target: Lookup) -> bool:
        """Record a successful attempt or probe; True when the target just came back."""
        return self._core.mark_ok(self.index(target))  # type: ignore[no-any-return]

    def drain(self, target: Lookup) -> bool:
        """Take *target* out for maintenance (no new calls; shared like the rest
        of health); True when it was not drained before."""
        return self._core.set_drained(self.index(target), True)  # type: ignore[no-any-return]

    def undrain(self, target: Lookup) -> bool:
        """Bring a drained target back; True when it was drained."""
        return self._core.set_drained(self.index(target), False)  # type: ignore[no-any-return]

    def state(self, target: Lookup) -> str:
        """``"up"``, ``"out"``, ``"probing"`` (out, cool-down over),
        ``"drained"`` or ``"disabled"``."""
        return self._core.state(self.index(target))  # type: ignore[no-any-return]

    def counters(self, target: Lookup) -> tuple[int, int]:
        """(failures, successes) recorded for *target* since the table was made."""
        return self._core.counters(self.index(target))  # type: ignore[no-any-return]

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
        :meth:`pick` now, rate limits aside: weight / sum of the usable positive
        weights of the first usable priority; weight 0 only when that priority
        has no usable positive weight, then evenly."""
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

    def sticky_shares(self) -> dict[Target, float]:
        """Share of keys each target gets first from ``pick(key=...)`` now: the
        same as :meth:`expected_shares`."""
        return self.expected_shares()

    def status(self) -> list[dict[str, Any]]:
        """One dict per target: uri, destination, priority, weight, enabled,
        state, drained, failures, successes, cps, burst."""
        rows = []
        for i, t in enumerate(self._targets):
            rec = self._core.record(i)
            rows.append({"uri": str(t.uri), "destination": t.destination,
                         "priority": t.priority, "weight": t.weight,
                         "enabled": t.enabled, "state": self._core.state(i),
                         "drained": bool(rec[1]), "failures": rec[5], "successes": rec[6],
                         "cps": t.cps, "burst": t.burst})
        return rows

    @property
    def targets(self) -> list[Target]:
        return list(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def __iter__(self):
        return iter(list(self._targets))

    def __repr__(self) -> str:
        where = f", table={self.table.path!r}" if self.table.path else ""
        return f"TargetSet({len(self._targets)} targets, dr_url={self.dr_url!r}{where})"


# ------------------------------------------------------------- failover rules
def _final_status(status: Union[int, str, None]) -> Optional[int]:
    """The final SIP status code in *status*, or None for no answer at all
    (``None`` or ``"timeout"``); InputError for anything else, naming the fix."""
    if status is None or (isinstance(status, str) and status.strip().lower() == "timeout"):
        return None
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
    return code


def should_failover(status: Union[int, str, None]) -> bool:
    """Whether to try the next target after a final SIP *status* (Twilio's rules).

    No failover on 2xx, 400, 404, 405, 410, 416, 482, 484, 486 and every 6xx
    (the callee answered or refused for good). Failover on every other final
    status and on no answer at all: pass ``None`` or ``"timeout"`` after
    :data:`NO_ANSWER_TIMEOUT` seconds without a response.
    """
    code = _final_status(status)
    if code is None:
        return True
    if code < 300 or code >= 600 or code in NO_FAILOVER_CODES:
        return False
    return True


def counts_against_health(status: Union[int, str, None]) -> bool:
    """Whether a final SIP *status* (or no answer: ``None``/``"timeout"``) says the
    TARGET is unhealthy, i.e. should be reported with ``mark_failed`` (separate
    from :func:`should_failover`, which says whether to try the next target).

    Counts: no answer at all, 408 (Request Timeout) and every 5xx except 580
    (Precondition Failure: about the call, not the server). Does not count:
    1xx-3xx, every other 4xx (486 Busy, 404, 403...: the callee or the
    request), every 6xx. So a 486 neither fails over nor hurts the target; a
    503 does both; a 404 from Twilio's list fails over nowhere and hurts nothing.
    """
    code = _final_status(status)
    if code is None:
        return True
    return code == 408 or (500 <= code < 600 and code != 580)


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
