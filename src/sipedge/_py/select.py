"""RFC 2782 selection with health state: the pure-Python twin of ``sipedge._select``.

The algorithm, the draws and the health rules are defined in ``csrc/select.h``;
this module follows them step for step so that, for the same seed, the same
targets, the same calls and the same clock readings, both implementations give
the same results bit for bit.

Thread safety: every state change and every draw happens under one
``threading.Lock`` per :class:`Core`; the clock is read before taking it.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable, Sequence

from ..errors import SelectionError
from ..select._common import key_bytes
from .rng import Rng, hash_bytes, mix64

SMALL = 32  # groups larger than this use a Fenwick tree (same draws)
STATES = ("up", "out", "probing", "disabled")


def hash_key(key: Any) -> int:
    return hash_bytes(key_bytes(key))


def _order_group(rng: Rng, idx: list[int], w: list[int], nz: int, total: int,
                 out: list[int]) -> None:
    m = len(idx)
    if m <= SMALL:
        idx = idx[:]
        w = w[:]
        uniform = rng.uniform
        while m > 1:
            r = uniform(total)
            run = 0
            j = 0
            while True:
                run += w[j]
                if run >= r:
                    break
                j += 1
            out.append(idx[j])
            total -= w[j]
            del idx[j], w[j]
            m -= 1
        out.append(idx[0])
        return
    np_ = m - nz
    tree = [0] * (np_ + 1)
    for p in range(1, np_ + 1):
        tree[p] += w[nz + p - 1]
        up = p + (p & -p)
        if up <= np_:
            tree[up] += tree[p]
    top = 1
    while top <= np_ // 2:
        top <<= 1
    zp = 0
    for left in range(m, 0, -1):
        r = rng.uniform(total) if left > 1 else 0
        if r == 0 and zp < nz:
            out.append(idx[zp])
            zp += 1
            continue
        if r == 0:
            r = 1
        pos = 0
        step = top
        while step:
            nxt = pos + step
            if nxt <= np_ and tree[nxt] < r:
                pos = nxt
                r -= tree[nxt]
            step >>= 1
        wj = w[nz + pos]
        out.append(idx[nz + pos])
        total -= wj
        k = pos + 1
        while k <= np_:
            tree[k] -= wj
            k += k & -k


class Core:
    """Targets (any objects) with priorities, weights, health and an RNG."""

    def __init__(self, items: Sequence[Any], priorities: Sequence[int], weights: Sequence[int],
                 enabled: Sequence[bool], salts: Sequence[int], *, fail_threshold: int = 1,
                 ok_threshold: int = 1, cooldown: float = 30.0, seed: int = 0,
                 clock: Callable[[], float] = time.monotonic, fallback: Any = None,
                 empty_message: str = "no usable target") -> None:
        n = len(items)
        if not (len(priorities) == len(weights) == len(enabled) == len(salts) == n):
            raise ValueError("items, priorities, weights, enabled and salts differ in length")
        for p in priorities:
            if not 0 <= p <= 0xFFFF:
                raise ValueError(f"priority {p} out of 0-65535")
        for x in weights:
            if not 0 <= x <= 0xFFFF:
                raise ValueError(f"weight {x} out of 0-65535")
        if fail_threshold < 1 or ok_threshold < 1 or not cooldown >= 0:
            raise ValueError("thresholds must be >= 1 and cooldown >= 0")
        self._items = list(items)
        self._w = [int(x) for x in weights]
        self._enabled = [bool(e) for e in enabled]
        self._salt = [int(s) & 0xFFFFFFFFFFFFFFFF for s in salts]
        order = sorted(range(n), key=lambda i: (priorities[i], self._w[i] > 0, i))
        groups: list[list[int]] = []
        last = None
        for i in order:
            if not groups or priorities[i] != last:
                groups.append([])
                last = priorities[i]
            groups[-1].append(i)
        self._groups = groups
        # usable members of each group while nothing is out: (idx, w, zeros, total)
        self._static = [self._members(g, 0.0, False) for g in groups]
        self._out = [False] * n
        self._fail_run = [0] * n
        self._ok_run = [0] * n
        self._out_since = [0.0] * n
        self._fails = [0] * n
        self._oks = [0] * n
        self._n_out = 0
        self.fail_threshold = int(fail_threshold)
        self.ok_threshold = int(ok_threshold)
        self.cooldown = float(cooldown)
        self._clock = clock
        self._rng = Rng(seed)
        self._fallback = fallback
        self._empty_message = empty_message
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ health
    def _usable(self, i: int, now: float) -> bool:
        if not self._enabled[i]:
            return False
        if not self._out[i]:
            return True
        return now - self._out_since[i] >= self.cooldown

    def _members(self, g: list[int], now: float, check: bool):
        idx = [i for i in g if self._enabled[i] and (not check or self._usable(i, now))]
        w = [self._w[i] for i in idx]
        return idx, w, sum(1 for x in w if x == 0), sum(w)

    def _now(self) -> float:
        return self._clock() if self._n_out else 0.0

    def mark_failed(self, i: int) -> bool:
        """Record a failure of target *i*; True when this put it out of service."""
        now = self._clock()
        with self._lock:
            self._check(i)
            self._fails[i] += 1
            self._ok_run[i] = 0
            self._fail_run[i] = min(self._fail_run[i] + 1, 0xFFFFFFFF)
            if self._out[i]:
                self._out_since[i] = now
                return False
            if self._fail_run[i] >= self.fail_threshold:
                self._out[i] = True
                self._out_since[i] = now
                self._n_out += 1
                return True
            return False

    def mark_ok(self, i: int) -> bool:
        """Record a success of target *i*; True when this brought it back."""
        with self._lock:
            self._check(i)
            self._oks[i] += 1
            self._fail_run[i] = 0
            self._ok_run[i] = min(self._ok_run[i] + 1, 0xFFFFFFFF)
            if self._out[i] and self._ok_run[i] >= self.ok_threshold:
                self._out[i] = False
                self._ok_run[i] = 0
                self._n_out -= 1
                return True
            return False

    def _check(self, i: int) -> None:
        if not 0 <= i < len(self._items):
            raise IndexError(f"target index {i} out of range 0-{len(self._items) - 1}")

    def state(self, i: int) -> str:
        """"up", "out", "probing" (out, cool-down over) or "disabled"."""
        self._check(i)
        now = self._clock()
        with self._lock:
            if not self._enabled[i]:
                return "disabled"
            if not self._out[i]:
                return "up"
            return "probing" if self._usable(i, now) else "out"

    def counters(self, i: int) -> tuple[int, int]:
        """(failures, successes) recorded for target *i* since creation."""
        self._check(i)
        with self._lock:
            return self._fails[i], self._oks[i]

    @property
    def n_out(self) -> int:
        return self._n_out

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._rng.seed(seed)

    # --------------------------------------------------------------- selection
    def order_indices(self) -> list[int]:
        """The failover order as target indices (empty when none is usable)."""
        now = self._now()
        out: list[int] = []
        with self._lock:
            check = self._n_out > 0
            rng = self._rng
            for g, static in zip(self._groups, self._static):
                idx, w, nz, total = self._members(g, now, True) if check else static
                if idx:
                    _order_group(rng, idx, w, nz, total, out)
        return out

    def first_index(self) -> int:
        now = self._now()
        with self._lock:
            check = self._n_out > 0
            for g, static in zip(self._groups, self._static):
                idx, w, _nz, total = self._members(g, now, True) if check else static
                if not idx:
                    continue
                if len(idx) == 1:
                    return idx[0]
                r = self._rng.uniform(total)
                run = 0
                for i, x in zip(idx, w):
                    run += x
                    if run >= r:
                        return i
        return -1

    def sticky_index(self, key: Any) -> int:
        h = hash_key(key)
        now = self._now()
        with self._lock:
            for g in self._groups:
                best = bestz = -1
                best_score = 0.0
                best_x = 0
                for i in g:
                    if not self._usable(i, now):
                        continue
                    x = mix64(h ^ self._salt[i])
                    wi = self._w[i]
                    if wi:
                        u = ((x >> 12) + 0.5) * 2.0 ** -52
                        score = wi / -math.log(u)
                        if best < 0 or score > best_score:
                            best, best_score = i, score
                    elif bestz < 0 or x > best_x:
                        bestz, best_x = i, x
                if best >= 0:
                    return best
                if bestz >= 0:
                    return bestz
        return -1

    def _empty(self):
        if self._fallback is not None:
            return self._fallback
        raise SelectionError(self._empty_message)

    def order(self) -> list[Any]:
        """Usable targets in RFC 2782 failover order; ``[fallback]`` or
        :class:`SelectionError` when none is usable."""
        items = self._items
        out = [items[i] for i in self.order_indices()]
        return out or [self._empty()]

    def pick(self, key: Any = None) -> Any:
        """The first target of the order, or the sticky choice for *key*."""
        i = self.first_index() if key is None else self.sticky_index(key)
        return self._items[i] if i >= 0 else self._empty()
