r"""Reference restorers for deblurring, inpainting and upscaling: the anchors a learned model is measured against.

Each is numpy in, numpy out, grey ``(H, W)`` or colour ``(H, W, C)`` (channel by channel), on the [0, 1] scale,
with the forward operators of :mod:`.degrade` (blur with the mirror boundary, a mask, the k×k block mean). The
*oracle* ones choose their parameter per image by the PSNR against the clean image: an upper bound of what the
method can do, not a method a user can run.

**Deblurring**, :math:`f = K u + n`:

- Richardson–Lucy (scikit-image's iteration, :func:`richardson_lucy_oracle`): :math:`u^{k+1} = u^k \cdot
  K^\top\big(f / K u^k\big)`, from :math:`u^0 = \tfrac12`, stopped at the count of :data:`RL_COUNTS` best for the
  image (the count is its regulariser). The iterates are snapshots of one run; each equals
  ``skimage.restoration.richardson_lucy(f, psf, count)`` on the padded image (a test checks it to round-off).
- unsupervised Wiener (``skimage.restoration.unsupervised_wiener``): the Wiener–Hunt filter with the noise and
  image precisions sampled by its Gibbs sampler (fixed seed), no parameter.
- TV deconvolution with the oracle weight (:func:`tv_restore` with :math:`A = K`).

Both scikit-image methods convolve with zero (RL) or periodic (Wiener) boundaries. RL runs here on the image
padded by mirror reflection by the PSF's radius and cropped back, Wiener on one period of the image's whole-sample
symmetric extension (:math:`(2H-2)\times(2W-2)`, on which its circular convolution *is* the mirror-boundary blur),
so that the border does not count against them. RL gets :math:`\max(f, 0)` (its multiplicative update needs
non-negative data).

**Inpainting**, :math:`f = u` where the mask :math:`m` is False (True = missing, as ``inpaint_biharmonic``):
biharmonic (``skimage.restoration.inpaint_biharmonic``) and TV with the oracle weight (:math:`A = \mathrm{diag}
(1 - m)`).

**Upscaling**, :math:`f = D u`, :math:`D` the mean over each k×k block: bicubic (``skimage.transform.resize``,
order 3), Lanczos (Pillow's ``Image.LANCZOS`` on 32-bit float images) and TV with the oracle weight (:math:`A =
D`, started from bicubic).

**TV-regularised restoration** (:func:`tv_restore`):

.. math:: \min_u\; E(u) = \tfrac12\|A u - f\|^2 + w\,\mathrm{TV}(u),\qquad
          \mathrm{TV}(u) = \sum_{ij} |(\nabla u)_{ij}|,

:math:`\nabla` by forward differences with a zero difference across the last row and column (Neumann), the
isotropic norm per pixel (per channel in colour). It is solved by the primal–dual method of Chambolle & Pock (J.
Math. Imaging Vis. 40, 2011): with :math:`\mathrm{div} = -\nabla^\top` and the dual variable :math:`p` of
:math:`\nabla u` kept in the ball :math:`|p_{ij}| \le w`,

.. math:: p &\leftarrow \Pi_{|p|\le w}\big(p + \sigma\nabla\bar u\big),\\
          u^+ &\leftarrow \mathrm{prox}_{\tau G}\big(u + \tau\,\mathrm{div}\,p\big),\qquad
          \bar u \leftarrow 2u^+ - u,

with :math:`G(u) = \tfrac12\|Au - f\|^2` in the primal step where its proximal map is a pixel-wise formula: the
mask, :math:`\mathrm{prox}_{\tau G}(v) = (v + \tau(1-m)f)/(1 + \tau(1-m))`, and the block mean (:math:`D^\top D =
P/k^2` with :math:`P` the projection on blockwise constants: :math:`\mathrm{prox}_{\tau G}(v) = v + \tau D^\top f
- \frac{\tau/k^2}{1+\tau/k^2}P(v + \tau D^\top f)`). For the blur, :math:`G` goes to the dual as well (a second
dual variable :math:`q \leftarrow (q + \sigma(K\bar u - f))/(1+\sigma)`, and :math:`u + \tau(\mathrm{div}\,p -
K^\top q)` in the primal step). Steps :math:`\tau\sigma\|L\|^2 < 1` with :math:`\|\nabla\|^2 \le 8` and
:math:`\|K\| \le 1` (a non-negative PSF summing to 1). The oracle (:func:`tv_oracle_restore`) runs the weights of
its grid from the largest down, each warm-started from the previous solution, and keeps the best.

The blur runs by FFT on the mirror-padded image (:class:`Convolution`: a few times faster than a direct
convolution for these kernels); its forward map and adjoint equal :func:`.degrade.blur` and
:func:`.degrade.blur_adjoint` to round-off (tested).
"""
import numpy as np

