/* Frame classifier. See classify.h; the rules are documented in
 * src/sipedge/_py/classify.py (the twin) and docs/classify.md. */
#include "classify.h"

#include <string.h>

#define MAX_VLAN_TAGS 8
#define MAX_V6_EXT 8
#define MAX_TUNNEL_DEPTH 2

static inline uint16_t be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* ------------------------------------------------------------------ payload rules */

static int ci_eq(const uint8_t *p, const char *lit, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (c >= 'a' && c <= 'z')
            c = (uint8_t)(c - 32);
        if (c != (uint8_t)lit[i])
            return 0;
    }
    return 1;
}

static const char *const METHODS[] = {
    "INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "PRACK", "SUBSCRIBE",
    "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
};

int sx_is_sip(const uint8_t *p, size_t len)
{
    /* keep-alives (RFC 5626): CRLF pong and CRLFCRLF ping */
    if (len == 2 && p[0] == '\r' && p[1] == '\n')
        return 1;
    if (len == 4 && p[0] == '\r' && p[1] == '\n' && p[2] == '\r' && p[3] == '\n')
        return 1;
    /* status line: SIP/2.0 SP 3DIGIT SP */
    if (len >= 12 && ci_eq(p, "SIP/2.0 ", 8)) {
        return p[8] >= '1' && p[8] <= '6' && p[9] >= '0' && p[9] <= '9' && p[10] >= '0'
               && p[10] <= '9' && p[11] == ' ';
    }
    /* request line: Method SP sip[s]:URI SP SIP/2.0 CRLF */
    if (len < 4)
        return 0;
    switch (p[0]) { /* the first letters of the methods */
    case 'I': case 'A': case 'B': case 'C': case 'R': case 'O': case 'P': case 'S':
    case 'N': case 'M': case 'U':
        break;
    default:
        return 0;
    }
    size_t m = 0;
    for (size_t i = 0; i < sizeof METHODS / sizeof METHODS[0]; i++) {
        size_t n = strlen(METHODS[i]);
        if (len > n && memcmp(p, METHODS[i], n) == 0 && p[n] == ' ') {
            m = n + 1;
            break;
        }
    }
    if (!m)
        return 0;
    size_t q = m;
    if (len - q >= 4 && ci_eq(p + q, "SIP:", 4))
        q += 4;
    else if (len - q >= 5 && ci_eq(p + q, "SIPS:", 5))
        q += 5;
    else
        return 0;
    /* the URI: at least one visible character, up to the next SP */
    size_t u = q;
    while (q < len && p[q] > 0x20 && p[q] < 0x7f)
        q++;
    if (q == u || q >= len || p[q] != ' ')
        return 0;
    q++;
    if (len - q < 8 || !ci_eq(p + q, "SIP/2.0", 7))
        return 0;
    return p[q + 7] == '\r' || p[q + 7] == '\n';
}

static inline int is_stun(const uint8_t *p, size_t len)
{
    if (len < 20 || (p[0] & 0xC0) != 0 || be32(p + 4) != 0x2112A442u)
        return 0;
    size_t mlen = be16(p + 2);
    return (mlen & 3) == 0 && mlen + 20 == len;
}

static inline int is_rtcp(const uint8_t *p, size_t len)
{
    if (len < 8)
        return 0;
    size_t q = 0;
    while (q < len) {
        if (len - q < 4 || (p[q] >> 6) != 2 || p[q + 1] < 192 || p[q + 1] > 213)
            return 0;
        size_t plen = ((size_t)be16(p + q + 2) + 1) * 4;
        if (plen > len - q)
            return 0;
        q += plen;
        if (len - q < 4)
            return 1; /* up to 3 stray bytes after the last packet are tolerated */
    }
    return 1;
}

static inline int is_rtp(const uint8_t *p, size_t len)
{
    if (len < 12 || (p[0] >> 6) != 2)
        return 0;
    unsigned pt = p[1] & 0x7f;
    if (pt > 34 && pt < 96)
        return 0;
    size_t h = 12 + 4 * (size_t)(p[0] & 0x0f);
    if (h > len)
        return 0;
    if (p[0] & 0x10) {
        if (len - h < 4)
            return 0;
        size_t ext = 4 + 4 * (size_t)be16(p + h + 2);
        if (ext > len - h)
            return 0;
        h += ext;
    }
    if (p[0] & 0x20) {
        size_t pad = p[len - 1];
        if (pad == 0 || pad > len - h)
            return 0;
    }
    return 1;
}

