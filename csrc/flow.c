/* Flow mode of the classifier. See flow.h; the twin is sipedge/_py/flow.py. */
#include "flow_inline.h"

#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

/* ------------------------------------------------------------------ tables */

static uint64_t pow2_at_least(uint64_t n)
{
    uint64_t p = 4;
    while (p < n && p < ((uint64_t)1 << 40))
        p <<= 1;
    return p;
}

/* A zeroed table of n entries. On Linux one of 2 MiB or more is mapped and
 * asks for transparent huge pages: a flow table's entries are reached at
 * random, and with 4 KiB pages nearly every lookup of a large table missed the
 * TLB (the default 65536 flows take 7 MiB). *mapped: bytes to munmap, or 0
 * when it came from calloc. */
static void *table_alloc(uint64_t n, size_t size, size_t *mapped)
{
    *mapped = 0;
    if (n > SIZE_MAX / size)
        return NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    size_t bytes = (size_t)n * size;
    if (bytes >= ((size_t)2 << 20)) {
        void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        (void)madvise(m, bytes, MADV_HUGEPAGE); /* a hint; 4 KiB pages work too */
        *mapped = bytes;
        return m;
    }
#endif
    return calloc((size_t)n, size);
}

static void table_free(void *p, size_t mapped)
{
#ifdef __linux__
    if (p && mapped) {
        munmap(p, mapped);
        return;
    }
#endif
    free(p);
}

int sx_flows_init(sx_flows *t, uint64_t max_flows, uint64_t max_anns, uint64_t window)
{
    memset(t, 0, sizeof *t);
    uint64_t nf = pow2_at_least(max_flows), na = pow2_at_least(max_anns);
    t->nsets = (uint32_t)(nf / SX_FLOW_WAYS);
    t->ann_nsets = (uint32_t)(na / SX_FLOW_WAYS);
    t->flows = table_alloc(nf, sizeof *t->flows, &t->flows_mapped);
    t->anns = table_alloc(na, sizeof *t->anns, &t->anns_mapped);
    t->window = window ? window : 1;
    if (!t->flows || !t->anns) {
        sx_flows_free(t);
        return -1;
    }
    return 0;
}

void sx_flows_free(sx_flows *t)
{
    table_free(t->flows, t->flows_mapped);
    table_free(t->anns, t->anns_mapped);
    t->flows = NULL;
    t->anns = NULL;
    t->flows_mapped = t->anns_mapped = 0;
}

static inline size_t alen(uint8_t ipver)
{
    return ipver == 6 ? 16 : 4;
}

static sx_flow *flow_get(sx_flows *t, const sx_verdict *v)
{
    uint32_t h = sx_flow_hash(v->ipver, (uint8_t)v->proto, v->sport, v->dport, v->src, v->dst);
    sx_flow *hit =
        sx_flow_find(t, h, v->ipver, (uint8_t)v->proto, v->sport, v->dport, v->src, v->dst);
    if (hit)
        return hit;
    sx_flow *set = t->flows + (size_t)(h & (t->nsets - 1)) * SX_FLOW_WAYS;
    /* a miss: the first free way, else the way seen least recently (lowest index on a tie) */
    sx_flow *victim = NULL;
    for (unsigned i = 0; i < SX_FLOW_WAYS; i++) {
        sx_flow *e = &set[i];
        if (!e->used) {
            victim = e;
            break;
        }
        if (!victim || e->last < victim->last)
            victim = e;
    }
    if (victim->used)
        t->evicted++;
    size_t al = alen(v->ipver);
    memset(victim, 0, sizeof *victim);
    victim->used = 1;
    victim->ipver = v->ipver;
    victim->proto = (uint8_t)v->proto;
    victim->sport = v->sport;
    victim->dport = v->dport;
    memcpy(victim->src, v->src, al);
    memcpy(victim->dst, v->dst, al);
    victim->last = t->frame;
    return victim;
}

