# cython: always_allow_keywords=False
"""Longest-prefix-match table in C: the native twin of ``sipedge._py.prefix``."""
cimport cython
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int32_t
from libc.string cimport memcpy

import ipaddress

from sipedge.intervals import blocks_of
from sipedge.errors import AddressError

cdef extern from "Python.h":
    bint PyUnicode_IS_COMPACT_ASCII(object u)
    bint PyUnicode_IS_ASCII(object u)
    void *PyUnicode_DATA(object u)
    Py_ssize_t PyUnicode_GET_LENGTH(object u)

cdef uint64_t _M64 = 0xFFFFFFFFFFFFFFFF


cdef inline uint32_t _be32(const uint8_t *b) noexcept nogil:
    return (<uint32_t>b[0] << 24) | (<uint32_t>b[1] << 16) | (<uint32_t>b[2] << 8) | b[3]


cdef inline const char *_buf(object b, Py_ssize_t item, Py_ssize_t n, str what) except NULL:
    if type(b) is not bytes:
        raise TypeError(f"{what} must be bytes, not {type(b).__name__}")
    if PyBytes_GET_SIZE(b) != item * n:
        raise ValueError(f"{what} holds {PyBytes_GET_SIZE(b)} bytes, expected {item * n}")
    return PyBytes_AS_STRING(b)


