"""sipedge inside Kamailio 5.6+ (KEMI, ``app_python3``).

A KEMI script routes with sipedge in a few lines (``contrib/kamailio`` has the
complete ``kamailio.cfg`` and entry file)::

    import KSR
    from sipedge.integrations.kamailio import KamailioRouter

    def mod_init():
        return kamailio(KamailioRouter.from_file("/etc/kamailio/sipedge-targets.toml", KSR))

    class kamailio:
        def __init__(self, router): self.router = router
        def child_init(self, rank): return self.router.child_init(rank)
        def ksr_request_route(self, msg):
            ...                                   # max-forwards, in-dialog, CANCEL
            return self.router.relay_invite(msg)  # $du from sipedge, t_relay
        def ksr_sipedge_failure(self, msg): return self.router.failure_route(msg)
        def ksr_sipedge_timer(self, msg, evname): return self.router.timer(evname)

What it does per INVITE: a sticky choice by Call-ID (``TargetSet.pick(key=)``,
keys spread by weight) among the targets usable now; ``$du`` is set to the
target's destination (``sip:host:port;transport=...``) and the request URI is
kept (for a termination target the R-URI host is set to the target's host
name); the index of every target tried is carried in ``$avp(sipedge_tried)``.
In the failure route (which Kamailio runs in the process that saw the reply
or, for a timeout, in its timer process): Twilio's failover rules
(:func:`sipedge.select.should_failover`), health marking
(:func:`counts_against_health`), then the first target of a fresh failover
order that this call has not tried; when none is left, the ``fallback`` URI of
the targets file, else the best reply goes upstream (Kamailio's tm).

**Shared health.** Every Kamailio process runs its own copy of this module
(fork after ``mod_init``), so health lives in Kamailio's shared memory, an
``htable`` (``sipedge=>size=8;`` in kamailio.cfg): per target ``out:<i>`` (0,
or the ``time.monotonic()`` second until which it is out; 2**31-1: until a
probe or ``mark_ok`` brings it back), ``drain:<i>`` and ``fail:<i>``
(failures since the last success), plus ``gen``, incremented on every change.
A worker reads ``gen`` once per INVITE and re-reads the rest only when it
moved (or a cool-down deadline passed), so a failure marked by any process
(the timer process included) takes the target out for all of them at their
next INVITE. (When sipedge's own shared health table lands, it replaces the
htable behind the same calls.)

**Prober.** One process (Kamailio's ``rtimer`` process, every 250 ms) sends
SIP OPTIONS over UDP to the targets (``mode = "out"``: only those out of
service; ``"all"``: every target, failures count against health; ``"off"``),
each every ``interval`` seconds (at least 10 s for Twilio hosts, as Twilio
asks), and brings a target back after ``ok_threshold`` answers whose code is
in ``ok_codes`` (default: any 2xx; a 503 answer keeps it out). The same tick
re-reads the targets file when it changes: ``drain`` changes are
applied to every process (a drained target gets no new calls; calls already
set up are untouched, their ACK/BYE follow the Record-Route).

Outside Kamailio (tests, tooling) the same router runs with
:class:`LocalHealth` instead of the htable.
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

from .._impl import implementation
from ..errors import InputError, SelectionError
from ..select import Target, TargetSet, should_failover, termination_order
from ..uri import parse_uri

try:  # Python 3.11+
    import tomllib as _toml
except ImportError:  # pragma: no cover - 3.10
    import tomli as _toml  # type: ignore[no-redef]

#: ``out:<i>`` value meaning "until a probe or mark_ok brings it back".
FOREVER = 2**31 - 1
#: final statuses that say the target itself failed (not the callee).
HEALTH_FAILURE_CODES = frozenset({500, 503})
#: the AVP that carries the indices tried for one call ("0,2").
TRIED_AVP = "$avp(sipedge_tried)"
#: the minimum OPTIONS interval Twilio asks for, seconds.
TWILIO_MIN_PROBE_INTERVAL = 10.0
PROBE_MODES = ("out", "all", "off")


def counts_against_health(status: Optional[int]) -> bool:
    """Whether a final *status* (``None``: no answer before the timeout) says the
    target is unhealthy: no answer, 500 or 503. A 486 or 404 is the callee's
    answer and says the target works; a 408 received from the target is its
    downstream timing out, not the target."""
    if status is None:
        return True
    return status in HEALTH_FAILURE_CODES


# ------------------------------------------------------------ targets file
@dataclass
class Health:
    """Health settings of the targets file (``[health]``)."""

    fail_threshold: int = 1       # failures (since the last success) that take a target out
    cooldown: float = 0.0         # seconds out; 0: until a probe or mark_ok brings it back


@dataclass
class Probe:
    """OPTIONS probing settings of the targets file (``[probe]``)."""

    mode: str = "out"             # "out" | "all" | "off"
    interval: float = 10.0        # seconds between probes of one target
    timeout: float = 2.0          # seconds without a final answer = failure
    ok_threshold: int = 1         # good answers in a row that bring a target back
    ok_codes: tuple = ()          # final codes that count as alive; () = any 2xx
    source: str = ""              # local address to send from ("": the kernel's choice)


@dataclass
class TargetsConfig:
    """A loaded targets file: the targets, their flags and the settings."""

    targets: list                                   # [Target]
    drain: list                                     # [bool], one per target
    ruri_host: list                                 # [str or None]: R-URI host to set
    health: Health = field(default_factory=Health)
    probe: Probe = field(default_factory=Probe)
    fallback: Optional[str] = None                  # sip: URI when every target failed
    path: str = ""


def _fail(path: str, what: str) -> InputError:
    return InputError(f"{path}: {what}")


def _num(path: str, where: str, value: Any, low: float, kind=float) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            kind is int and not isinstance(value, int)):
        raise _fail(path, f"{where} = {value!r} is not {'an integer' if kind is int else 'a number'}")
    if value < low:
        raise _fail(path, f"{where} = {value!r} is below {low}")
    return kind(value)


def load_targets(path: str, setid: Optional[int] = None) -> TargetsConfig:
    """Load a targets file: TOML (``contrib/kamailio/targets.toml``) or
    Kamailio's ``dispatcher.list`` format (``setid uri [flags [priority [attrs]]]``,
    ``weight=`` from attrs, one set: *setid* or the first one listed), so a
    dispatcher user can switch without rewriting the list.
    Errors: :class:`InputError` naming the file, the entry and the fix."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise InputError(f"cannot read targets file {path}: {e.strerror}; "
                         "check TARGETS_FILE (kamailio -A 'TARGETS_FILE=\"/path\"')") from None
    text = raw.decode("utf-8", "replace")
    if path.endswith(".list") or _looks_like_dispatcher_list(text):
        return _load_dispatcher_list(path, text, setid)
    try:
        doc = _toml.loads(text)
    except _toml.TOMLDecodeError as e:
        raise _fail(path, f"not valid TOML ({e}); or use the dispatcher.list format "
                    "with a .list file name") from None
    return _load_toml(path, doc)