int sx_is_stun(const uint8_t *p, size_t len)
{
    return is_stun(p, len);
}

int sx_is_rtcp(const uint8_t *p, size_t len)
{
    return is_rtcp(p, len);
}

int sx_is_rtp(const uint8_t *p, size_t len)
{
    return is_rtp(p, len);
}

int sx_is_tls(const uint8_t *p, size_t len)
{
    /* a TLS record header: content type 20-24, version 3.0-3.4, length <= 2^14 + 2048 */
    return len >= 5 && p[0] >= 20 && p[0] <= 24 && p[1] == 3 && p[2] <= 4
           && be16(p + 3) <= 18432;
}

int sx_is_ws_sip(const uint8_t *p, size_t len)
{
    /* a WebSocket frame (RFC 6455): FIN, no RSV bits, text or binary opcode,
     * carrying a SIP start line (RFC 7118); the first 512 bytes are unmasked */
    uint8_t buf[512];
    if (len < 2 || (p[0] & 0x70) || ((p[0] & 0x0f) != 1 && (p[0] & 0x0f) != 2))
        return 0;
    size_t h = 2, plen = p[1] & 0x7f;
    if (plen == 126) {
        if (len < 4)
            return 0;
        plen = be16(p + 2);
        h = 4;
    } else if (plen == 127) {
        if (len < 10)
            return 0;
        uint64_t l64 = ((uint64_t)be32(p + 2) << 32) | be32(p + 6);
        plen = l64 > 0xFFFFFFFFu ? 0xFFFFFFFFu : (size_t)l64;
        h = 10;
    }
    const uint8_t *key = NULL;
    if (p[1] & 0x80) {
        if (len - h < 4)
            return 0;
        key = p + h;
        h += 4;
    }
    size_t n = len - h;
    if (plen < n)
        n = plen;
    if (n > sizeof buf)
        n = sizeof buf;
    for (size_t i = 0; i < n; i++)
        buf[i] = key ? (uint8_t)(p[h + i] ^ key[i & 3]) : p[h + i];
    return sx_is_sip(buf, n);
}

/* the deny list {1194, 1812, 1813, 1900, 4500, 4789, 5060, 5061, 5353, 5355,
 * 6081}: a range test first (most media ports lie outside 1194..6081), then a
 * switch the compiler turns into a few compares instead of a loop over both ports */
static inline int denied_port(unsigned p)
{
    if (p - 1194u > 6081u - 1194u)
        return 0;
    switch (p) {
    case 1194: case 1812: case 1813: case 1900: case 4500: case 4789: case 5060: case 5061:
    case 5353: case 5355: case 6081:
        return 1;
    default:
        return 0;
    }
}

static inline int media_ports(uint16_t sport, uint16_t dport)
{
    return sport >= 1024 && dport >= 1024 && !denied_port(sport) && !denied_port(dport);
}

int sx_media_ports(uint16_t sport, uint16_t dport)
{
    return media_ports(sport, dport);
}

/* ------------------------------------------------------------------ layers */

/* l3_body and l4_body are inlined into the entry point (the common, untunnelled
 * case has no call per layer); l3 is their out-of-line copy for GRE tunnels */
#define SX_ALWAYS_INLINE static inline __attribute__((always_inline))

static void l3(const uint8_t *f, size_t off, size_t end, uint16_t et, int depth, sx_verdict *v);

/* The order is STUN, SIP, then (media ports only) RTCP, RTP. Each test needs
 * particular top two bits in the first byte (STUN 00; SIP: CR or an upper-case
 * letter, 00 or 01; RTP/RTCP version 2, 10), so dispatching on them first
 * gives the same answer as trying the tests in order, only faster. */
static inline void udp_payload(const uint8_t *p, size_t len, sx_verdict *v)
{
    if (len == 0)
        return;
    switch (p[0] >> 6) {
    case 0:
        if (is_stun(p, len))
            v->kind = SX_K_STUN;
        else if (sx_is_sip(p, len))
            v->kind = SX_K_SIP;
        return;
    case 1:
        if (sx_is_sip(p, len))
            v->kind = SX_K_SIP;
        return;
    case 2:
        if (media_ports(v->sport, v->dport)) {
            if (is_rtcp(p, len))
                v->kind = SX_K_RTCP;
            else if (is_rtp(p, len))
                v->kind = SX_K_RTP;
        }
        return;
    default:
        return;
    }
}

