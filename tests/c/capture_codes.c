/* sx_cap_classify's codes array: frames counted by earlier calls without codes
 * must not make a later call with codes write past the array (run under ASan
 * by tests/test_c_api.py), and more allowlist values than a code can name are
 * refused in C. Prints "ok" and exits 0 when every check holds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture.h"

#define NFRAMES 10000u
#define FIRST 5000u

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4); /* native order: the magic below says which */
}

static int fail(const char *what)
{
    fprintf(stderr, "FAIL: %s\n", what);
    return 1;
}

int main(void)
{
    size_t len = 24 + NFRAMES * (16 + 14);
    uint8_t *buf = calloc(1, len);
    if (!buf)
        return fail("calloc");
    put32(buf, 0xa1b2c3d4u);
    buf[4] = 2; /* version 2.4, byte order of the magic */
    buf[6] = 4;
    put32(buf + 16, 65535);
    put32(buf + 20, 1); /* Ethernet */
    uint8_t *p = buf + 24;
    for (uint32_t i = 0; i < NFRAMES; i++, p += 16 + 14) {
        put32(p + 8, 14);
        put32(p + 12, 14);
        p[16 + 12] = 0x08; /* ARP: not IP */
        p[16 + 13] = 0x06;
    }

    sx_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    uint64_t counts[SX_NKINDS * 2] = {0};
    sx_capture cap;
    memset(&cap, 0, sizeof cap);
    if (sx_cap_open(&cap, buf, len) != 0)
        return fail("sx_cap_open");
    /* first the counts only, as capture.h allows */
    if (sx_cap_classify(&cfg, &cap, FIRST, counts, NULL, NULL) != 1)
        return fail("first call: frames should remain");
    /* then with codes: frame indexes start at FIRST, past one doubling of 4096 */
    uint32_t *codes = NULL;
    size_t codes_cap = 0;
    if (sx_cap_classify(&cfg, &cap, 0, counts, &codes, &codes_cap) != 0)
        return fail("second call: should reach the end");
    if (codes_cap < NFRAMES)
        return fail("codes array smaller than the frame count");
    uint32_t want = (uint32_t)SX_K_OTHER | (SX_F_NOT_IP << 4); /* no match: (−1 + 1) << 8 */
    for (uint32_t k = FIRST; k < NFRAMES; k++)
        if (codes[k] != want)
            return fail("wrong code");
    if (counts[0] != NFRAMES)
        return fail("wrong count");
    free(codes);

    /* a configuration with more values than a code's 24 bits can name */
    cfg.nvals = (size_t)SX_MAX_VALUES + 1;
    memset(&cap, 0, sizeof cap);
    if (sx_cap_open(&cap, buf, len) != 0)
        return fail("sx_cap_open again");
    codes = NULL;
    codes_cap = 0;
    if (sx_cap_classify(&cfg, &cap, 0, counts, &codes, &codes_cap) != -3)
        return fail("too many values with codes: -3 expected");
    if (codes != NULL || cap.frames != 0)
        return fail("the refused call did something");
    if (sx_cap_classify(&cfg, &cap, 0, counts, NULL, NULL) != 0)
        return fail("counts only: any number of values is fine");
    free(buf);
    puts("ok");
    return 0;
}
