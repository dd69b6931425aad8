/* See health.h. */
#include "health.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double sx_ht_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One writer mutex per table file (device, inode) in this process. */
#define SX_HT_FILES 256

typedef struct {
    dev_t dev;
    ino_t ino;
    int refs;
    pthread_mutex_t mu;
} ht_file;

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static ht_file reg[SX_HT_FILES];
static int atfork_done;

/* fork(): no mutex may be copied while held by a thread that does not exist in the child */
static void fork_prepare(void)
{
    pthread_mutex_lock(&reg_mu);
    for (int k = 0; k < SX_HT_FILES; k++)
        if (reg[k].refs)
            pthread_mutex_lock(&reg[k].mu);
}

static void fork_release(void)
{
    for (int k = 0; k < SX_HT_FILES; k++)
        if (reg[k].refs)
            pthread_mutex_unlock(&reg[k].mu);
    pthread_mutex_unlock(&reg_mu);
}

static int register_file(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -1;
    pthread_mutex_lock(&reg_mu);
    if (!atfork_done) {
        if (pthread_atfork(fork_prepare, fork_release, fork_release) != 0) {
            pthread_mutex_unlock(&reg_mu);
            errno = ENOMEM;
            return -1;
        }
        atfork_done = 1;
    }
    int free_k = -1;
    for (int k = 0; k < SX_HT_FILES; k++) {
        if (reg[k].refs && reg[k].dev == st.st_dev && reg[k].ino == st.st_ino) {
            reg[k].refs++;
            pthread_mutex_unlock(&reg_mu);
            return k;
        }
        if (!reg[k].refs && free_k < 0)
            free_k = k;
    }
    if (free_k < 0) {
        pthread_mutex_unlock(&reg_mu);
        errno = EMFILE;
        return -1;
    }
    reg[free_k].dev = st.st_dev;
    reg[free_k].ino = st.st_ino;
    reg[free_k].refs = 1;
    pthread_mutex_init(&reg[free_k].mu, NULL);
    pthread_mutex_unlock(&reg_mu);
    return free_k;
}

void sx_ht_unbind(sx_health *h)
{
    if (h->file < 0)
        return;
    pthread_mutex_lock(&reg_mu);
    if (--reg[h->file].refs == 0)
        pthread_mutex_destroy(&reg[h->file].mu);
    pthread_mutex_unlock(&reg_mu);
    h->file = -1;
}

int sx_ht_bind(sx_health *h, unsigned char *base, int fd)
{
    h->base = base;
    h->fd = fd;
    h->file = -1;
    memcpy(&h->n, base + 20, 4);
    memcpy(&h->fail_threshold, base + 32, 4);
    memcpy(&h->ok_threshold, base + 36, 4);
    memcpy(&h->cooldown, base + 40, 8);
    h->any_rate = 0;
    for (uint32_t i = 0; i < h->n; i++)
        if (sx_ht_slot(h, i)->rate > 0)
            h->any_rate = 1;
    if (fd >= 0) {
        h->file = register_file(fd);
        if (h->file < 0)
            return -1;
    }
    return 0;
}

void sx_ht_read(const sx_health *h, uint32_t i, sx_hrec *out)
{
    const sx_hslot *s = sx_ht_slot(h, i);
    for (;;) {
        uint64_t g1 = __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE);
        memcpy(out, &s->copy[g1 & 1], sizeof *out);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        uint64_t g2 = __atomic_load_n(&s->gen, __ATOMIC_RELAXED);
        if (g1 == g2)
            return;
    }
}

