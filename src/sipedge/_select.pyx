# cython: freethreading_compatible = True
"""Weighted-priority selection over a health table in C: the native twin of
``sipedge._py.select``. The algorithm is defined in ``csrc/select.h``, the
table in ``csrc/health.h``.

Thread safety: each call does its C work (draws, table reads and writes)
inside ``cython.critical_section(self)``, and no Python code runs inside it
(the clock is read before, result lists are built after). On a GIL build the
critical section is free and the GIL alone makes each call atomic within the
process, because it is never released inside; other processes sharing the
table are kept apart by the table's own scheme (health.h).
"""
cimport cython
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport Py_INCREF
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.string cimport memset
from libc.errno cimport errno
from libc.math cimport NAN

import os
import time

from sipedge.select._common import STATES, key_bytes, parse_exclude

cdef extern from "<time.h>" nogil:
    ctypedef int clockid_t
    cdef struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(clockid_t clk, timespec *tp)
    clockid_t CLOCK_MONOTONIC

cdef extern from "rng.h":
    ctypedef struct sx_rng:
        uint64_t s[4]
    void sx_rng_seed(sx_rng *r, uint64_t seed) nogil
    uint64_t sx_rng_next(sx_rng *r) nogil
    uint64_t sx_rng_uniform(sx_rng *r, uint64_t n) nogil
    uint64_t sx_mix64(uint64_t z) nogil
    uint64_t sx_hash_bytes(const void *data, size_t length) nogil

cdef extern from "health.h":
    ctypedef struct sx_hrec:
        uint32_t out
        uint32_t drained
        uint32_t fail_run
        uint32_t ok_run
        double out_since
        uint64_t fails
        uint64_t oks
        double tat
    ctypedef struct sx_health:
        unsigned char *base
        uint32_t n
        int fd
        uint32_t fail_threshold
        uint32_t ok_threshold
        double cooldown
        int any_rate
        int file
    int sx_ht_bind(sx_health *h, unsigned char *base, int fd) nogil
    void sx_ht_unbind(sx_health *h) nogil
    void sx_ht_read(const sx_health *h, uint32_t i, sx_hrec *out) nogil
    int sx_ht_mark_failed(const sx_health *h, uint32_t i, double now) nogil
    int sx_ht_mark_ok(const sx_health *h, uint32_t i, double now) nogil
    int sx_ht_set_drained(const sx_health *h, uint32_t i, int drained) nogil

cdef extern from "select.h":
    ctypedef struct sx_sel:
        uint32_t n
        sx_rng rng
    enum:
        SX_NONE
        SX_LIMITED
        SX_LOCKERR
    sx_sel *sx_sel_new(uint32_t n) nogil
    void sx_sel_free(sx_sel *s) nogil
    void sx_sel_set(sx_sel *s, uint32_t i, uint16_t priority, uint16_t weight, int enabled,
                    uint64_t salt) nogil
    int sx_sel_finish(sx_sel *s) nogil
    size_t sx_sel_work_words(uint32_t n) nogil
    uint32_t sx_sel_order(sx_sel *s, const sx_health *h, double now, uint32_t *out,
                          uint64_t *work) nogil
    uint32_t sx_sel_order_key(const sx_sel *s, const sx_health *h, double now, uint64_t key,
                              uint32_t *out, uint64_t *work) nogil
    int64_t sx_sel_pick(sx_sel *s, const sx_health *h, double now, int haskey, uint64_t key,
                        const uint8_t *excl, uint64_t *work, double *wait) nogil
    int sx_sel_state(const sx_sel *s, const sx_health *h, uint32_t i, double now) nogil

cdef enum:
    STACK_N = 32


def mix64(uint64_t z):
    """The splitmix64 finaliser on a 64-bit integer."""
    return sx_mix64(z)


def hash_bytes(const uint8_t[::1] data):
    """64-bit hash of *data* (see csrc/rng.h)."""
    if data.shape[0] == 0:
        return sx_hash_bytes(b"", 0)
    return sx_hash_bytes(&data[0], <size_t>data.shape[0])