def _looks_like_dispatcher_list(text: str) -> bool:
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        return bool(re.match(r"\d+\s+sips?:", s))
    return False


def _load_toml(path: str, doc: dict) -> TargetsConfig:
    known = {"target", "health", "probe", "fallback", "termination"}
    for k in doc:
        if k not in known:
            raise _fail(path, f"unknown key {k!r}; known: {', '.join(sorted(known))}")
    h = doc.get("health", {})
    health = Health()
    for k, v in h.items():
        if k == "fail_threshold":
            health.fail_threshold = _num(path, "health.fail_threshold", v, 1, int)
        elif k == "cooldown":
            health.cooldown = _num(path, "health.cooldown", v, 0)
        else:
            raise _fail(path, f"unknown key health.{k}; known: fail_threshold, cooldown")
    p = doc.get("probe", {})
    probe = Probe()
    for k, v in p.items():
        if k == "mode":
            if v not in PROBE_MODES:
                raise _fail(path, f"probe.mode = {v!r}; use one of {', '.join(PROBE_MODES)}")
            probe.mode = v
        elif k in ("interval", "timeout"):
            setattr(probe, k, _num(path, f"probe.{k}", v, 0.05))
        elif k == "ok_threshold":
            probe.ok_threshold = _num(path, "probe.ok_threshold", v, 1, int)
        elif k == "ok_codes":
            if not isinstance(v, list) or not all(
                    isinstance(c, int) and not isinstance(c, bool) and 200 <= c <= 699 for c in v):
                raise _fail(path, f"probe.ok_codes = {v!r}; use a list of final codes like [200]")
            probe.ok_codes = tuple(v)
        elif k == "source":
            probe.source = str(v)
        else:
            raise _fail(path, f"unknown key probe.{k}; known: mode, interval, timeout, "
                        "ok_threshold, ok_codes, source")
    targets, drain, ruri = [], [], []
    for n, t in enumerate(doc.get("target", [])):
        if not isinstance(t, dict) or "uri" not in t:
            raise _fail(path, f"[[target]] #{n + 1} has no uri = \"sip:host[:port]\"")
        for k in t:
            if k not in ("uri", "priority", "weight", "enabled", "drain"):
                raise _fail(path, f"[[target]] #{n + 1}: unknown key {k!r}; known: uri, "
                            "priority, weight, enabled, drain")
        try:
            targets.append(Target(t["uri"], t.get("priority", 10), t.get("weight", 1),
                                  t.get("enabled", True)))
        except InputError as e:
            raise _fail(path, f"[[target]] #{n + 1}: {e}") from None
        d = t.get("drain", False)
        if not isinstance(d, bool):
            raise _fail(path, f"[[target]] #{n + 1}: drain = {d!r} is not true or false")
        drain.append(d)
        ruri.append(None)
    term = doc.get("termination")
    if term is not None:
        targets, drain, ruri = _termination_targets(path, term, targets, drain, ruri)
    if not targets:
        raise _fail(path, "no targets; add [[target]] uri = \"sip:host\" entries "
                    "or a [termination] table")
    fb = doc.get("fallback")
    if fb is not None:
        try:
            parse_uri(fb)
        except InputError as e:
            raise _fail(path, f"fallback: {e}") from None
    _check_probe_interval(path, probe, targets)
    _check_unique(path, targets)
    return TargetsConfig(targets, drain, ruri, health, probe, fb, path)


