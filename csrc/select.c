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
    s->priority = calloc(m, sizeof *s->priority);
    s->weight = calloc(m, sizeof *s->weight);
    s->enabled = calloc(m, sizeof *s->enabled);
    s->salt = calloc(m, sizeof *s->salt);
    s->out = calloc(m, sizeof *s->out);
    s->fail_run = calloc(m, sizeof *s->fail_run);
    s->ok_run = calloc(m, sizeof *s->ok_run);
    s->out_since = calloc(m, sizeof *s->out_since);
    s->fails = calloc(m, sizeof *s->fails);
    s->oks = calloc(m, sizeof *s->oks);
    if (!s->order || !s->gstart || !s->priority || !s->weight || !s->enabled || !s->salt ||
        !s->out || !s->fail_run || !s->ok_run || !s->out_since || !s->fails || !s->oks) {
        sx_sel_free(s);
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++)
        s->enabled[i] = 1;
    s->fail_threshold = 1;
    s->ok_threshold = 1;
    return s;
}

void sx_sel_free(sx_sel *s)
{
    if (!s)
        return;
    free(s->order);
    free(s->gstart);
    free(s->priority);
    free(s->weight);
    free(s->enabled);
    free(s->salt);
    free(s->out);
    free(s->fail_run);
    free(s->ok_run);
    free(s->out_since);
    free(s->fails);
    free(s->oks);
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

/* sort key: priority, then weight > 0, then the caller's index (unique) */
static int cmp_key(const void *a, const void *b)
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
    for (uint32_t i = 0; i < n; i++)
        keys[i] = ((uint64_t)s->priority[i] << 33) | ((uint64_t)(s->weight[i] > 0) << 32) | i;
    qsort(keys, n, sizeof *keys, cmp_key);
    s->ngroups = 0;
    for (uint32_t p = 0; p < n; p++) {
        uint32_t i = (uint32_t)keys[p];
        s->order[p] = i;
        if (p == 0 || s->priority[i] != s->priority[s->order[p - 1]])
            s->gstart[s->ngroups++] = p;
    }
    s->gstart[s->ngroups] = n;
    free(keys);
    return 0;
}

size_t sx_sel_work_words(uint32_t n)
{
    return 3 * ((size_t)n + 1);
}

int sx_sel_usable(const sx_sel *s, uint32_t i, double now)
{
    if (!s->enabled[i])
        return 0;
    if (!s->out[i])
        return 1;
    return now - s->out_since[i] >= s->cooldown;
}