/* GRE (RFC 2784/2890) carrying IP, Ethernet, or ERSPAN type I/II/III. */
static __attribute__((noinline)) void gre(const uint8_t *f, size_t off, size_t end, int depth,
                                          sx_verdict *v)
{
    if (depth >= MAX_TUNNEL_DEPTH || end - off < 4)
        return;
    uint16_t fl = be16(f + off), pt = be16(f + off + 2);
    if (fl & 0x0007)
        return; /* version 1 (PPTP) or unknown */
    size_t hl = 4 + ((fl & 0xC000) ? 4 : 0) + ((fl & 0x2000) ? 4 : 0) + ((fl & 0x1000) ? 4 : 0);
    if (end - off < hl)
        return;
    off += hl;
    uint16_t et;
    if (pt == 0x0800 || pt == 0x86DD) {
        l3(f, off, end, pt, depth + 1, v);
        return;
    }
    if (pt == 0x88BE) { /* ERSPAN II (with sequence number) or I (without) */
        if (fl & 0x1000) {
            if (end - off < 8)
                return;
            off += 8;
        }
    } else if (pt == 0x22EB) { /* ERSPAN III, optional 8-byte subheader */
        if (end - off < 12)
            return;
        size_t eh = (f[off + 11] & 1) ? 20 : 12;
        if (end - off < eh)
            return;
        off += eh;
    } else if (pt != 0x6558) {
        return;
    }
    /* inner Ethernet frame */
    if (end - off < 14)
        return;
    et = be16(f + off + 12);
    off += 14;
    for (int i = 0; i < MAX_VLAN_TAGS && (et == 0x8100 || et == 0x88A8 || et == 0x9100); i++) {
        if (end - off < 4)
            return;
        et = be16(f + off + 2);
        off += 4;
    }
    if (et == 0x0800 || et == 0x86DD)
        l3(f, off, end, et, depth + 1, v);
}

/* The ports of a transport header of at least need bytes; 0 (and BAD) when cut. */
static inline int ports(const uint8_t *p, size_t n, size_t need, sx_verdict *v)
{
    if (n < need) {
        v->flags |= SX_F_BAD;
        return 0;
    }
    v->sport = be16(p);
    v->dport = be16(p + 2);
    return 1;
}

SX_ALWAYS_INLINE void l4_body(const uint8_t *f, size_t off, size_t end, int depth, sx_verdict *v)
{
    const uint8_t *p = f + off;
    size_t n = end - off;
    v->l4off = (uint32_t)off;
    v->l4end = (uint32_t)end;
    switch (v->proto) {
    case 17: /* UDP */
        if (!ports(p, n, 8, v))
            return;
        {
            size_t ulen = be16(p + 4);
            size_t plen = n - 8;
            if (ulen >= 8 && ulen - 8 < plen)
                plen = ulen - 8;
            udp_payload(p + 8, plen, v);
        }
        return;
    case 6: /* TCP */
        if (!ports(p, n, 20, v))
            return;
        {
            size_t doff = (size_t)(p[12] >> 4) * 4;
            if (doff < 20 || doff > n) {
                v->flags |= SX_F_BAD;
                return;
            }
            size_t plen = n - doff;
            if (sx_is_sip(p + doff, plen))
                v->kind = SX_K_SIP;
            else if (sx_is_tls(p + doff, plen) || (plen && (v->sport == 5061 || v->dport == 5061)))
                v->kind = SX_K_TLS;
            else if (sx_is_ws_sip(p + doff, plen))
                v->kind = SX_K_SIP;
        }
        return;
    case 132: /* SCTP: SIP in the first DATA chunk */
        if (!ports(p, n, 12, v))
            return;
        {
            size_t q = 12;
            while (n - q >= 4) {
                size_t clen = be16(p + q + 2);
                if (clen < 4 || clen > n - q)
                    return;
                if (p[q] == 0) {
                    if (clen >= 16 && sx_is_sip(p + q + 16, clen - 16))
                        v->kind = SX_K_SIP;
                    return;
                }
                q += (clen + 3) & ~(size_t)3;
                if (q > n)
                    return;
            }
        }
        return;
    case 47:
        gre(f, off, end, depth, v);
        return;
    default:
        return;
    }
}

