/* RFC 2782 weighted-priority selection with health state (sipedge.select).
 *
 * Targets are numbered 0..n-1 in the order the caller gave them. The set is
 * split into priority groups (ascending priority). Inside a group the members
 * are listed with the weight-0 targets first, then the others, each part in
 * the caller's order: the list RFC 2782 walks.
 *
 * order(): for each group, over its usable members, repeat until none is left:
 *   S = sum of the remaining weights; r = sx_rng_uniform(S) (in [0, S]);
 *   take the first remaining member whose running sum is >= r.
 * A group with one usable member left takes it without a draw. Groups of more
 * than SX_SEL_SMALL members use a Fenwick tree (O(m log m)); the draws and the
 * result are the same as the plain scan (r == 0 takes the first remaining
 * member: the next weight-0 one if any is left, else the first positive one).
 *
 * first(): the first step of order() only (same single draw, if any).
 *
 * sticky(key hash): weighted rendezvous hashing inside the first group with a
 * usable member: x_i = mix64(key ^ salt_i), u_i = ((x_i >> 12) + 0.5) / 2^52,
 * score_i = w_i / -log(u_i); highest score wins, the earlier member on a tie.
 * Weight-0 members are used only when no positive-weight member of the group
 * is usable; among them the highest x_i wins.
 *
 * Health (Kamailio dispatcher style): fail_threshold consecutive failures put
 * a target out; while out it is skipped until cooldown seconds have passed
 * since its last failure, then it is offered again ("probing"); a failure
 * while out restarts the cool-down; ok_threshold consecutive successes put it
 * back. A disabled target is never offered.
 *
 * No function here is thread safe by itself: the caller serialises calls on
 * one sx_sel (the Cython binding holds the GIL or a critical section).
 */
#ifndef SIPEDGE_SELECT_H
#define SIPEDGE_SELECT_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

#define SX_SEL_SMALL 32

enum { SX_UP = 0, SX_OUT = 1, SX_PROBING = 2, SX_DISABLED = 3 };

typedef struct {
    uint32_t n;
    uint32_t ngroups;
    uint32_t *order;      /* n target indices, group after group */
    uint32_t *gstart;     /* ngroups + 1 offsets into order */
    uint16_t *priority;   /* by target index */
    uint16_t *weight;
    uint8_t *enabled;
    uint64_t *salt;
    uint8_t *out;         /* health, by target index */
    uint32_t *fail_run;
    uint32_t *ok_run;
    double *out_since;
    uint64_t *fails;      /* totals since creation */
    uint64_t *oks;
    uint32_t n_out;
    uint32_t fail_threshold;
    uint32_t ok_threshold;
    double cooldown;
    sx_rng rng;
} sx_sel;

/* Allocate a set of n targets (all weight 0, priority 0, enabled). NULL on OOM. */
sx_sel *sx_sel_new(uint32_t n);
void sx_sel_free(sx_sel *s);
void sx_sel_set(sx_sel *s, uint32_t i, uint16_t priority, uint16_t weight, int enabled,
                uint64_t salt);
/* Build the groups after every sx_sel_set. 0 on success, -1 on OOM. */
int sx_sel_finish(sx_sel *s);

/* Words of uint64_t scratch that order()/first() need for n targets. */
size_t sx_sel_work_words(uint32_t n);

/* Writes the usable targets in failover order to out (room for n); returns the count. */
uint32_t sx_sel_order(sx_sel *s, double now, uint32_t *out, uint64_t *work);
/* The first target of the failover order, or -1 when none is usable. */
int64_t sx_sel_first(sx_sel *s, double now);
/* Sticky choice for a key hash, or -1 when none is usable. */
int64_t sx_sel_sticky(const sx_sel *s, double now, uint64_t key);

int sx_sel_usable(const sx_sel *s, uint32_t i, double now);
int sx_sel_state(const sx_sel *s, uint32_t i, double now);
/* Record a failure/success of target i; returns 1 when it went out/back in. */
int sx_sel_mark_failed(sx_sel *s, uint32_t i, double now);
int sx_sel_mark_ok(sx_sel *s, uint32_t i);

#endif
