"""Weighted-priority selection over a health table: the pure-Python twin of
``sipedge._select``.

The algorithm, the draws and the health rules are defined in
``csrc/select.h`` and ``csrc/health.h``; this module follows them step for
step so that, for the same seed, targets, calls and clock readings, both
implementations give the same results bit for bit, and it reads and writes the
same table bytes (a twin and a native process can share one table).

Table access: readers load the slot's ``gen`` word, unpack record
``copy[gen & 1]`` and load ``gen`` again (retry when it moved); ``gen`` is read
and written through a ``ctypes.c_uint64`` view, one aligned 8-byte access.
Writers hold a ``threading.Lock`` (threads of this process; one per table
file) and the file's record lock on byte 0 (other processes, native or twin),
write the other copy, then store ``gen + 1``. The twin relies on the CPU
keeping its stores in order (x86-64 does; on weakly ordered CPUs use the
native core for writers).

Thread safety: every draw happens under one ``threading.Lock`` per
:class:`Core`; the clock is read before taking it.
"""
from __future__ import annotations

import ctypes
import fcntl
import math
import os
import threading
import time
import weakref
from typing import Any, Callable, Iterable, Optional, Sequence

from ..select._common import NONE, LIMITED, STATES, key_bytes, parse_exclude
from ..select.health import HEADER, REC, REC_OFF, SLOT, SLOT_HEAD, HealthTable
from .rng import Rng, hash_bytes, mix64

SMALL = 32  # positive candidates beyond this: a Fenwick tree in order() (same draws)
U32 = 0xFFFFFFFF