from ..errors import InputError
from .degrade import blur_norm_bound, downsample, downsample_adjoint, parse_psf
from .metrics import psnr

__all__ = ["RL_COUNTS", "STEP_RATIO", "TV_WEIGHTS", "Convolution", "gradient", "divergence", "tv_energy", "tv_restore",
           "tv_oracle_restore", "richardson_lucy_oracle", "wiener_unsupervised", "tv_deconvolution_oracle",
           "biharmonic_inpaint", "tv_inpaint_oracle", "bicubic_upscale", "lanczos_upscale", "tv_upscale_oracle",
           "blur_effect"]

#: The iteration counts among which :func:`richardson_lucy_oracle` picks (about 1.4× apart).
RL_COUNTS = (1, 2, 3, 4, 6, 8, 11, 16, 22, 32, 45, 64, 90, 128, 180, 256)
#: The primal–dual step ratio r (τ = 0.99 r/‖L‖, σ = 0.99/(r‖L‖)) by where G is, {dualised (blur): r, in the
#: primal (mask, block mean): r}. Measured on the camera crop: r = 10 reaches in 300 steps the energy r = 1 reaches in
#: 1000 or more (motion blur), and a lower energy in 300 steps for 80 % missing pixels.
STEP_RATIO = {True: 10.0, False: 10.0}
#: The TV weights among which the oracles pick, per task (``w`` of :func:`tv_restore`, grey values in [0, 1]).
TV_WEIGHTS = {"deblur": tuple(np.geomspace(1e-4, 1e-2, 11)),
              "inpaint": tuple(np.geomspace(1e-5, 3e-3, 6)),
              "upscale": tuple(np.geomspace(1e-5, 3e-3, 6))}


def _channels(image):
    """``(H, W, C)`` view of a grey or colour image (a grey one gets a channel axis of 1)."""
    image = np.asarray(image, dtype=float)
    if image.ndim not in (2, 3):
        raise InputError(f"image of shape {image.shape}: expected (H, W) or (H, W, C)")
    return image[..., None] if image.ndim == 2 else image


def _per_channel(fn, image, *args, **kwargs):
    """``fn`` applied to each channel of ``image`` (grey: once), stacked back in the input's layout."""
    x = _channels(image)
    out = np.stack([fn(x[..., c], *args, **kwargs) for c in range(x.shape[-1])], axis=-1)
    return out[..., 0] if np.ndim(image) == 2 else out


def _psf_array(psf):
    """The PSF as an odd square float array (a spec string goes through :func:`.degrade.parse_psf`)."""
    if isinstance(psf, str):
        psf = parse_psf(psf)
    psf = np.asarray(psf, dtype=float)
    if psf.ndim != 2 or psf.shape[0] != psf.shape[1] or psf.shape[0] % 2 == 0:
        raise InputError(f"PSF of shape {psf.shape}: expected an odd square kernel")
    return psf


