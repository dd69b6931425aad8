"""Longest-prefix-match table in C: the native twin of ``sipedge._py.prefix``."""
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int32_t

import ipaddress

from sipedge._py.prefix import blocks_of
from sipedge.errors import AddressError

cdef uint64_t _M64 = 0xFFFFFFFFFFFFFFFF


cdef inline uint32_t _be32(const uint8_t *b) noexcept nogil:
    return (<uint32_t>b[0] << 24) | (<uint32_t>b[1] << 16) | (<uint32_t>b[2] << 8) | b[3]


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
        if sx_pt_check(self.t) != 0:
            raise AssertionError("prefix table ranges out of order")

    def __dealloc__(self):
        sx_pt_free(self.t)

    cdef int32_t _index(self, object addr) except -2:
        cdef uint8_t buf[16]
        cdef const char *s
        cdef Py_ssize_t n
        cdef int version
        if type(addr) is str:
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

    def lookup(self, addr, default=None):
        """The value of the most specific entry covering *addr*, else *default*."""
        cdef int32_t i = self._index(addr)
        if i < 0:
            return default
        return self._values[i]

    def __contains__(self, addr):
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
