/* See rng.h: xoshiro256**, splitmix64 seeding, unbiased [0, n], key hash. */
#include "rng.h"

#include <string.h>

#define SX_GOLDEN UINT64_C(0x9E3779B97F4A7C15)
#define SX_HASH_C1 UINT64_C(0xFF51AFD7ED558CCD)

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t sx_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

void sx_rng_seed(sx_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        seed += SX_GOLDEN;
        r->s[i] = sx_mix64(seed);
    }
}

uint64_t sx_rng_next(sx_rng *r)
{
    uint64_t *s = r->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t sx_rng_uniform(sx_rng *r, uint64_t n)
{
    if (n == 0)
        return 0;
    int shift = __builtin_clzll(n); /* 64 - bit length of n */
    for (;;) {
        uint64_t x = sx_rng_next(r) >> shift;
        if (x <= n)
            return x;
    }
}

uint64_t sx_hash_bytes(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = SX_GOLDEN ^ ((uint64_t)len * SX_HASH_C1);
    while (len > 0) {
        unsigned char b[8] = {0};
        size_t take = len < 8 ? len : 8;
        memcpy(b, p, take);
        uint64_t w = 0;
        for (int i = 7; i >= 0; i--)
            w = (w << 8) | b[i];
        h = sx_mix64(h ^ w);
        p += take;
        len -= take;
    }
    return sx_mix64(h);
}
