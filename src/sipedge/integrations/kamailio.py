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
        def ksr_sipedge_reply(self, msg): return self.router.reply_route(msg)
        def ksr_sipedge_timer(self, msg, evname): return self.router.timer(evname)

Per INVITE: ``TargetSet.pick(key=Call-ID)`` (the call's own failover order,
the same in every process; keys spread by weight as Twilio documents) among
the targets usable now; ``$du`` is set to the target's destination
(``sip:host:port;transport=...``) and the request URI is kept (a target with
a resolved ``address``, e.g. a Twilio termination edge, gets its host name as
the R-URI host); what the call tried travels in ``$avp(sipedge_tried)``
(``TargetSet.tried`` form, "0,2"). In the failure route (which Kamailio runs
in the process that saw the reply or, for a timeout, in its timer process):
health marking (:func:`sipedge.select.counts_against_health`: no answer, 408,
5xx), Twilio's failover rules (:func:`sipedge.select.should_failover`), then
``pick(key=Call-ID, exclude=tried)``; when nothing is left, the ``fallback``
URI of the targets file, else the best reply goes upstream (Kamailio's tm).

**Shared health**: the ``TargetSet`` keeps its health in a shared table
(:mod:`sipedge.health`, a file in ``/dev/shm`` mapped by every Kamailio
process): a failure marked by any process, the timer process included, takes
the target out for all of them at their next INVITE; so do drain and the
prober's results. Kamailio forks with C ``fork()``, so Python's at-fork hooks
do not run: :meth:`KamailioRouter.child_init` reseeds each process.

**Recovery**: with ``cooldown = 0`` in the targets file a failed target stays
out until OPTIONS probing sees it answer (as Kamailio's dispatcher with
probing); with a cool-down it is offered to ONE call after it (the trial,
claimed through the shared table) and that call's final answer, seen in
:meth:`reply_route` or :meth:`failure_route`, decides.

**Prober**: one process (Kamailio's ``rtimer`` process, every 250 ms) runs
sipedge's asyncio OPTIONS prober (:class:`sipedge.locate.Prober`: UDP, TCP,
TLS) over the targets (``mode = "out"``: only those out of service;
``"all"``: every target, failures count against health; ``"off"``), each
every ``interval`` seconds (at least 10 s for Twilio hosts, as Twilio asks);
answers whose code is in ``ok_codes`` (default: any 2xx; a 503 keeps a target
out) go to the table's ``mark_ok``, ``ok_threshold`` of them in a row bring
a target back. The same tick re-reads the
targets file when it changes (``drain`` changes apply to every process; a
drained target gets no new calls, calls already set up are untouched: their
ACK/BYE follow the Record-Route) and rewrites the state file.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

from .._impl import implementation
from ..errors import HealthTableError, InputError, SelectionError
from ..select.health import table_path
from ..select import (Target, TargetSet, counts_against_health, should_failover,
                      termination_order)

if sys.version_info >= (3, 11):
    import tomllib as _toml
else:  # pragma: no cover - 3.10
    import tomli as _toml

#: the cool-down that means "until a probe or mark_ok brings it back" (10 years)
UNTIL_PROBED = 10 * 365 * 86400.0
#: the AVP that carries the indices tried for one call ("0,2").
TRIED_AVP = "$avp(sipedge_tried)"
#: the minimum OPTIONS interval Twilio asks for, seconds.
TWILIO_MIN_PROBE_INTERVAL = 10.0
PROBE_MODES = ("out", "all", "off")


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
    known = {"target", "health", "probe", "fallback", "termination", "origination_url"}
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
    targets, drain = [], []
    keys = ("uri", "priority", "weight", "enabled", "drain", "cps", "burst", "address")
    for n, t in enumerate(doc.get("target", [])):
        if not isinstance(t, dict) or "uri" not in t:
            raise _fail(path, f"[[target]] #{n + 1} has no uri = \"sip:host[:port]\"")
        for k in t:
            if k not in keys:
                raise _fail(path, f"[[target]] #{n + 1}: unknown key {k!r}; known: "
                            f"{', '.join(keys)}")
        try:
            targets.append(Target(t["uri"], t.get("priority", 10), t.get("weight", 1),
                                  t.get("enabled", True), cps=t.get("cps"),
                                  burst=t.get("burst", 1), address=t.get("address")))
        except InputError as e:
            raise _fail(path, f"[[target]] #{n + 1}: {e}") from None
        d = t.get("drain", False)
        if not isinstance(d, bool):
            raise _fail(path, f"[[target]] #{n + 1}: drain = {d!r} is not true or false")
        drain.append(d)
    recs = doc.get("origination_url", [])
    if recs:
        _origination_targets(path, recs, targets, drain)
    term = doc.get("termination")
    if term is not None:
        _termination_targets(path, term, targets, drain)
    if not targets:
        raise _fail(path, "no targets; add [[target]] uri = \"sip:host\" entries, "
                    "[[origination_url]] records or a [termination] table")
    fb = doc.get("fallback")
    if fb is not None:
        try:
            Target(fb, 0, 0)
        except InputError as e:
            raise _fail(path, f"fallback: {e}") from None
    _check_probe_interval(path, probe, targets)
    _check_unique(path, targets)
    return TargetsConfig(targets, drain, health, probe, fb, path)


def _origination_targets(path: str, recs: Any, targets: list, drain: list) -> None:
    """``[[origination_url]]``: Twilio's origination URL records as its API
    gives them (``sip_url``, ``priority``, ``weight``, ``enabled``; other
    fields such as ``sid`` or ``friendly_name`` are ignored), each URL through
    Twilio's strict origination-URI check; ``drain`` may be added."""
    if not isinstance(recs, list) or not all(isinstance(r, dict) for r in recs):
        raise _fail(path, "origination_url must be [[origination_url]] tables")
    for n, r in enumerate(recs):
        rec = {k: v for k, v in r.items() if k != "drain"}
        rec.setdefault("enabled", True)
        try:
            t = TargetSet.from_twilio([rec], seed=1).targets[0]
        except InputError as e:
            raise _fail(path, f"[[origination_url]] #{n + 1}: {e}") from None
        d = r.get("drain", False)
        if not isinstance(d, bool):
            raise _fail(path, f"[[origination_url]] #{n + 1}: drain = {d!r} is not true or false")
        targets.append(t)
        drain.append(d)


def _termination_targets(path: str, term: Any, targets: list, drain: list) -> None:
    """``[termination] domain = "x", edges = [...], addresses = {host = [ip...]}``:
    the Twilio termination order (edge after edge, every address of each), one
    priority per attempt; each target sends to the address and keeps the
    termination host name for the R-URI (Twilio answers 403 to a bare IP)."""
    if not isinstance(term, dict) or "domain" not in term:
        raise _fail(path, "[termination] needs domain = \"example\" (your trunk's "
                    "termination domain without .pstn.twilio.com)")
    edges = term.get("edges", [None])
    addrs = term.get("addresses")
    try:
        attempts = termination_order(term["domain"], edges or [None], addrs)
    except (InputError, SelectionError) as e:
        raise _fail(path, f"[termination]: {e}") from None
    base = len(targets)
    for n, a in enumerate(attempts):
        uri = f"sip:{a.host}" + (f";maddr={a.address}" if a.address else "")
        targets.append(Target(uri, base + n, 1, address=a.address))
        drain.append(False)


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
    targets, drain = [], []
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
        # ;lr says nothing about the destination: dropped so sip:h;lr and sip:h are one
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
    if not targets:
        raise _fail(path, f"no destinations for set {setid if setid is not None else first}")
    _check_unique(path, targets)
    return TargetsConfig(targets, drain, Health(), Probe(), None, path)


def destination(target: Target) -> str:
    """What Kamailio's ``$du`` gets for *target* (:attr:`Target.destination`):
    ``sip:host:port;transport=x``, no ``;edge=`` (a Twilio origination
    parameter, not a destination)."""
    return target.destination


def default_table(targets_path: str) -> str:
    """The shared health table of a Kamailio instance when HEALTH_TABLE is not
    set: ``/dev/shm/sipedge-kamailio-<hash of the targets file's path>``."""
    h = hashlib.sha1(os.path.abspath(targets_path).encode()).hexdigest()[:12]
    return f"kamailio-{h}"


# ------------------------------------------------------------ the router
class KamailioRouter:
    """sipedge's routing for a KEMI script. *ksr* is Kamailio's ``KSR`` module
    (None outside Kamailio: selection and health work, relaying does not).
    *table*: the shared health table (name or path; None: private to this
    process, for tools and tests; "" : :func:`default_table`)."""

    def __init__(self, config: TargetsConfig, ksr: Any = None, *, table: Optional[str] = "",
                 failure_callback: str = "ksr_sipedge_failure",
                 reply_callback: str = "ksr_sipedge_reply",
                 state_file: str = "", clock=time.monotonic) -> None:
        self.config = config
        self.ksr = ksr
        self.failure_callback = failure_callback
        self.reply_callback = reply_callback
        self.state_file = state_file
        self.clock = clock
        if table == "":
            table = default_table(config.path) if config.path else None
        self.table = table
        cd = config.health.cooldown
        settings = dict(fail_threshold=config.health.fail_threshold,
                        ok_threshold=config.probe.ok_threshold,
                        cooldown=cd if cd > 0 else UNTIL_PROBED, clock=clock)
        try:
            self.ts = TargetSet(config.targets, table=table, **settings)
        except HealthTableError:
            if table is None or table != default_table(config.path):
                raise
            # the default table of this targets file, made for an older list:
            # start a new one (mod_init runs before Kamailio forks its workers)
            os.unlink(table_path(table))
            self.ts = TargetSet(config.targets, table=table, **settings)
        self.targets = self.ts.targets
        self.dst = [t.destination for t in self.targets]
        # a target with a resolved address keeps its host name in the R-URI
        self._rd = [t.uri.host if t.address else None for t in self.targets]
        self._index = {id(t): i for i, t in enumerate(self.targets)}
        self._prober: Optional[_ProbeRunner] = None
        self._file_sig = _file_sig(config.path)
        self._state_written: Any = None
        self._last_state_write = 0.0
        self._pick = self.ts.pick
        self._state = self.ts._core.state

    @classmethod
    def from_file(cls, path: str, ksr: Any = None, **kwargs: Any) -> "KamailioRouter":
        return cls(load_targets(path), ksr, **kwargs)

    # ------------------------------------------------------- process hooks
    def publish(self) -> None:
        """Apply the targets file's drain flags to the shared table (Kamailio's
        main process, in mod_init, before the workers exist)."""
        for i, d in enumerate(self.config.drain):
            (self.ts.drain if d else self.ts.undrain)(i)

    def child_init(self, rank: int) -> int:
        """A new Kamailio process: Kamailio forks in C, so Python's at-fork
        hooks did not run; reseed so that workers do not draw alike."""
        self.ts.reseed()
        return 0

    # ------------------------------------------------------- health
    def mark_failed(self, i: int) -> bool:
        return self.ts.mark_failed(i)

    def mark_ok(self, i: int) -> bool:
        return self.ts.mark_ok(i)

    def drain(self, i: int, on: bool = True) -> bool:
        return self.ts.drain(i) if on else self.ts.undrain(i)

    # ------------------------------------------------------- selection
    def choose(self, key: Any = None, tried: str = "") -> Optional[int]:
        """Index of the target for a call: the first of *key*'s order (a
        fresh draw without a key) not in *tried* ("0,2"); None when nothing
        is usable (drained, out, disabled, or at its call-rate limit)."""
        try:
            t = self._pick(key, tried or None)
        except SelectionError:
            return None
        return self._index[id(t)]

    # ------------------------------------------------------- KEMI routes
    def relay_invite(self, msg: Any = None) -> int:
        """Route a new INVITE: choose, set ``$du`` (and the R-URI host of a
        target with a resolved address), arm the failure route, ``t_relay``.
        Replies 503 when no target is usable and no fallback is set."""
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
        if self._rd[i]:
            K.pv.sets("$rd", self._rd[i])
        K.pv.sets(TRIED_AVP, tried)
        K.tm.t_on_failure(self.failure_callback)
        if self._state(i) != "up":
            # pick() hands out only usable targets: one that is not "up" right
            # after it is this call's trial after a cool-down (claiming the
            # trial put it back "out" for everyone else): its answer decides
            K.tm.t_on_reply(self.reply_callback)

    def _no_target(self) -> int:
        K = self.ksr
        if self.config.fallback:
            K.pv.sets("$du", Target(self.config.fallback, 0, 0).destination)
            K.tm.t_relay()
            return 1
        K.sl.send_reply(503, "No target available")
        return 1

    def _last_tried(self) -> tuple:
        tried = self.ksr.pv.get(TRIED_AVP)
        if not tried:
            return "", None
        tried = str(tried)
        return tried, int(tried.rsplit(",", 1)[-1])

    def reply_route(self, msg: Any = None) -> int:
        """tm onreply route, armed only for a target's trial call: a final
        answer that does not count against health brings it back."""
        code = self.ksr.pv.get("$rs")
        if code is not None and int(code) >= 200 and not counts_against_health(int(code)):
            _, last = self._last_tried()
            if last is not None:
                self.ts.mark_ok(last)
        return 1

    def failure_route(self, msg: Any = None) -> int:
        """The tm failure route: health marking, Twilio's failover rules, the
        next target of the call's order that it has not tried (``$du``
        through ``KSR.pv.sets``: ``setdsturi()`` makes ``t_relay`` fail here),
        or the fallback."""
        K = self.ksr
        if K.tm.t_is_canceled() > 0:
            return 1
        tried, last = self._last_tried()
        if last is None:
            return 1
        if K.tm.t_branch_timeout() > 0 and K.tm.t_branch_replied() < 0:
            status = None
        else:
            status = K.pv.get("$T_reply_code")
            status = int(status) if status is not None else None
        if counts_against_health(status):
            self.ts.mark_failed(last)
        elif status is not None and status >= 200:
            self.ts.mark_ok(last)   # it answered (486, 404...): it works
        if status is not None and (status < 200 or not should_failover(status)):
            return 1
        i = self.choose(K.pv.get("$ci"), tried)
        if i is None:
            if self.config.fallback:
                K.pv.sets("$du", Target(self.config.fallback, 0, 0).destination)
                K.tm.t_relay()
            return 1
        self._send_to(i, f"{tried},{i}")
        K.tm.t_relay()
        return 1

    # ------------------------------------------------------- timer process
    def timer(self, evname: str = "") -> int:
        """The one-process tick (Kamailio's rtimer): targets-file changes,
        OPTIONS probing, the state file."""
        try:
            self._reload_if_changed()
            if self.config.probe.mode != "off":
                if self._prober is None:
                    self._prober = _ProbeRunner(self)
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
        for i, d in enumerate(new.drain):
            (self.ts.drain if d else self.ts.undrain)(i)
        self.config.drain = list(new.drain)

    def status(self) -> list:
        """One dict per target (``TargetSet.status()``: uri, destination,
        priority, weight, state, drained, failures, successes...) with the
        prober's last code and round-trip time."""
        rows = self.ts.status()
        if self._prober is not None:
            info = self._prober.info()
            for i, row in enumerate(rows):
                row.update(info.get(i, {}))
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
            json.dump({"pid": os.getpid(), "table": self.ts.table.path,
                       "python": sys.version.split()[0], "python_prefix": sys.prefix,
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
class _ProbeRunner:
    """sipedge's asyncio OPTIONS prober (:class:`sipedge.locate.Prober`, UDP,
    TCP and TLS, RFC 3261 retransmits, latency EWMA) fed into the shared
    table, driven from Kamailio's timer process: each tick runs the event loop
    for *budget* seconds and returns to Kamailio (the rtimer process is
    dedicated to sipedge, so the loop runs most of the time and latencies are
    measured while it does)."""

    def __init__(self, router: KamailioRouter, budget: float = 0.2) -> None:
        import asyncio
        from ..locate.probe import Prober
        cfg = router.config.probe
        self.asyncio = asyncio
        self.budget = budget
        self.prober = Prober.for_target_set(
            router.ts, interval=cfg.interval, timeout=cfg.timeout,
            reply_codes=list(cfg.ok_codes) if cfg.ok_codes else "2xx",
            mode=cfg.mode, local_address=cfg.source or None,
            from_uri="sip:probe@sipedge.invalid")
        self.loop = asyncio.new_event_loop()
        self.task = self.loop.create_task(self.prober.run())
        self._by_uri = {str(t): i for i, t in enumerate(router.targets)}

    def tick(self) -> None:
        self.loop.run_until_complete(self.asyncio.sleep(self.budget))
        if self.task.done():          # it only ends on an error: surface it, start again
            exc = self.task.exception()
            self.task = self.loop.create_task(self.prober.run())
            if exc is not None:
                raise exc

    def info(self) -> dict:
        out = {}
        for st in self.prober.status():
            i = self._by_uri.get(st.target.uri)
            if i is not None:
                d = st.to_dict()
                out[i] = {"probe_code": d["last_code"], "probe_latency_ms": d["latency_ms"],
                          "probe_spread_ms": d["spread_ms"], "probes_sent": d["sent"]}
        return out
