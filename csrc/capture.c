/* pcap / pcapng readers and the batch loop. See capture.h. */
#include "capture.h"
#include "flow_inline.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* little-endian reading of the magic numbers (one load where the compiler sees it) */
static inline uint32_t le32(const uint8_t *p)
{
    return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
}

static inline uint32_t rd32(const sx_capture *c, const uint8_t *p)
{
    uint32_t x = le32(p);
    return c->swapped ? __builtin_bswap32(x) : x;
}

static uint16_t rd16(const sx_capture *c, const uint8_t *p)
{
    if (c->swapped)
        return (uint16_t)((p[0] << 8) | p[1]);
    return (uint16_t)((p[1] << 8) | p[0]);
}

static int fail(sx_capture *c, const char *msg, size_t off, uint64_t val)
{
    c->err = msg;
    c->err_off = (size_t)(c->base_off + off);
    c->err_val = val;
    return -1;
}

/* File mode reads into a window of 256 KiB (grown to the largest record):
 * small enough to stay in a core's L2 cache between the kernel's copy and the
 * classifier's reads (1 MiB measured ~10% slower on 3 GB from the page cache). */
#define WINDOW (1u << 18)
/* Prefetch every cache line once, this far ahead of the record being read, so
 * that the walk (each record's offset depends on the one before) does not wait
 * for memory at every line: walking a 3 GB capture held in memory took 0.97 s
 * without, 0.37-0.40 s with. Non-temporal: the capture is read once and should
 * not push the flow table and the lookup cache out. In file mode the window
 * was just copied in and is in cache already. */
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 4096u
#endif
#define CACHE_LINE 64u

/* Make base[off .. off + need) available: 1 yes, 0 no (the end of the capture
 * comes first), -1 read error (err set). File mode moves the unread bytes to
 * the start of the window and reads more; memory mode has everything. */
static int ensure_slow(sx_capture *c, size_t need)
{
    if (c->eof)
        return 0;
    size_t keep = c->len - c->off;
    size_t want = need > WINDOW ? need : WINDOW;
    if (want > c->cap) {
        uint8_t *n = malloc(want);
        if (!n)
            return fail(c, "out of memory for the capture read window", c->off, want);
        if (keep)
            memcpy(n, c->buf + c->off, keep);
        free(c->buf);
        c->buf = n;
        c->cap = want;
    } else if (c->off && keep) {
        memmove(c->buf, c->buf + c->off, keep);
    }
    c->base_off += c->off;
    c->off = 0;
    c->pf = 0;
    c->len = keep;
    c->base = c->buf;
    while (c->len < need || c->len < c->cap) {
        ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return fail(c, "read error on the capture file", c->len, (uint64_t)errno);
        }
        if (r == 0) {
            struct stat st;
            c->eof = 1;
            if (fstat(c->fd, &st) == 0 && (uint64_t)st.st_size < c->base_off + c->len)
                return fail(c, "the capture file shrank while it was read (value: its size now)",
                            c->len, (uint64_t)st.st_size);
            break;
        }
        c->len += (size_t)r;
        if (c->len >= need && c->len >= c->cap / 2)
            break;
    }
    return c->len >= need;
}

static inline int ensure(sx_capture *c, size_t need)
{
    if (c->len - c->off >= need)
        return 1;
    return ensure_slow(c, need);
}

#define PCAPNG_SHB 0x0A0D0D0Au
#define PCAPNG_BOM 0x1A2B3C4Du

/* Section header block at off: sets byte order, forgets the interfaces. */
static int pcapng_shb(sx_capture *c, size_t off)
{
    const uint8_t *p = c->base + off;
    if (c->len - off < 28)
        return fail(c, "truncated pcapng section header block", off, 0);
    uint32_t bom = le32(p + 8);
    if (bom == PCAPNG_BOM)
        c->swapped = 0;
    else if (bom == 0x4D3C2B1Au)
        c->swapped = 1;
    else
        return fail(c, "bad byte-order magic in pcapng section header block", off + 8, bom);
    uint16_t major = rd16(c, p + 12);
    if (major != 1)
        return fail(c, "unsupported pcapng major version", off + 12, major);
    c->nif = 0;
    return 0;
}

