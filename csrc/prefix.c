/* Longest-prefix-match lookup over flattened, sorted ranges. See prefix.h. */
#include "prefix.h"
#include "prefix_inline.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#define SX_IDX4_SIZE 65536u

sx_ptable *sx_pt_new(size_t n4, size_t n6)
{
    sx_ptable *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->n4 = n4;
    t->n6 = n6;
    /* +1 so that a zero-sized table still has valid pointers */
    t->lo4 = calloc(n4 + 1, sizeof *t->lo4);
    t->hi4 = calloc(n4 + 1, sizeof *t->hi4);
    t->val4 = calloc(n4 + 1, sizeof *t->val4);
    t->lo6 = calloc(n6 + 1, sizeof *t->lo6);
    t->hi6 = calloc(n6 + 1, sizeof *t->hi6);
    t->val6 = calloc(n6 + 1, sizeof *t->val6);
    if (!t->lo4 || !t->hi4 || !t->val4 || !t->lo6 || !t->hi6 || !t->val6) {
        sx_pt_free(t);
        return NULL;
    }
    return t;
}

void sx_pt_free(sx_ptable *t)
{
    if (!t)
        return;
    free(t->lo4);
    free(t->hi4);
    free(t->val4);
    free(t->lo6);
    free(t->hi6);
    free(t->val6);
    free(t->idx4);
    free(t->r4);
    free(t);
}

static int u128_le(sx_u128 a, sx_u128 b)
{
    return a.hi < b.hi || (a.hi == b.hi && a.lo <= b.lo);
}

static int u128_lt(sx_u128 a, sx_u128 b)
{
    return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo);
}

long sx_pt_check(const sx_ptable *t)
{
    for (size_t i = 0; i < t->n4; i++) {
        if (t->lo4[i] > t->hi4[i] || t->val4[i] < 0)
            return (long)i + 1;
        if (i && t->lo4[i] <= t->hi4[i - 1])
            return (long)i + 1;
    }
    for (size_t i = 0; i < t->n6; i++) {
        if (!u128_le(t->lo6[i], t->hi6[i]) || t->val6[i] < 0)
            return -((long)i + 1);
        if (i && u128_le(t->lo6[i], t->hi6[i - 1]))
            return -((long)i + 1);
    }
    return 0;
}

int sx_pt_index(sx_ptable *t)
{
    if (t->n4 > UINT32_MAX - 1)
        return -1;
    uint32_t *idx = malloc((SX_IDX4_SIZE + 1) * sizeof *idx);
    sx_range4 *r4 = malloc((t->n4 + 1) * sizeof *r4);
    if (!idx || !r4) {
        free(idx);
        free(r4);
        return -1;
    }
    size_t j = 0;
    for (uint64_t k = 0; k <= SX_IDX4_SIZE; k++) {
        while (j < t->n4 && (uint64_t)t->lo4[j] < (k << 16))
            j++;
        idx[k] = (uint32_t)j;
    }
    for (size_t i = 0; i < t->n4; i++) {
        r4[i].lo = t->lo4[i];
        r4[i].hi = t->hi4[i];
        r4[i].val = t->val4[i];
    }
    free(t->idx4);
    free(t->r4);
    t->idx4 = idx;
    t->r4 = r4;
    return 0;
}

int32_t sx_pt_lookup4(const sx_ptable *t, uint32_t a)
{
    return sx_pt_lookup4_inline(t, a);
}

int32_t sx_pt_lookup6(const sx_ptable *t, sx_u128 a)
{
    size_t n = t->n6;
    const sx_u128 *base = t->lo6;
    if (n == 0 || u128_lt(a, base[0]))
        return -1;
    while (n > 1) {
        size_t half = n / 2;
        base = u128_le(base[half], a) ? base + half : base;
        n -= half;
    }
    size_t i = (size_t)(base - t->lo6);
    return u128_le(a, t->hi6[i]) ? t->val6[i] : -1;
}

sx_u128 sx_u128_from_bytes(const uint8_t b[16])
{
    sx_u128 r = {0, 0};
    for (int i = 0; i < 8; i++) {
        r.hi = (r.hi << 8) | b[i];
        r.lo = (r.lo << 8) | b[i + 8];
    }
    return r;
}

int sx_parse_ip(const char *s, size_t len, uint8_t out[16])
{
    if (len == 0 || len > 45)
        return 0;
    if (memchr(s, ':', len) == NULL) {
        uint32_t a;
        if (!sx_parse_ip4_inline(s, len, &a))
            return 0;
        out[0] = (uint8_t)(a >> 24);
        out[1] = (uint8_t)(a >> 16);
        out[2] = (uint8_t)(a >> 8);
        out[3] = (uint8_t)a;
        return 4;
    }
    /* inet_pton stops at a NUL: "::1\0junk" must not pass as ::1 */
    if (memchr(s, '\0', len) != NULL)
        return 0;
    char buf[46];
    memcpy(buf, s, len);
    buf[len] = '\0';
    return inet_pton(AF_INET6, buf, out) == 1 ? 6 : 0;
}
