/* pcap / pcapng readers and the batch loop. See capture.h. */
#include "capture.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static uint32_t rd32(const sx_capture *c, const uint8_t *p)
{
    if (c->swapped)
        return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
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
    c->err_off = off;
    c->err_val = val;
    return -1;
}

/* little-endian reading of the magic numbers */
static uint32_t le32(const uint8_t *p)
{
    return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
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

int sx_cap_open(sx_capture *c, const uint8_t *buf, size_t len)
{
    memset(c, 0, sizeof *c);
    c->base = buf;
    c->len = len;
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

static int pcap_next(sx_capture *c, sx_frame *f)
{
    if (c->off == c->len)
        return 0;
    if (c->len - c->off < 16)
        return fail(c, "truncated pcap record header", c->off, c->len - c->off);
    const uint8_t *p = c->base + c->off;
    uint32_t incl = rd32(c, p + 8);
    if (incl > SX_CAP_MAX_FRAME)
        return fail(c, "pcap record length over the limit of 16 MiB", c->off + 8, incl);
    if (incl > c->len - c->off - 16)
        return fail(c, "truncated pcap record (captured length past the end of the file)",
                    c->off + 8, incl);
    f->data = p + 16;
    f->caplen = incl;
    f->origlen = rd32(c, p + 12);
    f->linktype = c->linktype;
    f->iface = 0;
    c->off += 16 + (size_t)incl;
    return 1;
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
        size_t off = c->off;
        if (off == c->len)
            return 0;
        if (c->len - off < 12)
            return fail(c, "truncated pcapng block header", off, c->len - off);
        const uint8_t *p = c->base + off;
        uint32_t type = le32(p);
        if (type == PCAPNG_SHB) {
            if (pcapng_shb(c, off) < 0)
                return -1;
        }
        uint32_t blen = rd32(c, p + 4);
        if (blen < 12 || (blen & 3))
            return fail(c, "bad pcapng block length (under 12 or not a multiple of 4)", off + 4,
                        blen);
        if (blen > c->len - off)
            return fail(c, "truncated pcapng block (length past the end of the file)", off + 4,
                        blen);
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
        int r = sx_cap_next(c, &f);
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

int sx_map_file(const char *path, const uint8_t **base, size_t *len)
{
    *base = NULL;
    *len = 0;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below) */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        return -1;
    }
    if (st.st_size == 0) {
        close(fd);
        return 0;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) {
        errno = e;
        return -1;
    }
    madvise(m, (size_t)st.st_size, MADV_SEQUENTIAL);
    *base = m;
    *len = (size_t)st.st_size;
    return 0;
}

void sx_unmap_file(const uint8_t *base, size_t len)
{
    if (base && len)
        munmap((void *)(uintptr_t)base, len);
}