_file_locks: dict[str, threading.Lock] = {}
_file_locks_guard = threading.Lock()
_cores: "weakref.WeakSet[Core]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A lock held by another thread at fork() would never be released in the
    child (that thread does not exist there): release what is held."""
    for lk in [_file_locks_guard, *_file_locks.values(), *(c._lock for c in list(_cores))]:
        if lk.locked():
            lk.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def hash_key(key: Any) -> int:
    return hash_bytes(key_bytes(key))


class Table:
    """Slot access to a :class:`HealthTable` as csrc/health.c does it."""

    def __init__(self, table: HealthTable) -> None:
        self.t = table
        buf = table.buffer
        self.buf = buf
        self.fd = table.fd
        self.n = table.n
        self.fail_threshold = table.fail_threshold
        self.ok_threshold = table.ok_threshold
        self.cooldown = table.cooldown
        self.gens = [ctypes.c_uint64.from_buffer(buf, HEADER + i * SLOT) for i in range(self.n)]
        heads = [SLOT_HEAD.unpack_from(buf, HEADER + i * SLOT) for i in range(self.n)]
        self.rate = [h[1] for h in heads]
        self.tau = [h[2] for h in heads]
        if table.path is None:
            self.tlock = threading.Lock()
        else:
            key = os.path.realpath(table.path)
            with _file_locks_guard:
                self.tlock = _file_locks.setdefault(key, threading.Lock())

    def read(self, i: int) -> tuple:
        g = self.gens[i]
        base = HEADER + i * SLOT
        unpack = REC.unpack_from
        buf = self.buf
        while True:
            g1 = g.value
            rec = unpack(buf, base + REC_OFF[g1 & 1])
            if g.value == g1:
                return rec

    def usable(self, rec: tuple, now: float) -> bool:
        return not rec[1] and (not rec[0] or now - rec[4] >= self.cooldown)

    def lock(self) -> None:
        self.tlock.acquire()
        if self.fd >= 0:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, 0, os.SEEK_SET)
            except BaseException:
                self.tlock.release()
                raise

    def unlock(self) -> None:
        try:
            if self.fd >= 0:
                fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, 0, os.SEEK_SET)
        finally:
            self.tlock.release()

    def publish(self, i: int, rec: Sequence) -> None:
        g = self.gens[i]
        v = g.value
        REC.pack_into(self.buf, HEADER + i * SLOT + REC_OFF[(v + 1) & 1], *rec)
        g.value = (v + 1) & 0xFFFFFFFFFFFFFFFF

    def mark_failed(self, i: int, now: float) -> bool:
        self.lock()
        try:
            out, drained, fail_run, ok_run, since, fails, oks, tat = self.read(i)
            changed = False
            fails += 1
            ok_run = 0
            fail_run = min(fail_run + 1, U32)
            if out:
                since = now
            elif fail_run >= self.fail_threshold:
                out, since, changed = 1, now, True
            self.publish(i, (out, drained, fail_run, ok_run, since, fails, oks, tat))
            return changed
        finally:
            self.unlock()

    def mark_ok(self, i: int, now: float) -> bool:
        self.lock()
        try:
            out, drained, fail_run, ok_run, since, fails, oks, tat = self.read(i)
            changed = False
            oks += 1
            fail_run = 0
            if out:
                ok_run = min(ok_run + 1, U32)
                if ok_run >= self.ok_threshold:
                    out, ok_run, changed = 0, 0, True
                else:
                    since = now - self.cooldown
            self.publish(i, (out, drained, fail_run, ok_run, since, fails, oks, tat))
            return changed
        finally:
            self.unlock()

    def set_drained(self, i: int, drained: bool) -> bool:
        self.lock()
        try:
            rec: list[Any] = list(self.read(i))
            changed = rec[1] != int(bool(drained))
            if changed:
                rec[1] = int(bool(drained))
                self.publish(i, rec)
            return changed
        finally:
            self.unlock()

    def take(self, i: int, now: float) -> tuple[bool, float]:
        rate = self.rate[i]
        if not rate > 0:
            if not self.read(i)[0]:
                return True, 0.0
        else:
            # tat never decreases: a refusal read without the lock is final
            seen = self.read(i)
            t0 = seen[7] if seen[7] > now else now
            if (t0 - now > self.tau[i] and not seen[1]
                    and not (seen[0] and now - seen[4] < self.cooldown)):
                return False, t0 - self.tau[i] - now
        self.lock()
        try:
            rec: list[Any] = list(self.read(i))
            ok, wait = True, 0.0
            if rec[1] or (rec[0] and now - rec[4] < self.cooldown):
                ok = False
            elif rate > 0:
                t = rec[7] if rec[7] > now else now
                if t - now > self.tau[i]:
                    wait, ok = t - self.tau[i] - now, False
                else:
                    rec[7] = t + 1.0 / rate
            if ok:
                if rec[0]:
                    rec[4] = now
                self.publish(i, rec)
            return ok, wait
        finally:
            self.unlock()


def _draw_pos(rng: Rng, w: list[int], total: int) -> int:
    if len(w) == 1:
        return 0
    r = rng.uniform(total - 1)
    run = 0
    j = 0
    while True:
        run += w[j]
        if run > r:
            return j
        j += 1


def _draw_zero(rng: Rng, z: int) -> int:
    return rng.uniform(z - 1) if z > 1 else 0


def _order_positive(rng: Rng, idx: list[int], w: list[int], total: int, out: list[int]) -> None:
    m = len(idx)
    if m <= SMALL:
        while idx:
            j = _draw_pos(rng, w, total)
            out.append(idx[j])
            total -= w[j]
            del idx[j], w[j]
        return
    tree = [0] * (m + 1)
    for p in range(1, m + 1):
        tree[p] += w[p - 1]
        up = p + (p & -p)
        if up <= m:
            tree[up] += tree[p]
    top = 1
    while top <= m // 2:
        top <<= 1
    for left in range(m, 0, -1):
        r = 1 if left == 1 else rng.uniform(total - 1) + 1
        pos = 0
        step = top
        while step:
            nxt = pos + step
            if nxt <= m and tree[nxt] < r:
                pos = nxt
                r -= tree[nxt]
            step >>= 1
        wj = w[pos]
        out.append(idx[pos])
        total -= wj
        k = pos + 1
        while k <= m:
            tree[k] -= wj
            k += k & -k


def _order_zero(rng: Rng, zidx: list[int], out: list[int]) -> None:
    while zidx:
        j = _draw_zero(rng, len(zidx))
        out.append(zidx.pop(j))


def _score(x: int, weight: int) -> float:
    return weight / -math.log(((x >> 12) + 0.5) * 2.0 ** -52)


def _raise_empty(code: int, wait: float) -> Any:
    from ..errors import SelectionError
    raise SelectionError("no usable target" if code == NONE else
                         f"every usable target is at its rate limit (wait {wait:.3f} s)")


class Core:
    """Targets (any objects) with priorities, weights, an RNG and a health table
    (a :class:`sipedge.select.health.HealthTable`, private or shared)."""

    def __init__(self, items: Sequence[Any], priorities: Sequence[int], weights: Sequence[int],
                 enabled: Sequence[bool], salts: Sequence[int], table: HealthTable, *,
                 seed: int = 0, clock: Callable[[], float] = time.monotonic,
                 on_empty: Optional[Callable[[int, float], Any]] = None,
                 positions: Optional[dict] = None) -> None:
        n = len(items)
        if not (len(priorities) == len(weights) == len(enabled) == len(salts) == n):
            raise ValueError("items, priorities, weights, enabled and salts differ in length")
        if table.n != n:
            raise ValueError(f"the health table has {table.n} slots for {n} targets")
        for p in priorities:
            if not 0 <= p <= 0xFFFF:
                raise ValueError(f"priority {p} out of 0-65535")
        for x in weights:
            if not 0 <= x <= 0xFFFF:
                raise ValueError(f"weight {x} out of 0-65535")
        self._items = list(items)
        self._w = [int(x) for x in weights]
        self._enabled = [bool(e) for e in enabled]
        self._salt = [int(s) & 0xFFFFFFFFFFFFFFFF for s in salts]
        listing = sorted(range(n), key=lambda i: (priorities[i], self._w[i] == 0, i))
        groups: list[list[int]] = []
        last = None
        for i in listing:
            if not groups or priorities[i] != last:
                groups.append([])
                last = priorities[i]
            groups[-1].append(i)
        self._groups = groups
        self.table = table
        self._t = Table(table)
        self._clock = clock
        self._rng = Rng(seed)
        self._on_empty: Callable[[int, float], Any] = on_empty or _raise_empty
        self._positions = dict(positions) if positions is not None else {}
        self._lock = threading.Lock()
        _cores.add(self)

    def _check(self, i: int) -> None:
        if not 0 <= i < len(self._items):
            raise IndexError(f"target index {i} out of range 0-{len(self._items) - 1}")

    # ------------------------------------------------------------------ health
    def mark_failed(self, i: int) -> bool:
        """Record a failure of target *i*; True when this put it out of service."""
        self._check(i)
        return self._t.mark_failed(i, self._clock())

    def mark_ok(self, i: int) -> bool:
        """Record a success of target *i*; True when this brought it back."""
        self._check(i)
        return self._t.mark_ok(i, self._clock())

    def set_drained(self, i: int, drained: bool) -> bool:
        """Drain (True) or undrain target *i*; True when the flag changed."""
        self._check(i)
        return self._t.set_drained(i, drained)

    def state(self, i: int) -> str:
        """"up", "out", "probing" (out, cool-down over), "disabled" or "drained"."""
        self._check(i)
        now = self._clock()
        if not self._enabled[i]:
            return "disabled"
        rec = self._t.read(i)
        if rec[1]:
            return "drained"
        if not rec[0]:
            return "up"
        return "probing" if now - rec[4] >= self._t.cooldown else "out"

    def record(self, i: int) -> tuple:
        """Slot *i*'s current record: (out, drained, fail_run, ok_run, out_since,
        failures, successes, tat)."""
        self._check(i)
        return self._t.read(i)

    def counters(self, i: int) -> tuple[int, int]:
        """(failures, successes) recorded for target *i* since the table was made."""
        self._check(i)
        rec = self._t.read(i)
        return rec[5], rec[6]

    def now(self) -> float:
        return self._clock()

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._rng.seed(seed)

    def rng_state(self) -> tuple[int, int, int, int]:
        return self._rng.state()

    # --------------------------------------------------------------- selection
    def _gather(self, g: list[int], now: float, excl) -> tuple[list[int], list[int], list[int]]:
        t = self._t
        idx: list[int] = []
        w: list[int] = []
        zidx: list[int] = []
        for i in g:
            if not self._enabled[i] or (excl and i in excl):
                continue
            if not t.usable(t.read(i), now):
                continue
            if self._w[i]:
                idx.append(i)
                w.append(self._w[i])
            else:
                zidx.append(i)
        return idx, w, zidx

    def order_indices(self, key: Any = None) -> list[int]:
        """The failover order as target indices (empty when none is usable)."""
        h = None if key is None else hash_key(key)
        now = self._clock()
        out: list[int] = []
        with self._lock:
            for g in self._groups:
                idx, w, zidx = self._gather(g, now, None)
                if h is None:
                    _order_positive(self._rng, idx, w, sum(w), out)
                    _order_zero(self._rng, zidx, out)
                else:
                    salt = self._salt
                    pos = {i: p for p, i in enumerate(g)}
                    ranked = [(-_score(mix64(h ^ salt[i]), self._w[i]), 0, pos[i], i) for i in idx]
                    ranked += [(1.0, -mix64(h ^ salt[i]), pos[i], i) for i in zidx]
                    ranked.sort()
                    out.extend(r[3] for r in ranked)
        return out

    def order(self, key: Any = None) -> list[Any]:
        """Usable targets in failover order (keyed: the call's own order);
        none usable: ``on_empty(-1, 0.0)``, which raises."""
        items = self._items
        out = [items[i] for i in self.order_indices(key)]
        if not out:
            return self._on_empty(NONE, 0.0)
        return out

    def pick_index(self, key: Any = None, exclude: Any = None) -> tuple[int, float]:
        """Index of the target for a new call, or a negative code (-1 none usable,
        -2 every usable one at its rate limit) with the wait: (index, wait)."""
        n = len(self._items)
        excl = set(parse_exclude(exclude, self._positions, n)) if exclude is not None else None
        h = None if key is None else hash_key(key)
        now = self._clock()
        t = self._t
        limited = False
        best_wait = 0.0

        def attempt(i: int) -> bool:
            nonlocal limited, best_wait
            ok, wait = t.take(i, now)
            if not ok and wait > 0:
                if not limited or wait < best_wait:
                    best_wait = wait
                limited = True
            return ok

        with self._lock:
            for g in self._groups:
                idx, w, zidx = self._gather(g, now, excl)
                if h is not None:
                    sc = [_score(mix64(h ^ self._salt[i]), wi) for i, wi in zip(idx, w)]
                    while idx:
                        b = 0
                        for j in range(1, len(idx)):
                            if sc[j] > sc[b]:
                                b = j
                        if attempt(idx[b]):
                            return idx[b], 0.0
                        del idx[b], sc[b]
                    while zidx:
                        xs = [mix64(h ^ self._salt[i]) for i in zidx]
                        b = 0
                        for j in range(1, len(zidx)):
                            if xs[j] > xs[b]:
                                b = j
                        if attempt(zidx[b]):
                            return zidx[b], 0.0
                        del zidx[b]
                    continue
                total = sum(w)
                while idx:
                    j = _draw_pos(self._rng, w, total)
                    if attempt(idx[j]):
                        return idx[j], 0.0
                    total -= w[j]
                    del idx[j], w[j]
                while zidx:
                    j = _draw_zero(self._rng, len(zidx))
                    if attempt(zidx[j]):
                        return zidx[j], 0.0
                    del zidx[j]
        return (LIMITED, best_wait) if limited else (NONE, 0.0)

    def pick(self, key: Any = None, exclude: Any = None) -> Any:
        """The target for a new call (see csrc/select.h); nothing to pick:
        ``on_empty(code, wait)``, which raises."""
        i, wait = self.pick_index(key, exclude)
        if i >= 0:
            return self._items[i]
        return self._on_empty(i, wait)
