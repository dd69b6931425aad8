from libc.stdint cimport uint8_t, uint32_t, uint64_t, int32_t

cdef extern from "prefix.h":
    ctypedef struct sx_range4:
        uint32_t lo
        uint32_t hi
        int32_t val
    ctypedef struct sx_u128:
        uint64_t hi
        uint64_t lo
    ctypedef struct sx_ptable:
        size_t n4
        uint32_t *lo4
        uint32_t *hi4
        int32_t *val4
        size_t n6
        sx_u128 *lo6
        sx_u128 *hi6
        int32_t *val6
        uint32_t *idx4
        sx_range4 *r4
    sx_ptable *sx_pt_new(size_t n4, size_t n6) nogil
    int sx_pt_index(sx_ptable *t) nogil
    void sx_pt_free(sx_ptable *t) nogil
    long sx_pt_check(const sx_ptable *t) nogil
    int32_t sx_pt_lookup4(const sx_ptable *t, uint32_t addr4) nogil
    int32_t sx_pt_lookup6(const sx_ptable *t, sx_u128 addr6) nogil
    sx_u128 sx_u128_from_bytes(const uint8_t *b) nogil
    int sx_parse_ip(const char *s, size_t length, uint8_t *out) nogil

cdef extern from "prefix_inline.h":
    int32_t sx_pt_lookup4_inline(const sx_ptable *t, uint32_t a) nogil
    const sx_range4 *sx_pt_range4_inline(const sx_ptable *t, uint32_t a) nogil
    int sx_parse_ip4_inline(const char *s, size_t length, uint32_t *out) nogil


cdef class PrefixTable:
    """Other native modules (the classifier) cimport this to search in C."""
    cdef sx_ptable *t
    cdef list _values
    cdef int32_t _index(self, object addr) except -2
    cdef _finish(self)