static sx_ann *ann_set(const sx_flows *t, uint8_t ipver, const uint8_t *addr, uint16_t port)
{
    uint32_t h = 0x811C9DC5u;
    h = sx_hmix(h, ((uint32_t)ipver << 16) | port);
    h = sx_haddr(h, ipver, addr);
    h = sx_hfin(h);
    return t->anns + (size_t)(h & (t->ann_nsets - 1)) * SX_FLOW_WAYS;
}

static int ann_find(const sx_flows *t, uint8_t ipver, const uint8_t *addr, uint16_t port)
{
    sx_ann *set = ann_set(t, ipver, addr, port);
    for (unsigned i = 0; i < SX_FLOW_WAYS; i++) {
        sx_ann *e = &set[i];
        if (e->used && e->port == port && e->ipver == ipver && sx_addr_eq(ipver, e->addr, addr))
            return e->kind;
    }
    return SX_A_NONE;
}

static void announce(sx_flows *t, uint8_t ipver, const uint8_t *addr, uint16_t port, uint8_t kind)
{
    sx_ann *set = ann_set(t, ipver, addr, port);
    size_t al = alen(ipver);
    sx_ann *victim = NULL;
    t->epoch++;
    for (unsigned i = 0; i < SX_FLOW_WAYS; i++) {
        sx_ann *e = &set[i];
        if (!e->used) {
            if (!victim || victim->used)
                victim = e;
            continue;
        }
        if (e->ipver == ipver && e->port == port && memcmp(e->addr, addr, al) == 0) {
            e->kind = kind;
            e->last = t->frame;
            return;
        }
        if (!victim || (victim->used && e->last < victim->last))
            victim = e;
    }
    memset(victim, 0, sizeof *victim);
    victim->used = 1;
    victim->ipver = ipver;
    victim->kind = kind;
    victim->port = port;
    memcpy(victim->addr, addr, al);
    victim->last = t->frame;
}

uint8_t sx_flow_ann_refresh(sx_flows *t, sx_flow *fl)
{
    int k = ann_find(t, fl->ipver, fl->dst, fl->dport);
    if (k == SX_A_NONE)
        k = ann_find(t, fl->ipver, fl->src, fl->sport);
    fl->ann = (uint8_t)k;
    fl->ann_epoch = t->epoch;
    return fl->ann;
}

/* ------------------------------------------------------------------ SDP */

static int ci_has(const uint8_t *p, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    for (size_t i = 0; i + m <= n; i++) {
        size_t j = 0;
        for (; j < m; j++) {
            uint8_t c = p[i + j];
            if (c >= 'a' && c <= 'z')
                c = (uint8_t)(c - 32);
            if (c != (uint8_t)lit[j])
                break;
        }
        if (j == m)
            return 1;
    }
    return 0;
}

/* decimal 0..65535 of 1-5 digits at p[0..n); -1 otherwise; *used: digits read */
static long port_of(const uint8_t *p, size_t n, size_t *used)
{
    size_t i = 0;
    long x = 0;
    while (i < n && i < 6 && p[i] >= '0' && p[i] <= '9') {
        x = x * 10 + (p[i] - '0');
        i++;
    }
    *used = i;
    if (i == 0 || i > 5 || x > 65535)
        return -1;
    return x;
}

