"""Frame classifier in C: the native twin of ``sipedge._py.classify``.

The rules are documented there. ``classify()`` makes one small Verdict object
(its strings are made only when read); ``classify_pcap()`` and
``classify_buffer()`` walk the whole capture in C with the GIL released and
return counts, plus the per-frame codes on request.
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython cimport array
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy
from libc.errno cimport errno, EINVAL
from libc.string cimport strerror

import array as _array
import operator
import os

from sipedge._prefix cimport PrefixTable, sx_ptable
from sipedge.classify._common import (KINDS, Config, Report, capture_error, verdict_repr,
                                  fragment_name, proto_name, addr_text, code_of,
                                  PROGRESS_FRAMES, byte_view, linktype_error,
                                  check_path, NOT_REGULAR)
from sipedge.errors import CaptureError


cdef extern from "classify.h":
    ctypedef struct sx_verdict:
        uint8_t kind
        uint8_t flags
        uint8_t ipver
        uint8_t trusted
        short proto
        uint16_t sport
        uint16_t dport
        int32_t match
        uint8_t src[16]
        uint8_t dst[16]
    ctypedef struct sx_portrange:
        uint16_t lo
        uint16_t hi
        uint8_t proto
    ctypedef struct sx_role:
        uint32_t kinds
        size_t nports
        const sx_portrange *ports
    ctypedef struct sx_cfg:
        const sx_ptable *table
        size_t nvals
        const uint16_t *val_role
        const uint16_t *val_edge
        size_t nroles
        const sx_role *roles
        size_t nedges
    void sx_classify(const sx_cfg *cfg, const uint8_t *frame, size_t length, uint32_t linktype,
                     sx_verdict *v) nogil
    uint32_t sx_code(const sx_verdict *v) nogil
    int SX_NKINDS

cdef extern from "capture.h":
    ctypedef struct sx_capture:
        size_t off
        size_t len
        uint64_t frames
        const char *err
        size_t err_off
        uint64_t err_val
    int sx_cap_open(sx_capture *c, const uint8_t *buf, size_t length) nogil
    int sx_cap_classify(const sx_cfg *cfg, sx_capture *c, uint64_t max_frames, uint64_t *counts,
                        uint32_t **codes, size_t *codes_cap) nogil
    int sx_map_file(const char *path, const uint8_t **base, size_t *length) nogil
    void sx_unmap_file(const uint8_t *base, size_t length) nogil


cdef tuple _KINDS = KINDS
cdef object _index = operator.index


cdef uint32_t _linktype(object linktype) except? 0xFFFFFFFF:
    """A link type as uint32: TypeError when not an integer, InputError when
    outside 0..2**32-1 (as sipedge._py.classify.check_linktype)."""
    cdef long long x
    if type(linktype) is not int:
        linktype = _index(linktype)
    try:
        x = linktype
    except OverflowError:
        x = -1
    if x < 0 or x > 0xFFFFFFFF:
        raise linktype_error(linktype)
    return <uint32_t>x
cdef array.array _U32 = _array.array("I")


@cython.freelist(64)
cdef class Verdict:
    """What one frame is and whether its source is trusted (see sipedge._py.classify.Verdict)."""
    cdef sx_verdict v
    cdef object _cfg

    @property
    def kind(self):
        return _KINDS[self.v.kind]

    @property
    def trusted(self):
        return self.v.trusted != 0

    @property
    def role(self):
        return self._cfg.role_of(self.v.match)

    @property
    def edge(self):
        return self._cfg.edge_of(self.v.match)

    @property
    def src(self):
        return addr_text(self.v.ipver, (<char *>self.v.src)[:16])

    @property
    def dst(self):
        return addr_text(self.v.ipver, (<char *>self.v.dst)[:16])

    @property
    def proto(self):
        return self.v.proto

    @property
    def sport(self):
        return self.v.sport

    @property
    def dport(self):
        return self.v.dport

    @property
    def flags(self):
        return self.v.flags

    @property
    def ipver(self):
        return self.v.ipver

    @property
    def fragment(self):
        return fragment_name(self.v.flags)

    @property
    def transport(self):
        return proto_name(self.v.proto)

    @property
    def code(self):
        return sx_code(&self.v)

    def _astuple(self):
        return (self.kind, self.trusted, self.role, self.edge, self.src, self.dst, self.proto,
                self.sport, self.dport, self.fragment, self.flags)

    def __eq__(self, other):
        if not hasattr(other, "_astuple"):
            return NotImplemented
        return self._astuple() == other._astuple()

    def __hash__(self):
        return hash(self._astuple())

    def __repr__(self):
        return verdict_repr(self)


cdef class Classifier:
    """Classify frames against an allowlist (default: the embedded Twilio dataset)."""
    cdef sx_cfg cfg
    cdef PrefixTable _table
    cdef object _cfg
    cdef uint16_t *_val_role
    cdef uint16_t *_val_edge
    cdef sx_role *_roles
    cdef sx_portrange *_ports
    cdef readonly object allowlist

    def __cinit__(self, allowlist=None):
        if allowlist is None:
            from sipedge.allowlist import Allowlist
            allowlist = Allowlist.twilio()
        self.allowlist = allowlist
        cfg = Config(allowlist)
        self._cfg = cfg
        if cfg.table is not None and not isinstance(cfg.table, PrefixTable):
            raise TypeError("the allowlist was built with the pure-Python prefix table; "
                            "the native classifier needs sipedge._prefix.PrefixTable")
        self._table = cfg.table
        cdef size_t nv = len(cfg.values), nr = len(cfg.roles), i, j, k = 0
        cdef size_t nports = sum(len(p) for p in cfg.role_ports)
        self._val_role = <uint16_t *>calloc(nv + 1, sizeof(uint16_t))
        self._val_edge = <uint16_t *>calloc(nv + 1, sizeof(uint16_t))
        self._roles = <sx_role *>calloc(nr + 1, sizeof(sx_role))
        self._ports = <sx_portrange *>calloc(nports + 1, sizeof(sx_portrange))
        if not (self._val_role and self._val_edge and self._roles and self._ports):
            raise MemoryError()
        for i in range(nv):
            self._val_role[i] = cfg.val_role[i]
            self._val_edge[i] = cfg.val_edge[i]
        for i in range(nr):
            self._roles[i].kinds = cfg.role_kinds[i]
            self._roles[i].nports = len(cfg.role_ports[i])
            self._roles[i].ports = &self._ports[k]
            for lo, hi, proto in cfg.role_ports[i]:
                self._ports[k].lo = lo
                self._ports[k].hi = hi
                self._ports[k].proto = proto
                k += 1
        self.cfg.table = self._table.t if self._table is not None else NULL
        self.cfg.nvals = nv
        self.cfg.val_role = self._val_role
        self.cfg.val_edge = self._val_edge
        self.cfg.nroles = nr
        self.cfg.roles = self._roles
        self.cfg.nedges = len(cfg.edges)

    def __dealloc__(self):
        free(self._val_role)
        free(self._val_edge)
        free(self._roles)
        free(self._ports)

    @property
    def edges(self):
        return list(self._cfg.edges)

    cdef int _run1(self, object frame, uint32_t linktype, sx_verdict *v) except -1:
        cdef Py_buffer view
        if type(frame) is bytes:
            sx_classify(&self.cfg, <const uint8_t *>PyBytes_AS_STRING(frame),
                        <size_t>PyBytes_GET_SIZE(frame), linktype, v)
            return 0
        try:
            PyObject_GetBuffer(frame, &view, PyBUF_SIMPLE)
        except BufferError:
            if not isinstance(frame, memoryview):
                raise
            # a strided view: classify the bytes it shows, in order (as the twin)
            return self._run1(frame.tobytes(), linktype, v)
        try:
            sx_classify(&self.cfg, <const uint8_t *>view.buf, <size_t>view.len, linktype, v)
        finally:
            PyBuffer_Release(&view)
        return 0

    def classify(self, frame, linktype=1):
        """The verdict of one frame (bytes-like) of pcap link type *linktype*."""
        cdef uint32_t lt = _linktype(linktype)
        cdef Verdict r = Verdict.__new__(Verdict)
        self._run1(frame, lt, &r.v)
        r._cfg = self._cfg
        return r

    def code(self, frame, linktype=1):
        """The compact code of one frame (as in ``Report.codes``)."""
        cdef uint32_t lt = _linktype(linktype)
        cdef sx_verdict v
        self._run1(frame, lt, &v)
        return sx_code(&v)

    cdef object _walk(self, const uint8_t *base, size_t length, str source, bint frames,
                      object progress):
        cdef sx_capture cap
        cdef int r
        cdef size_t width = (self.cfg.nedges + 1)
        cdef size_t ncounts = <size_t>SX_NKINDS * 2 * width
        cdef uint64_t *counts = <uint64_t *>calloc(ncounts, sizeof(uint64_t))
        cdef uint32_t *codes = NULL
        cdef size_t codes_cap = 0
        cdef uint32_t **pcodes = &codes if frames else NULL
        cdef uint64_t chunk = PROGRESS_FRAMES if progress is not None else 0
        cdef array.array out
        if counts == NULL:
            raise MemoryError()
        try:
            with nogil:
                r = sx_cap_open(&cap, base, length)
            if r < 0:
                raise capture_error(source, cap.err.decode(), cap.err_off, cap.err_val)
            while True:
                with nogil:
                    r = sx_cap_classify(&self.cfg, &cap, chunk, counts, pcodes, &codes_cap)
                if r == -2:
                    raise MemoryError()
                if r == -1:
                    raise capture_error(source, cap.err.decode(), cap.err_off, cap.err_val)
                if r == 0:
                    break
                progress(cap.off, cap.len)
            raw = [counts[i] for i in range(ncounts)]
            codes_out = None
            if frames:
                out = array.clone(_U32, <Py_ssize_t>cap.frames, False)
                if cap.frames:
                    memcpy(out.data.as_voidptr, codes, <size_t>cap.frames * sizeof(uint32_t))
                codes_out = out
            return Report(source, cap.frames, raw, self._cfg, codes_out)
        finally:
            free(counts)
            free(codes)

    def classify_buffer(self, buf, bint frames=False, progress=None, str source="<buffer>"):
        """Classify every frame of a pcap/pcapng image held in memory."""
        cdef const uint8_t[::1] mv
        cdef const uint8_t *base = NULL
        if buf is None:
            raise TypeError("classify_buffer needs a bytes-like object, not None")
        mv = memoryview(byte_view(buf)).cast("B")
        if mv.shape[0]:
            base = &mv[0]
        return self._walk(base, <size_t>mv.shape[0], source, frames, progress)

    def classify_pcap(self, path, bint frames=False, progress=None):
        """Classify every frame of a pcap or pcapng file (memory-mapped)."""
        spath = os.fspath(path)
        check_path(spath)
        bpath = os.fsencode(spath)
        cdef const char *cpath = bpath
        cdef const uint8_t *base = NULL
        cdef size_t length = 0
        cdef int r, err = 0
        with nogil:
            r = sx_map_file(cpath, &base, &length)
            if r < 0:
                err = errno
        if r < 0:
            raise CaptureError(f"{spath}: cannot open capture: "
                               + (NOT_REGULAR if err == EINVAL else strerror(err).decode()))
        try:
            return self._walk(base, length, spath, frames, progress)
        finally:
            sx_unmap_file(base, length)
