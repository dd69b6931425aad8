/* Inline forms of the hot prefix-table functions, for callers that want the
 * lookup compiled into their own code (the Cython binding). prefix.c builds
 * the exported sx_pt_lookup4 and sx_parse_ip on the same code. Plain C. */
#ifndef SIPEDGE_PREFIX_INLINE_H
#define SIPEDGE_PREFIX_INLINE_H

#include "prefix.h"

/* The value of the IPv4 range holding a (host order), or -1. */
/* The indexed IPv4 range holding a (host order), or NULL; t->idx4 must be set. */
static inline const sx_range4 *sx_pt_range4_inline(const sx_ptable *t, uint32_t a)
{
    /* the answer is the last range with lo <= a: one of those starting in
     * a's /16, or the one just before them */
    size_t first = t->idx4[a >> 16];
    size_t end = t->idx4[(a >> 16) + 1];
    size_t start = first ? first - 1 : 0;
    const sx_range4 *r = t->r4 + start;
    size_t m = end - start;
    if (m == 0 || a < r->lo)
        return NULL;
    while (m > 1) {
        size_t half = m / 2;
        r = (r[half].lo <= a) ? r + half : r;
        m -= half;
    }
    return a <= r->hi ? r : NULL;
}

/* The value of the IPv4 range holding a (host order), or -1. */
static inline int32_t sx_pt_lookup4_inline(const sx_ptable *t, uint32_t a)
{
    if (t->idx4) {
        const sx_range4 *r = sx_pt_range4_inline(t, a);
        return r ? r->val : -1;
    }
    const uint32_t *base = t->lo4;
    size_t n = t->n4;
    if (n == 0 || a < base[0])
        return -1;
    /* branch-free: the last range whose lo <= a */
    while (n > 1) {
        size_t half = n / 2;
        base = (base[half] <= a) ? base + half : base;
        n -= half;
    }
    size_t i = (size_t)(base - t->lo4);
    return a <= t->hi4[i] ? t->val4[i] : -1;
}

/* Dotted-quad text of exactly len bytes to a host-order address, as Python's
 * ipaddress accepts it: four decimal parts 0-255, no leading zeros, nothing
 * else. 1 on success, 0 when it is not such an address. */
static inline int sx_parse_ip4_inline(const char *s, size_t len, uint32_t *out)
{
    uint32_t addr = 0;
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part) {
            if (i >= len || s[i] != '.')
                return 0;
            i++;
        }
        size_t start = i;
        unsigned v = 0;
        while (i < len && (unsigned)(s[i] - '0') <= 9u && i - start < 3) {
            v = v * 10 + (unsigned)(s[i] - '0');
            i++;
        }
        size_t digits = i - start;
        if (digits == 0 || v > 255 || (digits > 1 && s[start] == '0'))
            return 0;
        addr = (addr << 8) | v;
    }
    if (i != len)
        return 0;
    *out = addr;
    return 1;
}

#endif