def _termination_targets(path: str, term: Any, targets: list, drain: list, ruri: list):
    """``[termination] domain = "x", edges = [...], addresses = {host = [ip...]}``:
    the Twilio termination order (edge after edge, every address of each), one
    priority per attempt, the R-URI host kept as the termination host name."""
    if not isinstance(term, dict) or "domain" not in term:
        raise _fail(path, "[termination] needs domain = \"example\" (your trunk's "
                    "termination domain without .pstn.twilio.com)")
    edges = term.get("edges", [None])
    addrs = term.get("addresses")
    try:
        attempts = termination_order(term["domain"], edges or [None], addrs)
    except (InputError, SelectionError) as e:
        raise _fail(path, f"[termination]: {e}") from None
    for n, a in enumerate(attempts):
        host = a.address or a.host
        targets.append(Target(f"sip:{host}", n, 1))
        drain.append(False)
        ruri.append(a.host)
    return targets, drain, ruri


def _check_probe_interval(path: str, probe: Probe, targets: Sequence[Target]) -> None:
    if probe.mode == "off" or probe.interval >= TWILIO_MIN_PROBE_INTERVAL:
        return
    for t in targets:
        if t.uri.host.endswith(".twilio.com"):
            raise _fail(path, f"probe.interval = {probe.interval:g} s for Twilio host "
                        f"{t.uri.host}: Twilio asks for one OPTIONS every 10-15 s at most; "
                        "use interval = 10 or more")


def _check_unique(path: str, targets: Sequence[Target]) -> None:
    try:
        TargetSet(targets, seed=1)
    except InputError as e:
        raise _fail(path, str(e)) from None