cdef inline uint64_t _hash_key(object key) except? 0:
    cdef const char *s
    cdef Py_ssize_t n
    cdef bytes b
    if type(key) is str:
        try:
            s = PyUnicode_AsUTF8AndSize(key, &n)
        except UnicodeEncodeError:
            pass  # lone surrogates: key_bytes passes them through
        else:
            return sx_hash_bytes(s, <size_t>n)
    b = key_bytes(key)
    return sx_hash_bytes(<const char *>b, <size_t>len(b))


def hash_key(key):
    """The 64-bit hash of a sticky key (str as UTF-8, bytes as is, int as text)."""
    return _hash_key(key)


cdef class Rng:
    """xoshiro256** generator, the same as ``sipedge._py.rng.Rng``."""
    cdef sx_rng r

    def __init__(self, uint64_t seed):
        sx_rng_seed(&self.r, seed)

    def seed(self, uint64_t seed):
        sx_rng_seed(&self.r, seed)

    def next(self):
        return sx_rng_next(&self.r)

    def uniform(self, uint64_t n):
        """A uniform integer in ``[0, n]`` inclusive (``n == 0``: 0, no draw)."""
        return sx_rng_uniform(&self.r, n)

    def state(self):
        return (self.r.s[0], self.r.s[1], self.r.s[2], self.r.s[3])


cdef inline double _mono() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