int sx_sel_state(const sx_sel *s, uint32_t i, double now)
{
    if (!s->enabled[i])
        return SX_DISABLED;
    if (!s->out[i])
        return SX_UP;
    return sx_sel_usable(s, i, now) ? SX_PROBING : SX_OUT;
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

static uint32_t order_group(sx_sel *s, uint32_t m, uint32_t nz, uint64_t total,
                            uint32_t *idx, uint64_t *w, uint64_t *tree, uint32_t *out)
{
    uint32_t k = 0;
    if (m <= SX_SEL_SMALL) {
        while (m > 1) {
            uint64_t r = sx_rng_uniform(&s->rng, total);
            uint64_t run = 0;
            uint32_t j = 0;
            for (;; j++) {
                run += w[j];
                if (run >= r)
                    break;
            }
            out[k++] = idx[j];
            total -= w[j];
            memmove(idx + j, idx + j + 1, (m - j - 1) * sizeof *idx);
            memmove(w + j, w + j + 1, (m - j - 1) * sizeof *w);
            m--;
        }
        out[k++] = idx[0];
        return k;
    }
    /* Fenwick tree over the positive weights w[nz..m) */
    uint32_t np = m - nz;
    memset(tree, 0, ((size_t)np + 1) * sizeof *tree);
    for (uint32_t p = 1; p <= np; p++) {
        tree[p] += w[nz + p - 1];
        uint32_t up = p + (p & (0u - p));
        if (up <= np)
            tree[up] += tree[p];
    }
    uint32_t zp = 0;
    for (uint32_t left = m; left > 0; left--) {
        uint64_t r = left > 1 ? sx_rng_uniform(&s->rng, total) : 0;
        if (r == 0 && zp < nz) {
            out[k++] = idx[zp++];
            continue;
        }
        uint32_t pos = fen_find(tree, np, r ? r : 1);
        out[k++] = idx[nz + pos];
        total -= w[nz + pos];
        fen_sub(tree, np, pos, w[nz + pos]);
    }
    return k;
}

uint32_t sx_sel_order(sx_sel *s, double now, uint32_t *out, uint64_t *work)
{
    uint64_t *w = work;
    uint64_t *tree = work + s->n + 1;
    uint32_t *idx = (uint32_t *)(work + 2 * ((size_t)s->n + 1));
    uint32_t k = 0;
    for (uint32_t g = 0; g < s->ngroups; g++) {
        uint32_t m = 0, nz = 0;
        uint64_t total = 0;
        for (uint32_t p = s->gstart[g]; p < s->gstart[g + 1]; p++) {
            uint32_t i = s->order[p];
            if (!sx_sel_usable(s, i, now))
                continue;
            idx[m] = i;
            w[m] = s->weight[i];
            total += w[m];
            nz += w[m] == 0;
            m++;
        }
        if (m)
            k += order_group(s, m, nz, total, idx, w, tree, out + k);
    }
    return k;
}

int64_t sx_sel_first(sx_sel *s, double now)
{
    for (uint32_t g = 0; g < s->ngroups; g++) {
        uint32_t a = s->gstart[g], b = s->gstart[g + 1];
        uint32_t m = 0;
        int64_t only = -1;
        uint64_t total = 0;
        for (uint32_t p = a; p < b; p++) {
            uint32_t i = s->order[p];
            if (sx_sel_usable(s, i, now)) {
                if (!m)
                    only = i;
                m++;
                total += s->weight[i];
            }
        }
        if (m == 0)
            continue;
        if (m == 1)
            return only;
        uint64_t r = sx_rng_uniform(&s->rng, total);
        uint64_t run = 0;
        for (uint32_t p = a; p < b; p++) {
            uint32_t i = s->order[p];
            if (!sx_sel_usable(s, i, now))
                continue;
            run += s->weight[i];
            if (run >= r)
                return i;
        }
    }
    return -1;
}

int64_t sx_sel_sticky(const sx_sel *s, double now, uint64_t key)
{
    for (uint32_t g = 0; g < s->ngroups; g++) {
        int64_t best = -1, bestz = -1;
        double best_score = 0.0;
        uint64_t best_x = 0;
        for (uint32_t p = s->gstart[g]; p < s->gstart[g + 1]; p++) {
            uint32_t i = s->order[p];
            if (!sx_sel_usable(s, i, now))
                continue;
            uint64_t x = sx_mix64(key ^ s->salt[i]);
            if (s->weight[i]) {
                double u = ((double)(x >> 12) + 0.5) * 0x1p-52;
                double score = (double)s->weight[i] / -log(u);
                if (best < 0 || score > best_score) {
                    best = i;
                    best_score = score;
                }
            } else if (bestz < 0 || x > best_x) {
                bestz = i;
                best_x = x;
            }
        }
        if (best >= 0)
            return best;
        if (bestz >= 0)
            return bestz;
    }
    return -1;
}

int sx_sel_mark_failed(sx_sel *s, uint32_t i, double now)
{
    s->fails[i]++;
    s->ok_run[i] = 0;
    if (s->fail_run[i] < UINT32_MAX)
        s->fail_run[i]++;
    if (s->out[i]) {
        s->out_since[i] = now; /* a failed probe restarts the cool-down */
        return 0;
    }
    if (s->fail_run[i] >= s->fail_threshold) {
        s->out[i] = 1;
        s->out_since[i] = now;
        s->n_out++;
        return 1;
    }
    return 0;
}

int sx_sel_mark_ok(sx_sel *s, uint32_t i)
{
    s->oks[i]++;
    s->fail_run[i] = 0;
    if (s->ok_run[i] < UINT32_MAX)
        s->ok_run[i]++;
    if (s->out[i] && s->ok_run[i] >= s->ok_threshold) {
        s->out[i] = 0;
        s->ok_run[i] = 0;
        s->n_out--;
        return 1;
    }
    return 0;
}