def _load_dispatcher_list(path: str, text: str, setid: Optional[int]) -> TargetsConfig:
    targets, drain, ruri = [], [], []
    first = None
    for ln, line in enumerate(text.splitlines(), 1):
        s = line.split("#", 1)[0].strip()
        if not s:
            continue
        parts = s.split()
        if len(parts) < 2 or not parts[0].isdigit():
            raise _fail(path, f"line {ln}: expected 'setid sip:host[:port] [flags "
                        f"[priority [attrs]]]', got {s!r}")
        sid = int(parts[0])
        first = sid if first is None else first
        if sid != (setid if setid is not None else first):
            continue
        uri = parts[1]
        # ;lr is meaningless for a destination; other parameters are kept for the parser
        uri = re.sub(r";lr(?=;|$)", "", uri)
        weight = 1
        if len(parts) >= 5:
            for kv in parts[4].split(";"):
                k, _, v = kv.partition("=")
                if k.strip() == "weight":
                    if not v.strip().isdigit():
                        raise _fail(path, f"line {ln}: weight={v!r} is not a number 0-65535")
                    weight = int(v)
        if len(parts) >= 3 and parts[2].isdigit() and int(parts[2]) & 1:
            # dispatcher flag 1: inactive destination
            drain.append(True)
        else:
            drain.append(False)
        try:
            targets.append(Target(uri, 10, weight))
        except InputError as e:
            raise _fail(path, f"line {ln}: {e}") from None
        ruri.append(None)
    if not targets:
        raise _fail(path, f"no destinations for set {setid if setid is not None else first}")
    _check_unique(path, targets)
    return TargetsConfig(targets, drain, ruri, Health(), Probe(), None, path)


def destination(target: Target) -> str:
    """What Kamailio's ``$du`` gets for *target*: ``sip:host:port;transport=x``
    (no ``;edge=``, which is a Twilio origination parameter, not a destination)."""
    u = target.uri
    host = f"[{u.host}]" if u.host_kind == "ipv6" else u.host
    scheme = "sips" if u.scheme == "sips" else "sip"
    return f"{scheme}:{host}:{u.port};transport={u.transport}"


# ------------------------------------------------------------ shared health
class LocalHealth:
    """The health store in one process (tests, tools): a dict with the
    htable's calls."""

    def __init__(self) -> None:
        self.d: dict[str, int] = {}

    def get(self, key: str) -> int:
        return self.d.get(key, 0)

    def set(self, key: str, value: int) -> None:
        self.d[key] = value

    def inc(self, key: str) -> int:
        self.d[key] = self.d.get(key, 0) + 1
        return self.d[key]


class HtableHealth:
    """The health store in Kamailio's shared memory: an ``htable`` whose
    integer items every Kamailio process reads and writes."""

    def __init__(self, ksr: Any, table: str = "sipedge") -> None:
        self._ht = ksr.htable
        self.table = table

    def get(self, key: str) -> int:
        v = self._ht.sht_get(self.table, key)
        return v if isinstance(v, int) else 0

    def set(self, key: str, value: int) -> None:
        self._ht.sht_seti(self.table, key, value)

    def inc(self, key: str) -> int:
        v = self._ht.sht_inc(self.table, key)
        if isinstance(v, int) and v > 0:
            return v
        # htable does not increment a missing item: create it
        self._ht.sht_seti(self.table, key, 1)
        return 1