/* IPv4 or IPv6 header at off; end bounds the packet. */
SX_ALWAYS_INLINE void l3_body(const uint8_t *f, size_t off, size_t end, uint16_t et, int depth,
                              sx_verdict *v)
{
    const uint8_t *p = f + off;
    size_t n = end - off;
    /* an inner packet (tunnel) replaces what the outer one said */
    v->kind = SX_K_OTHER;
    v->sport = v->dport = 0;
    v->proto = -1;
    v->l4off = v->l4end = 0;
    v->flags &= (uint8_t)~(SX_F_NOT_IP | SX_F_FRAG_FIRST | SX_F_FRAG_LATER);
    if (et == 0x0800) {
        v->ipver = 4;
        memset(v->src, 0, 16);
        memset(v->dst, 0, 16);
        if (n < 20 || (p[0] >> 4) != 4) {
            v->flags |= SX_F_BAD;
            return;
        }
        size_t ihl = (size_t)(p[0] & 0x0f) * 4;
        if (ihl < 20 || ihl > n) {
            v->flags |= SX_F_BAD;
            return;
        }
        memcpy(v->src, p + 12, 4);
        memcpy(v->dst, p + 16, 4);
        v->proto = p[9];
        size_t tot = be16(p + 2);
        if (tot >= ihl) {
            if (tot < n)
                end = off + tot;
        } else if (tot != 0) {
            v->flags |= SX_F_BAD;
            return;
        }
        uint16_t fo = be16(p + 6);
        if (fo & 0x1fff) {
            v->flags |= SX_F_FRAG_LATER;
            return;
        }
        if (fo & 0x2000)
            v->flags |= SX_F_FRAG_FIRST;
        l4_body(f, off + ihl, end, depth, v);
        return;
    }
    /* IPv6 */
    v->ipver = 6;
    memset(v->src, 0, 16);
    memset(v->dst, 0, 16);
    if (n < 40 || (p[0] >> 4) != 6) {
        v->flags |= SX_F_BAD;
        return;
    }
    memcpy(v->src, p + 8, 16);
    memcpy(v->dst, p + 24, 16);
    size_t plen = be16(p + 4);
    if (plen && plen < n - 40)
        end = off + 40 + plen;
    unsigned nh = p[6];
    size_t q = off + 40;
    for (int i = 0; i < MAX_V6_EXT; i++) {
        unsigned cur = nh;
        if (!(cur == 0 || cur == 43 || cur == 60 || cur == 135 || cur == 139 || cur == 140
              || cur == 51 || cur == 44))
            break;
        if (end - q < 8) { /* every extension header is 8 bytes or more */
            v->proto = (int16_t)cur;
            v->flags |= SX_F_BAD;
            return;
        }
        nh = f[q];
        if (cur == 44) { /* fragment: 8 bytes */
            uint16_t fo = be16(f + q + 2);
            q += 8;
            if (fo & 0xfff8) {
                v->proto = (int16_t)nh;
                v->flags |= SX_F_FRAG_LATER;
                return;
            }
            if (fo & 1)
                v->flags |= SX_F_FRAG_FIRST;
            continue;
        }
        /* AH counts 4-byte words minus 2, the others 8-byte words minus 1 */
        size_t hl = cur == 51 ? ((size_t)f[q + 1] + 2) * 4 : ((size_t)f[q + 1] + 1) * 8;
        if (hl > end - q) {
            v->proto = (int16_t)nh;
            v->flags |= SX_F_BAD;
            return;
        }
        q += hl;
    }
    v->proto = (int16_t)nh;
    l4_body(f, q, end, depth, v);
}

static void l3(const uint8_t *f, size_t off, size_t end, uint16_t et, int depth, sx_verdict *v)
{
    l3_body(f, off, end, et, depth, v);
}

/* ------------------------------------------------------------------ entry point */

void sx_cache_init(sx_cache4 *c)
{
    for (size_t i = 0; i < SX_CACHE_SLOTS; i++) {
        c->slot[i].addr = 0;
        c->slot[i].val = -2;
    }
}

static inline int trusted_as(const sx_cfg *cfg, int32_t m, unsigned kind, int proto16,
                             uint16_t sport);