# --------------------------------------------------------------------------------------------------- operators
class Convolution:
    r"""The blur :math:`Ku = k * \tilde u` (``k`` centred, odd square; :math:`\tilde u` the image padded by ``r`` =
    the kernel's radius with numpy's ``pad_mode``, ``"reflect"`` = scipy's "mirror", then the valid part) and its
    adjoint (the full correlation with ``k``, the padding folded back onto the pixels it copied), by FFT, on arrays
    ``(H, W)`` or ``(H, W, C)`` (each channel alike)."""

    def __init__(self, psf, shape, pad_mode="reflect"):
        self.psf = _psf_array(psf)
        self.r = self.psf.shape[0] // 2
        self.shape = tuple(shape[:2])
        if min(self.shape) <= self.r:
            raise InputError(f"image {self.shape[0]}×{self.shape[1]} too small for a PSF of size {self.psf.shape[0]}")
        self.pad_mode = pad_mode
        # where each padded row / column comes from (the padding's map), for the adjoint's fold
        self.rows = np.pad(np.arange(self.shape[0]), self.r, mode=pad_mode)
        self.cols = np.pad(np.arange(self.shape[1]), self.r, mode=pad_mode)
        P = (self.shape[0] + 2 * self.r, self.shape[1] + 2 * self.r)
        self.fft_shape = tuple(int(n) for n in (P[0] + 2 * self.r, P[1] + 2 * self.r))
        self.K = np.fft.rfft2(self.psf, self.fft_shape)
        self.K_flipped = np.fft.rfft2(np.flip(self.psf), self.fft_shape)

    def _conv(self, x, K, lo, shape):
        y = np.fft.irfft2(np.fft.rfft2(x, self.fft_shape, axes=(0, 1)) * (K if x.ndim == 2 else K[..., None]),
                          self.fft_shape, axes=(0, 1))
        return y[lo:lo + shape[0], lo:lo + shape[1]]

    def forward(self, u):
        pad = ((self.r, self.r), (self.r, self.r)) + ((0, 0),) * (u.ndim - 2)
        return self._conv(np.pad(u, pad, mode=self.pad_mode), self.K, 2 * self.r, self.shape)

    def adjoint(self, y):
        H, W = self.shape
        z = self._conv(y, self.K_flipped, 0, (H + 2 * self.r, W + 2 * self.r))   # full correlation: the padded grid
        return self._fold(z)

    def _fold(self, z):
        """The adjoint of the padding: each padded pixel's value added to the pixel it copies."""
        r, (H, W) = self.r, self.shape
        out = z[r:r + H].copy()
        for i in [*range(r), *range(r + H, H + 2 * r)]:
            out[self.rows[i]] += z[i]
        res = out[:, r:r + W].copy()
        for j in [*range(r), *range(r + W, W + 2 * r)]:
            res[:, self.cols[j]] += out[:, j]
        return res


def gradient(u):
    r"""Forward differences :math:`(\partial_x u, \partial_y u)` (axis 1, axis 0), zero across the last column /
    row: shape ``(2,) + u.shape``."""
    g = np.zeros((2,) + u.shape)
    g[0, :, :-1] = u[:, 1:] - u[:, :-1]
    g[1, :-1] = u[1:] - u[:-1]
    return g


def divergence(p):
    r""":math:`\mathrm{div}\,p = -\nabla^\top p` (backward differences), so that :math:`\langle\nabla u, p\rangle =
    -\langle u, \mathrm{div}\,p\rangle`."""
    px, py = p
    d = np.zeros(px.shape)
    d[:, 0] = px[:, 0]
    d[:, 1:-1] = px[:, 1:-1] - px[:, :-2]
    d[:, -1] = -px[:, -2]
    d[0] += py[0]
    d[1:-1] += py[1:-1] - py[:-2]
    d[-1] -= py[-2]
    return d


def _tv(u):
    g = gradient(u)
    return float(np.sum(np.sqrt(g[0] ** 2 + g[1] ** 2)))


def tv_energy(u, f, forward, weight):
    r""":math:`E(u) = \tfrac12\|A u - f\|^2 + w\,\mathrm{TV}(u)` (``forward`` = :math:`A`)."""
    return float(0.5 * np.sum((forward(u) - f) ** 2) + weight * _tv(u))