# ------------------------------------------------------------ the router
class KamailioRouter:
    """sipedge's routing for a KEMI script. *ksr* is Kamailio's ``KSR`` module
    (None outside Kamailio: selection and health work, relaying does not)."""

    def __init__(self, config: TargetsConfig, ksr: Any = None, *, health: Any = None,
                 failure_callback: str = "ksr_sipedge_failure",
                 state_file: str = "", clock=time.monotonic) -> None:
        self.config = config
        self.ksr = ksr
        if health is None:
            health = HtableHealth(ksr) if ksr is not None else LocalHealth()
        self.health = health
        self.failure_callback = failure_callback
        self.state_file = state_file
        self.clock = clock
        self.targets = list(config.targets)
        self.dst = [destination(t) for t in self.targets]
        self._ruri_host = list(config.ruri_host)
        self._prober: Optional[_Prober] = None
        self._published = False
        self._file_sig = _file_sig(config.path)
        self._state_written = None
        self._last_state_write = 0.0
        self._new_set()

    @classmethod
    def from_file(cls, path: str, ksr: Any = None, **kwargs: Any) -> "KamailioRouter":
        return cls(load_targets(path), ksr, **kwargs)

    def _new_set(self) -> None:
        """A fresh TargetSet (fresh random seed): made again in every child
        process, so that forked workers do not draw the same sequence."""
        # health is driven from the shared store: local marks only mirror it
        self.ts = TargetSet(self.targets, fail_threshold=1, ok_threshold=1, cooldown=1e12)
        self._index = {id(t): i for i, t in enumerate(self.ts.targets)}
        self._order_indices = self.ts._core.order_indices
        self._usable = [True] * len(self.targets)
        self._gen = None
        self._next_deadline = float("inf")

    # ------------------------------------------------------- process hooks
    def publish(self) -> None:
        """Publish the targets file's drain flags to the shared store (the
        timer process does it on its first tick; until then, ``gen`` is 0
        and every process uses the flags of the file it loaded)."""
        for i, d in enumerate(self.config.drain):
            self.health.set(f"drain:{i}", 1 if d else 0)
            self.health.set(f"fail:{i}", 0)
            self.health.set(f"out:{i}", 0)
        self.health.set("gen", max(self.health.get("gen"), 0) + 1)
        self._published = True

    def child_init(self, rank: int) -> int:
        self._new_set()
        return 0

    # ------------------------------------------------------- shared health
    def sync(self) -> None:
        """Bring this process's selection in line with the shared health."""
        g = self.health.get("gen")
        if g == self._gen and self.clock() < self._next_deadline:
            return
        self._gen = g
        now = self.clock()
        nxt = float("inf")
        get = self.health.get
        for i in range(len(self.targets)):
            out = get(f"out:{i}")
            usable = not (get(f"drain:{i}") if g else self.config.drain[i])
            if out:
                if out == FOREVER or now < out:
                    usable = False
                    if out != FOREVER:
                        nxt = min(nxt, out)
            if usable != self._usable[i]:
                self._usable[i] = usable
                if usable:
                    self.ts._core.mark_ok(i)
                else:
                    self.ts._core.mark_failed(i)
        self._next_deadline = nxt

    def mark_failed(self, i: int) -> bool:
        """A failure of target *i*; True when it took the target out."""
        n = self.health.inc(f"fail:{i}")
        if n < self.config.health.fail_threshold or self.health.get(f"out:{i}"):
            return False
        cd = self.config.health.cooldown
        self.health.set(f"out:{i}", FOREVER if cd <= 0 else int(self.clock() + cd) + 1)
        self.health.inc("gen")
        return True

    def mark_ok(self, i: int) -> bool:
        """A success of target *i*; True when it brought the target back."""
        if self.health.get(f"fail:{i}"):
            self.health.set(f"fail:{i}", 0)
        if not self.health.get(f"out:{i}"):
            return False
        self.health.set(f"out:{i}", 0)
        self.health.inc("gen")
        return True

    def drain(self, i: int, on: bool = True) -> None:
        """Drain (no new calls) or undrain target *i* for every process."""
        self.health.set(f"drain:{i}", 1 if on else 0)
        self.health.inc("gen")

    def index_of(self, uri: str) -> int:
        """Index of the target with this URI (any spelling of the destination)."""
        return self.ts.index(uri)

    # ------------------------------------------------------- selection
    def choose(self, key: Any = None, tried: Sequence[int] = ()) -> Optional[int]:
        """Index of the target for a call: the sticky choice for *key* when
        nothing was tried, else the first untried one of a fresh failover
        order; None when no usable target is left."""
        self.sync()
        if not tried:
            try:
                t = self.ts.pick(key)
            except SelectionError:
                return None
            return self._index.get(id(t))
        for i in self._order_indices():
            if i not in tried:
                return i
        return None

    # ------------------------------------------------------- KEMI routes
    def relay_invite(self, msg: Any = None) -> int:
        """Route a new INVITE: choose, set ``$du`` (and the R-URI host of a
        termination target), arm the failure route, ``t_relay``. Replies 503
        when no target is usable and no fallback is set."""
        K = self.ksr
        i = self.choose(K.pv.get("$ci"))
        if i is None:
            return self._no_target()
        self._send_to(i, str(i))
        if K.tm.t_relay() < 0:
            K.sl.sl_reply_error()
        return 1

    def _send_to(self, i: int, tried: str) -> None:
        K = self.ksr
        K.pv.sets("$du", self.dst[i])
        if self._ruri_host[i]:
            K.pv.sets("$rd", self._ruri_host[i])
        K.pv.sets(TRIED_AVP, tried)
        K.tm.t_on_failure(self.failure_callback)

    def _no_target(self) -> int:
        K = self.ksr
        if self.config.fallback:
            K.pv.sets("$du", destination(Target(self.config.fallback, 0, 0)))
            K.tm.t_relay()
            return 1
        K.sl.send_reply(503, "No target available")
        return 1

    def failure_route(self, msg: Any = None) -> int:
        """The tm failure route: health marking, Twilio's failover rules, the
        next untried target (``$du`` through ``KSR.pv.sets``: ``setdsturi()``
        makes ``t_relay`` fail here), or the fallback."""
        K = self.ksr
        if K.tm.t_is_canceled() > 0:
            return 1
        tried_s = K.pv.get(TRIED_AVP)
        if not tried_s:
            return 1
        tried = [int(x) for x in str(tried_s).split(",")]
        last = tried[-1]
        if K.tm.t_branch_timeout() > 0 and K.tm.t_branch_replied() < 0:
            status = None
        else:
            status = K.pv.get("$T_reply_code")
            status = int(status) if status is not None else None
        if counts_against_health(status):
            self.mark_failed(last)
        if status is not None and (status < 200 or not should_failover(status)):
            return 1
        i = self.choose(tried=tried)
        if i is None:
            if self.config.fallback:
                K.pv.sets("$du", destination(Target(self.config.fallback, 0, 0)))
                K.tm.t_relay()
            return 1
        self._send_to(i, f"{tried_s},{i}")
        K.tm.t_relay()
        return 1

    # ------------------------------------------------------- timer process
    def timer(self, evname: str = "") -> int:
        """The one-process tick (Kamailio's rtimer): targets-file changes,
        OPTIONS probing, the state file."""
        try:
            if not self._published:
                self.publish()
            self._reload_if_changed()
            if self.config.probe.mode != "off":
                if self._prober is None:
                    self._prober = _Prober(self)
                self._prober.tick()
            self._write_state()
        except Exception as e:  # never let the timer process die on one bad tick
            self._log(f"sipedge timer: {type(e).__name__}: {e}")
        return 1

    def _log(self, text: str) -> None:
        if self.ksr is not None:
            self.ksr.err(text + "\n")

    def _reload_if_changed(self) -> None:
        sig = _file_sig(self.config.path)
        if sig == self._file_sig or not self.config.path:
            return
        self._file_sig = sig
        try:
            new = load_targets(self.config.path)
        except InputError as e:
            self._log(f"sipedge: targets file not reloaded: {e}")
            return
        if _shape(new.targets) != _shape(self.targets):
            self._log(f"sipedge: {self.config.path}: the target list changed; restart "
                      "kamailio to load it (drain changes apply live)")
            return
        changed = False
        for i, d in enumerate(new.drain):
            if bool(self.health.get(f"drain:{i}")) != d:
                self.health.set(f"drain:{i}", 1 if d else 0)
                changed = True
        if changed:
            self.health.inc("gen")

    def status(self) -> list:
        """One dict per target: uri, destination, priority, weight, state
        (up/out/drained), failures (since the last success), probe results."""
        now = self.clock()
        rows = []
        for i, t in enumerate(self.targets):
            out = self.health.get(f"out:{i}")
            st = "up"
            if out and (out == FOREVER or now < out):
                st = "out"
            if self.health.get(f"drain:{i}"):
                st = "drained"
            if not t.enabled:
                st = "disabled"
            row = {"uri": str(t), "destination": self.dst[i], "priority": t.priority,
                   "weight": t.weight, "state": st, "failures": self.health.get(f"fail:{i}")}
            if self._prober is not None:
                row.update(self._prober.info(i))
            rows.append(row)
        return rows

    def _write_state(self) -> None:
        if not self.state_file:
            return
        now = self.clock()
        rows = self.status()
        if rows == self._state_written and now - self._last_state_write < 5:
            return
        tmp = f"{self.state_file}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"gen": self.health.get("gen"), "pid": os.getpid(),
                       "implementation": implementation()["select"], "targets": rows}, f)
        os.replace(tmp, self.state_file)
        self._state_written = rows
        self._last_state_write = now


