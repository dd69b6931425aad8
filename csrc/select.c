/* See select.h. */
#include "select.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

sx_sel *sx_sel_new(uint32_t n)
{
    sx_sel *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    size_t m = n ? n : 1;
    s->n = n;
    s->order = calloc(m, sizeof *s->order);
    s->gstart = calloc(m + 1, sizeof *s->gstart);
    s->gzero = calloc(m, sizeof *s->gzero);
    s->priority = calloc(m, sizeof *s->priority);
    s->weight = calloc(m, sizeof *s->weight);
    s->enabled = calloc(m, sizeof *s->enabled);
    s->salt = calloc(m, sizeof *s->salt);
    if (!s->order || !s->gstart || !s->gzero || !s->priority || !s->weight || !s->enabled ||
        !s->salt) {
        sx_sel_free(s);
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++)
        s->enabled[i] = 1;
    return s;
}

void sx_sel_free(sx_sel *s)
{
    if (!s)
        return;
    free(s->order);
    free(s->gstart);
    free(s->gzero);
    free(s->priority);
    free(s->weight);
    free(s->enabled);
    free(s->salt);
    free(s);
}

void sx_sel_set(sx_sel *s, uint32_t i, uint16_t priority, uint16_t weight, int enabled,
                uint64_t salt)
{
    s->priority[i] = priority;
    s->weight[i] = weight;
    s->enabled[i] = enabled ? 1 : 0;
    s->salt[i] = salt;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int sx_sel_finish(sx_sel *s)
{
    uint32_t n = s->n;
    uint64_t *keys = malloc((n ? n : 1) * sizeof *keys);
    if (!keys)
        return -1;
    /* sort key: priority, then weight == 0 (positive weights first), then index */
    for (uint32_t i = 0; i < n; i++)
        keys[i] = ((uint64_t)s->priority[i] << 33) | ((uint64_t)(s->weight[i] == 0) << 32) | i;
    qsort(keys, n, sizeof *keys, cmp_u64);
    s->ngroups = 0;
    for (uint32_t p = 0; p < n; p++) {
        uint32_t i = (uint32_t)keys[p];
        s->order[p] = i;
        if (p == 0 || s->priority[i] != s->priority[s->order[p - 1]]) {
            s->gstart[s->ngroups] = p;
            s->gzero[s->ngroups] = UINT32_MAX;
            s->ngroups++;
        }
        if (s->weight[i] == 0 && s->gzero[s->ngroups - 1] == UINT32_MAX)
            s->gzero[s->ngroups - 1] = p;
    }
    s->gstart[s->ngroups] = n;
    for (uint32_t g = 0; g < s->ngroups; g++)
        if (s->gzero[g] == UINT32_MAX)
            s->gzero[g] = s->gstart[g + 1];
    free(keys);
    return 0;
}

size_t sx_sel_work_words(uint32_t n)
{
    return 4 * ((size_t)n + 1);
}

int sx_sel_state(const sx_sel *s, const sx_health *h, uint32_t i, double now)
{
    if (!s->enabled[i])
        return SX_DISABLED;
    sx_hrec r;
    sx_ht_read(h, i, &r);
    if (r.drained)
        return SX_DRAINED;
    if (!r.out)
        return SX_UP;
    return sx_ht_now(&now) - r.out_since >= h->cooldown ? SX_PROBING : SX_OUT;
}

/* Usable members of group g: positives into idx/w (returns their count, sum in
 * *total), weight-0 ones into zidx (count in *nz). */
static uint32_t gather(const sx_sel *s, const sx_health *h, uint32_t g, double *now,
                       const uint8_t *excl, uint32_t *idx, uint64_t *w, uint64_t *total,
                       uint32_t *zidx, uint32_t *nz)
{
    uint32_t m = 0, z = 0;
    uint64_t sum = 0;
    sx_hrec r;
    for (uint32_t p = s->gstart[g]; p < s->gstart[g + 1]; p++) {
        uint32_t i = s->order[p];
        if (!s->enabled[i] || (excl && excl[i]))
            continue;
        sx_ht_read(h, i, &r);
        if (!sx_ht_usable(h, &r, now))
            continue;
        if (p < s->gzero[g]) {
            idx[m] = i;
            w[m] = s->weight[i];
            sum += w[m];
            m++;
        } else {
            zidx[z++] = i;
        }
    }
    *total = sum;
    *nz = z;
    return m;
}

/* Position of the next positive candidate among m (m >= 1) of total weight. */
static uint32_t draw_pos(sx_rng *rng, const uint64_t *w, uint32_t m, uint64_t total)
{
    if (m == 1)
        return 0;
    uint64_t r = sx_rng_uniform(rng, total - 1);
    uint64_t run = 0;
    uint32_t j = 0;
    for (;; j++) {
        run += w[j];
        if (run > r)
            return j;
    }
}

static uint32_t draw_zero(sx_rng *rng, uint32_t z)
{
    return z > 1 ? (uint32_t)sx_rng_uniform(rng, z - 1) : 0;
}

/* smallest 0-based position whose prefix sum is >= r (1 <= r <= total) */
static uint32_t fen_find(const uint64_t *tree, uint32_t size, uint64_t r)
{
    uint32_t pos = 0;
    uint32_t step = 1;
    while (step <= size / 2)
        step <<= 1;
    for (; step; step >>= 1) {
        uint32_t nxt = pos + step;
        if (nxt <= size && tree[nxt] < r) {
            pos = nxt;
            r -= tree[nxt];
        }
    }
    return pos;
}

static void fen_sub(uint64_t *tree, uint32_t size, uint32_t pos, uint64_t w)
{
    for (uint32_t k = pos + 1; k <= size; k += k & (0u - k))
        tree[k] -= w;
}

static uint32_t order_positive(sx_rng *rng, uint32_t m, uint64_t total, uint32_t *idx,
                               uint64_t *w, uint64_t *tree, uint32_t *out)
{
    uint32_t k = 0;
    if (m <= SX_SEL_SMALL) {
        while (m > 0) {
            uint32_t j = draw_pos(rng, w, m, total);
            out[k++] = idx[j];
            total -= w[j];
            memmove(idx + j, idx + j + 1, (m - j - 1) * sizeof *idx);
            memmove(w + j, w + j + 1, (m - j - 1) * sizeof *w);
            m--;
        }
        return k;
    }
    memset(tree, 0, ((size_t)m + 1) * sizeof *tree);
    for (uint32_t p = 1; p <= m; p++) {
        tree[p] += w[p - 1];
        uint32_t up = p + (p & (0u - p));
        if (up <= m)
            tree[up] += tree[p];
    }
    for (uint32_t left = m; left > 0; left--) {
        uint32_t pos;
        if (left == 1) {
            pos = fen_find(tree, m, 1);
        } else {
            uint64_t r = sx_rng_uniform(rng, total - 1);
            pos = fen_find(tree, m, r + 1);
        }
        out[k++] = idx[pos];
        total -= w[pos];
        fen_sub(tree, m, pos, w[pos]);
    }
    return k;
}

static uint32_t order_zero(sx_rng *rng, uint32_t z, uint32_t *zidx, uint32_t *out)
{
    uint32_t k = 0;
    while (z > 0) {
        uint32_t j = draw_zero(rng, z);
        out[k++] = zidx[j];
        memmove(zidx + j, zidx + j + 1, (z - j - 1) * sizeof *zidx);
        z--;
    }
    return k;
}

#define WORK_LAYOUT(work, n)                                                                  \
    uint64_t *w = (work);                                                                     \
    uint64_t *tree = (work) + ((size_t)(n) + 1);                                              \
    uint32_t *idx = (uint32_t *)((work) + 2 * ((size_t)(n) + 1));                             \
    uint32_t *zidx = (uint32_t *)((work) + 3 * ((size_t)(n) + 1))

uint32_t sx_sel_order(sx_sel *s, const sx_health *h, double now, uint32_t *out, uint64_t *work)
{
    WORK_LAYOUT(work, s->n);
    uint32_t k = 0;
    for (uint32_t g = 0; g < s->ngroups; g++) {
        uint64_t total;
        uint32_t nz;
        uint32_t m = gather(s, h, g, &now, NULL, idx, w, &total, zidx, &nz);
        k += order_positive(&s->rng, m, total, idx, w, tree, out + k);
        k += order_zero(&s->rng, nz, zidx, out + k);
    }
    return k;
}

static inline double score_of(uint64_t x, uint16_t weight)
{
    double u = ((double)(x >> 12) + 0.5) * 0x1p-52;
    return (double)weight / -log(u);
}

typedef struct {
    double score;
    uint64_t x;
    uint32_t pos; /* position in the listing: ties go to the earlier */
    uint32_t i;
} keyed;

static int cmp_keyed(const void *a, const void *b)
{
    const keyed *p = a, *q = b;
    if (p->score != q->score)
        return p->score > q->score ? -1 : 1;
    if (p->x != q->x)
        return p->x > q->x ? -1 : 1;
    return (p->pos > q->pos) - (p->pos < q->pos);
}

uint32_t sx_sel_order_key(const sx_sel *s, const sx_health *h, double now, uint64_t key,
                          uint32_t *out, uint64_t *work)
{
    /* work holds up to n keyed entries of 3 words (4 (n + 1) words are there) */
    keyed *kv = (keyed *)work;
    uint32_t k = 0;
    sx_hrec r;
    for (uint32_t g = 0; g < s->ngroups; g++) {
        uint32_t m = 0;
        for (uint32_t p = s->gstart[g]; p < s->gstart[g + 1]; p++) {
            uint32_t i = s->order[p];
            if (!s->enabled[i])
                continue;
            sx_ht_read(h, i, &r);
            if (!sx_ht_usable(h, &r, &now))
                continue;
            uint64_t x = sx_mix64(key ^ s->salt[i]);
            /* weight 0: score -1 puts them after every positive weight, ordered by x */
            kv[m].score = s->weight[i] ? score_of(x, s->weight[i]) : -1.0;
            kv[m].x = s->weight[i] ? 0 : x;
            kv[m].pos = p;
            kv[m].i = i;
            m++;
        }
        qsort(kv, m, sizeof *kv, cmp_keyed);
        for (uint32_t j = 0; j < m; j++)
            out[k++] = kv[j].i;
    }
    return k;
}

/* Try candidate i; 1 taken, 0 refused (updates *best_wait), -1 lock error. */
static int try_take(const sx_health *h, uint32_t i, double *now, double *best_wait, int *limited)
{
    double wt;
    int t = sx_ht_take(h, i, now, &wt);
    if (t == 0 && wt > 0) {
        if (!*limited || wt < *best_wait)
            *best_wait = wt;
        *limited = 1;
    }
    return t;
}

int64_t sx_sel_pick(sx_sel *s, const sx_health *h, double now, int haskey, uint64_t key,
                    const uint8_t *excl, uint64_t *work, double *wait)
{
    WORK_LAYOUT(work, s->n);
    (void)tree;
    int limited = 0;
    *wait = 0.0;
    for (uint32_t g = 0; g < s->ngroups; g++) {
        uint64_t total;
        uint32_t nz;
        uint32_t m = gather(s, h, g, &now, excl, idx, w, &total, zidx, &nz);
        if (haskey) {
            /* positives by score, then zeros by x: repeated best-of scan */
            double *sc = (double *)tree; /* reuse: m doubles */
            for (uint32_t j = 0; j < m; j++)
                sc[j] = score_of(sx_mix64(key ^ s->salt[idx[j]]), (uint16_t)w[j]);
            while (m > 0) {
                uint32_t b = 0;
                for (uint32_t j = 1; j < m; j++)
                    if (sc[j] > sc[b])
                        b = j;
                int t = try_take(h, idx[b], &now, wait, &limited);
                if (t != 0)
                    return t > 0 ? (int64_t)idx[b] : SX_LOCKERR;
                memmove(idx + b, idx + b + 1, (m - b - 1) * sizeof *idx);
                memmove(sc + b, sc + b + 1, (m - b - 1) * sizeof *sc);
                m--;
            }
            while (nz > 0) {
                uint32_t b = 0;
                uint64_t bx = sx_mix64(key ^ s->salt[zidx[0]]);
                for (uint32_t j = 1; j < nz; j++) {
                    uint64_t x = sx_mix64(key ^ s->salt[zidx[j]]);
                    if (x > bx) {
                        b = j;
                        bx = x;
                    }
                }
                int t = try_take(h, zidx[b], &now, wait, &limited);
                if (t != 0)
                    return t > 0 ? (int64_t)zidx[b] : SX_LOCKERR;
                memmove(zidx + b, zidx + b + 1, (nz - b - 1) * sizeof *zidx);
                nz--;
            }
            continue;
        }
        while (m > 0) {
            uint32_t j = draw_pos(&s->rng, w, m, total);
            int t = try_take(h, idx[j], &now, wait, &limited);
            if (t != 0)
                return t > 0 ? (int64_t)idx[j] : SX_LOCKERR;
            total -= w[j];
            memmove(idx + j, idx + j + 1, (m - j - 1) * sizeof *idx);
            memmove(w + j, w + j + 1, (m - j - 1) * sizeof *w);
            m--;
        }
        while (nz > 0) {
            uint32_t j = draw_zero(&s->rng, nz);
            int t = try_take(h, zidx[j], &now, wait, &limited);
            if (t != 0)
                return t > 0 ? (int64_t)zidx[j] : SX_LOCKERR;
            memmove(zidx + j, zidx + j + 1, (nz - j - 1) * sizeof *zidx);
            nz--;
        }
    }
    return limited ? SX_LIMITED : SX_NONE;
}