cdef class PrefixTable:
    """Longest-prefix match of addresses against (network, value) entries."""

    def __cinit__(self, entries=()):
        r4, r6, values = blocks_of(entries)
        self.t = sx_pt_new(len(r4), len(r6))
        if self.t == NULL:
            raise MemoryError()
        self._values = values
        cdef Py_ssize_t i
        for i, (lo, hi, v) in enumerate(r4):
            self.t.lo4[i] = lo
            self.t.hi4[i] = hi
            self.t.val4[i] = v
        for i, (lo, hi, v) in enumerate(r6):
            self.t.lo6[i].hi = lo >> 64
            self.t.lo6[i].lo = lo & _M64
            self.t.hi6[i].hi = hi >> 64
            self.t.hi6[i].lo = hi & _M64
            self.t.val6[i] = v
        self._finish()

    cdef _finish(self):
        cdef size_t i
        if sx_pt_check(self.t) != 0:
            raise ValueError("prefix table ranges are out of order, overlap, or have a bad value")
        if self.t.n4 >= 64:  # small tables: the plain search stays in L1
            if sx_pt_index(self.t) != 0:
                raise MemoryError()
            # each packed range points at its value (borrowed: self._values keeps it alive)
            for i in range(self.t.n4):
                self.t.r4[i].ref = <void *>self._values[self.t.r4[i].val]

    def __dealloc__(self):
        sx_pt_free(self.t)

    @classmethod
    def from_ranges(cls, bytes lo4, bytes hi4, bytes val4, bytes lo6, bytes hi6, bytes val6,
                    list values):
        """A table from flattened ranges as :meth:`dump` gives them (no flattening)."""
        cdef Py_ssize_t n4 = PyBytes_GET_SIZE(val4) // 4
        cdef Py_ssize_t n6 = PyBytes_GET_SIZE(val6) // 4
        cdef const char *b_lo4 = _buf(lo4, 4, n4, "lo4")
        cdef const char *b_hi4 = _buf(hi4, 4, n4, "hi4")
        cdef const char *b_val4 = _buf(val4, 4, n4, "val4")
        cdef const char *b_lo6 = _buf(lo6, 16, n6, "lo6")
        cdef const char *b_hi6 = _buf(hi6, 16, n6, "hi6")
        cdef const char *b_val6 = _buf(val6, 4, n6, "val6")
        cdef PrefixTable self = PrefixTable.__new__(PrefixTable)
        sx_pt_free(self.t)
        self.t = sx_pt_new(<size_t>n4, <size_t>n6)
        if self.t == NULL:
            raise MemoryError()
        memcpy(self.t.lo4, b_lo4, 4 * n4)
        memcpy(self.t.hi4, b_hi4, 4 * n4)
        memcpy(self.t.val4, b_val4, 4 * n4)
        memcpy(self.t.lo6, b_lo6, 16 * n6)
        memcpy(self.t.hi6, b_hi6, 16 * n6)
        memcpy(self.t.val6, b_val6, 4 * n6)
        cdef Py_ssize_t i
        for i in range(n4):
            if self.t.val4[i] >= len(values):
                raise ValueError(f"range {i} refers to value {self.t.val4[i]} of {len(values)}")
        for i in range(n6):
            if self.t.val6[i] >= len(values):
                raise ValueError(f"range {i} refers to value {self.t.val6[i]} of {len(values)}")
        self._values = list(values)  # our own list: the ranges borrow its items
        self._finish()
        return self

    def dump(self):
        """(lo4, hi4, val4, lo6, hi6, val6) as bytes in native byte order: uint32
        for IPv4 bounds, two uint64 (high, low) per IPv6 bound, int32 values."""
        cdef size_t n4 = self.t.n4, n6 = self.t.n6
        return ((<char *>self.t.lo4)[:4 * n4], (<char *>self.t.hi4)[:4 * n4],
                (<char *>self.t.val4)[:4 * n4], (<char *>self.t.lo6)[:16 * n6],
                (<char *>self.t.hi6)[:16 * n6], (<char *>self.t.val6)[:4 * n6])

    cdef int32_t _index(self, object addr) except -2:
        cdef uint8_t buf[16]
        cdef const char *s
        cdef Py_ssize_t n
        cdef int version
        if type(addr) is str:
            if not PyUnicode_IS_ASCII(addr):  # every address is ASCII text
                raise AddressError(f"{addr!r} is not an IPv4 or IPv6 address")
            s = PyUnicode_AsUTF8AndSize(addr, &n)
            version = sx_parse_ip(s, <size_t>n, buf)
            if version == 4:
                return sx_pt_lookup4(self.t, _be32(buf))
            if version == 6:
                return sx_pt_lookup6(self.t, sx_u128_from_bytes(buf))
            raise AddressError(f"{addr!r} is not an IPv4 or IPv6 address")
        if type(addr) is bytes:
            n = PyBytes_GET_SIZE(addr)
            s = PyBytes_AS_STRING(addr)
            if n == 4:
                return sx_pt_lookup4(self.t, _be32(<const uint8_t *>s))
            if n == 16:
                return sx_pt_lookup6(self.t, sx_u128_from_bytes(<const uint8_t *>s))
            raise AddressError(f"a packed address is 4 or 16 bytes, not {n}")
        if isinstance(addr, (bytearray, memoryview)):
            return self._index(bytes(addr))
        if isinstance(addr, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            return self._index(addr.packed)
        if isinstance(addr, str):
            return self._index(str(addr))
        raise AddressError(f"{addr!r} is not an IPv4 or IPv6 address")

    def get(self, addr):
        """The value of the most specific entry covering *addr*, else None (one argument)."""
        cdef uint32_t a4
        cdef int32_t i
        cdef const sx_range4 *r
        # hot path, no call out of this function: an IPv4 address as an ASCII str
        if (type(addr) is str and PyUnicode_IS_COMPACT_ASCII(addr)
                and sx_parse_ip4_inline(<const char *>PyUnicode_DATA(addr),
                                        <size_t>PyUnicode_GET_LENGTH(addr), &a4)):
            if self.t.idx4 != NULL:  # large table: the range holds its value's pointer
                r = sx_pt_range4_inline(self.t, a4)
                if r == NULL:
                    return None
                return <object>r.ref
            i = sx_pt_lookup4_inline(self.t, a4)
        else:
            i = self._index(addr)
        if i < 0:
            return None
        return self._values[i]

    @cython.always_allow_keywords(True)
    def lookup(self, addr, default=None):
        """The value of the most specific entry covering *addr*, else *default*."""
        cdef int32_t i = self._index(addr)
        if i < 0:
            return default
        return self._values[i]

    def __contains__(self, addr):
        cdef uint32_t a4
        if (type(addr) is str and PyUnicode_IS_COMPACT_ASCII(addr)
                and sx_parse_ip4_inline(<const char *>PyUnicode_DATA(addr),
                                        <size_t>PyUnicode_GET_LENGTH(addr), &a4)):
            return sx_pt_lookup4_inline(self.t, a4) >= 0
        return self._index(addr) >= 0

    def __len__(self):
        return len(self._values)

    def ranges(self, int version):
        """The flattened (lo, hi, value index) ranges of one family."""
        cdef size_t i
        out = []
        if version == 4:
            for i in range(self.t.n4):
                out.append((self.t.lo4[i], self.t.hi4[i], self.t.val4[i]))
        else:
            for i in range(self.t.n6):
                out.append(((<object>self.t.lo6[i].hi << 64) | self.t.lo6[i].lo,
                            (<object>self.t.hi6[i].hi << 64) | self.t.hi6[i].lo,
                            self.t.val6[i]))
        return out

    @property
    def values(self):
        return list(self._values)