static int cap_header(sx_capture *c)
{
    int e = ensure(c, 28);
    if (e < 0)
        return -1;
    size_t len = c->len;
    const uint8_t *buf = c->base;
    if (len < 4)
        return fail(c, "file too short for a pcap or pcapng header", 0, len);
    uint32_t magic = le32(buf);
    if (magic == PCAPNG_SHB) {
        c->format = SX_CAP_PCAPNG;
        if (pcapng_shb(c, 0) < 0)
            return -1;
        c->off = 0; /* the SHB is walked again by sx_cap_next */
        return 0;
    }
    c->format = SX_CAP_PCAP;
    if (magic == 0xA1B2C3D4u || magic == 0xA1B23C4Du)
        c->swapped = 0;
    else if (magic == 0xD4C3B2A1u || magic == 0x4D3CB2A1u)
        c->swapped = 1;
    else
        return fail(c, "not a pcap or pcapng file (unknown magic number)", 0, magic);
    c->nsec = (magic == 0xA1B23C4Du || magic == 0x4D3CB2A1u);
    if (len < 24)
        return fail(c, "truncated pcap file header (24 bytes needed)", 0, len);
    uint16_t major = rd16(c, buf + 4);
    if (major != 2)
        return fail(c, "unsupported pcap major version", 4, major);
    c->linktype = rd32(c, buf + 20) & 0xFFFFu;
    c->off = 24;
    return 0;
}

int sx_cap_open(sx_capture *c, const uint8_t *buf, size_t len)
{
    memset(c, 0, sizeof *c);
    c->base = buf;
    c->len = len;
    c->fd = -1;
    c->eof = 1;
    return cap_header(c);
}

int sx_cap_open_fd(sx_capture *c, int fd)
{
    memset(c, 0, sizeof *c);
    c->fd = fd;
#ifdef POSIX_FADV_SEQUENTIAL
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL); /* a hint: larger readahead */
#endif
    return cap_header(c);
}

void sx_cap_close(sx_capture *c)
{
    free(c->buf);
    c->buf = NULL;
    c->base = NULL;
    c->len = c->off = 0;
}

/* hand out the pcap record at p (its header and incl bytes wholly held) and
 * step past it */
static inline void pcap_take(sx_capture *c, sx_frame *f, const uint8_t *p, uint32_t incl)
{
    f->data = p + 16;
    f->caplen = incl;
    f->origlen = rd32(c, p + 12);
    f->linktype = c->linktype;
    f->iface = 0;
    c->off += 16 + (size_t)incl;
}

static int pcap_next_slow(sx_capture *c, sx_frame *f)
{
    int e = ensure(c, 16);
    if (e < 0)
        return -1;
    if (c->off == c->len)
        return 0;
    if (!e)
        return fail(c, "truncated pcap record header", c->off, c->len - c->off);
    uint32_t incl = rd32(c, c->base + c->off + 8);
    if (incl > SX_CAP_MAX_FRAME)
        return fail(c, "pcap record length over the limit of 16 MiB", c->off + 8, incl);
    e = ensure(c, 16 + (size_t)incl);
    if (e < 0)
        return -1;
    if (!e)
        return fail(c, "truncated pcap record (captured length past the end of the file)",
                    c->off + 8, incl);
    pcap_take(c, f, c->base + c->off, incl);
    return 1;
}

/* the common case first: the whole record is already held */
static inline int pcap_next(sx_capture *c, sx_frame *f)
{
    size_t avail = c->len - c->off;
    if (avail >= 16) {
        const uint8_t *p = c->base + c->off;
        uint32_t incl = rd32(c, p + 8);
        if (incl <= SX_CAP_MAX_FRAME && incl <= avail - 16) {
            pcap_take(c, f, p, incl);
            return 1;
        }
    }
    return pcap_next_slow(c, f);
}

