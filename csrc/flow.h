/* Flow mode of the classifier (plain C, no Python.h): a bounded flow table
 * keyed by the directional 5-tuple and a bounded table of the media
 * addresses that SDP announced, so that later datagrams get the kind the SDP
 * set up (RTP, RTCP, UDPTL for T.38 fax) and RTP on flows no SDP announced
 * is confirmed by sequence progression. The rules are written out in
 * sipedge/_py/flow.py (the twin) and docs/classify.md.
 *
 * Memory is fixed at init: max_flows flow entries and max_anns announcement
 * entries, each table 4-way set-associative; a new key takes a free way of its
 * set or evicts the way seen least recently (lowest index on a tie).
 */
#ifndef SIPEDGE_FLOW_H
#define SIPEDGE_FLOW_H

#include <stddef.h>
#include <stdint.h>

#include "classify.h"

#define SX_FLOW_WAYS 4u
/* RTP on an unannounced flow: this many RTP-looking packets in a row with one
 * SSRC, the sequence number advancing by 1..SX_RTP_MAX_STEP and the timestamp
 * not going back confirm it */
#define SX_RTP_CONFIRM 3u
#define SX_RTP_MAX_STEP 64u

enum { SX_A_NONE = 0, SX_A_RTP = 1, SX_A_RTCP = 2, SX_A_UDPTL = 3 };
enum { SX_R_NONE = 0, SX_R_CAND = 1, SX_R_CONFIRMED = 2 };

typedef struct {
    uint8_t used, ipver, proto;
    uint8_t ann;       /* cached announcement of this flow (valid at ann_epoch) */
    uint16_t sport, dport;
    uint8_t src[16], dst[16];
    uint64_t last;      /* frame number when last seen (LRU) */
    uint64_t ann_epoch; /* announcement-table epoch of the cached ann */
    /* RTP confirmation */
    uint8_t rtp_state, npend;
    uint16_t seq;
    uint32_t ssrc, ts;
    uint64_t pend[SX_RTP_CONFIRM - 1]; /* frames waiting to be re-labelled rtp */
    uint32_t pend_code[SX_RTP_CONFIRM - 1]; /* and their codes */
    /* TCP and SCTP */
    uint8_t tcp_have, sctp_pending;
    uint32_t tcp_end; /* sequence number after the newest byte seen */
    uint32_t need;    /* bytes still to come of a SIP message split over segments */
} sx_flow;

typedef struct {
    uint8_t used, ipver, kind;
    uint16_t port;
    uint8_t addr[16];
    uint64_t last; /* frame number of the announcement (LRU) */
} sx_ann;

typedef struct {
    uint32_t nsets, ann_nsets; /* powers of two */
    sx_flow *flows;
    sx_ann *anns;
    uint64_t frame;   /* frames fed so far */
    uint64_t epoch;   /* bumped on every announcement */
    uint64_t window;  /* a frame is re-labelled only while fewer frames than this followed it */
    uint64_t evicted; /* flows evicted so far */
    size_t flows_mapped, anns_mapped; /* bytes mapped (0: allocated with calloc) */
} sx_flows;

/* frames (by number, 0-based) that the current frame confirmed as RTP, and
 * the codes they were given (so a run that only counts can move them) */
typedef struct {
    uint32_t n;
    uint64_t frame[SX_RTP_CONFIRM - 1];
    uint32_t code[SX_RTP_CONFIRM - 1];
} sx_relabel;

/* max_flows, max_anns: rounded up to a power of two >= 4; window >= 1.
 * 0 ok, -1 out of memory. */
int sx_flows_init(sx_flows *t, uint64_t max_flows, uint64_t max_anns, uint64_t window);
void sx_flows_free(sx_flows *t);

/* Classify the next frame in flow mode (frame number t->frame, then counted):
 * the fast path of flow_inline.h when it applies, else the general one. */
void sx_flow_classify(const sx_cfg *cfg, sx_cache4 *cache, sx_flows *t, const uint8_t *f,
                      size_t len, uint32_t linktype, sx_verdict *v, sx_relabel *r);
/* The general path alone (for a caller that tried sx_flow_fast already). */
void sx_flow_classify_general(const sx_cfg *cfg, sx_cache4 *cache, sx_flows *t,
                              const uint8_t *f, size_t len, uint32_t linktype, sx_verdict *v,
                              sx_relabel *r);

/* A flow's announcement looked up again (the table changed since it last
 * asked): stored in the flow with the current epoch, and returned. */
uint8_t sx_flow_ann_refresh(sx_flows *t, sx_flow *fl);

/* The code of an earlier frame re-labelled rtp: kind and trust redone. */
uint32_t sx_relabel_code(const sx_cfg *cfg, uint32_t code, uint16_t sport);

/* SDP lines (c=, m=, a=rtcp, a=rtcp-mux) of text p[0..n) into the table. */
void sx_sdp_scan(sx_flows *t, const uint8_t *p, size_t n);

/* Length of the SIP message starting at p (headers + Content-Length), or 0
 * when the end of the headers is not within n bytes. *hl: the header length. */
size_t sx_sip_msg_len(const uint8_t *p, size_t n, size_t *hl);

/* Strict RTCP (RFC 3550 A.2): the first packet SR or RR without padding,
 * the lengths adding up exactly to the datagram. */
int sx_is_rtcp_strict(const uint8_t *p, size_t len);

#endif
