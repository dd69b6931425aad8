/* The flow table's hash and lookup, and the flow mode's per-frame fast path,
 * inline for the capture loops (plain C). flow.c and capture.c include it;
 * the rules the fast path shortcuts are those of flow.c
 * (sx_flow_classify_general) and of the twin, sipedge/_py/flow.py. */
#ifndef SIPEDGE_FLOW_INLINE_H
#define SIPEDGE_FLOW_INLINE_H

#include <string.h>

#include "classify.h"
#include "flow.h"

/* FNV-1a over 32-bit words, then a finaliser (the twin computes the same) */
static inline uint32_t sx_hmix(uint32_t h, uint32_t w)
{
    return (h ^ w) * 0x01000193u;
}

static inline uint32_t sx_hfin(uint32_t h)
{
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    return h;
}

static inline uint32_t sx_ld32(const uint8_t *p)
{
    uint32_t x;
    memcpy(&x, p, 4);
    return x;
}

static inline uint32_t sx_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint32_t sx_haddr(uint32_t h, uint8_t ipver, const uint8_t *a)
{
    h = sx_hmix(h, sx_be32(a));
    if (ipver == 6) {
        h = sx_hmix(h, sx_be32(a + 4));
        h = sx_hmix(h, sx_be32(a + 8));
        h = sx_hmix(h, sx_be32(a + 12));
    }
    return h;
}

/* The hash of a flow key (addresses: 4 bytes for IPv4, 16 for IPv6). */
static inline uint32_t sx_flow_hash(uint8_t ipver, uint8_t proto, uint16_t sport, uint16_t dport,
                                    const uint8_t *src, const uint8_t *dst)
{
    uint32_t h = 0x811C9DC5u;
    h = sx_hmix(h, ((uint32_t)ipver << 8) | proto);
    h = sx_hmix(h, ((uint32_t)sport << 16) | dport);
    h = sx_haddr(h, ipver, src);
    h = sx_haddr(h, ipver, dst);
    return sx_hfin(h);
}

static inline uint16_t sx_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline int sx_addr_eq(uint8_t ipver, const uint8_t *a, const uint8_t *b)
{
    if (ipver != 6)
        return sx_ld32(a) == sx_ld32(b);
    return sx_ld32(a) == sx_ld32(b) && sx_ld32(a + 4) == sx_ld32(b + 4)
           && sx_ld32(a + 8) == sx_ld32(b + 8) && sx_ld32(a + 12) == sx_ld32(b + 12);
}

/* The flow of this key in the set of hash h when it is there (its LRU stamp
 * renewed), else NULL. A way never used has ipver 0 and matches no key. */
static inline sx_flow *sx_flow_find(sx_flows *t, uint32_t h, uint8_t ipver, uint8_t proto,
                                    uint16_t sport, uint16_t dport, const uint8_t *src,
                                    const uint8_t *dst)
{
    sx_flow *set = t->flows + (size_t)(h & (t->nsets - 1)) * SX_FLOW_WAYS;
    for (unsigned i = 0; i < SX_FLOW_WAYS; i++) {
        sx_flow *e = &set[i];
        if (e->sport == sport && e->dport == dport && e->ipver == ipver && e->proto == proto
            && sx_addr_eq(ipver, e->src, src) && sx_addr_eq(ipver, e->dst, dst)) {
            e->last = t->frame;
            return e;
        }
    }
    return NULL;
}

/* The announcement of a flow: its destination's, else its source's (looked
 * up again only when an announcement came since the flow last asked). */
static inline uint8_t sx_flow_ann(sx_flows *t, sx_flow *fl)
{
    if (fl->ann_epoch != t->epoch)
        return sx_flow_ann_refresh(t, fl);
    return fl->ann;
}

