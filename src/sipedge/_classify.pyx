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
                                  check_path, NOT_REGULAR, open_capture_fd, FlowLimits, flow_limits,
                                  frame_info)
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
    ctypedef struct sx_cache4:
        pass
    void sx_cache_init(sx_cache4 *c) nogil
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

cdef extern from "flow.h":
    ctypedef struct sx_flows:
        uint64_t frame
        uint64_t window
        uint64_t evicted
    ctypedef struct sx_relabel:
        uint32_t n
        uint64_t frame[2]
    int sx_flows_init(sx_flows *t, uint64_t max_flows, uint64_t max_anns, uint64_t window) nogil
    void sx_flows_free(sx_flows *t) nogil
    void sx_flow_classify(const sx_cfg *cfg, sx_cache4 *cache, sx_flows *t, const uint8_t *f,
                          size_t length, uint32_t linktype, sx_verdict *v, sx_relabel *r) nogil

cdef extern from "capture.h":
    ctypedef struct sx_capture:
        size_t off
        size_t len
        uint64_t base_off
        uint64_t frames
        const char *err
        size_t err_off
        uint64_t err_val
    ctypedef struct sx_flowrun:
        sx_flows flows
    int sx_cap_open(sx_capture *c, const uint8_t *buf, size_t length) nogil
    int sx_cap_open_fd(sx_capture *c, int fd) nogil
    void sx_cap_close(sx_capture *c) nogil
    uint64_t sx_cap_pos(const sx_capture *c) nogil
    int sx_cap_classify_into(const sx_cfg *cfg, sx_capture *c, uint64_t *counts, uint32_t *out,
                             size_t out_cap, size_t *nout) nogil
    int sx_flowrun_init(sx_flowrun *fr, uint64_t max_flows, uint64_t max_anns, uint64_t window) nogil
    void sx_flowrun_free(sx_flowrun *fr) nogil
    int sx_cap_classify_flows(const sx_cfg *cfg, sx_capture *c, sx_flowrun *fr, uint64_t max_frames,
                              uint64_t *counts, uint32_t *out, size_t out_cap, size_t *nout) nogil
    int sx_cap_classify(const sx_cfg *cfg, sx_capture *c, uint64_t max_frames, uint64_t *counts,
                        uint32_t **codes, size_t *codes_cap) nogil


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

    def frame_info(self, number, code):
        """FrameInfo of frame *number* (1-based) from its code."""
        return frame_info(self._cfg, number, code)

    cdef object _walk(self, sx_capture *cap, str source, bint frames, object progress,
                      bint flows, object limits, uint64_t total):
        """Walk an opened capture: a Report (counts, codes when frames)."""
        cdef int r
        cdef size_t width = (self.cfg.nedges + 1)
        cdef size_t ncounts = <size_t>SX_NKINDS * 2 * width
        cdef uint64_t *counts = <uint64_t *>calloc(ncounts, sizeof(uint64_t))
        cdef uint32_t *codes = NULL
        cdef size_t codes_cap = 0
        cdef uint32_t **pcodes = &codes if frames else NULL
        cdef uint64_t chunk = PROGRESS_FRAMES if progress is not None else 0
        cdef array.array out
        cdef sx_flowrun fr
        cdef bint fr_ok = False
        cdef size_t nout = 0, outcap = 65536
        cdef uint32_t *obuf = NULL
        cdef uint64_t nframes = 0
        if counts == NULL:
            raise MemoryError()
        try:
            if not flows:
                while True:
                    with nogil:
                        r = sx_cap_classify(&self.cfg, cap, chunk, counts, pcodes, &codes_cap)
                    if r == -2:
                        raise MemoryError()
                    if r == -3:  # Config refuses such an allowlist first; C checks too
                        raise ValueError("too many allowlist values for 24-bit frame codes")
                    if r == -1:
                        raise capture_error(source, cap.err.decode(), cap.err_off, cap.err_val)
                    if r == 0:
                        break
                    progress(sx_cap_pos(cap), total)
                nframes = cap.frames
                codes_out = None
                if frames:
                    out = array.clone(_U32, <Py_ssize_t>cap.frames, False)
                    if cap.frames:
                        memcpy(out.data.as_voidptr, codes, <size_t>cap.frames * sizeof(uint32_t))
                    codes_out = out
            else:
                lim = flow_limits(limits)
                if sx_flowrun_init(&fr, lim.max_flows, lim.max_anns, lim.window) < 0:
                    raise MemoryError()
                fr_ok = True
                codes_out = _array.array("I") if frames else None
                if frames:
                    obuf = <uint32_t *>malloc(outcap * sizeof(uint32_t))
                    if obuf == NULL:
                        raise MemoryError()
                while True:
                    with nogil:
                        r = sx_cap_classify_flows(&self.cfg, cap, &fr, chunk, counts, obuf,
                                                  outcap, &nout)
                    if frames and nout:
                        out = array.clone(_U32, <Py_ssize_t>nout, False)
                        memcpy(out.data.as_voidptr, obuf, nout * sizeof(uint32_t))
                        codes_out.extend(out)
                    if r == -1:
                        raise capture_error(source, cap.err.decode(), cap.err_off, cap.err_val)
                    if r == -3:  # codes asked of a counting run: cannot happen from here
                        raise RuntimeError("sx_cap_classify_flows: codes asked of a counting run")
                    if r == 0:
                        break
                    if progress is not None and nout == 0:
                        progress(sx_cap_pos(cap), total)
                nframes = cap.frames
            raw = [counts[i] for i in range(ncounts)]
            return Report(source, nframes, raw, self._cfg, codes_out)
        finally:
            free(counts)
            free(codes)
            free(obuf)
            if fr_ok:
                sx_flowrun_free(&fr)

    def classify_buffer(self, buf, bint frames=False, progress=None, str source="<buffer>",
                        bint flows=False, limits=FlowLimits()):
        """Classify every frame of a pcap/pcapng image held in memory
        (``flows=True``: the flow mode, see sipedge._py.flow)."""
        cdef const uint8_t[::1] mv
        cdef const uint8_t *base = NULL
        cdef sx_capture cap
        cdef int r
        if buf is None:
            raise TypeError("classify_buffer needs a bytes-like object, not None")
        mv = memoryview(byte_view(buf)).cast("B")
        if mv.shape[0]:
            base = &mv[0]
        with nogil:
            r = sx_cap_open(&cap, base, <size_t>mv.shape[0])
        if r < 0:
            raise capture_error(source, cap.err.decode(), cap.err_off, cap.err_val)
        return self._walk(&cap, source, frames, progress, flows, limits, <uint64_t>mv.shape[0])

    def classify_pcap(self, path, bint frames=False, progress=None, bint flows=False,
                      limits=FlowLimits()):
        """Classify every frame of a pcap or pcapng file, read in chunks (a file
        that shrinks meanwhile is a CaptureError naming the offset)
        (``flows=True``: the flow mode, see sipedge._py.flow)."""
        cdef int fd = open_capture_fd(path)
        cdef sx_capture cap
        cdef int r
        spath = os.fspath(path)
        try:
            total = os.fstat(fd).st_size
            with nogil:
                r = sx_cap_open_fd(&cap, fd)
            try:
                if r < 0:
                    raise capture_error(spath, cap.err.decode(), cap.err_off, cap.err_val)
                return self._walk(&cap, spath, frames, progress, flows, limits, total)
            finally:
                sx_cap_close(&cap)
        finally:
            os.close(fd)

    def iter_pcap(self, path, bint flows=True, limits=FlowLimits(), size_t chunk=65536):
        """The frame codes of a capture as they come, in arrays of up to
        *chunk* codes, with constant memory; ``.report`` once exhausted."""
        return FrameStream(self, path, flows, limits, chunk)

    def flow_session(self, limits=FlowLimits()):
        """Flow mode over frames fed one by one (a live tap)."""
        return FlowSession(self, limits)


