/* Longest-prefix-match tables for IPv4 and IPv6 (plain C, no Python.h).
 *
 * A table is a list of disjoint address ranges [lo, hi] sorted by lo, each
 * carrying a value (an index chosen by the caller, >= 0). Nested CIDR blocks
 * are flattened into such ranges ahead of time (see sipedge/intervals.py,
 * flatten()), so a lookup is one branch-free binary search.
 */
#ifndef SIPEDGE_PREFIX_H
#define SIPEDGE_PREFIX_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t hi; /* bits 127..64 */
    uint64_t lo; /* bits 63..0 */
} sx_u128;

/* One IPv4 range with its value, packed together for the indexed search. */
typedef struct {
    uint32_t lo;
    uint32_t hi;
    int32_t val;
} sx_range4;

typedef struct {
    size_t n4;
    uint32_t *lo4;
    uint32_t *hi4;
    int32_t *val4;
    size_t n6;
    sx_u128 *lo6;
    sx_u128 *hi6;
    int32_t *val6;
    /* optional index for IPv4 (see sx_pt_index): idx4[k] is the number of
     * ranges whose lo < k << 16, for k = 0..65536; NULL until built */
    uint32_t *idx4;
    /* with idx4: the IPv4 ranges again as one array of {lo, hi, val}, so an
     * indexed lookup touches one cache line instead of three arrays */
    sx_range4 *r4;
} sx_ptable;

/* Allocate a table with room for n4 IPv4 and n6 IPv6 ranges; the caller fills
 * the arrays in ascending, non-overlapping order. NULL when out of memory. */
sx_ptable *sx_pt_new(size_t n4, size_t n6);
void sx_pt_free(sx_ptable *t);

/* 0 when the ranges are sorted, disjoint and lo <= hi; else the 1-based index
 * of the first bad IPv4 range, or -(index) for IPv6. */
long sx_pt_check(const sx_ptable *t);

/* Build the /16 index that narrows every IPv4 lookup to the ranges starting
 * in one /16 (call after filling a table that sx_pt_check accepts; a table
 * without it is still searched correctly). 0, or -1 when out of memory. */
int sx_pt_index(sx_ptable *t);

/* Value of the range holding the address, or -1. addr4 is in host order. */
int32_t sx_pt_lookup4(const sx_ptable *t, uint32_t addr4);
int32_t sx_pt_lookup6(const sx_ptable *t, sx_u128 addr6);

/* Big-endian 16 bytes to sx_u128 and back. */
sx_u128 sx_u128_from_bytes(const uint8_t b[16]);

/* Parse a textual address of exactly len bytes (no NUL needed; a NUL inside
 * makes it invalid).
 * Returns 4 (out[0..3] set, network order), 6 (out[0..15] set) or 0 when it is
 * not a valid address. IPv4 follows Python's ipaddress: four decimal parts
 * 0-255, no leading zeros, no spaces. */
int sx_parse_ip(const char *s, size_t len, uint8_t out[16]);

#endif
