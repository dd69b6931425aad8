/* Difference of two sorted sets of fixed-size big-endian records (plain C).
 *
 * Used by the firewall sync: a set's intervals are packed as (first, last)
 * address pairs, 8 bytes per IPv4 interval, 32 per IPv6 interval, sorted
 * ascending, so memcmp order is numeric order and a diff is one merge walk.
 */
#ifndef SIPEDGE_SETDIFF_H
#define SIPEDGE_SETDIFF_H

#include <stddef.h>
#include <stdint.h>

/* Records in a (na records) but not in b go to only_a (room for na), those
 * in b but not in a go to only_b (room for nb); counts in *n_only_a, *n_only_b.
 * Returns 0, or 1 when a is not strictly ascending, 2 when b is not. */
int sx_sorted_diff(const uint8_t *a, size_t na, const uint8_t *b, size_t nb, size_t rec,
                   uint8_t *only_a, size_t *n_only_a, uint8_t *only_b, size_t *n_only_b);

#endif
