"""SIP OPTIONS health probing over UDP, TCP and TLS (asyncio, one process).

::

    import asyncio
    from sipedge.locate import Prober

    prober = Prober(["sip:192.0.2.10", "sip:192.0.2.11:5080;transport=tcp"],
                    interval=15, timeout=4, fail_threshold=2, ok_threshold=2,
                    on_result=lambda r: print(r.target.uri, r.code, r.state))
    asyncio.run(prober.run(rounds=3))        # or run() until prober.stop()
    for s in prober.status():
        print(s.target.uri, s.state, s.last_code, s.latency, s.spread)

With a :class:`sipedge.TargetSet` as ``health=``, every result goes to its
``mark_ok`` / ``mark_failed`` (its thresholds and cool-down then decide the
state, and ``order()`` / ``pick()`` follow); ``Prober.for_target_set(ts)``
probes the set's own targets. Without one, a small in-process table with
``fail_threshold`` / ``ok_threshold`` keeps the state (``up`` / ``out``).
Any object with ``mark_ok(key)``, ``mark_failed(key)`` and ``state(key)``
(key: the target's URI text) can be the health table.

**What counts** (as Kamailio's dispatcher): a final response whose code is in
``reply_codes`` is a success; by default any final response the target sends
(it is alive and speaking SIP). No response within ``timeout`` is a failure
recorded as a locally generated 408, as are a refused or reset connection, a
TLS failure and a reply that is not SIP. Over UDP the request is retransmitted
(RFC 3261 timer E: 0.5 s, doubling up to 4 s) until ``timeout``.

**Latency**: from the first transmission to the final response, kept per
target as an EWMA (``alpha`` 1/8) with its spread (mean deviation, ``beta``
1/4), the estimators of RFC 6298.

**Which targets**: ``mode="all"`` (default), ``"out"`` (only targets out of
service or probing, as Kamailio's ``ds_probing_mode`` 0), ``"probing"`` (only
targets whose cool-down is over, with a TargetSet).

**Twilio**: a target whose host is under ``twilio.com`` or whose address is in
Twilio's published signaling ranges is refused an ``interval`` under
:data:`TWILIO_MIN_INTERVAL` (Twilio accepts one OPTIONS every 10-15 s per
destination).
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Protocol, Union

from .._version import __version__
from ..errors import InputError, ProbeError, ResolveError
from ..twilio.uri import OriginationURI

TWILIO_MIN_INTERVAL = 10.0
T1 = 0.5
T2 = 4.0
MAX_FORWARDS = 70
MODES = ("all", "out", "probing")


class Health(Protocol):
    """What the prober feeds: :class:`sipedge.TargetSet` has these three."""

    def mark_ok(self, key: str) -> Any: ...
    def mark_failed(self, key: str) -> Any: ...
    def state(self, key: str) -> str: ...


class LocalHealth:
    """In-process health: ``fail_threshold`` consecutive failures put a target
    out, ``ok_threshold`` consecutive successes bring it back. States ``up`` / ``out``."""

    def __init__(self, fail_threshold: int = 1, ok_threshold: int = 1) -> None:
        for what, v in (("fail_threshold", fail_threshold), ("ok_threshold", ok_threshold)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{what} {v!r} must be an integer >= 1")
        self.fail_threshold = fail_threshold
        self.ok_threshold = ok_threshold
        self._out: dict[str, bool] = {}
        self._run: dict[str, int] = {}   # >0: consecutive successes, <0: failures

    def mark_failed(self, key: str) -> bool:
        run = min(self._run.get(key, 0), 0) - 1
        self._run[key] = run
        if not self._out.get(key) and -run >= self.fail_threshold:
            self._out[key] = True
            return True
        return False

    def mark_ok(self, key: str) -> bool:
        run = max(self._run.get(key, 0), 0) + 1
        self._run[key] = run
        if self._out.get(key) and run >= self.ok_threshold:
            self._out[key] = False
            self._run[key] = 0
            return True
        return False

    def state(self, key: str) -> str:
        return "out" if self._out.get(key) else "up"


@dataclass(frozen=True)
class ProbeTarget:
    """Where one probe goes. ``uri`` is the key in the health table and the
    Request-URI; ``host`` goes into the Request-URI and To and is the TLS
    server name; ``address`` None means resolve ``uri`` (RFC 3263) before each
    probe and use the first destination."""

    uri: str
    host: str
    port: int
    transport: str
    address: Optional[str] = None
    request: Optional[str] = None    # the Request-URI when not built from host/port

    @classmethod
    def of(cls, item: Any) -> "ProbeTarget":
        """From a ProbeTarget, a :class:`sipedge.Target`, a URI (text or parsed) or a
        :class:`~sipedge.locate.Destination`."""
        if isinstance(item, ProbeTarget):
            return item
        from .resolve import Destination, as_uri
        if isinstance(item, Destination):
            scheme = "sips" if item.transport == "tls" else "sip"
            a = f"[{item.address}]" if ":" in item.address else item.address
            t = "tcp" if item.transport == "tls" else item.transport
            return cls(f"{scheme}:{a}:{item.port};transport={t}", item.host, item.port,
                       item.transport, item.address)
        uri = getattr(item, "uri", item)           # a Target
        key = str(item) if not isinstance(item, str) else item.strip()
        u: OriginationURI = as_uri(uri)
        if u.host_kind != "name":
            return cls(key, u.host, u.port, u.transport, u.host)
        # a host name: resolved (RFC 3263) before each probe; the Request-URI keeps
        # the name as written (no ;edge=, which is Twilio's, not the target's)
        return cls(key, u.host, u.port, u.transport, None, str(dataclasses.replace(u, edge=None)))

    def request_uri(self) -> str:
        if self.request is not None:
            return self.request
        scheme = "sips" if self.transport == "tls" else "sip"
        h = f"[{self.host}]" if ":" in self.host else self.host
        t = "" if self.transport in ("udp", "tls") else f";transport={self.transport}"
        return f"{scheme}:{h}:{self.port}{t}"


@dataclass(frozen=True)
class ProbeResult:
    """One probe. ``code`` is the SIP status (408 when nothing came back in
    time: generated locally); ``ok`` whether it counts as alive; ``state`` the
    target's health after it; ``changed`` True when this result changed it."""

    target: ProbeTarget
    ok: bool
    code: Optional[int]
    reason: str
    latency: Optional[float]
    at: float
    state: str = "up"
    changed: bool = False
    address: Optional[str] = None


