/* The Horner part of an RBF sum (fem_crossdiff/fast/rbf.py, rbf): out[i] = floor + base[i] * sum_m a[m] R[i]^m,
 * with R = e^z and base = e^{-z^2/2} computed by numpy's vectorised exp. One pass over memory instead of numpy's
 * two per centre, the same operations in the same order (acc = acc * R + a[m], from the last coefficient); LANES
 * values at a time, so that their independent recurrences overlap (a single one waits on every multiply-add). */
#include <stddef.h>

#define LANES 8

void rbf_horner(long n, const double *R, const double *base, const double *a, int ncoef, double floor_,
                double *out)
{
    long i = 0;
    for (; i + LANES <= n; i += LANES) {
        double acc[LANES], r[LANES];
        for (int l = 0; l < LANES; l++) { acc[l] = a[ncoef - 1]; r[l] = R[i + l]; }
        for (int m = ncoef - 2; m >= 0; m--)
            for (int l = 0; l < LANES; l++) acc[l] = acc[l] * r[l] + a[m];
        for (int l = 0; l < LANES; l++) out[i + l] = acc[l] * base[i + l] + floor_;
    }
    for (; i < n; i++) {
        double r = R[i], acc = a[ncoef - 1];
        for (int m = ncoef - 2; m >= 0; m--) acc = acc * r + a[m];
        out[i] = acc * base[i] + floor_;
    }
}
