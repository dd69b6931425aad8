/* pcap and pcapng readers over a capture held in memory (a memory-mapped file
 * or a buffer), plus the batch classifier loop (plain C, no Python.h).
 *
 * pcap: both byte orders, microsecond and nanosecond magic.
 * pcapng: every section (byte order per section), several interfaces with a
 * link type and timestamp resolution each; Enhanced, Simple and obsolete
 * Packet Blocks carry frames, every other block is skipped.
 * Timestamps are not decoded (the classifier does not need them).
 * Errors stop the walk with a message and the byte offset of the bad record.
 */
#ifndef SIPEDGE_CAPTURE_H
#define SIPEDGE_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

#include "classify.h"
#include "flow.h"

#define SX_CAP_MAX_IF 1024
#define SX_CAP_MAX_FRAME (16u * 1024u * 1024u)
/* a pcapng block holds a frame of at most 16 MiB plus 64 KiB of header and options */
#define SX_CAP_MAX_BLOCK (SX_CAP_MAX_FRAME + 65536u)

enum { SX_CAP_PCAP = 1, SX_CAP_PCAPNG = 2 };

typedef struct {
    const uint8_t *data;
    uint32_t caplen;
    uint32_t origlen;
    uint32_t linktype;
    uint32_t iface;
} sx_frame;

typedef struct {
    const uint8_t *base; /* the bytes held: the whole capture, or a window of a file */
    size_t len;          /* bytes at base */
    size_t off;          /* next record, relative to base */
    size_t pf;           /* bytes from base up to here are prefetched (memory mode) */
    uint64_t base_off;   /* file offset of base[0] (file mode) */
    int fd;              /* file mode: read() in chunks (a file that shrinks is an error, not SIGBUS) */
    int eof;             /* no more bytes will come (always 1 in memory mode) */
    uint8_t *buf;        /* file mode: the window buffer */
    size_t cap;
    int format;
    int swapped;
    /* pcap */
    uint32_t linktype;
    int nsec; /* pcap: nanosecond timestamps */
    /* pcapng: interfaces of the current section */
    size_t nif;
    uint32_t if_link[SX_CAP_MAX_IF];
    uint64_t frames;
    /* error */
    const char *err;
    size_t err_off;
    uint64_t err_val;
} sx_capture;

/* 0 when the header is valid, else -1 with err/err_off set. */
int sx_cap_open(sx_capture *c, const uint8_t *buf, size_t len);

/* File mode: read an open regular file from its start in chunks (window of
 * 256 KiB, grown to the largest record). 0 ok; -1 with err/err_off set (then
 * call sx_cap_close too). The fd stays the caller's. */
int sx_cap_open_fd(sx_capture *c, int fd);
void sx_cap_close(sx_capture *c);

/* Bytes of the capture consumed so far (file offset of the next record). */
static inline uint64_t sx_cap_pos(const sx_capture *c)
{
    return c->base_off + c->off;
}

/* 1: *f holds the next frame; 0: end of capture; -1: error (err/err_off). */
int sx_cap_next(sx_capture *c, sx_frame *f);

/* Classify up to max_frames frames (0 = all). counts has
 * SX_NKINDS * 2 * (cfg->nedges + 1) counters (see sx_count_index). When
 * codes is not NULL, frame k's code is stored at (*codes)[k] for k counted
 * from the start of the capture, growing *codes with realloc (*codes_cap is
 * its capacity in entries; free() it when done) as far as needed, also when
 * earlier calls ran without codes. Returns 1 when frames remain, 0 at the end,
 * -1 on a capture error, -2 when out of memory, -3 (nothing done) when codes
 * are asked for and cfg->nvals > SX_MAX_VALUES (a code cannot name the entry). */
int sx_cap_classify(const sx_cfg *cfg, sx_capture *c, uint64_t max_frames, uint64_t *counts,
                    uint32_t **codes, size_t *codes_cap);

/* Stateless, up to out_cap codes into out (*nout stored): 1 frames remain,
 * 0 end, -1 capture error. */
int sx_cap_classify_into(const sx_cfg *cfg, sx_capture *c, uint64_t *counts, uint32_t *out,
                         size_t out_cap, size_t *nout);

/* Flow mode over a capture: codes come out in capture order, each once no
 * later frame can re-label it (window frames later, or at the end). A run
 * holds the window's codes. */
typedef struct {
    sx_flows flows;
    sx_cache4 cache;
    uint32_t *ring;  /* a power of two >= window entries */
    uint64_t ring_mask;
    uint64_t fed;     /* frames classified */
    uint64_t emitted; /* frames whose code is final */
    int at_end;
    int direct; /* 1: counting only (no codes wanted), no window: see sx_cap_classify_flows */
} sx_flowrun;

int sx_flowrun_init(sx_flowrun *fr, uint64_t max_flows, uint64_t max_anns, uint64_t window);
void sx_flowrun_free(sx_flowrun *fr);

/* Run until out holds out_cap final codes (out may be NULL: count only, no
 * limit), max_frames more frames were read (0: no limit), or the end.
 * *nout: codes stored. Returns 1 when frames remain, 0 at the end (all
 * emitted), -1 on a capture error, -3 (nothing done) when out is given to a
 * run whose first call had none. counts as in sx_cap_classify.
 * A run whose first call passes out == NULL only counts: each frame is
 * counted when it is classified and a re-labelled frame's count moves from its
 * old code to its new one, with no window of codes held (same counts, less
 * memory traffic); such a run must pass out == NULL on every call. */
int sx_cap_classify_flows(const sx_cfg *cfg, sx_capture *c, sx_flowrun *fr, uint64_t max_frames,
                          uint64_t *counts, uint32_t *out, size_t out_cap, size_t *nout);

#endif
