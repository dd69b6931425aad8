/* Weighted-priority selection over a health table (sipedge.select).
 *
 * Targets are numbered 0..n-1 in the order the caller gave them. They are
 * split into priority groups (ascending priority). Inside a group the listing
 * is: the positive-weight targets in the caller's order, then the weight-0
 * ones in the caller's order. Only usable targets take part (enabled, not
 * drained, up or out with the cool-down over: see health.h).
 *
 * Unkeyed order (the shares Twilio documents): for each group, while a
 * positive-weight candidate is left: S = sum of their weights,
 * r = sx_rng_uniform(S - 1) (uniform in [0, S), both exact integers), take the
 * first candidate whose running sum is > r; so a target comes next with
 * probability w / S exactly (RFC 2782's prose draws in [0, S] inclusive,
 * which gives the first listed an extra 1/(S+1): not used). A single
 * candidate left is taken without a draw. Then the weight-0 candidates:
 * while more than one is left, j = sx_rng_uniform(left - 1), take the j-th.
 * So weight 0 never takes a share from a positive weight (Go's net package
 * also puts them last) and weight-0-only groups split evenly. Groups with
 * more than SX_SEL_SMALL positive candidates use a Fenwick tree for order();
 * the draws and the result are the same as the plain scan.
 *
 * Keyed order (a call's failover sequence from its key hash, the same in any
 * process): per group, the positive-weight candidates by descending score
 * w / -ln(u), u = ((x >> 12) + 0.5) / 2^52, x = mix64(key ^ salt_i) (weighted
 * rendezvous hashing: first place with probability w / S over keys, and when
 * a target goes out only its keys move), ties to the earlier listed; then the
 * weight-0 ones by descending x, ties to the earlier listed.
 *
 * pick (unkeyed or keyed): walks the same order lazily, skipping targets in
 * the caller's exclude set, and returns the first one sx_ht_take() accepts
 * (rate limit, single trial call of a target whose cool-down is over).
 *
 * No function here is thread safe by itself: the caller serialises calls on
 * one sx_sel (the RNG); the table itself is safe across processes.
 */
#ifndef SIPEDGE_SELECT_H
#define SIPEDGE_SELECT_H

#include <stddef.h>
#include <stdint.h>

#include "health.h"
#include "rng.h"

#define SX_SEL_SMALL 32

enum { SX_UP = 0, SX_OUT = 1, SX_PROBING = 2, SX_DISABLED = 3, SX_DRAINED = 4 };
enum { SX_NONE = -1, SX_LIMITED = -2, SX_LOCKERR = -3 };

typedef struct {
    uint32_t n;
    uint32_t ngroups;
    uint32_t *order;      /* n target indices, group after group (see above) */
    uint32_t *gstart;     /* ngroups + 1 offsets into order */
    uint32_t *gzero;      /* ngroups offsets: where each group's weight-0 part starts */
    uint16_t *priority;   /* by target index */
    uint16_t *weight;
    uint8_t *enabled;
    uint64_t *salt;
    sx_rng rng;
} sx_sel;

/* Allocate a set of n targets (all weight 0, priority 0, enabled). NULL on OOM. */
sx_sel *sx_sel_new(uint32_t n);
void sx_sel_free(sx_sel *s);
void sx_sel_set(sx_sel *s, uint32_t i, uint16_t priority, uint16_t weight, int enabled,
                uint64_t salt);
/* Build the groups after every sx_sel_set. 0 on success, -1 on OOM. */
int sx_sel_finish(sx_sel *s);

/* Words of uint64_t scratch that order/pick need for n targets. */
size_t sx_sel_work_words(uint32_t n);

/* The usable targets in failover order into out (room for n); returns the count.
 * Rate limits are not consulted and nothing is claimed. */
uint32_t sx_sel_order(sx_sel *s, const sx_health *h, double now, uint32_t *out, uint64_t *work);
uint32_t sx_sel_order_key(const sx_sel *s, const sx_health *h, double now, uint64_t key,
                          uint32_t *out, uint64_t *work);

/* One target for a new call: the first of the (keyed when haskey) order that
 * is not excluded (excl: n flags or NULL) and that sx_ht_take() accepts.
 * Returns its index, SX_NONE when nothing is usable, SX_LIMITED when every
 * usable candidate was at its rate limit (*wait: the shortest wait, s),
 * SX_LOCKERR when the table lock failed (errno set). */
int64_t sx_sel_pick(sx_sel *s, const sx_health *h, double now, int haskey, uint64_t key,
                    const uint8_t *excl, uint64_t *work, double *wait);

int sx_sel_state(const sx_sel *s, const sx_health *h, uint32_t i, double now);

#endif