static int pcapng_idb(sx_capture *c, size_t off, uint32_t blen)
{
    if (blen < 20)
        return fail(c, "pcapng interface description block too short", off + 4, blen);
    if (c->nif >= SX_CAP_MAX_IF)
        return fail(c, "too many pcapng interfaces in one section (limit 1024)", off, c->nif);
    c->if_link[c->nif++] = rd16(c, c->base + off + 8);
    return 0;
}

static int pcapng_next(sx_capture *c, sx_frame *f)
{
    for (;;) {
        int e = ensure(c, 12);
        if (e < 0)
            return -1;
        size_t off = c->off;
        if (off == c->len)
            return 0;
        if (!e)
            return fail(c, "truncated pcapng block header", off, c->len - off);
        uint32_t type = le32(c->base + off);
        if (type == PCAPNG_SHB) {
            if (ensure(c, 28) < 0)
                return -1;
            off = c->off;
            if (pcapng_shb(c, off) < 0)
                return -1;
        }
        const uint8_t *p = c->base + off;
        uint32_t blen = rd32(c, p + 4);
        if (blen < 12 || (blen & 3))
            return fail(c, "bad pcapng block length (under 12 or not a multiple of 4)", off + 4,
                        blen);
        if (blen > SX_CAP_MAX_BLOCK)
            return fail(c, "pcapng block length over the limit of 16 MiB + 64 KiB", off + 4, blen);
        e = ensure(c, blen);
        if (e < 0)
            return -1;
        off = c->off;
        if (!e)
            return fail(c, "truncated pcapng block (length past the end of the file)", off + 4,
                        blen);
        p = c->base + off;
        if (type == PCAPNG_SHB && blen < 28)
            return fail(c, "pcapng section header block too short (28 bytes at least)", off + 4,
                        blen);
        if (rd32(c, p + blen - 4) != blen)
            return fail(c, "pcapng block length at the end of the block differs from the start",
                        off + blen - 4, rd32(c, p + blen - 4));
        c->off = off + blen;
        if (type != PCAPNG_SHB)
            type = rd32(c, p);
        size_t body = blen - 12; /* bytes between the two length fields */
        if (type == 1) {
            if (pcapng_idb(c, off, blen) < 0)
                return -1;
        } else if (type == 6 || type == 2) { /* enhanced / obsolete packet block */
            if (body < 20)
                return fail(c, "pcapng packet block too short", off + 4, blen);
            uint32_t ifc = type == 6 ? rd32(c, p + 8) : rd16(c, p + 8);
            uint32_t incl = rd32(c, p + 20);
            if (ifc >= c->nif)
                return fail(c, "pcapng packet block names an undeclared interface", off + 8, ifc);
            if (incl > body - 20)
                return fail(c, "pcapng captured length past the end of its block", off + 20, incl);
            f->data = p + 28;
            f->caplen = incl;
            f->origlen = rd32(c, p + 24);
            f->linktype = c->if_link[ifc];
            f->iface = ifc;
            return 1;
        } else if (type == 3) { /* simple packet block: interface 0 */
            if (body < 4)
                return fail(c, "pcapng simple packet block too short", off + 4, blen);
            if (c->nif == 0)
                return fail(c, "pcapng simple packet block before any interface", off, 0);
            uint32_t orig = rd32(c, p + 8);
            uint32_t incl = (uint32_t)(body - 4);
            if (orig < incl)
                incl = orig;
            f->data = p + 12;
            f->caplen = incl;
            f->origlen = orig;
            f->linktype = c->if_link[0];
            f->iface = 0;
            return 1;
        }
    }
}

int sx_cap_next(sx_capture *c, sx_frame *f)
{
    if (c->err)
        return -1;
    int r = c->format == SX_CAP_PCAPNG ? pcapng_next(c, f) : pcap_next(c, f);
    if (r == 1)
        c->frames++;
    return r;
}

/* sx_cap_next with a pcap record that is wholly held read inline (the batch
 * loops below); anything else goes the long way */