/* an IPv4 dotted quad that is the whole of p[0..n) */
static int parse_ip4(const uint8_t *p, size_t n, uint8_t *out)
{
    size_t i = 0;
    for (int k = 0; k < 4; k++) {
        if (k) {
            if (i >= n || p[i] != '.')
                return 0;
            i++;
        }
        size_t d = 0;
        unsigned x = 0;
        while (i < n && d < 3 && p[i] >= '0' && p[i] <= '9') {
            x = x * 10 + (unsigned)(p[i] - '0');
            i++;
            d++;
        }
        if (d == 0 || x > 255)
            return 0;
        out[k] = (uint8_t)x;
    }
    return i == n;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* IPv6 text (groups of 1-4 hex digits, at most one "::", no embedded IPv4) */
static int parse_ip6(const uint8_t *p, size_t n, uint8_t *out)
{
    uint16_t g[8];
    int ng = 0, gap = -1;
    size_t i = 0;
    if (n >= 2 && p[0] == ':' && p[1] == ':') {
        gap = 0;
        i = 2;
        if (i == n)
            goto done;
    } else if (n && p[0] == ':') {
        return 0;
    }
    for (;;) {
        size_t d = 0;
        unsigned x = 0;
        while (i < n && d < 4 && hexval(p[i]) >= 0) {
            x = (x << 4) | (unsigned)hexval(p[i]);
            i++;
            d++;
        }
        if (d == 0 || ng >= 8)
            return 0;
        g[ng++] = (uint16_t)x;
        if (i == n)
            break;
        if (p[i] != ':')
            return 0;
        i++;
        if (i < n && p[i] == ':') {
            if (gap >= 0)
                return 0;
            gap = ng;
            i++;
            if (i == n)
                break;
        } else if (i == n) {
            return 0;
        }
    }
done:
    if (gap < 0 ? ng != 8 : ng > 7)
        return 0;
    memset(out, 0, 16);
    int tail = gap < 0 ? 0 : ng - gap;
    for (int k = 0; k < ng; k++) {
        int pos = (gap < 0 || k < gap) ? k : 8 - tail + (k - gap);
        out[2 * pos] = (uint8_t)(g[k] >> 8);
        out[2 * pos + 1] = (uint8_t)g[k];
    }
    return 1;
}

typedef struct {
    uint8_t ipver;
    uint8_t addr[16];
} conn;

typedef struct {
    int active;
    uint8_t kind;
    uint16_t port;
    long rtcp_port; /* -1: port + 1 */
    int mux;
    conn c;
} media;

static void media_end(sx_flows *t, media *m, const conn *sess)
{
    if (!m->active)
        return;
    m->active = 0;
    const conn *c = m->c.ipver ? &m->c : sess;
    if (m->kind == SX_A_NONE || m->port == 0 || !c->ipver)
        return;
    announce(t, c->ipver, c->addr, m->port, m->kind);
    if (m->kind == SX_A_RTP && !m->mux) {
        long rp = m->rtcp_port >= 0 ? m->rtcp_port : (long)m->port + 1;
        if (rp > 0 && rp <= 65535)
            announce(t, c->ipver, c->addr, (uint16_t)rp, SX_A_RTCP);
    }
}

/* "c=IN IP4 addr[/ttl]" body (after "c="): 1 and *c set when valid */
static int parse_conn(const uint8_t *p, size_t n, conn *c)
{
    int ver;
    if (n >= 7 && memcmp(p, "IN IP4 ", 7) == 0)
        ver = 4;
    else if (n >= 7 && memcmp(p, "IN IP6 ", 7) == 0)
        ver = 6;
    else
        return 0;
    p += 7;
    n -= 7;
    size_t e = 0;
    while (e < n && p[e] != '/' && p[e] != ' ')
        e++;
    uint8_t a[16];
    if (ver == 4 ? !parse_ip4(p, e, a) : !parse_ip6(p, e, a))
        return 0;
    c->ipver = (uint8_t)ver;
    memset(c->addr, 0, 16);
    memcpy(c->addr, a, ver == 4 ? 4 : 16);
    return 1;
}

void sx_sdp_scan(sx_flows *t, const uint8_t *p, size_t n)
{
    conn sess = {0};
    media m = {0};
    size_t i = 0;
    while (i < n) {
        size_t e = i;
        while (e < n && p[e] != '\n')
            e++;
        size_t next = e < n ? e + 1 : e;
        /* trim: leading blanks, trailing CR and blanks */
        while (i < e && (p[i] == ' ' || p[i] == '\t'))
            i++;
        while (e > i && (p[e - 1] == '\r' || p[e - 1] == ' ' || p[e - 1] == '\t'))
            e--;
        const uint8_t *l = p + i;
        size_t ln = e - i;
        if (ln >= 2 && l[1] == '=') {
            const uint8_t *b = l + 2;
            size_t bn = ln - 2;
            switch (l[0]) {
            case 'v':
                media_end(t, &m, &sess);
                memset(&sess, 0, sizeof sess);
                break;
            case 'c': {
                conn c;
                if (parse_conn(b, bn, &c)) {
                    if (m.active)
                        m.c = c;
                    else
                        sess = c;
                }
                break;
            }
            case 'm': {
                media_end(t, &m, &sess);
                memset(&m, 0, sizeof m);
                size_t s = 0;
                while (s < bn && b[s] != ' ')
                    s++;
                if (s == 0 || s >= bn)
                    break;
                size_t used;
                long port = port_of(b + s + 1, bn - s - 1, &used);
                if (port < 0)
                    break;
                size_t q = s + 1 + used;
                if (q < bn && b[q] == '/') { /* port/count */
                    q++;
                    while (q < bn && b[q] >= '0' && b[q] <= '9')
                        q++;
                }
                if (q >= bn || b[q] != ' ')
                    break;
                q++;
                size_t pe = q;
                while (pe < bn && b[pe] != ' ')
                    pe++;
                m.active = 1;
                m.port = (uint16_t)port;
                m.rtcp_port = -1;
                if (ci_has(b + q, pe - q, "UDPTL"))
                    m.kind = SX_A_UDPTL;
                else if (ci_has(b + q, pe - q, "RTP"))
                    m.kind = SX_A_RTP;
                else
                    m.kind = SX_A_NONE;
                break;
            }
            case 'a':
                if (!m.active)
                    break;
                if (bn == 8 && memcmp(b, "rtcp-mux", 8) == 0) {
                    m.mux = 1;
                } else if (bn > 5 && memcmp(b, "rtcp:", 5) == 0) {
                    size_t used;
                    long rp = port_of(b + 5, bn - 5, &used);
                    if (rp >= 0 && (5 + used == bn || b[5 + used] == ' '))
                        m.rtcp_port = rp;
                }
                break;
            default:
                break;
            }
        }
        i = next;
    }
    media_end(t, &m, &sess);
}

/* ------------------------------------------------------------------ SIP framing */

static int hname(const uint8_t *p, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    if (n < m)
        return 0;
    for (size_t i = 0; i < m; i++) {
        uint8_t c = p[i];
        if (c >= 'A' && c <= 'Z')
            c = (uint8_t)(c + 32);
        if (c != (uint8_t)lit[i])
            return 0;
    }
    /* then blanks and a colon */
    size_t i = m;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    return i < n && p[i] == ':' ? (int)(i + 1) : 0;
}

size_t sx_sip_msg_len(const uint8_t *p, size_t n, size_t *hl)
{
    size_t h = 0;
    const uint8_t *q = p, *end = p + n;
    while ((q = memchr(q, '\n', (size_t)(end - q))) != NULL) {
        size_t i = (size_t)(q - p);
        if (i + 1 < n && p[i + 1] == '\n') {
            h = i + 2;
            break;
        }
        if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n') {
            h = i + 3;
            break;
        }
        q++;
    }
    *hl = h;
    if (!h)
        return 0;
    /* Content-Length (or compact "l") at the start of a header line */
    size_t clen = 0;
    size_t i = 0;
    while (i < h) {
        const uint8_t *nl = memchr(p + i, '\n', h - i);
        size_t e = nl ? (size_t)(nl - p) : h;
        int c = 0;
        if (p[i] == 'c' || p[i] == 'C')
            c = hname(p + i, e - i, "content-length");
        else if (p[i] == 'l' || p[i] == 'L')
            c = hname(p + i, e - i, "l");
        if (c) {
            size_t q2 = i + (size_t)c;
            while (q2 < e && (p[q2] == ' ' || p[q2] == '\t'))
                q2++;
            size_t x = 0;
            while (q2 < e && p[q2] >= '0' && p[q2] <= '9' && x < 0x1000000)
                x = x * 10 + (size_t)(p[q2++] - '0');
            clen = x;
            break;
        }
        i = e + 1;
    }
    return h + clen;
}