def _shape(targets: Iterable[Target]) -> list:
    return [(destination(t), t.priority, t.weight, t.enabled) for t in targets]


def _file_sig(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


# ------------------------------------------------------------ the prober
class _Prober:
    """SIP OPTIONS over UDP from one process, driven by :meth:`tick` (no
    thread: Kamailio's timer process calls it every 250 ms)."""

    def __init__(self, router: KamailioRouter) -> None:
        self.r = router
        self.cfg = router.config.probe
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind((self.cfg.source or "0.0.0.0", 0))
        self.port = self.sock.getsockname()[1]
        n = len(router.targets)
        self.next_due = [0.0] * n
        self.pending: dict[str, tuple[int, float]] = {}
        self.oks = [0] * n
        self.last_code: list = [None] * n
        self.rtt: list = [None] * n
        self.sent = 0
        self._via: dict[int, str] = {}

    def _local_ip(self, addr: str) -> str:
        if self.cfg.source:
            return self.cfg.source
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.connect((addr, 9))
            return s.getsockname()[0]
        finally:
            s.close()

    def info(self, i: int) -> dict:
        return {"probe_code": self.last_code[i],
                "probe_rtt_ms": None if self.rtt[i] is None else round(self.rtt[i] * 1000, 3)}

    def tick(self) -> None:
        now = self.r.clock()
        self._receive(now)
        for cid, (i, sent) in list(self.pending.items()):
            if now - sent >= self.cfg.timeout:
                del self.pending[cid]
                self._result(i, None, now - sent)
        for i, t in enumerate(self.r.targets):
            if now < self.next_due[i] or not t.enabled or t.uri.transport != "udp":
                continue
            out = self.r.health.get(f"out:{i}")
            if self.cfg.mode == "out" and not out:
                continue
            if any(v[0] == i for v in self.pending.values()):
                continue
            self.next_due[i] = now + self.cfg.interval
            self._send(i, t, now)

    def _send(self, i: int, t: Target, now: float) -> None:
        try:
            addr = socket.getaddrinfo(t.uri.host, t.uri.port, socket.AF_INET,
                                      socket.SOCK_DGRAM)[0][4]
        except OSError as e:
            self.last_code[i] = f"dns: {e}"
            self._result(i, None, 0.0)
            return
        self.sent += 1
        cid = f"sipedge-probe-{os.getpid()}-{self.sent}"
        ip = self._via.get(i) or self._via.setdefault(i, self._local_ip(addr[0]))
        host = f"{t.uri.host}:{t.uri.port}"
        msg = (f"OPTIONS sip:{host} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {ip}:{self.port};branch=z9hG4bK-sxp-{self.sent};rport\r\n"
               f"From: <sip:probe@sipedge.invalid>;tag=sxp{self.sent}\r\n"
               f"To: <sip:{host}>\r\n"
               f"Call-ID: {cid}\r\n"
               "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        try:
            self.sock.sendto(msg.encode(), addr)
        except OSError:
            self._result(i, None, 0.0)
            return
        self.pending[cid] = (i, now)

    def _receive(self, now: float) -> None:
        while True:
            try:
                data = self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. ICMP port unreachable reported on the socket
            m = re.match(rb"SIP/2\.0 (\d{3})", data)
            c = re.search(rb"\r\n(?:Call-ID|i)\s*:\s*(\S+)", data, re.I)
            if not m or not c:
                continue
            code = int(m.group(1))
            if code < 200:
                continue
            ent = self.pending.pop(c.group(1).decode("ascii", "replace"), None)
            if ent is None:
                continue
            self._result(ent[0], code, now - ent[1])

    def _result(self, i: int, code: Optional[int], rtt: float) -> None:
        ok = code is not None and (code in self.cfg.ok_codes if self.cfg.ok_codes
                                   else 200 <= code < 300)
        if code is not None:
            self.last_code[i] = code
            self.rtt[i] = rtt
        else:
            self.last_code[i] = "timeout"
        if ok:
            self.oks[i] += 1
            if self.oks[i] >= self.cfg.ok_threshold:
                self.r.mark_ok(i)
        else:
            self.oks[i] = 0
            if self.cfg.mode == "all":
                self.r.mark_failed(i)
            elif self.r.health.get(f"out:{i}") == 0:
                pass
