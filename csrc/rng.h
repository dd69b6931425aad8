/* sipedge's random numbers and hashes: identical bit for bit in sipedge._py.rng.
 *
 * Generator: xoshiro256** (Blackman and Vigna), seeded by expanding a 64-bit
 * seed with splitmix64 into the four state words.
 *
 * Uniform integer in [0, n] (inclusive), no modulo bias, by bitmask rejection:
 *   n == 0: returns 0 and consumes NO output of the generator;
 *   else k = bit length of n; repeat x = next() >> (64 - k) until x <= n.
 * Each attempt succeeds with probability > 1/2.
 *
 * Key hash (sticky selection): h = GOLDEN ^ (len * C1); for each 8-byte block
 * of the key, little-endian, the last one zero-padded: h = mix64(h ^ block);
 * result mix64(h). mix64 is the splitmix64 finaliser.
 */
#ifndef SIPEDGE_RNG_H
#define SIPEDGE_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} sx_rng;

void sx_rng_seed(sx_rng *r, uint64_t seed);
uint64_t sx_rng_next(sx_rng *r);
uint64_t sx_rng_uniform(sx_rng *r, uint64_t n); /* in [0, n] inclusive */

uint64_t sx_mix64(uint64_t z);
uint64_t sx_hash_bytes(const void *data, size_t len);

#endif