cdef class FrameStream:
    """Iterator of code arrays (see Classifier.iter_pcap); ``report`` at the end."""
    cdef Classifier clf
    cdef sx_capture cap
    cdef sx_flowrun fr
    cdef bint fr_ok, opened, done, flows
    cdef int fd
    cdef uint64_t *counts
    cdef size_t ncounts, chunk
    cdef uint32_t *obuf
    cdef str source
    cdef public object report

    def __cinit__(self, Classifier clf, path, bint flows, limits, size_t chunk):
        self.fd = -1
        self.clf = clf
        self.flows = flows
        self.report = None
        self.chunk = chunk if chunk else 1
        self.source = os.fspath(path)
        self.ncounts = <size_t>SX_NKINDS * 2 * (clf.cfg.nedges + 1)
        self.counts = <uint64_t *>calloc(self.ncounts, sizeof(uint64_t))
        self.obuf = <uint32_t *>malloc(self.chunk * sizeof(uint32_t))
        if self.counts == NULL or self.obuf == NULL:
            raise MemoryError()
        lim = flow_limits(limits)
        if sx_flowrun_init(&self.fr, lim.max_flows, lim.max_anns,
                           lim.window if flows else 1) < 0:
            raise MemoryError()
        self.fr_ok = True
        self.fd = open_capture_fd(path)
        cdef int r
        with nogil:
            r = sx_cap_open_fd(&self.cap, self.fd)
        self.opened = True
        if r < 0:
            raise capture_error(self.source, self.cap.err.decode(), self.cap.err_off,
                                self.cap.err_val)

    def __dealloc__(self):
        if self.opened:
            sx_cap_close(&self.cap)
        if self.fd >= 0:
            os.close(self.fd)
        if self.fr_ok:
            sx_flowrun_free(&self.fr)
        free(self.counts)
        free(self.obuf)

    def __iter__(self):
        return self

    def __next__(self):
        cdef int r
        cdef size_t nout = 0
        cdef array.array out
        if self.done:
            raise StopIteration
        with nogil:
            if self.flows:
                r = sx_cap_classify_flows(&self.clf.cfg, &self.cap, &self.fr, 0, self.counts,
                                          self.obuf, self.chunk, &nout)
            else:
                r = sx_cap_classify_into(&self.clf.cfg, &self.cap, self.counts, self.obuf,
                                         self.chunk, &nout)
        if r == -1:
            self.done = True
            raise capture_error(self.source, self.cap.err.decode(), self.cap.err_off,
                                self.cap.err_val)
        if r == 0:
            self.done = True
            self.report = Report(self.source, self.cap.frames,
                                 [self.counts[i] for i in range(self.ncounts)], self.clf._cfg,
                                 None)
        if nout == 0:
            raise StopIteration
        out = array.clone(_U32, <Py_ssize_t>nout, False)
        memcpy(out.data.as_voidptr, self.obuf, nout * sizeof(uint32_t))
        return out