@dataclass
class TargetStatus:
    """What the prober knows of one target."""

    target: ProbeTarget
    state: str = "up"
    last_code: Optional[int] = None
    last_reason: str = ""
    last_latency: Optional[float] = None
    latency: Optional[float] = None      # EWMA, seconds
    spread: Optional[float] = None       # mean deviation, seconds
    sent: int = 0
    answered: int = 0
    failures: int = 0
    successes: int = 0
    last_at: Optional[float] = None
    last_address: Optional[str] = None   # where the last probe went (names: resolved)

    def to_dict(self) -> dict:
        ms = (lambda v: None if v is None else round(v * 1000, 3))
        return {"uri": self.target.uri, "address": self.target.address or self.last_address,
                "state": self.state,
                "last_code": self.last_code, "last_reason": self.last_reason,
                "latency_ms": ms(self.latency), "spread_ms": ms(self.spread),
                "last_latency_ms": ms(self.last_latency), "sent": self.sent,
                "answered": self.answered, "failures": self.failures,
                "successes": self.successes}


def parse_reply_codes(codes: Union[None, str, Iterable[Union[int, str]]]) -> Optional[frozenset]:
    """``None`` (any final response), or codes / classes: ``[200, "2xx", 404]`` or ``"200,2xx"``."""
    if codes is None:
        return None
    if isinstance(codes, str):
        codes = [c for c in codes.split(",") if c.strip()]
    out: set[int] = set()
    for c in codes:
        text = str(c).strip().lower()
        if len(text) == 3 and text[0] in "23456" and text[1:] == "xx":
            out.update(range(int(text[0]) * 100, int(text[0]) * 100 + 100))
        elif text.isascii() and text.isdigit() and 200 <= int(text) <= 699:
            out.add(int(text))
        else:
            raise InputError(f"reply code {c!r} is not a final SIP status 200-699 or a class "
                             "like 2xx")
    if not out:
        raise InputError("reply codes are empty; leave them unset to accept any final response")
    return frozenset(out)


