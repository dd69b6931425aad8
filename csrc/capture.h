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

#define SX_CAP_MAX_IF 1024
#define SX_CAP_MAX_FRAME (16u * 1024u * 1024u)

enum { SX_CAP_PCAP = 1, SX_CAP_PCAPNG = 2 };

typedef struct {
    const uint8_t *data;
    uint32_t caplen;
    uint32_t origlen;
    uint32_t linktype;
    uint32_t iface;
} sx_frame;

typedef struct {
    const uint8_t *base;
    size_t len;
    size_t off; /* next record */
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

/* Map a whole file read-only. 0 ok; else -1 and errno is set (EISDIR for a
 * directory, EINVAL for anything else that is not a regular file). *len may be 0
 * (then *base is NULL). sx_unmap_file(base, len) releases it. */
int sx_map_file(const char *path, const uint8_t **base, size_t *len);
void sx_unmap_file(const uint8_t *base, size_t len);

#endif
