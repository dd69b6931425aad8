# cython: freethreading_compatible = True
"""RFC 2782 selection with health state in C: the native twin of ``sipedge._py.select``.

Thread safety: each call does its C work (draws, health changes) inside
``cython.critical_section(self)``, and no Python code runs inside it (the
clock is read before, result lists are built after). On a GIL build the
critical section is free and the GIL alone makes each call atomic, because
the GIL is never released inside; on a free-threaded build it is a per-object
lock.
"""
cimport cython
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport Py_INCREF, PyObject
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t

import time

from sipedge.select._common import key_bytes
from sipedge.errors import SelectionError

cdef extern from "rng.h":
    ctypedef struct sx_rng:
        uint64_t s[4]
    void sx_rng_seed(sx_rng *r, uint64_t seed) nogil
    uint64_t sx_rng_next(sx_rng *r) nogil
    uint64_t sx_rng_uniform(sx_rng *r, uint64_t n) nogil
    uint64_t sx_mix64(uint64_t z) nogil
    uint64_t sx_hash_bytes(const void *data, size_t length) nogil

cdef extern from "select.h":
    ctypedef struct sx_sel:
        uint32_t n
        uint32_t n_out
        uint32_t fail_threshold
        uint32_t ok_threshold
        double cooldown
        uint64_t *fails
        uint64_t *oks
        sx_rng rng
    sx_sel *sx_sel_new(uint32_t n) nogil
    void sx_sel_free(sx_sel *s) nogil
    void sx_sel_set(sx_sel *s, uint32_t i, uint16_t priority, uint16_t weight, int enabled,
                    uint64_t salt) nogil
    int sx_sel_finish(sx_sel *s) nogil
    size_t sx_sel_work_words(uint32_t n) nogil
    uint32_t sx_sel_order(sx_sel *s, double now, uint32_t *out, uint64_t *work) nogil
    int64_t sx_sel_first(sx_sel *s, double now) nogil
    int64_t sx_sel_sticky(const sx_sel *s, double now, uint64_t key) nogil
    int sx_sel_state(const sx_sel *s, uint32_t i, double now) nogil
    int sx_sel_mark_failed(sx_sel *s, uint32_t i, double now) nogil
    int sx_sel_mark_ok(sx_sel *s, uint32_t i) nogil

cdef enum:
    STACK_N = 64
STATES = ("up", "out", "probing", "disabled")


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


