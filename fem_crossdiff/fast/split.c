/* Line solves of the split scheme (fem_crossdiff/fast/split.py): along every grid line, the block-tridiagonal
 * system with 2x2 blocks
 *
 *     L_i x_{i-1} + A_i x_i + U_i x_{i+1} = r_i,   A_i = diag(b_i) + tau (E_{i-1/2} + E_{i+1/2}),
 *     L_i = -tau E_{i-1/2},  U_i = -tau E_{i+1/2},
 *
 * by block Gaussian elimination without pivoting (Thomas): the symmetric part of every A is positive definite
 * (b > 0 and every E has a positive semi-definite symmetric part), so every pivot block of the elimination has a
 * positive definite symmetric part too and is invertible. With TRANSPOSE != 0 every E is read transposed: the
 * solve with the transposed matrix (the adjoint).
 *
 * The grid has H rows and W columns of nodes, node (r, c) at r*W + c; values of a node are 2 doubles (u, v),
 * diagonal b likewise. x-lines are the rows, y-lines the columns. The edge coefficients are formed on the fly from
 * the cell coefficients D ((H-1) x (W-1) cells, cell (r, c) between nodes rows r, r+1 and columns c, c+1, 4
 * doubles each: d11, d12, d21, d22): an edge's E is half the sum of the one or two cells beside it; an edge beyond
 * the grid is 0.
 *
 * Each line's elimination is a recurrence (every node waits for the previous one), so BLOCK lines are eliminated
 * together, position by position: independent work for the processor to overlap, and for the y-lines contiguous
 * memory.
 */
#include <stddef.h>
#include <string.h>

#ifndef BLOCK
#define BLOCK 16
#endif

/* E of the x-edge (r, c)-(r, c+1), c in [-1, W-1]: cells (r-1, c) and (r, c); 0 outside the grid. */
static inline void edge_x(const double *D, int H, int W, int r, int c, int transpose, double e[4])
{
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    if (c >= 0 && c < W - 1) {
        if (r >= 1) {
            const double *d = D + 4 * ((size_t)(r - 1) * (W - 1) + c);
            s0 += d[0]; s1 += d[1]; s2 += d[2]; s3 += d[3];
        }
        if (r <= H - 2) {
            const double *d = D + 4 * ((size_t)r * (W - 1) + c);
            s0 += d[0]; s1 += d[1]; s2 += d[2]; s3 += d[3];
        }
    }
    e[0] = 0.5 * s0; e[3] = 0.5 * s3;
    e[1] = 0.5 * (transpose ? s2 : s1);
    e[2] = 0.5 * (transpose ? s1 : s2);
}

/* E of the y-edge (r, c)-(r+1, c), r in [-1, H-1]: cells (r, c-1) and (r, c); 0 outside the grid. */
static inline void edge_y(const double *D, int H, int W, int r, int c, int transpose, double e[4])
{
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    if (r >= 0 && r < H - 1) {
        if (c >= 1) {
            const double *d = D + 4 * ((size_t)r * (W - 1) + c - 1);
            s0 += d[0]; s1 += d[1]; s2 += d[2]; s3 += d[3];
        }
        if (c <= W - 2) {
            const double *d = D + 4 * ((size_t)r * (W - 1) + c);
            s0 += d[0]; s1 += d[1]; s2 += d[2]; s3 += d[3];
        }
    }
    e[0] = 0.5 * s0; e[3] = 0.5 * s3;
    e[1] = 0.5 * (transpose ? s2 : s1);
    e[2] = 0.5 * (transpose ? s1 : s2);
}

/* One elimination step at a node: pivot S = A - L C_prev (L = -tau El), C = S^{-1} U (U = -tau Er),
 * d = S^{-1} (r - L d_prev); cprev, dprev are 0 at a line's first node (El = 0 there). */
static inline void eliminate(const double *b, const double *el, const double *er, double tau,
                             const double *cprev, const double *dprev, const double *r, double *c, double *d)
{
    double a11 = b[0] + tau * (el[0] + er[0]), a12 = tau * (el[1] + er[1]);
    double a21 = tau * (el[2] + er[2]), a22 = b[1] + tau * (el[3] + er[3]);
    /* S = A - L C_prev = A + tau El C_prev; rhs - L d_prev = rhs + tau El d_prev */
    a11 += tau * (el[0] * cprev[0] + el[1] * cprev[2]);
    a12 += tau * (el[0] * cprev[1] + el[1] * cprev[3]);
    a21 += tau * (el[2] * cprev[0] + el[3] * cprev[2]);
    a22 += tau * (el[2] * cprev[1] + el[3] * cprev[3]);
    double r1 = r[0] + tau * (el[0] * dprev[0] + el[1] * dprev[1]);
    double r2 = r[1] + tau * (el[2] * dprev[0] + el[3] * dprev[1]);
    double inv = 1.0 / (a11 * a22 - a12 * a21);
    double i11 = a22 * inv, i12 = -a12 * inv, i21 = -a21 * inv, i22 = a11 * inv;
    c[0] = -tau * (i11 * er[0] + i12 * er[2]);        /* C = S^{-1} U = -tau S^{-1} Er */
    c[1] = -tau * (i11 * er[1] + i12 * er[3]);
    c[2] = -tau * (i21 * er[0] + i22 * er[2]);
    c[3] = -tau * (i21 * er[1] + i22 * er[3]);
    d[0] = i11 * r1 + i12 * r2;
    d[1] = i21 * r1 + i22 * r2;
}