static inline int cap_next(sx_capture *c, sx_frame *f)
{
    if (c->format == SX_CAP_PCAP && !c->err) {
        size_t avail = c->len - c->off;
        if (avail >= 16) {
            const uint8_t *p = c->base + c->off;
            uint32_t incl = rd32(c, p + 8);
            if (incl <= SX_CAP_MAX_FRAME && incl <= avail - 16) {
                size_t ahead = c->off + PREFETCH_AHEAD;
                if (ahead > c->len)
                    ahead = c->len;
                while (c->pf < ahead) {
                    __builtin_prefetch(c->base + c->pf, 0, 0);
                    c->pf += CACHE_LINE;
                }
                pcap_take(c, f, p, incl);
                c->frames++;
                return 1;
            }
        }
    }
    return sx_cap_next(c, f);
}

int sx_cap_classify(const sx_cfg *cfg, sx_capture *c, uint64_t max_frames, uint64_t *counts,
                    uint32_t **codes, size_t *codes_cap)
{
    sx_frame f;
    sx_verdict v;
    sx_cache4 cache;
    uint64_t done = 0;
    if (codes && cfg->nvals > SX_MAX_VALUES)
        return -3;
    sx_cache_init(&cache);
    for (;;) {
        if (max_frames && done == max_frames)
            return 1;
        int r = cap_next(c, &f);
        if (r <= 0)
            return r;
        sx_classify_cached(cfg, &cache, f.data, f.caplen, f.linktype, &v);
        counts[sx_count_index(cfg, &v)]++;
        if (codes) {
            size_t k = (size_t)(c->frames - 1);
            if (k >= *codes_cap) {
                /* frames before this call may have been counted without codes:
                 * grow until index k fits, not by one doubling */
                size_t cap = *codes_cap ? *codes_cap : 4096;
                while (cap <= k) {
                    if (cap > SIZE_MAX / 2 / sizeof **codes)
                        return -2;
                    cap *= 2;
                }
                uint32_t *n = realloc(*codes, cap * sizeof **codes);
                if (!n)
                    return -2;
                *codes = n;
                *codes_cap = cap;
            }
            (*codes)[k] = sx_code(&v);
        }
        done++;
    }
}

int sx_cap_classify_into(const sx_cfg *cfg, sx_capture *c, uint64_t *counts, uint32_t *out,
                         size_t out_cap, size_t *nout)
{
    sx_frame f;
    sx_verdict v;
    sx_cache4 cache;
    size_t n = 0;
    sx_cache_init(&cache);
    *nout = 0;
    while (n < out_cap) {
        int r = cap_next(c, &f);
        if (r <= 0) {
            *nout = n;
            return r;
        }
        sx_classify_cached(cfg, &cache, f.data, f.caplen, f.linktype, &v);
        counts[sx_count_index(cfg, &v)]++;
        out[n++] = sx_code(&v);
    }
    *nout = n;
    return 1;
}

int sx_flowrun_init(sx_flowrun *fr, uint64_t max_flows, uint64_t max_anns, uint64_t window)
{
    memset(fr, 0, sizeof *fr);
    if (window < 1)
        window = 1;
    if (sx_flows_init(&fr->flows, max_flows, max_anns, window) < 0)
        return -1;
    uint64_t ring = 1;
    while (ring < window)
        ring <<= 1;
    fr->ring_mask = ring - 1;
    fr->ring = malloc((size_t)ring * sizeof *fr->ring);
    if (!fr->ring) {
        sx_flows_free(&fr->flows);
        return -1;
    }
    sx_cache_init(&fr->cache);
    return 0;
}

void sx_flowrun_free(sx_flowrun *fr)
{
    sx_flows_free(&fr->flows);
    free(fr->ring);
    fr->ring = NULL;
}

static inline size_t count_index_code(const sx_cfg *cfg, uint32_t code)
{
    size_t slot = 0;
    int32_t m = (int32_t)(code >> 8) - 1;
    if (m >= 0 && (size_t)m < cfg->nvals)
        slot = (size_t)cfg->val_edge[m] + 1;
    return ((size_t)(code & 7) * 2 + ((code >> 3) & 1)) * (cfg->nedges + 1) + slot;
}