@cython.final
cdef class Core:
    """Targets (any objects) with priorities, weights, health and an RNG."""
    cdef sx_sel *s
    cdef list _items
    cdef object _clock
    cdef object _fallback
    cdef str _empty_message

    def __cinit__(self, items, priorities, weights, enabled, salts, *, fail_threshold=1,
                  ok_threshold=1, cooldown=30.0, seed=0, clock=time.monotonic, fallback=None,
                  empty_message="no usable target"):
        cdef Py_ssize_t n = len(items), i
        if not (len(priorities) == len(weights) == len(enabled) == len(salts) == n):
            raise ValueError("items, priorities, weights, enabled and salts differ in length")
        if n > 0xFFFFFFFF:
            raise ValueError("too many targets")
        for p in priorities:
            if not 0 <= p <= 0xFFFF:
                raise ValueError(f"priority {p} out of 0-65535")
        for x in weights:
            if not 0 <= x <= 0xFFFF:
                raise ValueError(f"weight {x} out of 0-65535")
        if fail_threshold < 1 or ok_threshold < 1 or not cooldown >= 0:
            raise ValueError("thresholds must be >= 1 and cooldown >= 0")
        self.s = sx_sel_new(<uint32_t>n)
        if self.s == NULL:
            raise MemoryError()
        for i in range(n):
            sx_sel_set(self.s, <uint32_t>i, <uint16_t>priorities[i], <uint16_t>weights[i],
                       1 if enabled[i] else 0, <uint64_t>(int(salts[i]) & 0xFFFFFFFFFFFFFFFF))
        if sx_sel_finish(self.s) != 0:
            raise MemoryError()
        self.s.fail_threshold = <uint32_t>min(int(fail_threshold), 0xFFFFFFFF)
        self.s.ok_threshold = <uint32_t>min(int(ok_threshold), 0xFFFFFFFF)
        self.s.cooldown = float(cooldown)
        sx_rng_seed(&self.s.rng, <uint64_t>seed)
        self._items = list(items)
        self._clock = clock
        self._fallback = fallback
        self._empty_message = empty_message

    def __dealloc__(self):
        sx_sel_free(self.s)

    # ------------------------------------------------------------------ health
    cdef inline double _now(self) except? -1.0:
        return float(self._clock()) if self.s.n_out else 0.0

    cdef inline uint32_t _index(self, Py_ssize_t i) except? 0xFFFFFFFF:
        if i < 0 or i >= <Py_ssize_t>self.s.n:
            raise IndexError(f"target index {i} out of range 0-{<Py_ssize_t>self.s.n - 1}")
        return <uint32_t>i

    def mark_failed(self, Py_ssize_t i):
        """Record a failure of target *i*; True when this put it out of service."""
        cdef uint32_t k = self._index(i)
        cdef double now = float(self._clock())
        cdef int changed
        with cython.critical_section(self):
            changed = sx_sel_mark_failed(self.s, k, now)
        return changed == 1

    def mark_ok(self, Py_ssize_t i):
        """Record a success of target *i*; True when this brought it back."""
        cdef uint32_t k = self._index(i)
        cdef int changed
        with cython.critical_section(self):
            changed = sx_sel_mark_ok(self.s, k)
        return changed == 1

    def state(self, Py_ssize_t i):
        """"up", "out", "probing" (out, cool-down over) or "disabled"."""
        cdef uint32_t k = self._index(i)
        cdef double now = float(self._clock())
        cdef int st
        with cython.critical_section(self):
            st = sx_sel_state(self.s, k, now)
        return STATES[st]

    def counters(self, Py_ssize_t i):
        """(failures, successes) recorded for target *i* since creation."""
        cdef uint32_t k = self._index(i)
        cdef uint64_t f, o
        with cython.critical_section(self):
            f = self.s.fails[k]
            o = self.s.oks[k]
        return f, o

    @property
    def n_out(self):
        return self.s.n_out

    @property
    def fail_threshold(self):
        return self.s.fail_threshold

    @property
    def ok_threshold(self):
        return self.s.ok_threshold

    @property
    def cooldown(self):
        return self.s.cooldown

    def reseed(self, uint64_t seed):
        with cython.critical_section(self):
            sx_rng_seed(&self.s.rng, seed)

    # --------------------------------------------------------------- selection
    cdef object _empty(self):
        if self._fallback is not None:
            return self._fallback
        raise SelectionError(self._empty_message)

    cdef uint32_t _order(self, uint32_t *out, uint64_t *work) except? 0xFFFFFFFF:
        cdef double now = self._now()
        cdef uint32_t k
        with cython.critical_section(self):
            k = sx_sel_order(self.s, now, out, work)
        return k

    def order_indices(self):
        """The failover order as target indices (empty when none is usable)."""
        cdef uint32_t n = self.s.n
        cdef uint32_t *out = <uint32_t *>PyMem_Malloc((<size_t>n + 1) * sizeof(uint32_t))
        cdef uint64_t *work = <uint64_t *>PyMem_Malloc(sx_sel_work_words(n) * sizeof(uint64_t))
        cdef uint32_t k, j
        try:
            if out == NULL or work == NULL:
                raise MemoryError()
            k = self._order(out, work)
            return [out[j] for j in range(k)]
        finally:
            PyMem_Free(out)
            PyMem_Free(work)

    def order(self):
        """Usable targets in RFC 2782 failover order; ``[fallback]`` or
        :class:`SelectionError` when none is usable."""
        cdef uint32_t n = self.s.n
        cdef uint32_t sout[STACK_N]
        cdef uint64_t swork[3 * (STACK_N + 1)]
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
            k = self._order(out, work)
            if k == 0:
                return [self._empty()]
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

    def first_index(self):
        cdef double now = self._now()
        cdef int64_t i
        with cython.critical_section(self):
            i = sx_sel_first(self.s, now)
        return i

    def sticky_index(self, key):
        cdef uint64_t h = _hash_key(key)
        cdef double now = self._now()
        cdef int64_t i
        with cython.critical_section(self):
            i = sx_sel_sticky(self.s, now, h)
        return i

    def pick(self, key=None):
        """The first target of the order, or the sticky choice for *key*."""
        cdef double now
        cdef int64_t i
        cdef uint64_t h
        if key is None:
            now = self._now()
            with cython.critical_section(self):
                i = sx_sel_first(self.s, now)
        else:
            h = _hash_key(key)
            now = self._now()
            with cython.critical_section(self):
                i = sx_sel_sticky(self.s, now, h)
        if i < 0:
            return self._empty()
        return self._items[i]