static int lock_op(const sx_health *h, short type)
{
    if (h->fd < 0)
        return 0;
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    while (fcntl(h->fd, F_SETLKW, &fl) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return 0;
}

int sx_ht_lock(const sx_health *h)
{
    if (h->file >= 0)
        pthread_mutex_lock(&reg[h->file].mu);
    if (lock_op(h, F_WRLCK) < 0) {
        int e = errno;
        if (h->file >= 0)
            pthread_mutex_unlock(&reg[h->file].mu);
        errno = e;
        return -1;
    }
    return 0;
}

void sx_ht_unlock(const sx_health *h)
{
    int e = errno;
    (void)lock_op(h, F_UNLCK);
    if (h->file >= 0)
        pthread_mutex_unlock(&reg[h->file].mu);
    errno = e;
}

void sx_ht_publish(const sx_health *h, uint32_t i, const sx_hrec *rec)
{
    sx_hslot *s = sx_ht_slot(h, i);
    uint64_t g = __atomic_load_n(&s->gen, __ATOMIC_RELAXED);
    memcpy(&s->copy[(g + 1) & 1], rec, sizeof *rec);
    __atomic_store_n(&s->gen, g + 1, __ATOMIC_RELEASE);
}

int sx_ht_mark_failed(const sx_health *h, uint32_t i, double now)
{
    sx_ht_now(&now);
    if (sx_ht_lock(h) < 0)
        return -1;
    sx_hrec r;
    sx_ht_read(h, i, &r);
    int changed = 0;
    r.fails++;
    r.ok_run = 0;
    if (r.fail_run < UINT32_MAX)
        r.fail_run++;
    if (r.out) {
        r.out_since = now; /* a failure while out restarts the cool-down */
    } else if (r.fail_run >= h->fail_threshold) {
        r.out = 1;
        r.out_since = now;
        changed = 1;
    }
    sx_ht_publish(h, i, &r);
    sx_ht_unlock(h);
    return changed;
}

int sx_ht_mark_ok(const sx_health *h, uint32_t i, double now)
{
    sx_ht_now(&now);
    if (sx_ht_lock(h) < 0)
        return -1;
    sx_hrec r;
    sx_ht_read(h, i, &r);
    int changed = 0;
    r.oks++;
    r.fail_run = 0;
    if (r.out) {
        if (r.ok_run < UINT32_MAX)
            r.ok_run++;
        if (r.ok_run >= h->ok_threshold) {
            r.out = 0;
            r.ok_run = 0;
            changed = 1;
        } else {
            r.out_since = now - h->cooldown; /* a good trial: the next one may go at once */
        }
    }
    sx_ht_publish(h, i, &r);
    sx_ht_unlock(h);
    return changed;
}

int sx_ht_set_drained(const sx_health *h, uint32_t i, int drained)
{
    if (sx_ht_lock(h) < 0)
        return -1;
    sx_hrec r;
    sx_ht_read(h, i, &r);
    int changed = (int)r.drained != (drained ? 1 : 0);
    if (changed) {
        r.drained = drained ? 1 : 0;
        sx_ht_publish(h, i, &r);
    }
    sx_ht_unlock(h);
    return changed;
}

int sx_ht_take(const sx_health *h, uint32_t i, double *nowp, double *wait)
{
    const sx_hslot *s = sx_ht_slot(h, i);
    double rate = s->rate;
    sx_hrec r;
    *wait = 0.0;
    if (!(rate > 0)) {
        sx_ht_read(h, i, &r);
        if (!r.out)
            return 1;
    } else {
        /* tat never decreases: a refusal read without the lock is the refusal
         * the lock would give, so a target at its limit costs no lock */
        sx_ht_read(h, i, &r);
        double now0 = sx_ht_now(nowp);
        double t0 = r.tat > now0 ? r.tat : now0;
        if (t0 - now0 > s->tau && !r.drained && !(r.out && now0 - r.out_since < h->cooldown)) {
            *wait = t0 - s->tau - now0;
            return 0;
        }
    }
    double now = sx_ht_now(nowp);
    if (sx_ht_lock(h) < 0)
        return -1;
    sx_ht_read(h, i, &r);
    int ok = 1;
    if (r.drained || (r.out && now - r.out_since < h->cooldown)) {
        ok = 0; /* drained, or another worker claimed the trial call meanwhile */
    } else if (rate > 0) {
        double t = r.tat > now ? r.tat : now;
        if (t - now > s->tau) {
            *wait = t - s->tau - now;
            ok = 0;
        } else {
            r.tat = t + 1.0 / rate;
        }
    }
    if (ok) {
        if (r.out)
            r.out_since = now; /* the trial call: others wait another cool-down */
        sx_ht_publish(h, i, &r);
    }
    sx_ht_unlock(h);
    return ok;
}