/* counts[] of final codes; runs of one code (a stream of untrusted RTP) reuse the index */
typedef struct {
    uint32_t code;
    size_t idx;
} code_memo;

static inline void count_code(const sx_cfg *cfg, uint64_t *counts, code_memo *mo, uint32_t code)
{
    if (code != mo->code) {
        mo->code = code;
        mo->idx = count_index_code(cfg, code);
    }
    counts[mo->idx]++;
}

int sx_cap_classify_flows(const sx_cfg *cfg, sx_capture *c, sx_flowrun *fr, uint64_t max_frames,
                          uint64_t *counts, uint32_t *out, size_t out_cap, size_t *nout)
{
    sx_frame f;
    sx_verdict v;
    sx_relabel rl;
    uint64_t done = 0;
    uint64_t w = fr->flows.window, m = fr->ring_mask;
    uint32_t *ring = fr->ring;
    size_t no = 0;
    code_memo mo = {0, count_index_code(cfg, 0)};
    *nout = 0;
    if (fr->fed == 0 && !fr->at_end)
        fr->direct = out == NULL;
    if (fr->direct) {
        if (out)
            return -3;
        for (;;) {
            if (fr->at_end)
                return 0;
            if (max_frames && done == max_frames)
                return 1;
            int r = cap_next(c, &f);
            if (r < 0)
                return -1;
            if (r == 0) {
                fr->at_end = 1;
                continue;
            }
            uint32_t code;
            if (sx_flow_fast(cfg, &fr->cache, &fr->flows, f.data, f.caplen, f.linktype, &code,
                             NULL)) {
                count_code(cfg, counts, &mo, code);
                fr->fed++;
                fr->emitted++;
                done++;
                continue;
            }
            sx_flow_classify_general(cfg, &fr->cache, &fr->flows, f.data, f.caplen, f.linktype,
                                     &v, &rl);
            count_code(cfg, counts, &mo, sx_code(&v));
            for (uint32_t i = 0; i < rl.n; i++) {
                counts[count_index_code(cfg, rl.code[i])]--;
                counts[count_index_code(cfg, sx_relabel_code(cfg, rl.code[i], v.sport))]++;
            }
            fr->fed++;
            fr->emitted++;
            done++;
        }
    }
    for (;;) {
        /* at the end: emit everything left */
        if (fr->at_end) {
            while (fr->emitted < fr->fed) {
                if (out && no == out_cap) {
                    *nout = no;
                    return 1;
                }
                uint32_t code = ring[fr->emitted & m];
                count_code(cfg, counts, &mo, code);
                if (out)
                    out[no++] = code;
                fr->emitted++;
            }
            *nout = no;
            return 0;
        }
        /* the oldest code is final once the window is full */
        if (fr->fed - fr->emitted >= w) {
            if (out && no == out_cap) {
                *nout = no;
                return 1;
            }
            uint32_t code = ring[fr->emitted & m];
            count_code(cfg, counts, &mo, code);
            if (out)
                out[no++] = code;
            fr->emitted++;
        }
        if (max_frames && done == max_frames) {
            *nout = no;
            return 1;
        }
        int r = cap_next(c, &f);
        if (r < 0) {
            *nout = no;
            return -1;
        }
        if (r == 0) {
            fr->at_end = 1;
            continue;
        }
        uint32_t code;
        if (sx_flow_fast(cfg, &fr->cache, &fr->flows, f.data, f.caplen, f.linktype, &code, NULL)) {
            ring[fr->fed & m] = code;
            fr->fed++;
            done++;
            continue;
        }
        sx_flow_classify_general(cfg, &fr->cache, &fr->flows, f.data, f.caplen, f.linktype, &v,
                                 &rl);
        ring[fr->fed & m] = sx_code(&v);
        for (uint32_t i = 0; i < rl.n; i++) {
            uint32_t *slot = &ring[rl.frame[i] & m];
            *slot = sx_relabel_code(cfg, *slot, v.sport);
        }
        fr->fed++;
        done++;
    }
}