def _is_twilio(t: ProbeTarget) -> Optional[str]:
    if t.host == "twilio.com" or t.host.endswith(".twilio.com"):
        return t.host
    if t.address is not None:
        from ..allowlist import Allowlist
        m = Allowlist.twilio().match(t.address)
        if m is not None and m.role == "signaling":
            return f"{t.address} (Twilio {m.edge or ''} signaling)".replace("  ", " ")
    return None


def _parse(data: bytes) -> Optional[tuple[int, str, dict]]:
    """(code, reason phrase, headers of interest) of a SIP response, or None."""
    head = data.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    first = lines[0]
    if not first.startswith(b"SIP/2.0 ") or len(first) < 11:
        return None
    code_b = first[8:11]
    if not code_b.isdigit():
        return None
    code = int(code_b)
    if not 100 <= code <= 699:
        return None
    hdrs: dict = {}
    for ln in lines[1:]:
        name, sep, value = ln.partition(b":")
        if not sep:
            continue
        n = name.strip().lower()
        if n in (b"call-id", b"i") and "call-id" not in hdrs:
            hdrs["call-id"] = value.strip().decode("latin-1")
    return code, first[12:].decode("utf-8", "replace").strip(), hdrs


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, prober: "Prober") -> None:
        self.prober = prober
        self.transport: Optional[asyncio.DatagramTransport] = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.prober._udp_in(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass   # ICMP errors on an unconnected socket: the probe times out


@dataclass
class _Pending:
    source: tuple
    finish: Optional[Callable[..., None]]
    t0: float
    from_run: bool = False
    provisional: bool = False
    timer: Optional[asyncio.TimerHandle] = None
    expiry: Optional[asyncio.TimerHandle] = None
    end: Optional[Callable[..., None]] = None


def _tls_reason(e: ssl.SSLError) -> str:
    what = e.reason or e.strerror or str(e)
    detail = getattr(e, "verify_message", None)
    return f"{what} ({detail})" if detail else what


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class Prober:
    """Send SIP OPTIONS to targets at an interval and keep their health (see the
    module docstring). All methods run in one asyncio event loop."""

    def __init__(self, targets: Iterable[Any], *, interval: float = 30.0, timeout: float = 4.0,
                 reply_codes: Union[None, str, Iterable[Union[int, str]]] = None,
                 fail_threshold: Optional[int] = None, ok_threshold: Optional[int] = None,
                 health: Optional[Health] = None, mode: str = "all",
                 on_result: Optional[Callable[[ProbeResult], Any]] = None,
                 resolver: Any = None, local_address: Optional[str] = None,
                 from_uri: Optional[str] = None, tls_context: Optional[ssl.SSLContext] = None,
                 stagger: bool = True, alpha: float = 0.125, beta: float = 0.25,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.targets = [ProbeTarget.of(t) for t in targets]
        keys = [t.uri for t in self.targets]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise InputError(f"probe target {dup} is listed twice; keep one")
        for what, v in (("interval", interval), ("timeout", timeout)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 86400:
                raise InputError(f"{what} {v!r} must be a number of seconds > 0 and at most "
                                 "86400 (a day)")
        if mode not in MODES:
            raise InputError(f"mode {mode!r}: use one of {', '.join(MODES)}")
        if interval < TWILIO_MIN_INTERVAL:
            for t in self.targets:
                who = _is_twilio(t)
                if who:
                    raise ProbeError(
                        f"interval {interval:g} s is too short for {who}: Twilio accepts one "
                        f"OPTIONS every 10-15 s per destination; use an interval of "
                        f"{TWILIO_MIN_INTERVAL:g} s or more")
        if health is not None and (fail_threshold is not None or ok_threshold is not None):
            raise InputError("fail_threshold/ok_threshold belong to the health table given "
                             "(e.g. TargetSet(..., fail_threshold=2)); do not pass both")
        self.health: Health = health if health is not None else LocalHealth(
            1 if fail_threshold is None else fail_threshold,
            1 if ok_threshold is None else ok_threshold)
        self.interval = float(interval)
        self.timeout = float(timeout)
        self.reply_codes = parse_reply_codes(reply_codes)
        self.mode = mode
        self.on_result = on_result
        self._resolver = resolver
        self.local_address = local_address
        self.from_uri = from_uri
        self.tls_context = tls_context
        self.stagger = stagger
        self.alpha, self.beta = alpha, beta
        self._clock = clock
        self._status = {t.uri: TargetStatus(t) for t in self.targets}
        self._pending: dict[str, _Pending] = {}
        self._by_source: dict[tuple, list[str]] = {}
        self._udp: dict[int, _Udp] = {}
        self._src_cache: dict[str, str] = {}
        self._ids = itertools.count()
        self._prefix = os.urandom(6).hex()
        self._stop: Optional[asyncio.Event] = None
        self._done: Optional[asyncio.Future] = None
        self._failure: Optional[BaseException] = None
        self._active = 0
        self._timers: set = set()
        self._tasks: set = set()
        self.cpu_seconds = 0.0

    @classmethod
    def for_target_set(cls, ts: Any, **kwargs: Any) -> "Prober":
        """Probe the targets of a :class:`sipedge.TargetSet` and feed its health."""
        return cls(list(ts.targets), health=ts, **kwargs)

    # ------------------------------------------------------------------ public
    def status(self) -> list[TargetStatus]:
        for s in self._status.values():
            s.state = self.health.state(s.target.uri)
        return list(self._status.values())

    def status_of(self, target: Any) -> TargetStatus:
        key = ProbeTarget.of(target).uri
        s = self._status[key]
        s.state = self.health.state(key)
        return s

    def stop(self) -> None:
        """Make :meth:`run` return now; its probes in flight are dropped (no result)."""
        if self._stop is not None:
            self._stop.set()

    async def run(self, rounds: Optional[int] = None) -> None:
        """Probe every target each ``interval`` (first probes spread over one interval
        when ``stagger``), ``rounds`` times each, or until :meth:`stop`.

        Scheduling is by loop timers, not one task per target: a UDP probe to an
        address is a few callbacks (send, retransmit, answer or expire); TCP, TLS
        and names to resolve run as tasks. An exception from ``on_result`` stops
        the run and is raised here."""
        if rounds is not None and (isinstance(rounds, bool) or not isinstance(rounds, int)
                                   or rounds < 1):
            raise InputError(f"rounds {rounds!r} must be an integer >= 1 or None")
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._done = loop.create_future()
        self._failure = None
        self._active = len(self.targets)
        self._timers = set()
        self._tasks = set()
        cpu0 = time.process_time()
        try:
            for fam in {socket.AF_INET6 if ":" in t.address else socket.AF_INET
                        for t in self.targets if t.address is not None and t.transport == "udp"}:
                await self._udp_sock(fam)
            if not self.targets:
                return
            start = self._clock()
            n = len(self.targets)
            for i, t in enumerate(self.targets):
                first = start + (self.interval * i / n if self.stagger else 0.0)
                self._at(first, self._fire, t, first, rounds)
            stopper = asyncio.ensure_future(self._stop.wait())
            try:
                await asyncio.wait([self._done, stopper], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
            if self._failure is not None:
                raise self._failure
        finally:
            self._stop.set()
            for h in self._timers:
                h.cancel()
            self._timers.clear()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            for call_id, p in list(self._pending.items()):
                if p.from_run:      # probe() calls in flight finish on their own
                    p.finish = None
                    if p.end is not None:
                        p.end(None, "", None, True)
            self.cpu_seconds += time.process_time() - cpu0
            self.close()

    # the scheduler: loop timers, callbacks
    def _at(self, when: float, fn: Callable, *args: Any) -> None:
        loop = asyncio.get_running_loop()
        handle: Optional[asyncio.TimerHandle] = None

        def fire() -> None:
            self._timers.discard(handle)
            fn(*args)

        handle = loop.call_later(max(0.0, when - self._clock()), fire)
        self._timers.add(handle)

    def _fail_run(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _fire(self, t: ProbeTarget, at: float, left: Optional[int]) -> None:
        if self._stop is None or self._stop.is_set():
            return
        try:
            wants = self._wants(t)
        except Exception as e:   # a health table's error ends the run, loudly
            self._fail_run(e)
            return
        try:
            if not wants:
                self._next(t, at, left)
                return
            self._status[t.uri].sent += 1
            if t.transport == "udp" and t.address is not None and self._udp_ready(t.address):
                self._udp_start(t, t.address, lambda *r: self._udp_done(t, at, left, *r),
                                from_run=True)
                return
        except Exception as e:   # never a target that silently stops being probed
            self._fail_run(e)
            return
        task = asyncio.ensure_future(self._probe(t, counted=True))
        self._tasks.add(task)

        def done(f: asyncio.Future) -> None:
            self._tasks.discard(f)
            if f.cancelled():
                return
            exc = f.exception()
            if exc is not None:
                self._fail_run(exc)
                return
            self._next(t, at, left)
        task.add_done_callback(done)

    def _udp_done(self, t: ProbeTarget, at: float, left: Optional[int], code: Optional[int],
                  reason: str, latency: Optional[float], failed: bool) -> None:
        try:
            if failed:
                self._record(t, False, code, reason, None, t.address)
            else:
                ok = self.reply_codes is None or code in self.reply_codes
                self._record(t, ok, code, f"{code} {reason}".strip(), latency, t.address)
        except Exception as e:
            self._fail_run(e)
            return
        self._next(t, at, left)

    def _next(self, t: ProbeTarget, at: float, left: Optional[int]) -> None:
        if left is not None:
            left -= 1
            if left <= 0:
                self._active -= 1
                if self._active == 0 and self._done is not None and not self._done.done():
                    self._done.set_result(None)
                return
        at += self.interval
        now = self._clock()
        if at < now:          # a probe took longer than the interval: no burst
            at = now
        self._at(at, self._fire, t, at, left)

    async def probe(self, target: Any) -> ProbeResult:
        """Probe one target now, feed the health table, return the result."""
        t = ProbeTarget.of(target)
        if t.uri not in self._status:
            raise InputError(f"{t.uri} is not a target of this prober")
        return await self._probe(t)

    def close(self) -> None:
        for u in self._udp.values():
            if u.transport is not None:
                u.transport.close()
        self._udp.clear()

    # --------------------------------------------------------------- internal
    def _wants(self, t: ProbeTarget) -> bool:
        if self.mode == "all":
            return True
        st = self.health.state(t.uri)
        return st in ("out", "probing") if self.mode == "out" else st in ("probing",) or (
            st == "out" and isinstance(self.health, LocalHealth))

    async def _probe(self, t: ProbeTarget, counted: bool = False) -> ProbeResult:
        if not counted:
            self._status[t.uri].sent += 1
        send = t
        if t.address is None:
            try:
                send = await self._resolve(t)
            except ResolveError as e:
                return self._record(t, False, None, f"DNS: {e}", None, None)
        address = send.address
        assert address is not None
        try:
            if send.transport == "udp":
                code, reason, latency = await self._udp_probe(send, address)
            else:
                code, reason, latency = await self._stream_probe(send, address)
        except _Failed as e:
            return self._record(t, False, e.code, e.reason, None, address)
        ok = self.reply_codes is None or code in self.reply_codes
        return self._record(t, ok, code, f"{code} {reason}".strip(), latency, address)

    async def _resolve(self, t: ProbeTarget) -> ProbeTarget:
        """*t* with the first destination RFC 3263 gives (its address, port, transport)."""
        if self._resolver is None:
            from .resolve import Resolver
            self._resolver = Resolver()
        res = await asyncio.get_running_loop().run_in_executor(
            None, self._resolver.resolve, t.uri)
        d = res.destinations[0]
        return dataclasses.replace(t, address=d.address, port=d.port, transport=d.transport,
                                   host=t.host)

    def _record(self, t: ProbeTarget, ok: bool, code: Optional[int], reason: str,
                latency: Optional[float], address: Optional[str]) -> ProbeResult:
        st = self._status[t.uri]
        changed = bool(self.health.mark_ok(t.uri) if ok else self.health.mark_failed(t.uri))
        state = self.health.state(t.uri)
        now = self._clock()
        st.state, st.last_code, st.last_reason, st.last_at = state, code, reason, now
        st.last_address = address
        if ok:
            st.successes += 1
        else:
            st.failures += 1
        if latency is not None:
            st.answered += 1
            st.last_latency = latency
            if st.latency is None:
                st.latency, st.spread = latency, latency / 2
            else:
                assert st.spread is not None
                st.spread = (1 - self.beta) * st.spread + self.beta * abs(st.latency - latency)
                st.latency = (1 - self.alpha) * st.latency + self.alpha * latency
        r = ProbeResult(t, ok, code, reason, latency, now, state, changed, address)
        if self.on_result is not None:
            self.on_result(r)
        return r

    def _new_ids(self) -> tuple[str, str, str]:
        n = next(self._ids)
        return f"z9hG4bK{self._prefix}{n:x}", f"{self._prefix[:8]}{n:x}", f"{self._prefix}-{n:x}"

    def _request(self, t: ProbeTarget, via_proto: str, local: tuple, branch: str, tag: str,
                 call_id: str) -> bytes:
        lh = f"[{local[0]}]" if ":" in local[0] else local[0]
        h = f"[{t.host}]" if ":" in t.host else t.host
        frm = self.from_uri or f"sip:sipedge@{lh}"
        return (f"OPTIONS {t.request_uri()} SIP/2.0\r\n"
                f"Via: SIP/2.0/{via_proto} {lh}:{local[1]};branch={branch};rport\r\n"
                f"Max-Forwards: {MAX_FORWARDS}\r\n"
                f"From: <{frm}>;tag={tag}\r\n"
                f"To: <sip:{h}>\r\n"
                f"Call-ID: {call_id}\r\n"
                f"CSeq: 1 OPTIONS\r\n"
                f"Accept: application/sdp\r\n"
                f"User-Agent: sipedge/{__version__}\r\n"
                f"Content-Length: 0\r\n\r\n").encode()

    # ---- UDP
    async def _udp_sock(self, family: int) -> _Udp:
        u = self._udp.get(family)
        if u is None:
            loop = asyncio.get_running_loop()
            local = self.local_address if self.local_address and (
                (":" in self.local_address) == (family == socket.AF_INET6)) else (
                "::" if family == socket.AF_INET6 else "0.0.0.0")
            _, proto = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(local, 0), family=family)
            sock = proto.transport.get_extra_info("socket") if proto.transport else None
            if sock is not None:   # room for a burst of replies while the loop is busy
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
                except OSError:
                    pass
            u = self._udp[family] = proto
        return u

    def _source_for(self, address: str, family: int) -> str:
        src = self._src_cache.get(address)
        if src is None:
            if self.local_address:
                src = self.local_address
            else:
                s = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    s.connect((address, 5060))
                    src = s.getsockname()[0]
                except OSError:
                    src = "::1" if family == socket.AF_INET6 else "127.0.0.1"
                finally:
                    s.close()
            self._src_cache[address] = src
        return src

    def _udp_in(self, data: bytes, addr: tuple) -> None:
        parsed = _parse(data)
        if parsed is None:
            keys = self._by_source.get((addr[0], addr[1]))
            if keys:
                p = self._pending.get(keys[0])
                if p is not None and p.end is not None:
                    p.end(None, f"not SIP: {data[:40]!r} from {_hostport(addr[0], addr[1])}",
                          None, True)
            return
        code, reason, hdrs = parsed
        p = self._pending.get(hdrs.get("call-id", ""))
        if p is None or p.end is None:
            return
        if code < 200:
            p.provisional = True
            return
        p.end(code, reason, time.monotonic() - p.t0, False)

    def _udp_ready(self, address: str) -> bool:
        return (socket.AF_INET6 if ":" in address else socket.AF_INET) in self._udp

    def _udp_start(self, t: ProbeTarget, address: str, finish: Callable[..., None],
                   from_run: bool = False) -> None:
        """Send one OPTIONS over UDP (the socket of its family exists); exactly one
        ``finish(code, reason, latency, failed)`` follows: on the final response, on
        a send error or at the timeout (a local 408)."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        tr = self._udp[family].transport
        assert tr is not None
        port = tr.get_extra_info("sockname")[1]
        branch, tag, call_id = self._new_ids()
        data = self._request(t, "UDP", (self._source_for(address, family), port), branch, tag,
                             call_id)
        loop = asyncio.get_running_loop()
        source = (address, t.port)
        p = self._pending[call_id] = _Pending(source, finish, time.monotonic(), from_run)
        self._by_source.setdefault(source, []).append(call_id)

        def end(code: Optional[int], reason: str, latency: Optional[float],
                failed: bool) -> None:
            if self._pending.pop(call_id, None) is None:
                return
            if p.timer is not None:
                p.timer.cancel()
            if p.expiry is not None:
                p.expiry.cancel()
            lst = self._by_source.get(source)
            if lst is not None:
                try:
                    lst.remove(call_id)
                except ValueError:
                    pass
                if not lst:
                    del self._by_source[source]
            fin, p.finish = p.finish, None
            if fin is not None:
                fin(code, reason, latency, failed)

        p.end = end

        def send() -> bool:
            try:
                tr.sendto(data, source)
                return True
            except OSError as e:
                end(None, f"send to {_hostport(address, t.port)} failed: {e.strerror or e}",
                    None, True)
                return False

        def retransmit(wait: float) -> None:   # RFC 3261 timer E
            if call_id not in self._pending or not send():
                return
            wait = T2 if p.provisional else min(wait * 2, T2)
            p.timer = loop.call_later(wait, retransmit, wait)

        def expire() -> None:                  # timer F (our timeout): a local 408
            end(408, f"408 timeout: no final response from {_hostport(address, t.port)} in "
                     f"{self.timeout:g} s (generated locally)", None, True)

        p.expiry = loop.call_later(self.timeout, expire)
        if send():
            p.timer = loop.call_later(T1, retransmit, T1)

    async def _udp_probe(self, t: ProbeTarget, address: str) -> tuple[int, str, float]:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        await self._udp_sock(family)
        fut = asyncio.get_running_loop().create_future()

        def finish(code, reason, latency, failed) -> None:
            if not fut.done():
                fut.set_result((code, reason, latency, failed))

        self._udp_start(t, address, finish)
        code, reason, latency, failed = await fut
        if failed:
            raise _Failed(code, reason)
        return code, reason, latency

    # ---- TCP / TLS
    async def _stream_probe(self, t: ProbeTarget, address: str) -> tuple[int, str, float]:
        ctx = None
        if t.transport == "tls":
            ctx = self.tls_context or ssl.create_default_context()
        deadline = time.monotonic() + self.timeout
        where = _hostport(address, t.port)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                address, t.port, ssl=ctx,
                server_hostname=(t.host if ctx is not None else None),
                local_addr=(self.local_address, 0) if self.local_address else None),
                self.timeout)
        except asyncio.TimeoutError:
            raise _Failed(408, f"408 timeout: no {t.transport.upper()} connection to {where} "
                               f"in {self.timeout:g} s (generated locally)") from None
        except ssl.SSLError as e:
            raise _Failed(None, f"TLS to {where} ({t.host}) failed: "
                                f"{_tls_reason(e)}") from None
        except OSError as e:
            raise _Failed(None, f"{t.transport.upper()} connection to {where} failed: "
                                f"{e.strerror or e}") from None
        try:
            local = writer.get_extra_info("sockname")
            branch, tag, call_id = self._new_ids()
            writer.write(self._request(t, t.transport.upper(), local, branch, tag, call_id))
            t0 = time.monotonic()
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise asyncio.TimeoutError
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), left)
                parsed = _parse(head)
                if parsed is None:
                    raise _Failed(None, f"not SIP: {head[:40]!r} from {where}")
                length = 0
                for ln in head.split(b"\r\n"):
                    n, _, v = ln.partition(b":")
                    if n.strip().lower() in (b"content-length", b"l") and v.strip().isdigit():
                        length = int(v.strip())
                if length:
                    await asyncio.wait_for(reader.readexactly(length),
                                           max(0.001, deadline - time.monotonic()))
                code, reason, _ = parsed
                if code >= 200:
                    return code, reason, time.monotonic() - t0
        except asyncio.TimeoutError:
            raise _Failed(408, f"408 timeout: no final response from {where} in "
                               f"{self.timeout:g} s (generated locally)") from None
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            raise _Failed(None, f"{where} closed the connection or sent no SIP response "
                                f"({type(e).__name__})") from None
        except ssl.SSLError as e:
            raise _Failed(None, f"TLS to {where} ({t.host}) failed: "
                                f"{_tls_reason(e)}") from None
        except OSError as e:
            raise _Failed(None, f"{where}: {e.strerror or e}") from None
        finally:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                pass


class _Failed(Exception):
    def __init__(self, code: Optional[int], reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def probe(targets: Iterable[Any], *, rounds: int = 1, **kwargs: Any) -> list[TargetStatus]:
    """Run a :class:`Prober` for ``rounds`` rounds (``asyncio.run``) and return the status
    of each target. Keyword arguments go to :class:`Prober` (``stagger`` defaults to False)."""
    kwargs.setdefault("stagger", False)
    p = Prober(targets, **kwargs)
    asyncio.run(p.run(rounds=rounds))
    return p.status()