/* The common frame of a call in progress, decided from its flow first: an
 * untunnelled Ethernet + IPv4 (no options, not fragmented, the IP length
 * within the frame) UDP datagram with a payload whose first byte says version
 * 2 (RTP or RTCP: never SIP, STUN or MEGACO, which udp_flow handles apart), on
 * a flow already in the table that SDP announced as RTP, RTCP or UDPTL. For
 * such a frame the general path (sx_classify_cached, then udp_flow) comes to
 * this same verdict:
 * - kind: the per-frame rules say RTCP when the payload is RTCP, else RTP or
 *   other; udp_flow then makes an announced RTP flow's frame RTCP when the
 *   payload is RTCP, else RTP with 12 bytes or more (which the per-frame RTP
 *   test needs first too), else other; an announced RTCP flow's frame RTCP or
 *   other by the RTCP test alone; an announced UDPTL flow's frame UDPTL (it
 *   has a payload);
 * - no flag; the source's allowlist match by the same lookup; the trust of
 *   the final kind (what set_kind leaves);
 * - the flow is found and its announcement read as flow_get and flow_ann do,
 *   with the same side effects (LRU stamp, cached announcement), no flow is
 *   added and nothing is re-labelled.
 * 1: the frame is done (counted in t->frame), *code is its code and, when v
 * is not NULL, *v its verdict. 0: the general path must classify it; what
 * this did (a flow's LRU stamp, its cached announcement) the general path
 * does the same way for such a frame. SX_NO_FLOW_FAST turns it off (tests
 * compare the two builds). */
__attribute__((always_inline)) static inline int sx_flow_fast(const sx_cfg *cfg,
                                                             sx_cache4 *cache, sx_flows *t,
                                                             const uint8_t *f, size_t len,
                                                             uint32_t linktype, uint32_t *code,
                                                             sx_verdict *v)
{
#ifdef SX_NO_FLOW_FAST
    (void)cfg, (void)cache, (void)t, (void)f, (void)len, (void)linktype, (void)code, (void)v;
    return 0;
#else
    if (t->epoch == 0 || linktype != SX_LT_ETHERNET || len < 14 + 20 + 8 + 1
        || sx_be16(f + 12) != 0x0800)
        return 0;
    const uint8_t *ip = f + 14;
    if (ip[0] != 0x45 || ip[9] != 17 || (sx_be16(ip + 6) & 0x3fff))
        return 0;
    size_t tot = sx_be16(ip + 2);
    if (tot < 20 + 8 + 1 || tot > len - 14)
        return 0;
    const uint8_t *u = ip + 20;
    size_t plen = tot - 28, ulen = sx_be16(u + 4);
    if (ulen >= 8 && ulen - 8 < plen)
        plen = ulen - 8;
    const uint8_t *p = u + 8;
    if (plen == 0 || (p[0] >> 6) != 2)
        return 0;
    uint16_t sport = sx_be16(u), dport = sx_be16(u + 2);
    uint32_t h = sx_flow_hash(4, 17, sport, dport, ip + 12, ip + 16);
    sx_flow *fl = sx_flow_find(t, h, 4, 17, sport, dport, ip + 12, ip + 16);
    if (!fl)
        return 0;
    /* RTCP needs 8 bytes and a packet type of 192..213 in the second byte
     * (RTP with the marker bit can have one too: then the full test decides) */
    int rtcp = plen >= 8 && (uint8_t)(p[1] - 192u) <= 213u - 192u && sx_is_rtcp(p, plen);
    unsigned kind;
    switch (sx_flow_ann(t, fl)) {
    case SX_A_RTP:
        kind = rtcp ? SX_K_RTCP : plen >= 12 ? SX_K_RTP : SX_K_OTHER;
        break;
    case SX_A_RTCP:
        kind = rtcp ? SX_K_RTCP : SX_K_OTHER;
        break;
    case SX_A_UDPTL:
        kind = SX_K_UDPTL;
        break;
    default:
        return 0; /* unannounced: RTP is confirmed by progression, the general way */
    }
    int32_t match = -1;
    unsigned trusted = 0;
    if (cfg && cfg->table) {
        uint32_t a = sx_be32(ip + 12);
        int32_t m = cache ? sx_cache_lookup4(cfg->table, cache, a) : sx_pt_lookup4(cfg->table, a);
        if (m >= 0 && (size_t)m < cfg->nvals) {
            match = m;
            trusted = (unsigned)sx_trusted_as(cfg, m, kind, 17, sport);
        }
    }
    *code = kind | (trusted << 3) | ((uint32_t)(match + 1) << 8);
    if (v) {
        memset(v, 0, sizeof *v);
        v->kind = (uint8_t)kind;
        v->trusted = (uint8_t)trusted;
        v->ipver = 4;
        v->proto = 17;
        v->sport = sport;
        v->dport = dport;
        v->match = match;
        memcpy(v->src, ip + 12, 4);
        memcpy(v->dst, ip + 16, 4);
        v->l4off = 14 + 20;
        v->l4end = (uint32_t)(14 + tot);
    }
    t->frame++;
    return 1;
#endif
}

#endif