# ------------------------------------------------------------------------------------------- TV, primal–dual
class _Problem:
    """One TV-regularised problem: ``forward``/``adjoint`` of A, and either ``prox(v, tau)`` of G in the primal, or
    None (G in the dual, ``norm2`` ≥ ‖A‖²)."""

    def __init__(self, f, forward, adjoint, prox=None, norm2=1.0, ratio=None):
        self.f, self.forward, self.adjoint, self.prox, self.norm2 = f, forward, adjoint, prox, norm2
        self.ratio = ratio or STEP_RATIO[prox is None]


def _pdhg(problem, weight, iterations, state):
    """Chambolle–Pock iterations from ``state`` = (u, ubar, p, q) (or None: u = f-like start); returns the new
    state."""
    f = problem.f
    u, ubar, p, q = state
    L = np.sqrt(8.0 + (0.0 if problem.prox is not None else problem.norm2))
    tau, sigma = 0.99 * problem.ratio / L, 0.99 / (problem.ratio * L)          # τσL² = 0.98
    for _ in range(iterations):
        p = p + sigma * gradient(ubar)
        norm = np.maximum(1.0, np.sqrt(p[0] ** 2 + p[1] ** 2) / weight)
        p = p / norm
        if problem.prox is None:
            q = (q + sigma * (problem.forward(ubar) - f)) / (1.0 + sigma)
            u_new = u + tau * (divergence(p) - problem.adjoint(q))
        else:
            u_new = problem.prox(u + tau * divergence(p), tau)
        ubar = 2.0 * u_new - u
        u = u_new
    return u, ubar, p, q


def _start(problem, u0):
    u0 = np.array(u0, dtype=float)
    q = np.zeros_like(problem.f) if problem.prox is None else None
    return u0, u0.copy(), np.zeros((2,) + u0.shape), q


def tv_restore(f, weight, forward, adjoint, u0, prox=None, norm2=1.0, iterations=300):
    r"""The minimiser of :math:`\tfrac12\|Au - f\|^2 + w\,\mathrm{TV}(u)` after ``iterations`` primal–dual steps
    from ``u0`` (see the module's docstring): ``forward``/``adjoint`` are :math:`A` and :math:`A^\top`; ``prox(v,
    tau)`` the proximal map of :math:`\tau G` when it is cheap (else None: :math:`G` dualised, ``norm2`` an upper
    bound of :math:`\|A\|^2`). Works on ``(H, W)`` and ``(H, W, C)`` arrays (TV per channel)."""
    if not weight > 0:
        raise InputError(f"TV weight {weight}: expected a number > 0")
    problem = _Problem(np.asarray(f, dtype=float), forward, adjoint, prox, norm2)
    return _pdhg(problem, weight, iterations, _start(problem, u0))[0]


def tv_oracle_restore(clean, f, forward, adjoint, u0, weights, prox=None, norm2=1.0, iterations=300, warm=120):
    r"""TV restoration with the weight of ``weights`` best for ``clean`` (PSNR): ``(u, weight, {weight: PSNR})``.
    The weights run from the largest down, the first for ``iterations`` steps from ``u0``, each next one for
    ``warm`` steps from the previous solution (primal and dual)."""
    problem = _Problem(np.asarray(f, dtype=float), forward, adjoint, prox, norm2)
    state, scores, best = _start(problem, u0), {}, None
    for i, w in enumerate(sorted(weights, reverse=True)):
        state = _pdhg(problem, w, iterations if i == 0 else warm, state)
        u = np.clip(state[0], 0.0, 1.0)
        scores[float(w)] = psnr(clean, u)
        if best is None or scores[float(w)] > best[0]:
            best = (scores[float(w)], float(w), u)
    return best[2], best[1], scores


# ------------------------------------------------------------------------------------------------ deblurring
def _pad(image, r):
    return np.pad(image, ((r, r), (r, r)) + ((0, 0),) * (image.ndim - 2), mode="reflect")


