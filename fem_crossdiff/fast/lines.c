/* Line solves of the generic split scheme (fem_crossdiff/fast/generic.py): along every grid line, the
 * block-tridiagonal system with N x N blocks (N = the model's number of components, a compile-time constant)
 *
 *     L_i x_{i-1} + A_i x_i + U_i x_{i+1} = r_i,   A_i = B_i + tau (E_{i-1/2} + E_{i+1/2}),
 *     L_i = -tau E_{i-1/2},  U_i = -tau E_{i+1/2},
 *
 * B_i a full N x N block per node (the lumped mass times I - tau R'(w^n)), E an edge's coefficient: half the sum of
 * the cell coefficients D (N x N, row-major) of the one or two cells beside the edge. Block Gaussian elimination
 * (Thomas) along the line, each pivot block solved by Gaussian elimination with partial pivoting. With
 * TRANSPOSE != 0 every block is read transposed: the solve with the transposed matrix (the adjoint).
 *
 * The layout is given by strides, so one function serves rows and columns: line l (0 <= l < nl), position i
 * (0 <= i < len) is node l*sl + i*si; the edge between positions i and i+1 of line l borders the cells
 * a*cl + i*ci for a in {l-1, l} with 0 <= a < nl - 1. Rows of an H x W grid: nl = H, len = W, sl = W, si = 1,
 * cl = W - 1, ci = 1; columns: nl = W, len = H, sl = 1, si = W, cl = 1, ci = W - 1.
 * work: len * (N*N + N) doubles.
 */
#include <stddef.h>
#include <math.h>

#ifndef N
#define N 3
#endif
#define NN (N * N)

static inline void edge(const double *D, int nl, int l, int i, int len, long cl, long ci, int transpose,
                        double e[NN])
{
    for (int k = 0; k < NN; k++) e[k] = 0.0;
    if (i < 0 || i >= len - 1) return;
    for (int a = l - 1; a <= l; a++) {
        if (a < 0 || a >= nl - 1) continue;
        const double *d = D + (size_t)NN * ((size_t)a * cl + (size_t)i * ci);
        for (int p = 0; p < N; p++)
            for (int q = 0; q < N; q++)
                e[p * N + q] += 0.5 * (transpose ? d[q * N + p] : d[p * N + q]);
    }
}

/* Solve S X = R in place for M right-hand sides (R: N x M row-major), S destroyed (partial pivoting). */
static inline void dense_solve(double S[NN], double *R, int M)
{
    for (int k = 0; k < N; k++) {
        int piv = k;
        double best = fabs(S[k * N + k]);
        for (int r = k + 1; r < N; r++)
            if (fabs(S[r * N + k]) > best) { best = fabs(S[r * N + k]); piv = r; }
        if (piv != k) {
            for (int q = 0; q < N; q++) { double t = S[k * N + q]; S[k * N + q] = S[piv * N + q]; S[piv * N + q] = t; }
            for (int q = 0; q < M; q++) { double t = R[k * M + q]; R[k * M + q] = R[piv * M + q]; R[piv * M + q] = t; }
        }
        double inv = 1.0 / S[k * N + k];
        for (int r = k + 1; r < N; r++) {
            double f = S[r * N + k] * inv;
            if (f == 0.0) continue;
            for (int q = k; q < N; q++) S[r * N + q] -= f * S[k * N + q];
            for (int q = 0; q < M; q++) R[r * M + q] -= f * R[k * M + q];
        }
    }
    for (int k = N - 1; k >= 0; k--) {
        double inv = 1.0 / S[k * N + k];
        for (int q = 0; q < M; q++) {
            double s = R[k * M + q];
            for (int j = k + 1; j < N; j++) s -= S[k * N + j] * R[j * M + q];
            R[k * M + q] = s * inv;
        }
    }
}

void lines_solve(int nl, int len, long sl, long si, long cl, long ci, const double *B, const double *D, double tau,
                 const double *rhs, double *x, double *work, int transpose)
{
    double *C = work, *d = work + (size_t)len * NN;
    for (int l = 0; l < nl; l++) {
        double el[NN], er[NN], S[NN], R[N * (N + 1)];
        edge(D, nl, l, -1, len, cl, ci, transpose, el);
        for (int i = 0; i < len; i++) {
            size_t node = (size_t)l * sl + (size_t)i * si;
            const double *b = B + (size_t)NN * node;
            const double *r = rhs + (size_t)N * node;
            edge(D, nl, l, i, len, cl, ci, transpose, er);
            for (int p = 0; p < N; p++)
                for (int q = 0; q < N; q++)
                    S[p * N + q] = (transpose ? b[q * N + p] : b[p * N + q]) + tau * (el[p * N + q] + er[p * N + q]);
            /* right-hand sides: U = -tau Er (N columns) and r - L d_prev = r + tau El d_prev */
            for (int p = 0; p < N; p++) {
                for (int q = 0; q < N; q++) R[p * (N + 1) + q] = -tau * er[p * N + q];
                R[p * (N + 1) + N] = r[p];
            }
            if (i > 0) {
                const double *cp = C + (size_t)(i - 1) * NN, *dp = d + (size_t)(i - 1) * N;
                for (int p = 0; p < N; p++) {
                    for (int q = 0; q < N; q++) {
                        double s = 0.0;
                        for (int k = 0; k < N; k++) s += el[p * N + k] * cp[k * N + q];
                        S[p * N + q] += tau * s;
                    }
                    double s = 0.0;
                    for (int k = 0; k < N; k++) s += el[p * N + k] * dp[k];
                    R[p * (N + 1) + N] += tau * s;
                }
            }
            dense_solve(S, R, N + 1);
            for (int p = 0; p < N; p++) {
                for (int q = 0; q < N; q++) C[(size_t)i * NN + p * N + q] = R[p * (N + 1) + q];
                d[(size_t)i * N + p] = R[p * (N + 1) + N];
            }
            for (int k = 0; k < NN; k++) el[k] = er[k];
        }
        /* back substitution: x_i = d_i - C_i x_{i+1} */
        double *xl = x + (size_t)N * ((size_t)l * sl + (size_t)(len - 1) * si);
        for (int p = 0; p < N; p++) xl[p] = d[(size_t)(len - 1) * N + p];
        for (int i = len - 2; i >= 0; i--) {
            double *xi = x + (size_t)N * ((size_t)l * sl + (size_t)i * si);
            const double *xn = x + (size_t)N * ((size_t)l * sl + (size_t)(i + 1) * si);
            for (int p = 0; p < N; p++) {
                double s = d[(size_t)i * N + p];
                for (int q = 0; q < N; q++) s -= C[(size_t)i * NN + p * N + q] * xn[q];
                xi[p] = s;
            }
        }
    }
}
