"""Sorted-record set difference in C: the native twin of ``sipedge._py.setdiff``."""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t
from libc.stdlib cimport free, malloc


cdef extern from "setdiff.h":
    int sx_sorted_diff(const uint8_t *a, size_t na, const uint8_t *b, size_t nb, size_t rec,
                       uint8_t *only_a, size_t *n_only_a, uint8_t *only_b,
                       size_t *n_only_b) nogil


def sorted_diff(const uint8_t[::1] a not None, const uint8_t[::1] b not None, Py_ssize_t rec):
    """(records only in *a*, records only in *b*) of two strictly ascending packed sets."""
    if rec <= 0 or a.shape[0] % rec or b.shape[0] % rec:
        raise ValueError(f"record size {rec} does not divide the inputs ({a.shape[0]}, {b.shape[0]} bytes)")
    cdef size_t na = a.shape[0] // rec, nb = b.shape[0] // rec, oa = 0, ob = 0
    cdef uint8_t *bufa = <uint8_t *>malloc(na * rec + 1)
    cdef uint8_t *bufb = <uint8_t *>malloc(nb * rec + 1)
    cdef int rc
    cdef const uint8_t *pa = &a[0] if na else <const uint8_t *>bufa
    cdef const uint8_t *pb = &b[0] if nb else <const uint8_t *>bufb
    if bufa == NULL or bufb == NULL:
        free(bufa)
        free(bufb)
        raise MemoryError()
    try:
        with nogil:
            rc = sx_sorted_diff(pa, na, pb, nb, <size_t>rec, bufa, &oa, bufb, &ob)
        if rc:
            raise ValueError(f"input {'a' if rc == 1 else 'b'} is not strictly ascending")
        return (PyBytes_FromStringAndSize(<char *>bufa, oa * rec),
                PyBytes_FromStringAndSize(<char *>bufb, ob * rec))
    finally:
        free(bufa)
        free(bufb)