cdef class FlowSession:
    """Flow mode over frames fed one by one: ``classify(frame)`` gives the
    verdict now; ``relabelled`` lists the earlier frames (1-based numbers) that
    this frame confirmed as RTP."""
    cdef Classifier clf
    cdef sx_flows t
    cdef sx_cache4 cache
    cdef bint ok
    cdef public tuple relabelled

    def __cinit__(self, Classifier clf, limits):
        self.clf = clf
        lim = flow_limits(limits)
        if sx_flows_init(&self.t, lim.max_flows, lim.max_anns, lim.window) < 0:
            raise MemoryError()
        self.ok = True
        sx_cache_init(&self.cache)
        self.relabelled = ()

    def __dealloc__(self):
        if self.ok:
            sx_flows_free(&self.t)

    @property
    def frames(self):
        return self.t.frame

    def classify(self, frame, linktype=1):
        cdef uint32_t lt = _linktype(linktype)
        cdef Verdict r = Verdict.__new__(Verdict)
        cdef sx_relabel rl
        cdef bytes b = frame if type(frame) is bytes else memoryview(frame).tobytes()
        sx_flow_classify(&self.clf.cfg, &self.cache, &self.t,
                         <const uint8_t *>PyBytes_AS_STRING(b), <size_t>PyBytes_GET_SIZE(b),
                         lt, &r.v, &rl)
        self.relabelled = tuple(rl.frame[i] + 1 for i in range(rl.n))
        r._cfg = self.clf._cfg
        return r