def richardson_lucy_oracle(clean, blurred, psf, counts=RL_COUNTS):
    r"""Richardson–Lucy (scikit-image's iteration, from 1/2, clipped to [-1, 1] at the end) stopped at the count of
    ``counts`` best for ``clean``: ``(u, count, {count: PSNR})``. Runs on ``max(blurred, 0)`` padded by mirror
    reflection by the PSF's radius, every channel alike (one count for the image)."""
    from scipy.signal import convolve
    psf = _psf_array(psf)
    r = psf.shape[0] // 2
    x = _channels(np.maximum(blurred, 0.0))
    padded = _pad(x, r)
    mirror = np.flip(psf)
    u = np.full(padded.shape, 0.5)
    counts = sorted(set(int(c) for c in counts))
    scores, best, done = {}, None, 0
    for n in counts:
        for _ in range(n - done):
            for c in range(u.shape[-1]):
                conv = convolve(u[..., c], psf, mode="same") + 1e-12
                u[..., c] *= convolve(padded[..., c] / conv, mirror, mode="same")
        done = n
        out = np.clip(u[r:-r, r:-r], -1.0, 1.0)
        out = out[..., 0] if np.ndim(blurred) == 2 else out
        scores[n] = psnr(clean, np.clip(out, 0.0, 1.0))
        if best is None or scores[n] > best[0]:
            best = (scores[n], n, np.clip(out, 0.0, 1.0))
    return best[2], best[1], scores


def _symmetric_period(image):
    """The image extended whole-sample symmetrically to one period, ``(2H-2) × (2W-2)``: on it the circular
    convolution with a PSF of radius < H, W equals :func:`.degrade.blur` (mirror boundary) on the image exactly."""
    H, W = np.shape(image)[:2]
    return np.pad(image, ((0, H - 2), (0, W - 2)) + ((0, 0),) * (np.ndim(image) - 2), mode="reflect")


def wiener_unsupervised(blurred, psf, seed=0):
    """``skimage.restoration.unsupervised_wiener`` (its Gibbs sampler seeded with ``seed``) on one period of the
    image's symmetric extension (where its circular model is :func:`.degrade.blur` exactly), cropped back; colour
    channel by channel."""
    from skimage.restoration import unsupervised_wiener
    psf = _psf_array(psf)
    H, W = np.shape(blurred)[:2]

    def one(channel):
        u = unsupervised_wiener(_symmetric_period(channel), psf, clip=False, rng=np.random.default_rng(seed))[0]
        return u[:H, :W]
    return np.clip(_per_channel(one, blurred), 0.0, 1.0)


def tv_deconvolution_oracle(clean, blurred, psf, weights=TV_WEIGHTS["deblur"], iterations=300, warm=120):
    """TV deconvolution (:func:`tv_restore` with the blur :class:`Convolution`, started from the blurred image) with
    the oracle weight: ``(u, weight, {weight: PSNR})``."""
    K = Convolution(psf, np.shape(blurred))
    return tv_oracle_restore(clean, blurred, K.forward, K.adjoint, blurred, weights,
                             norm2=blur_norm_bound(np.shape(blurred), K.psf),
                             iterations=iterations, warm=warm)


# ------------------------------------------------------------------------------------------------ inpainting
def _check_mask(image, mask):
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != np.shape(image)[:2]:
        raise InputError(f"mask of shape {mask.shape} for an image {np.shape(image)[:2]}: expected the same size")
    return mask


def biharmonic_inpaint(damaged, mask):
    """``skimage.restoration.inpaint_biharmonic`` (``mask`` True = missing), colour with ``channel_axis=-1``."""
    from skimage.restoration import inpaint_biharmonic
    mask = _check_mask(damaged, mask)
    return np.clip(inpaint_biharmonic(np.asarray(damaged, dtype=float), mask,
                                      channel_axis=-1 if np.ndim(damaged) == 3 else None), 0.0, 1.0)


def _fill(damaged, mask, sigma=2.0):
    """A quick start for TV inpainting: the known pixels' normalised Gaussian average where data are missing."""
    from scipy.ndimage import gaussian_filter
    x, known = _channels(damaged), (~mask).astype(float)
    weight = gaussian_filter(known, sigma, mode="mirror") + 1e-12
    avg = np.stack([gaussian_filter(x[..., c] * known, sigma, mode="mirror") / weight
                    for c in range(x.shape[-1])], axis=-1)
    out = np.where(mask[..., None], avg, x)
    return out[..., 0] if np.ndim(damaged) == 2 else out