/* ------------------------------------------------------------------ per-protocol rules */

int sx_is_rtcp_strict(const uint8_t *p, size_t len)
{
    if (len < 8 || (p[0] >> 6) != 2 || (p[0] & 0x20) || (p[1] != 200 && p[1] != 201))
        return 0;
    size_t q = 0;
    while (q < len) {
        if (len - q < 4 || (p[q] >> 6) != 2 || p[q + 1] < 192 || p[q + 1] > 213)
            return 0;
        size_t plen = ((size_t)sx_be16(p + q + 2) + 1) * 4;
        if (plen > len - q)
            return 0;
        q += plen;
    }
    return 1;
}

static inline void set_kind(const sx_cfg *cfg, sx_verdict *v, uint8_t kind)
{
    if (v->kind == kind)
        return; /* trust depends on the kind only */
    v->kind = kind;
    v->trusted = (uint8_t)sx_trusted_as(cfg, v->match, kind, v->proto, v->sport);
}

uint32_t sx_relabel_code(const sx_cfg *cfg, uint32_t code, uint16_t sport)
{
    int32_t m = (int32_t)(code >> 8) - 1;
    uint32_t t = (uint32_t)sx_trusted_as(cfg, m, SX_K_RTP, 17, sport);
    return (code & ~(uint32_t)0xF) | SX_K_RTP | (t << 3);
}

