r"""The derivative forms of a semi-implicit step's adjoint on the structured image mesh, in one C pass.

The step's residual tested with the adjoint :math:`\lambda` (:mod:`fem_crossdiff.taping`) is

.. math:: F[\lambda] = (w^{n+1} - w^n, \lambda) + \tau\lambda_c(u^{n+1} - f, \lambda_u) + \tau\mu(v^{n+1}, \lambda_v)
          + \tau\sum_{ij}\big(M_{ij}\,o_{ij}(w^n)\,\nabla w^{n+1}_j, \nabla\lambda_i\big) - \tau(\psi(v^n), \lambda_u),

:math:`o_{11} = G = g_{11}(s)h_{11}(v)`, :math:`o_{22} = g_{22}(v)`, :math:`o_{12} = o_{21} = \sqrt{G g_{22}}`,
:math:`s = |\nabla u^n|`, :math:`v = v^n`. With :math:`E_{ij} = \nabla\lambda_i\cdot\nabla w^{n+1}_j` at the
Gauss points, :math:`\partial F/\partial p` is a weighted sum over the Gauss points for every parameter (for
the RBF weights, of the basis functions times :math:`\partial F/\partial o`), and
:math:`\bar w^n = -\partial F/\partial w^n[\lambda]` is :math:`\mathcal M\lambda` minus a stiffness-type action
through :math:`s` and a mass-type vector through :math:`v`. :data:`STEP_ADJOINT_KERNEL` computes all of them
in one pass over the cells (RBF values, slopes and basis moments by the fast path's two-``exp`` Horner form),
instead of Firedrake's assembly of the two forms ``-derivative(F[λ], m)``; it equals that assembly to round-off
(``tests/test_fastassembly.py``). Models: RBF :math:`g_{11}(|\nabla u|)`, RBF :math:`g_{22}(v)`, and
:math:`h_{11}(v)`, :math:`\psi(v)` RBF or absent (the learned models, :meth:`FastStepAdjoint.supports`); the
others keep Firedrake's assembly.
"""
import ctypes
import functools
import math

import numpy as np

from .fastassembly import _ptr, compile_c
from .models import GRAD_EPS2, HORNER_CENTRES, HORNER_Z_MAX

__all__ = ["FastStepAdjoint", "STEP_ADJOINT_KERNEL"]

#: One pass over the cells, 16 at a time (so that the per-Gauss-point loops vectorise; ``exp`` is inlined for the
#: same reason). ``rbfd`` (4 × 4) describes g11, g22, h11, ψ: (c0, 1/σ, floor, M) with M = 0 for an absent one;
#: ``a`` holds their Horner coefficients :math:`w_m e^{-m^2/2}` one after the other. Output:
#: ``sums`` = (I11, I22, I12, I21, I_λ, I_μ, moments of g11, g22, h11, ψ) (the caller forms ∂F/∂p from them);
#: ``wbar`` (nodes × 2) += the corner contributions of :math:`\bar w^n`.
STEP_ADJOINT_KERNEL = r"""
#include <math.h>
#include <stdint.h>
#include <string.h>
#define ZMAX %(zmax)r
#define EPS2 %(eps2)r
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
"""


@functools.lru_cache(maxsize=None)
def step_adjoint_kernel():
    """The compiled :data:`STEP_ADJOINT_KERNEL` (a ctypes function), or None if it cannot be built here."""
    dp, ip = ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_int32)
    code = STEP_ADJOINT_KERNEL % {"zmax": HORNER_Z_MAX, "eps2": GRAD_EPS2}
    return compile_c(code, "fem_crossdiff_step_adjoint", [ctypes.c_int64, ip] + [dp] * 12)