def tv_inpaint_oracle(clean, damaged, mask, weights=TV_WEIGHTS["inpaint"], iterations=400, warm=150):
    r"""TV inpainting, :math:`\min \tfrac12\|(1-m)(u - f)\|^2 + w\,\mathrm{TV}(u)`, with the oracle weight, started
    from a normalised Gaussian fill of the holes: ``(u, weight, {weight: PSNR})``."""
    mask = _check_mask(damaged, mask)
    known = (~mask).astype(float)
    known = known if np.ndim(damaged) == 2 else known[..., None]
    f = np.asarray(damaged, dtype=float) * known

    def prox(v, tau):
        return (v + tau * known * f) / (1.0 + tau * known)
    return tv_oracle_restore(clean, f, lambda u: known * u, lambda y: known * y, _fill(damaged, mask), weights,
                             prox=prox, iterations=iterations, warm=warm)


# ------------------------------------------------------------------------------------------------- upscaling
def _check_factor(image, factor):
    if int(factor) != factor or factor < 2:
        raise InputError(f"upscaling factor {factor}: expected an integer >= 2")
    return int(factor)


def bicubic_upscale(small, factor):
    """``skimage.transform.resize`` to ``factor``× the size, order 3 (bicubic), mirror boundary, no anti-aliasing."""
    from skimage.transform import resize
    k = _check_factor(small, factor)
    H, W = np.shape(small)[:2]
    return np.clip(resize(np.asarray(small, dtype=float), (k * H, k * W) + np.shape(small)[2:], order=3,
                          mode="symmetric", anti_aliasing=False), 0.0, 1.0)


def lanczos_upscale(small, factor):
    """Pillow's Lanczos resampling (``Image.LANCZOS``, a = 3) to ``factor``× the size, each channel as a 32-bit
    float image."""
    from PIL import Image
    k = _check_factor(small, factor)
    H, W = np.shape(small)[:2]

    def one(channel):
        return np.asarray(Image.fromarray(channel.astype(np.float32), mode="F").resize((k * W, k * H),
                                                                                        Image.LANCZOS), dtype=float)
    return np.clip(_per_channel(one, small), 0.0, 1.0)


def tv_upscale_oracle(clean, small, factor, weights=TV_WEIGHTS["upscale"], iterations=400, warm=150):
    r"""TV upscaling, :math:`\min \tfrac12\|Du - f\|^2 + w\,\mathrm{TV}(u)` (``D`` the k×k block mean, equal to
    :func:`.degrade.downsample`), from bicubic, with the oracle weight: ``(u, weight, {weight: PSNR})``."""
    k = _check_factor(small, factor)
    f = np.asarray(small, dtype=float)
    Dt_f = downsample_adjoint(f, k)
    c = 1.0 / k ** 2

    def prox(v, tau):                                  # (I + τ DᵀD)⁻¹(v + τ Dᵀf), DᵀD = P/k², P = k² DᵀD
        x = v + tau * Dt_f
        return x - (tau / (1.0 + tau * c)) * downsample_adjoint(downsample(x, k), k)
    return tv_oracle_restore(clean, f, lambda u: downsample(u, k), lambda y: downsample_adjoint(y, k),
                             bicubic_upscale(f, k), weights, prox=prox, iterations=iterations, warm=warm)


# --------------------------------------------------------------------------------------------------- metrics
def blur_effect(image):
    """The no-reference blur metric of Crété-Roffet et al. (2007), ``skimage.measure.blur_effect`` (0: sharp, 1:
    blurred; 11-pixel re-blur; colour: the largest over the channels' luma-like estimate, ``channel_axis=-1``)."""
    from skimage.measure import blur_effect as effect
    image = np.asarray(image, dtype=float)
    return float(effect(image, channel_axis=-1 if image.ndim == 3 else None))
