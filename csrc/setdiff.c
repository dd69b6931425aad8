/* Difference of two sorted sets of fixed-size big-endian records: see setdiff.h. */
#include "setdiff.h"

#include <string.h>

static int ascending(const uint8_t *p, size_t n, size_t rec)
{
    for (size_t i = 1; i < n; i++)
        if (memcmp(p + (i - 1) * rec, p + i * rec, rec) >= 0)
            return 0;
    return 1;
}

int sx_sorted_diff(const uint8_t *a, size_t na, const uint8_t *b, size_t nb, size_t rec,
                   uint8_t *only_a, size_t *n_only_a, uint8_t *only_b, size_t *n_only_b)
{
    size_t i = 0, j = 0, oa = 0, ob = 0;

    *n_only_a = 0;
    *n_only_b = 0;
    if (!ascending(a, na, rec))
        return 1;
    if (!ascending(b, nb, rec))
        return 2;
    while (i < na && j < nb) {
        int c = memcmp(a + i * rec, b + j * rec, rec);
        if (c == 0) {
            i++;
            j++;
        } else if (c < 0) {
            memcpy(only_a + oa++ * rec, a + i++ * rec, rec);
        } else {
            memcpy(only_b + ob++ * rec, b + j++ * rec, rec);
        }
    }
    for (; i < na; i++)
        memcpy(only_a + oa++ * rec, a + i * rec, rec);
    for (; j < nb; j++)
        memcpy(only_b + ob++ * rec, b + j * rec, rec);
    *n_only_a = oa;
    *n_only_b = ob;
    return 0;
}