static inline void back(const double *c, const double *d, const double *xn, double *x)
{
    x[0] = d[0] - (c[0] * xn[0] + c[1] * xn[1]);
    x[1] = d[1] - (c[2] * xn[0] + c[3] * xn[1]);
}

static const double ZERO[4] = {0.0, 0.0, 0.0, 0.0};

/* Solve along the rows (x-lines), BLOCK rows at a time; work: 6 * BLOCK * W doubles. */
void split_solve_x(int H, int W, const double *b, const double *D, double tau, const double *rhs, double *x,
                   double *work, int transpose)
{
    double *C = work, *dd = work + 4 * (size_t)BLOCK * W;
    double E[2][BLOCK][4];                           /* each lane's left and right edge: the right one moves left */
    for (int r0 = 0; r0 < H; r0 += BLOCK) {
        int nb = H - r0 < BLOCK ? H - r0 : BLOCK;
        for (int j = 0; j < nb; j++) edge_x(D, H, W, r0 + j, -1, transpose, E[0][j]);
        for (int c = 0; c < W; c++) {
            double (*el)[4] = E[c & 1], (*er)[4] = E[(c + 1) & 1];
            for (int j = 0; j < nb; j++) {
                int r = r0 + j;
                size_t n = (size_t)r * W + c, k = (size_t)c * BLOCK + j;
                edge_x(D, H, W, r, c, transpose, er[j]);
                eliminate(b + 2 * n, el[j], er[j], tau, c ? C + 4 * (k - BLOCK) : ZERO,
                          c ? dd + 2 * (k - BLOCK) : ZERO, rhs + 2 * n, C + 4 * k, dd + 2 * k);
            }
        }
        for (int j = 0; j < nb; j++) {
            size_t n = (size_t)(r0 + j) * W + W - 1, k = (size_t)(W - 1) * BLOCK + j;
            x[2 * n] = dd[2 * k];
            x[2 * n + 1] = dd[2 * k + 1];
        }
        for (int c = W - 2; c >= 0; c--) {
            for (int j = 0; j < nb; j++) {
                size_t n = (size_t)(r0 + j) * W + c, k = (size_t)c * BLOCK + j;
                back(C + 4 * k, dd + 2 * k, x + 2 * (n + 1), x + 2 * n);
            }
        }
    }
}

/* Solve along the columns (y-lines), BLOCK columns at a time (contiguous); work: 6 * BLOCK * H doubles. */
void split_solve_y(int H, int W, const double *b, const double *D, double tau, const double *rhs, double *x,
                   double *work, int transpose)
{
    double *C = work, *dd = work + 4 * (size_t)BLOCK * H;
    double E[2][BLOCK][4];
    for (int c0 = 0; c0 < W; c0 += BLOCK) {
        int nb = W - c0 < BLOCK ? W - c0 : BLOCK;
        for (int j = 0; j < nb; j++) edge_y(D, H, W, -1, c0 + j, transpose, E[0][j]);
        for (int r = 0; r < H; r++) {
            double (*el)[4] = E[r & 1], (*er)[4] = E[(r + 1) & 1];
            for (int j = 0; j < nb; j++) {
                int c = c0 + j;
                size_t n = (size_t)r * W + c, k = (size_t)r * BLOCK + j;
                edge_y(D, H, W, r, c, transpose, er[j]);
                eliminate(b + 2 * n, el[j], er[j], tau, r ? C + 4 * (k - BLOCK) : ZERO,
                          r ? dd + 2 * (k - BLOCK) : ZERO, rhs + 2 * n, C + 4 * k, dd + 2 * k);
            }
        }
        for (int j = 0; j < nb; j++) {
            size_t n = (size_t)(H - 1) * W + c0 + j, k = (size_t)(H - 1) * BLOCK + j;
            x[2 * n] = dd[2 * k];
            x[2 * n + 1] = dd[2 * k + 1];
        }
        for (int r = H - 2; r >= 0; r--) {
            for (int j = 0; j < nb; j++) {
                size_t n = (size_t)r * W + c0 + j, k = (size_t)r * BLOCK + j;
                back(C + 4 * k, dd + 2 * k, x + 2 * (n + W), x + 2 * n);
            }
        }
    }
}