static void rtp_progress(const sx_cfg *cfg, sx_flows *t, sx_flow *fl, const uint8_t *p,
                         sx_verdict *v, sx_relabel *r)
{
    uint32_t ssrc = sx_be32(p + 8), ts = sx_be32(p + 4);
    uint16_t seq = sx_be16(p + 2);
    uint8_t kind = SX_K_OTHER;
    int slot = -1; /* this frame's place among the pending ones */
    if (fl->rtp_state == SX_R_CONFIRMED) {
        kind = SX_K_RTP;
    } else if (fl->rtp_state == SX_R_CAND && ssrc == fl->ssrc
               && (uint16_t)(seq - fl->seq) >= 1 && (uint16_t)(seq - fl->seq) <= SX_RTP_MAX_STEP
               && (uint32_t)(ts - fl->ts) < 0x80000000u) {
        if (fl->npend + 1u >= SX_RTP_CONFIRM) {
            for (unsigned i = 0; i < fl->npend; i++)
                if (t->frame - fl->pend[i] < t->window) {
                    r->frame[r->n] = fl->pend[i];
                    r->code[r->n++] = fl->pend_code[i];
                }
            fl->npend = 0;
            fl->rtp_state = SX_R_CONFIRMED;
            kind = SX_K_RTP;
        } else {
            slot = fl->npend++;
            fl->pend[slot] = t->frame;
        }
    } else {
        fl->rtp_state = SX_R_CAND;
        fl->npend = 1;
        slot = 0;
        fl->pend[0] = t->frame;
    }
    fl->ssrc = ssrc;
    fl->seq = seq;
    fl->ts = ts;
    set_kind(cfg, v, kind);
    if (slot >= 0) /* nothing changes the verdict after this */
        fl->pend_code[slot] = sx_code(v);
}

static int is_megaco(const uint8_t *p, size_t n)
{
    return (n >= 7 && memcmp(p, "MEGACO/", 7) == 0) || (n >= 2 && p[0] == '!' && p[1] == '/');
}