static inline void trust(const sx_cfg *cfg, sx_cache4 *cache, sx_verdict *v)
{
    if (!cfg || !cfg->table || v->ipver == 0 || ((v->flags & SX_F_BAD) && v->proto < 0))
        return;
    int32_t m;
    if (v->ipver == 4) {
        uint32_t a = be32(v->src);
        if (cache) {
            m = sx_cache_lookup4(cfg->table, cache, a);
        } else {
            m = sx_pt_lookup4(cfg->table, a);
        }
    } else
        m = sx_pt_lookup6(cfg->table, sx_u128_from_bytes(v->src));
    if (m < 0 || (size_t)m >= cfg->nvals)
        return;
    v->match = m;
    v->trusted = (uint8_t)trusted_as(cfg, m, v->kind, v->proto, v->sport);
}

int sx_trusted_as(const sx_cfg *cfg, int32_t m, unsigned kind, int proto16, uint16_t sport)
{
    return trusted_as(cfg, m, kind, proto16, sport);
}

static inline int trusted_as(const sx_cfg *cfg, int32_t m, unsigned kind, int proto16,
                             uint16_t sport)
{
    if (!cfg || m < 0 || (size_t)m >= cfg->nvals)
        return 0;
    uint16_t r = cfg->val_role[m];
    if (r >= cfg->nroles || !(cfg->roles[r].kinds & (1u << kind)))
        return 0;
    uint8_t proto;
    if (proto16 == 17)
        proto = SX_P_UDP;
    else if (proto16 == 6)
        proto = SX_P_TCP;
    else
        return 0;
    const sx_role *role = &cfg->roles[r];
    for (size_t i = 0; i < role->nports; i++) {
        const sx_portrange *pr = &role->ports[i];
        if (pr->proto == proto && sport >= pr->lo && sport <= pr->hi)
            return 1;
    }
    return 0;
}

void sx_classify(const sx_cfg *cfg, const uint8_t *f, size_t len, uint32_t linktype,
                 sx_verdict *v)
{
    sx_classify_cached(cfg, NULL, f, len, linktype, v);
}

void sx_classify_cached(const sx_cfg *cfg, sx_cache4 *cache, const uint8_t *f, size_t len,
                        uint32_t linktype, sx_verdict *v)
{
    memset(v, 0, sizeof *v);
    v->proto = -1;
    v->match = -1;
    size_t off;
    uint16_t et;
    if (linktype == SX_LT_ETHERNET && len >= 14 && be16(f + 12) == 0x0800) {
        /* the common case first: Ethernet, IPv4, no VLAN tag */
        off = 14;
        et = 0x0800;
        goto ip;
    }
    switch (linktype) {
    case SX_LT_ETHERNET:
        if (len < 14)
            goto bad_link;
        et = be16(f + 12);
        off = 14;
        break;
    case SX_LT_SLL:
        if (len < 16)
            goto bad_link;
        et = be16(f + 14);
        off = 16;
        break;
    case SX_LT_SLL2:
        if (len < 20)
            goto bad_link;
        et = be16(f);
        off = 20;
        break;
    case SX_LT_RAW:
        if (len < 1)
            goto bad_link;
        et = (f[0] >> 4) == 4 ? 0x0800 : (f[0] >> 4) == 6 ? 0x86DD : 0;
        off = 0;
        break;
    case SX_LT_NULL:
    case SX_LT_LOOP: {
        /* BSD loopback: a 4-byte address family in either byte order */
        if (len < 4)
            goto bad_link;
        uint32_t le = (uint32_t)f[0] | ((uint32_t)f[1] << 8) | ((uint32_t)f[2] << 16)
                      | ((uint32_t)f[3] << 24);
        uint32_t fam = le < 256 ? le : be32(f);
        et = fam == 2 ? 0x0800 : (fam == 10 || fam == 24 || fam == 28 || fam == 30) ? 0x86DD : 0;
        off = 4;
        break;
    }
    case SX_LT_IPV4:
        et = 0x0800;
        off = 0;
        break;
    case SX_LT_IPV6:
        et = 0x86DD;
        off = 0;
        break;
    default:
        v->flags = SX_F_NOT_IP;
        return;
    }
    for (int i = 0; i < MAX_VLAN_TAGS && (et == 0x8100 || et == 0x88A8 || et == 0x9100); i++) {
        if (len - off < 4)
            goto bad_link;
        et = be16(f + off + 2);
        off += 4;
    }
    if (et != 0x0800 && et != 0x86DD) {
        v->flags = SX_F_NOT_IP;
        return;
    }
ip:
    l3_body(f, off, len, et, 0, v);
    trust(cfg, cache, v);
    return;
bad_link:
    v->flags = SX_F_NOT_IP | SX_F_BAD;
}
