/* The health table of a target set: one slot per target, in process memory
 * or in a file mapped by every worker process of an SBC (sipedge.select).
 *
 * Layout (little-endian, 8-byte aligned; the same bytes are read and written
 * by the pure-Python twin, sipedge._py.select, and by sipedge/health.py):
 *
 *   header, SX_HT_HEADER bytes:
 *     0 magic "SXHEALTH" (u64)   8 layout version u32   12 header size u32
 *    16 slot size u32           20 n targets u32        24 fingerprint u64
 *    32 fail_threshold u32      36 ok_threshold u32     40 cooldown f64
 *    48 created (wall clock) f64, the rest zero
 *   slot i at SX_HT_HEADER + i * SX_HT_SLOT:
 *     0 gen u64: number of writes; record copy[gen & 1] is the current one
 *     8 rate f64: call-rate limit in calls/s, 0 = none   (fixed at creation)
 *    16 tau f64: (burst - 1) / rate, seconds             (fixed at creation)
 *    24 reserved
 *    32 copy[0] (sx_hrec, 48 bytes), 80 copy[1]
 *
 * Concurrency. Readers never lock and never wait for a writer: they load gen,
 * copy record copy[gen & 1], and load gen again; a different value means a
 * write overlapped, and they retry. Writers (native and twin alike) take one
 * POSIX record lock on byte 0 of the file (fcntl F_SETLKW). Record locks
 * belong to a process, so threads of one process are first serialised by a
 * mutex per table file (here: one pthread mutex per device and inode, made
 * safe across fork() by pthread_atfork; in the twin a threading.Lock per
 * path). Then the writer builds the new
 * record from the current one, write it into the OTHER copy and then publish
 * it with one aligned 8-byte store gen + 1 (release order). A writer killed at
 * any point leaves the published copy intact and its lock is dropped by the
 * kernel, so a SIGKILLed process never leaves the table unusable and there is
 * nothing to repair. A private (in-process) table has fd -1: no file lock,
 * the same records.
 *
 * Rate limit (GCRA, equivalent to a token bucket of `burst` tokens refilled at
 * `rate` per second): tat is the theoretical arrival time; a call at `now` is
 * allowed when max(tat, now) - now <= tau, and then tat = max(tat, now) + 1/rate.
 * Otherwise the wait is max(tat, now) - tau - now. At most burst + rate - 1
 * calls fall in any one-second window (rate calls with burst 1).
 */
#ifndef SIPEDGE_HEALTH_H
#define SIPEDGE_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#define SX_HT_MAGIC UINT64_C(0x48544c4145485853) /* "SXHEALTH" little-endian */
#define SX_HT_VERSION 1u
#define SX_HT_HEADER 128u
#define SX_HT_SLOT 128u

typedef struct {
    uint32_t out;       /* 1: out of service (failures reached the threshold) */
    uint32_t drained;   /* 1: taken out by drain(); no new calls */
    uint32_t fail_run;  /* consecutive failures */
    uint32_t ok_run;    /* consecutive successes while out */
    double out_since;   /* clock of the last failure while out, or of the last probe claim */
    uint64_t fails;     /* totals since the table was created */
    uint64_t oks;
    double tat;         /* rate limit: theoretical arrival time */
} sx_hrec;

typedef struct {
    uint64_t gen;
    double rate;
    double tau;
    uint64_t reserved;
    sx_hrec copy[2];
} sx_hslot;

typedef struct {
    unsigned char *base; /* header + slots (caller-owned memory or a mapping) */
    uint32_t n;
    int fd;              /* file to lock, or -1 for a private table */
    int file;            /* registry entry of the file's process-wide mutex, or -1 */
    uint32_t fail_threshold;
    uint32_t ok_threshold;
    double cooldown;
    int any_rate;        /* some slot has a rate limit */
} sx_health;

/* Bind h to base (already holding a valid header); reads the thresholds from
 * it. For a file (fd >= 0) it registers the file's process-wide writer mutex:
 * 0 on success, -1 (errno set) when fstat fails or too many files are open. */
int sx_ht_bind(sx_health *h, unsigned char *base, int fd);
/* Drop the registration of sx_ht_bind. */
void sx_ht_unbind(sx_health *h);

/* Slots sit at multiples of SX_HT_SLOT past a header of SX_HT_HEADER bytes in a
 * page-aligned mapping (or a caller buffer aligned for sx_hslot), so every slot
 * is aligned for its atomic words: the cast through void * states that (a plain
 * byte-pointer cast is what -Wcast-align=strict refuses for aarch64). */
_Static_assert(SX_HT_HEADER % _Alignof(sx_hslot) == 0, "header keeps slots aligned");
_Static_assert(SX_HT_SLOT % _Alignof(sx_hslot) == 0, "slot size keeps slots aligned");
_Static_assert(sizeof(sx_hslot) <= SX_HT_SLOT, "a slot fits its stride");

static inline sx_hslot *sx_ht_slot(const sx_health *h, uint32_t i)
{
    return (sx_hslot *)(void *)(h->base + SX_HT_HEADER + (size_t)i * SX_HT_SLOT);
}

/* A consistent copy of slot i's current record (never blocks). */
void sx_ht_read(const sx_health *h, uint32_t i, sx_hrec *out);
/* Writers: lock (0, or -1 with errno set), then publish records, then unlock. */
int sx_ht_lock(const sx_health *h);
void sx_ht_unlock(const sx_health *h);
/* Under the lock: publish rec as slot i's new current record. */
void sx_ht_publish(const sx_health *h, uint32_t i, const sx_hrec *rec);

/* Clock readings: every `now` below may be NaN, meaning "CLOCK_MONOTONIC,
 * read when first needed" (only an out target or a rate limit needs it; the
 * same clock as Python's time.monotonic on Linux). */
double sx_ht_clock(void);

static inline double sx_ht_now(double *now)
{
    if (*now != *now)
        *now = sx_ht_clock();
    return *now;
}

/* Usable for a new call now: not drained, and up or its cool-down over. */
static inline int sx_ht_usable(const sx_health *h, const sx_hrec *r, double *now)
{
    return !r->drained && (!r->out || sx_ht_now(now) - r->out_since >= h->cooldown);
}

/* Health updates (each takes and drops the lock). Return 1 when the state
 * changed (went out / came back / drain flag changed), 0 if not, -1 on a lock error. */
int sx_ht_mark_failed(const sx_health *h, uint32_t i, double now);
int sx_ht_mark_ok(const sx_health *h, uint32_t i, double now);
int sx_ht_set_drained(const sx_health *h, uint32_t i, int drained);

/* Take target i for one new call at `now`: checks and consumes its rate limit
 * and, when it is out with its cool-down over, claims the single trial call
 * (restarts the cool-down so other workers keep skipping it).
 * Returns 1 taken, 0 refused (*wait set to the seconds until the rate limit
 * allows a call, or 0 when another worker claimed the trial), -1 lock error.
 * A target that is up with no rate limit is taken without any lock, and so is
 * the refusal of a target at its limit (tat never decreases, so a refusal seen
 * without the lock is the one the lock would give). */
int sx_ht_take(const sx_health *h, uint32_t i, double *now, double *wait);

#endif
