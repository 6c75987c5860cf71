/* A semi-implicit step's adjoint derivative forms in one pass over the cells (fem_crossdiff/fast/adjoint.py,
   FastStepAdjoint), 16 cells at a time so that the per-Gauss-point loops vectorise (exp is inlined for the same
   reason). rbfd (4 x 4) describes g11, g22, h11, psi: (c0, 1/sigma, floor, M) with M = 0 for an absent one; a
   holds their Horner coefficients w_m e^{-m^2/2} one after the other. Output: sums = (I11, I22, I12, I21,
   I_lam, I_mu, moments of g11, g22, h11, psi) (the caller forms dF/dp from them); wbar (nodes x 2) += the corner
   contributions of wbar^n. ZMAX (the clip of z) and EPS2 (the regularisation of |grad u|^2) are defined before
   this source when it is compiled. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#define BATCH 64   /* Gauss points per batch: 16 cells */

/* e^x for -708 < x < 709 without a libm call, so that loops over Gauss points vectorise: 2^k e^r with
   k = rint(x / ln 2), r = x - k ln 2 (Cody-Waite, |r| <= ln 2 / 2), e^r by its Taylor polynomial to degree
   13 (truncation below 1e-17 relative; a few ulp in all). */
static inline double fexp(double x)
{
    const double kd = rint(x * 1.4426950408889634);
    const double r = (x - kd * 6.93147180369123816490e-01) - kd * 1.90821492927058770002e-10;
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    const int64_t bits = ((int64_t)kd + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, 8);
    return p * scale;
}

/* An RBF at n points, by the fast path's Horner form in R = e^z (z clipped): value g, slope dg/ds (0 where
   z is clipped), and R, e = e^{-z^2/2} for the basis moments. The points are independent chains, so the
   Horner loops overlap and vectorise (the kernel hands over a batch of cells at a time). */
static inline void rbf_n(int n, const double *d, const double *a, const double *s, double *g, double *dg,
                         double *R, double *e)
{
    const int M = (int)d[3];
    double z[BATCH], p[BATCH], dp[BATCH];
    for (int q = 0; q < n; q++) {
        z[q] = (s[q] - d[0]) * d[1];
        dg[q] = fabs(z[q]) < ZMAX ? d[1] : 0.0;
        z[q] = z[q] > ZMAX ? ZMAX : (z[q] < -ZMAX ? -ZMAX : z[q]);
        R[q] = fexp(z[q]);
        e[q] = fexp(-0.5 * z[q] * z[q]);
        p[q] = a[M - 1];
        dp[q] = 0.0;
    }
    for (int m = M - 2; m >= 0; m--)
        for (int q = 0; q < n; q++) {
            dp[q] = dp[q] * R[q] + p[q];
            p[q] = p[q] * R[q] + a[m];
        }
    for (int q = 0; q < n; q++) {
        g[q] = d[2] + e[q] * p[q];
        dg[q] *= e[q] * (R[q] * dp[q] - z[q] * p[q]);
    }
}

/* mom[m] += sum_q x_q e_q R_q^m (the caller scales by e^{-m^2/2}: mom[m] = sum_q x_q phi_m(z_q)) */
static inline void moments_n(int n, int M, const double *x, const double *R, const double *e, double *mom)
{
    double t[BATCH];
    for (int q = 0; q < n; q++)
        t[q] = x[q] * e[q];
    for (int m = 0; m < M; m++) {
        double acc = 0.0;
        for (int q = 0; q < n; q++) {
            acc += t[q];
            t[q] *= R[q];
        }
        mom[m] += acc;
    }
}