class FastStepAdjoint:
    r""":math:`\bar w^n = -\partial F/\partial w^n[\lambda]` (nodes, 2) and
    :math:`-\partial F/\partial p[\lambda]` (the stage's parameter vector, :func:`learning.pack` order) of one
    step on the grid of ``q1``."""

    def __init__(self, q1, model):
        self.q1, self.model = q1, model
        self.corners = np.ascontiguousarray(q1.corners, dtype=np.int32)
        self.tables = [np.ascontiguousarray(t, dtype=np.float64) for t in (q1.to_gauss, q1.to_dx, q1.to_dy)]
        self.weight = q1.h ** 2 / 4                       # every Gauss point's weight (2×2 rule on an h-square)
        self.kernel = step_adjoint_kernel()
        self.calls = 0

    @staticmethod
    def supports(model):
        """True for the learned models' structure: RBF g11(|∇u|), RBF g22(v), h11(v) and ψ(v) RBF or absent, each
        RBF with a number of centres the Horner form takes (:data:`~fem_crossdiff.models.HORNER_CENTRES`)."""
        g11, g22, h11 = model.g11, model.g22, model.h11
        rbfs = [g for g in (g11, g22, h11) if g.kind == "rbf"]
        return (g11.kind == "rbf" and g11.variable == "grad_u" and g22.kind == "rbf" and g22.variable == "v"
                and (h11.kind == "one" or (h11.kind == "rbf" and h11.variable == "v"))
                and all(g.centres in HORNER_CENTRES for g in rbfs)
                and (model.psi is None or model.psi.centres in HORNER_CENTRES))

    @classmethod
    def create(cls, q1, model):
        """A :class:`FastStepAdjoint`, or None if the model is not supported or the kernel cannot be built."""
        if not cls.supports(model) or 4 * q1.nnodes >= 2 ** 31 or step_adjoint_kernel() is None:
            return None
        return cls(q1, model)

    def __call__(self, w_old, w_new, adj, f, stage, tau):
        """``(wbar, grad)`` for the states ``w_old``, ``w_new`` and adjoint ``adj`` (nodes, 2 each), data ``f``
        (nodes,), stage numbers ``stage`` (a dictionary) and step ``tau``."""
        m = self.model
        keys = m.functions
        rbfd = np.zeros((4, 4))
        a = []
        for row, (key, g) in zip(rbfd, keys):
            if g.kind == "rbf":
                row[:] = g.centre_values[0], 1.0 / g.width, g.floor, g.centres
                a += g.horner_coefficients(stage[g.parameter(key)])
        d11, d22, rho, beta = stage["d11"], stage["d22"], stage["rho"], stage["beta"]
        r = math.sqrt(d11 * d22)
        coef = np.array([self.weight, tau, d11, d22, rho * r + beta, rho * r - beta])
        nmom = sum(g.centres for _, g in keys if g.kind == "rbf")
        sums, wbar = np.zeros(6 + nmom), np.zeros((self.q1.nnodes, 2))
        arrays = [np.ascontiguousarray(x, dtype=np.float64) for x in (w_old, w_new, adj, f)]
        self.kernel(self.q1.ncells, _ptr(self.corners, ctypes.c_int32), *map(_ptr, arrays),
                    *map(_ptr, self.tables), _ptr(coef), _ptr(rbfd), _ptr(np.asarray(a, dtype=np.float64)),
                    _ptr(sums), _ptr(wbar))
        self.calls += 1
        I11, I22, I12, I21, I_lam, I_mu = sums[:6]
        dF = {"d11": I11 + rho * r / (2 * d11) * (I12 + I21), "d22": I22 + rho * r / (2 * d22) * (I12 + I21),
              "rho": r * (I12 + I21), "beta": I12 - I21, "lam": I_lam, "mu": I_mu}
        start = 6
        for key, g in keys:
            if g.kind == "rbf":
                dF[g.parameter(key)] = sums[start:start + g.centres] * np.exp(-0.5 * np.arange(g.centres) ** 2)
                start += g.centres
        grad = -tau * np.concatenate([np.atleast_1d(dF[name]) for name in m.parameter_names])
        return wbar, grad
