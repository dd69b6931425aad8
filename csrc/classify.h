/* Frame classifier: what a captured frame is (SIP, RTP, RTCP, STUN, TLS or
 * other) and whether its source is trusted by an allowlist (plain C, no
 * Python.h). The rules are written out in sipedge/_py/classify.py, the
 * pure-Python twin that gives the same answer for every input.
 *
 * Every read is bounds-checked against the frame length: truncated, oversized
 * or malformed frames give kind OTHER (with SX_F_BAD when a header is cut or
 * inconsistent), never an out-of-bounds read.
 */
#ifndef SIPEDGE_CLASSIFY_H
#define SIPEDGE_CLASSIFY_H

#include <stddef.h>
#include <stdint.h>

#include "prefix.h"

/* kinds */
enum {
    SX_K_OTHER = 0,
    SX_K_SIP = 1,
    SX_K_RTP = 2,
    SX_K_RTCP = 3,
    SX_K_STUN = 4,
    SX_K_TLS = 5,
    SX_K_UDPTL = 6, /* T.38 fax over UDPTL: flow mode only (announced by SDP) */
    SX_NKINDS = 7
};

/* flags */
#define SX_F_FRAG_FIRST 1u /* first fragment of a fragmented IP packet */
#define SX_F_FRAG_LATER 2u /* a later fragment: no transport header */
#define SX_F_NOT_IP 4u     /* not an IPv4/IPv6 packet (ARP, STP, unknown link type) */
#define SX_F_BAD 8u        /* a header is truncated or inconsistent */

/* link types (pcap LINKTYPE_ values) */
#define SX_LT_NULL 0u
#define SX_LT_ETHERNET 1u
#define SX_LT_RAW 101u
#define SX_LT_LOOP 108u
#define SX_LT_SLL 113u
#define SX_LT_IPV4 228u
#define SX_LT_IPV6 229u
#define SX_LT_SLL2 276u

/* transport protocol of a port range */
#define SX_P_UDP 17u
#define SX_P_TCP 6u

typedef struct {
    uint8_t kind;
    uint8_t flags;
    uint8_t ipver; /* 0, 4 or 6 */
    uint8_t trusted;
    int16_t proto; /* IP protocol number, -1 when not IP */
    uint16_t sport, dport;
    int32_t match; /* allowlist value index of the source, -1 for none */
    uint8_t src[16], dst[16]; /* IPv4 in the first 4 bytes, network order */
    uint32_t l4off, l4end; /* the transport header's offset in the frame and the end of the
                              packet (0, 0 when none was reached): for the flow mode */
} sx_verdict;

typedef struct {
    uint16_t lo, hi;
    uint8_t proto; /* SX_P_UDP or SX_P_TCP */
} sx_portrange;

typedef struct {
    uint32_t kinds; /* bit (1 << kind) set for every kind this role may send */
    size_t nports;
    const sx_portrange *ports;
} sx_role;

/* What the classifier matches sources against. table may be NULL (nothing is
 * trusted). val_role/val_edge map a table value index to a role index
 * (< nroles) and an edge index (< nedges). */
typedef struct {
    const sx_ptable *table;
    size_t nvals;
    const uint16_t *val_role;
    const uint16_t *val_edge;
    size_t nroles;
    const sx_role *roles;
    size_t nedges;
} sx_cfg;

/* Classify one frame of the given link type. */
void sx_classify(const sx_cfg *cfg, const uint8_t *frame, size_t len, uint32_t linktype,
                 sx_verdict *v);

/* A small direct-mapped cache of IPv4 allowlist lookups for batch runs (a
 * capture has few distinct sources); it never changes a result. */
#define SX_CACHE_SLOTS 1024 /* 8 KiB: a mix of 500 calls hit 256 slots only 87% of the time */
typedef struct {
    struct {
        uint32_t addr;
        int32_t val; /* -2: empty */
    } slot[SX_CACHE_SLOTS]; /* address and value side by side: one cache line per lookup */
} sx_cache4;

void sx_cache_init(sx_cache4 *c);

/* The allowlist value index of IPv4 source a (network byte order as a number),
 * through the cache: what sx_pt_lookup4 says. */
static inline int32_t sx_cache_lookup4(const sx_ptable *table, sx_cache4 *cache, uint32_t a)
{
    size_t slot = (size_t)((a * 2654435761u) >> 22) & (SX_CACHE_SLOTS - 1);
    if (cache->slot[slot].val != -2 && cache->slot[slot].addr == a)
        return cache->slot[slot].val;
    int32_t m = sx_pt_lookup4(table, a);
    cache->slot[slot].addr = a;
    cache->slot[slot].val = m;
    return m;
}
void sx_classify_cached(const sx_cfg *cfg, sx_cache4 *cache, const uint8_t *frame, size_t len,
                        uint32_t linktype, sx_verdict *v);

/* Most allowlist values a configuration may have when codes are made: a code
 * keeps (match + 1) in its top 24 bits. */
#define SX_MAX_VALUES 0xFFFFFFu

/* The compact per-frame code: kind | trusted << 3 | flags << 4 | (match + 1) << 8
 * (exact for cfg->nvals <= SX_MAX_VALUES; sx_cap_classify refuses more). */
static inline uint32_t sx_code(const sx_verdict *v)
{
    return (uint32_t)v->kind | ((uint32_t)v->trusted << 3) | ((uint32_t)v->flags << 4)
           | ((uint32_t)(v->match + 1) << 8);
}

/* Index into a counts array of SX_NKINDS * 2 * (nedges + 1) counters:
 * ((kind * 2 + trusted) * (nedges + 1) + edge slot), slot 0 = no allowlist match. */
static inline size_t sx_count_index(const sx_cfg *cfg, const sx_verdict *v)
{
    size_t slot = 0;
    if (v->match >= 0 && (size_t)v->match < cfg->nvals)
        slot = (size_t)cfg->val_edge[v->match] + 1;
    return ((size_t)v->kind * 2 + v->trusted) * (cfg->nedges + 1) + slot;
}

/* Whether a source with allowlist value index m may send this kind from sport. */
int sx_trusted_as(const sx_cfg *cfg, int32_t m, unsigned kind, int proto, uint16_t sport);

/* Lower-level checks, exposed for tests and the fuzz target. */
int sx_is_sip(const uint8_t *p, size_t len);
int sx_is_stun(const uint8_t *p, size_t len);
int sx_is_rtcp(const uint8_t *p, size_t len);
int sx_is_rtp(const uint8_t *p, size_t len);
int sx_is_tls(const uint8_t *p, size_t len);
int sx_is_ws_sip(const uint8_t *p, size_t len);
int sx_media_ports(uint16_t sport, uint16_t dport);

#endif