static void sdp_of_sip(sx_flows *t, const uint8_t *p, size_t n)
{
    size_t hl;
    size_t total = sx_sip_msg_len(p, n, &hl);
    if (!hl)
        return;
    if (total > n)
        total = n;
    if (total > hl)
        sx_sdp_scan(t, p + hl, total - hl);
}

static void udp_flow(const sx_cfg *cfg, sx_flows *t, const uint8_t *f, sx_verdict *v,
                     sx_relabel *r)
{
    const uint8_t *u = f + v->l4off;
    size_t n = v->l4end - v->l4off;
    size_t ulen = sx_be16(u + 4), plen = n - 8;
    if (ulen >= 8 && ulen - 8 < plen)
        plen = ulen - 8;
    const uint8_t *p = u + 8;
    uint8_t k = v->kind;
    if (k == SX_K_SIP) {
        if (plen <= 4 && (plen == 2 || plen == 4)) /* a CRLF keep-alive: stream transports only */
            set_kind(cfg, v, SX_K_OTHER);
        else
            sdp_of_sip(t, p, plen);
        return;
    }
    if (k == SX_K_STUN)
        return;
    if (k == SX_K_OTHER && is_megaco(p, plen)) {
        sx_sdp_scan(t, p, plen);
        return;
    }
    if (t->epoch == 0 && k != SX_K_RTP) {
        if (k == SX_K_RTCP && !sx_is_rtcp_strict(p, plen))
            set_kind(cfg, v, SX_K_OTHER);
        return;
    }
    sx_flow *fl = flow_get(t, v);
    switch (sx_flow_ann(t, fl)) {
    case SX_A_UDPTL:
        set_kind(cfg, v, plen ? SX_K_UDPTL : SX_K_OTHER);
        return;
    case SX_A_RTP:
        /* the per-frame rules tried RTCP before RTP: an rtp verdict means no RTCP */
        if (k == SX_K_RTP)
            set_kind(cfg, v, SX_K_RTP);
        else if (k == SX_K_RTCP || sx_is_rtcp(p, plen))
            set_kind(cfg, v, SX_K_RTCP);
        else if (plen >= 12 && (p[0] >> 6) == 2)
            set_kind(cfg, v, SX_K_RTP);
        else
            set_kind(cfg, v, SX_K_OTHER);
        return;
    case SX_A_RTCP:
        set_kind(cfg, v, sx_is_rtcp(p, plen) ? SX_K_RTCP : SX_K_OTHER);
        return;
    default:
        break;
    }
    if (k == SX_K_RTP) {
        rtp_progress(cfg, t, fl, p, v, r);
    } else if (k == SX_K_RTCP && !sx_is_rtcp_strict(p, plen)) {
        set_kind(cfg, v, SX_K_OTHER);
    }
}

/* bytes of a WebSocket frame (header + payload) starting at p, 0 when cut */
static size_t ws_len(const uint8_t *p, size_t n)
{
    if (n < 2)
        return 0;
    size_t h = 2, plen = p[1] & 0x7f;
    if (plen == 126) {
        if (n < 4)
            return 0;
        plen = sx_be16(p + 2);
        h = 4;
    } else if (plen == 127) {
        if (n < 10)
            return 0;
        uint64_t l64 = ((uint64_t)sx_be32(p + 2) << 32) | sx_be32(p + 6);
        plen = l64 > 0xFFFFFFFFu ? 0xFFFFFFFFu : (size_t)l64;
        h = 10;
    }
    if (p[1] & 0x80)
        h += 4;
    return h + plen;
}