void fem_crossdiff_step_adjoint(int64_t ncells, const int32_t *corners, const double *w0, const double *w1,
                                const double *lam, const double *f, const double *tg, const double *tx,
                                const double *ty, const double *coef, const double *rbfd, const double *a,
                                double *sums, double *wbar)
{
    const double W = coef[0], tau = coef[1], d11 = coef[2], d22 = coef[3], M12 = coef[4], M21 = coef[5];
    const double *d1 = rbfd, *d2 = rbfd + 4, *dh = rbfd + 8, *dp = rbfd + 12;
    const int M1 = (int)d1[3], M2 = (int)d2[3], Mh = (int)dh[3], Mp = (int)dp[3];
    const double *a1 = a, *a2 = a + M1, *ah = a + M1 + M2, *ap = ah + Mh;
    double *mom1 = sums + 6, *mom2 = mom1 + M1, *momh = mom2 + M2, *momp = momh + Mh;
    double I11 = 0, I22 = 0, I12 = 0, I21 = 0, Il = 0, Im = 0;
    /* per Gauss point of the batch (index 4 * cell + q) */
    double gx0[BATCH], gy0[BATCH], v[BATCH], s[BATCH], E11[BATCH], E12[BATCH], E21[BATCH], E22[BATCH];
    double luq[BATCH], lvq[BATCH], g1[BATCH], dg1[BATCH], R1[BATCH], e1[BATCH], g2[BATCH], dg2[BATCH];
    double R2[BATCH], e2[BATCH], h[BATCH], dh1[BATCH], Rh[BATCH], eh[BATCH], x1[BATCH], x2[BATCH], xh[BATCH];
    double cs[BATCH], cv[BATCH], gp[BATCH], dgp[BATCH], Rp[BATCH], ep[BATCH], xp[BATCH];
    for (int64_t c0 = 0; c0 < ncells; c0 += BATCH / 4) {
        const int nb = ncells - c0 < BATCH / 4 ? (int)(ncells - c0) : BATCH / 4, n = 4 * nb;
        for (int b = 0; b < nb; b++) {
            const int32_t *nd = corners + 4 * (c0 + b);
            double u0[4], v0[4], u1[4], v1[4], lu[4], lv[4], fc[4];
            for (int k = 0; k < 4; k++) {
                const int64_t i = nd[k];
                u0[k] = w0[2 * i]; v0[k] = w0[2 * i + 1]; u1[k] = w1[2 * i]; v1[k] = w1[2 * i + 1];
                lu[k] = lam[2 * i]; lv[k] = lam[2 * i + 1]; fc[k] = f[i];
            }
            for (int q = 0; q < 4; q++) {
                const int p = 4 * b + q;
                double gx = 0, gy = 0, vq = 0, lq = 0, mq = 0, ax = 0, ay = 0, bx = 0, by = 0, cx = 0, cy = 0;
                double dx = 0, dy = 0, u1q = 0, v1q = 0, fq = 0;
                for (int k = 0; k < 4; k++) {
                    const double X = tx[4 * k + q], Y = ty[4 * k + q], G = tg[4 * k + q];
                    gx += u0[k] * X; gy += u0[k] * Y; vq += v0[k] * G;
                    ax += lu[k] * X; ay += lu[k] * Y; bx += lv[k] * X; by += lv[k] * Y;
                    cx += u1[k] * X; cy += u1[k] * Y; dx += v1[k] * X; dy += v1[k] * Y;
                    lq += lu[k] * G; mq += lv[k] * G; u1q += u1[k] * G; v1q += v1[k] * G; fq += fc[k] * G;
                }
                gx0[p] = gx; gy0[p] = gy; v[p] = vq; luq[p] = lq; lvq[p] = mq;
                E11[p] = ax * cx + ay * cy; E12[p] = ax * dx + ay * dy;
                E21[p] = bx * cx + by * cy; E22[p] = bx * dx + by * dy;
                s[p] = sqrt(gx * gx + gy * gy + EPS2);
                Il += (u1q - fq) * lq; Im += v1q * mq;
            }
        }
        rbf_n(n, d1, a1, s, g1, dg1, R1, e1);
        rbf_n(n, d2, a2, v, g2, dg2, R2, e2);
        if (Mh > 0)
            rbf_n(n, dh, ah, v, h, dh1, Rh, eh);
        else
            for (int q = 0; q < n; q++) {
                h[q] = 1.0;
                dh1[q] = 0.0;
            }
        if (Mp > 0)
            rbf_n(n, dp, ap, v, gp, dgp, Rp, ep);
        else
            for (int q = 0; q < n; q++)
                dgp[q] = 0.0;
        for (int q = 0; q < n; q++) {
            const double G = g1[q] * h[q], o = sqrt(G * g2[q]);
            const double X = M12 * E12[q] + M21 * E21[q];
            const double dFdG = d11 * E11[q] + X * g2[q] / (2 * o), dFdg2 = d22 * E22[q] + X * G / (2 * o);
            I11 += G * E11[q]; I22 += g2[q] * E22[q]; I12 += o * E12[q]; I21 += o * E21[q];
            x1[q] = W * h[q] * dFdG; x2[q] = W * dFdg2; xh[q] = W * g1[q] * dFdG;
            cs[q] = W * dg1[q] * h[q] * dFdG / s[q];
            cv[q] = W * (g1[q] * dh1[q] * dFdG + dg2[q] * dFdg2 - dgp[q] * luq[q]);
            xp[q] = -W * luq[q];
        }
        moments_n(n, M1, x1, R1, e1, mom1);
        moments_n(n, M2, x2, R2, e2, mom2);
        if (Mh > 0)
            moments_n(n, Mh, xh, Rh, eh, momh);
        if (Mp > 0)
            moments_n(n, Mp, xp, Rp, ep, momp);
        for (int b = 0; b < nb; b++) {
            const int32_t *nd = corners + 4 * (c0 + b);
            for (int k = 0; k < 4; k++) {
                double bu = 0, bv = 0;
                for (int q = 0; q < 4; q++) {
                    const int p = 4 * b + q;
                    const double phi = tg[4 * k + q];
                    bu += W * luq[p] * phi - tau * cs[p] * (gx0[p] * tx[4 * k + q] + gy0[p] * ty[4 * k + q]);
                    bv += (W * lvq[p] - tau * cv[p]) * phi;
                }
                wbar[2 * (int64_t)nd[k]] += bu;
                wbar[2 * (int64_t)nd[k] + 1] += bv;
            }
        }
    }
    sums[0] = W * I11; sums[1] = W * I22; sums[2] = W * I12; sums[3] = W * I21; sums[4] = W * Il; sums[5] = W * Im;
}