@cython.final
cdef class Core:
    """Targets (any objects) with priorities, weights, an RNG and a health table
    (a :class:`sipedge.select.health.HealthTable`, private or shared)."""
    cdef sx_sel *s
    cdef sx_health h
    cdef unsigned char[::1] _view
    cdef readonly object table
    cdef list _items
    cdef dict _positions
    cdef object _clock
    cdef bint _mono
    cdef object _on_empty

    def __cinit__(self, items, priorities, weights, enabled, salts, table, *, seed=0,
                  clock=time.monotonic, on_empty=None, positions=None):
        self.h.file = -1  # nothing registered yet (__dealloc__ runs even if this fails)
        cdef Py_ssize_t n = len(items), i
        if not (len(priorities) == len(weights) == len(enabled) == len(salts) == n):
            raise ValueError("items, priorities, weights, enabled and salts differ in length")
        if n > 0xFFFFFFF:
            raise ValueError("too many targets")
        if table.n != n:
            raise ValueError(f"the health table has {table.n} slots for {n} targets")
        for p in priorities:
            if not 0 <= p <= 0xFFFF:
                raise ValueError(f"priority {p} out of 0-65535")
        for x in weights:
            if not 0 <= x <= 0xFFFF:
                raise ValueError(f"weight {x} out of 0-65535")
        self.s = sx_sel_new(<uint32_t>n)
        if self.s == NULL:
            raise MemoryError()
        for i in range(n):
            sx_sel_set(self.s, <uint32_t>i, <uint16_t>priorities[i], <uint16_t>weights[i],
                       1 if enabled[i] else 0, <uint64_t>(int(salts[i]) & 0xFFFFFFFFFFFFFFFF))
        if sx_sel_finish(self.s) != 0:
            raise MemoryError()
        sx_rng_seed(&self.s.rng, <uint64_t>seed)
        self.table = table
        self._view = table.buffer
        if sx_ht_bind(&self.h, &self._view[0], <int>table.fd) < 0:
            raise OSError(errno, f"health table {table.path}: {os.strerror(errno)}")
        self._items = list(items)
        self._positions = dict(positions) if positions is not None else {}
        self._clock = clock
        self._mono = clock is time.monotonic
        self._on_empty = on_empty

    def __dealloc__(self):
        sx_ht_unbind(&self.h)
        sx_sel_free(self.s)

    cdef inline double _now(self) except? -1.0:
        # NaN: the C core reads CLOCK_MONOTONIC (= time.monotonic) only if it needs it
        if self._mono:
            return NAN
        return float(self._clock())

    cdef inline uint32_t _index(self, Py_ssize_t i) except? 0xFFFFFFFF:
        if i < 0 or i >= <Py_ssize_t>self.s.n:
            raise IndexError(f"target index {i} out of range 0-{<Py_ssize_t>self.s.n - 1}")
        return <uint32_t>i

    # ------------------------------------------------------------------ health
    cdef int _check(self, int r) except -1:
        if r < 0:
            raise OSError(errno, f"health table lock: {os.strerror(errno)}")
        return r

    def mark_failed(self, Py_ssize_t i):
        """Record a failure of target *i*; True when this put it out of service."""
        cdef uint32_t k = self._index(i)
        cdef double now = self._now()
        cdef int r
        if self.h.fd >= 0:
            with nogil:  # may wait for another process's writer: let other threads run
                r = sx_ht_mark_failed(&self.h, k, now)
        else:
            with cython.critical_section(self):
                r = sx_ht_mark_failed(&self.h, k, now)
        return self._check(r) == 1

    def mark_ok(self, Py_ssize_t i):
        """Record a success of target *i*; True when this brought it back."""
        cdef uint32_t k = self._index(i)
        cdef double now = self._now()
        cdef int r
        if self.h.fd >= 0:
            with nogil:  # may wait for another process's writer: let other threads run
                r = sx_ht_mark_ok(&self.h, k, now)
        else:
            with cython.critical_section(self):
                r = sx_ht_mark_ok(&self.h, k, now)
        return self._check(r) == 1

    def set_drained(self, Py_ssize_t i, bint drained):
        """Drain (True) or undrain target *i*; True when the flag changed."""
        cdef uint32_t k = self._index(i)
        cdef int r
        if self.h.fd >= 0:
            with nogil:  # may wait for another process's writer: let other threads run
                r = sx_ht_set_drained(&self.h, k, drained)
        else:
            with cython.critical_section(self):
                r = sx_ht_set_drained(&self.h, k, drained)
        return self._check(r) == 1

    def state(self, Py_ssize_t i):
        """"up", "out", "probing" (out, cool-down over), "disabled" or "drained"."""
        cdef uint32_t k = self._index(i)
        cdef double now = self._now()
        cdef int st
        with cython.critical_section(self):
            st = sx_sel_state(self.s, &self.h, k, now)
        return STATES[st]

    def record(self, Py_ssize_t i):
        """Slot *i*'s current record: (out, drained, fail_run, ok_run, out_since,
        failures, successes, tat)."""
        cdef uint32_t k = self._index(i)
        cdef sx_hrec r
        sx_ht_read(&self.h, k, &r)
        return (r.out, r.drained, r.fail_run, r.ok_run, r.out_since, r.fails, r.oks, r.tat)

    def counters(self, Py_ssize_t i):
        """(failures, successes) recorded for target *i* since the table was made."""
        cdef uint32_t k = self._index(i)
        cdef sx_hrec r
        sx_ht_read(&self.h, k, &r)
        return r.fails, r.oks

    def now(self):
        """The clock reading the core uses."""
        return _mono() if self._mono else float(self._clock())

    def reseed(self, uint64_t seed):
        with cython.critical_section(self):
            sx_rng_seed(&self.s.rng, seed)

    def rng_state(self):
        return (self.s.rng.s[0], self.s.rng.s[1], self.s.rng.s[2], self.s.rng.s[3])

    # --------------------------------------------------------------- selection
    cdef uint32_t _order(self, object key, uint32_t *out, uint64_t *work) except? 0xFFFFFFFF:
        cdef uint64_t h = 0
        cdef bint keyed = key is not None
        if keyed:
            h = _hash_key(key)
        cdef double now = self._now()
        cdef uint32_t k
        with cython.critical_section(self):
            if keyed:
                k = sx_sel_order_key(self.s, &self.h, now, h, out, work)
            else:
                k = sx_sel_order(self.s, &self.h, now, out, work)
        return k

    def order_indices(self, key=None):
        """The failover order as target indices (empty when none is usable)."""
        cdef uint32_t n = self.s.n
        cdef uint32_t *out = <uint32_t *>PyMem_Malloc((<size_t>n + 1) * sizeof(uint32_t))
        cdef uint64_t *work = <uint64_t *>PyMem_Malloc(sx_sel_work_words(n) * sizeof(uint64_t))
        cdef uint32_t k, j
        try:
            if out == NULL or work == NULL:
                raise MemoryError()
            k = self._order(key, out, work)
            return [out[j] for j in range(k)]
        finally:
            PyMem_Free(out)
            PyMem_Free(work)

    def order(self, key=None):
        """Usable targets in failover order (keyed: the call's own order);
        none usable: ``on_empty(-1, 0.0)``, which raises."""
        cdef uint32_t n = self.s.n
        cdef uint32_t sout[STACK_N]
        cdef uint64_t swork[4 * (STACK_N + 1)]
        cdef uint32_t *out = sout
        cdef uint64_t *work = swork
        cdef uint32_t k, j
        cdef list items = self._items
        cdef list res
        cdef object o
        if n > STACK_N:
            out = <uint32_t *>PyMem_Malloc(n * sizeof(uint32_t))
            work = <uint64_t *>PyMem_Malloc(sx_sel_work_words(n) * sizeof(uint64_t))
        try:
            if out == NULL or work == NULL:
                raise MemoryError()
            k = self._order(key, out, work)
            if k == 0:
                return self._on_empty(SX_NONE, 0.0)
            res = PyList_New(k)
            for j in range(k):
                o = items[out[j]]
                Py_INCREF(o)
                PyList_SET_ITEM(res, j, o)
            return res
        finally:
            if n > STACK_N:
                PyMem_Free(out)
                PyMem_Free(work)

    cdef int _fill_exclude(self, object exclude, uint8_t *ex) except -1:
        cdef Py_ssize_t n = self.s.n
        memset(ex, 0, <size_t>n)
        for i in parse_exclude(exclude, self._positions, n):
            ex[<Py_ssize_t>i] = 1
        return 0

    def pick_index(self, key=None, exclude=None):
        """Index of the target for a new call, or a negative code (-1 none usable,
        -2 every usable one at its rate limit) with the wait: (index, wait)."""
        cdef uint32_t n = self.s.n
        cdef uint64_t swork[4 * (STACK_N + 1)]
        cdef uint8_t sex[STACK_N]
        cdef uint64_t *work = swork
        cdef uint8_t *ex = NULL
        cdef uint64_t h = 0
        cdef bint keyed = key is not None
        cdef double now, wait = 0.0
        cdef int64_t i
        if n > STACK_N:
            work = <uint64_t *>PyMem_Malloc(sx_sel_work_words(n) * sizeof(uint64_t)
                                            + <size_t>n)
            if work == NULL:
                raise MemoryError()
        try:
            if exclude is not None:
                if n <= STACK_N:
                    ex = &sex[0]
                else:
                    ex = <uint8_t *>(work + sx_sel_work_words(n))
                self._fill_exclude(exclude, ex)
            if keyed:
                h = _hash_key(key)
            now = self._now()
            with cython.critical_section(self):
                i = sx_sel_pick(self.s, &self.h, now, keyed, h, ex, work, &wait)
            if i == SX_LOCKERR:
                self._check(-1)
            return i, wait
        finally:
            if n > STACK_N:
                PyMem_Free(work)

    def pick(self, key=None, exclude=None):
        """The target for a new call (see csrc/select.h); nothing to pick:
        ``on_empty(code, wait)``, which raises."""
        cdef uint32_t n = self.s.n
        cdef uint64_t swork[4 * (STACK_N + 1)]
        cdef uint64_t h = 0
        cdef double now, wait = 0.0
        cdef int64_t i
        if n > STACK_N or exclude is not None:
            i, wait = self.pick_index(key, exclude)
        else:
            if key is not None:
                h = _hash_key(key)
            now = self._now()
            with cython.critical_section(self):
                i = sx_sel_pick(self.s, &self.h, now, key is not None, h, NULL, swork, &wait)
            if i == SX_LOCKERR:
                self._check(-1)
        if i >= 0:
            return self._items[i]
        return self._on_empty(i, wait)