static void tcp_flow(const sx_cfg *cfg, sx_flows *t, const uint8_t *f, sx_verdict *v)
{
    const uint8_t *s = f + v->l4off;
    size_t n = v->l4end - v->l4off;
    size_t doff = (size_t)(s[12] >> 4) * 4;
    size_t plen = n - doff;
    const uint8_t *p = s + doff;
    if (plen == 0)
        return;
    uint32_t seq = sx_be32(s + 4);
    uint32_t end = seq + (uint32_t)plen;
    sx_flow *fl = flow_get(t, v);
    if (fl->tcp_have && (int32_t)(end - fl->tcp_end) <= 0) { /* nothing new: a retransmission */
        set_kind(cfg, v, SX_K_OTHER);
        return;
    }
    fl->tcp_have = 1;
    fl->tcp_end = end;
    if (fl->need) {
        if (plen >= fl->need) {
            fl->need = 0;
            set_kind(cfg, v, SX_K_SIP);
        } else {
            fl->need -= (uint32_t)plen;
            set_kind(cfg, v, SX_K_OTHER);
        }
        return;
    }
    if (v->kind != SX_K_SIP)
        return;
    size_t total;
    if (sx_is_sip(p, plen)) {
        size_t hl;
        total = sx_sip_msg_len(p, plen, &hl);
        if (!hl)
            return;
        size_t body_end = total < plen ? total : plen;
        if (body_end > hl)
            sx_sdp_scan(t, p + hl, body_end - hl);
    } else {
        total = ws_len(p, plen);
    }
    if (total > plen) {
        size_t need = total - plen;
        fl->need = need > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)need;
        set_kind(cfg, v, SX_K_OTHER);
    }
}

static void sctp_flow(const sx_cfg *cfg, sx_flows *t, const uint8_t *f, sx_verdict *v)
{
    const uint8_t *p = f + v->l4off;
    size_t n = v->l4end - v->l4off;
    size_t q = 12;
    while (n - q >= 4) {
        size_t clen = sx_be16(p + q + 2);
        if (clen < 4 || clen > n - q)
            return;
        if (p[q] == 0)
            break;
        q += (clen + 3) & ~(size_t)3;
        if (q > n)
            return;
    }
    if (n - q < 4 || p[q] != 0)
        return;
    uint8_t fl_bits = p[q + 1];
    sx_flow *fl = flow_get(t, v);
    if (v->kind == SX_K_SIP) {
        if (!(fl_bits & 1)) { /* E clear: the message goes on in later chunks */
            fl->sctp_pending = 1;
            set_kind(cfg, v, SX_K_OTHER);
        } else {
            fl->sctp_pending = 0;
        }
    } else if (!(fl_bits & 2) && fl->sctp_pending) { /* a later fragment of a SIP message */
        if (fl_bits & 1) {
            fl->sctp_pending = 0;
            set_kind(cfg, v, SX_K_SIP);
        }
    }
}

void sx_flow_classify(const sx_cfg *cfg, sx_cache4 *cache, sx_flows *t, const uint8_t *f,
                      size_t len, uint32_t linktype, sx_verdict *v, sx_relabel *r)
{
    uint32_t code;
    r->n = 0;
    if (sx_flow_fast(cfg, cache, t, f, len, linktype, &code, v))
        return;
    sx_flow_classify_general(cfg, cache, t, f, len, linktype, v, r);
}

void sx_flow_classify_general(const sx_cfg *cfg, sx_cache4 *cache, sx_flows *t,
                              const uint8_t *f, size_t len, uint32_t linktype, sx_verdict *v,
                              sx_relabel *r)
{
    r->n = 0;
    sx_classify_cached(cfg, cache, f, len, linktype, v);
    if (v->l4end > v->l4off && !(v->flags & (SX_F_FRAG_LATER | SX_F_BAD))) {
        switch (v->proto) {
        case 17:
            udp_flow(cfg, t, f, v, r);
            break;
        case 6:
            tcp_flow(cfg, t, f, v);
            break;
        case 132:
            sctp_flow(cfg, t, f, v);
            break;
        default:
            break;
        }
    }
    t->frame++;
}
