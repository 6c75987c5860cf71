r"""The forward operators of restoration beyond denoising, numpy in and numpy out: blur, missing pixels, a coarser
sensor.

Each task observes :math:`f = A u + n` for the clean image :math:`u` and a known linear operator :math:`A`:

* **blur** :math:`A = K`, the 2-D convolution with a point-spread function (PSF) :math:`k` of odd size
  :math:`(2r+1)^2`, non-negative, summing to 1 (:func:`parse_psf`):

  .. math:: (K u)_{i,j} = \sum_{|a|,|b|\le r} k_{a,b}\, \tilde u_{i-a,\,j-b},

  with :math:`\tilde u` the image extended *whole-sample symmetrically* about its border pixels
  (:math:`\tilde u_{-i} = u_i`, :math:`\tilde u_{H-1+i} = u_{H-1-i}`: numpy's ``np.pad(mode="reflect")``, scipy's
  ``ndimage`` ``mode="mirror"``). That is the extension of the finite-element Neumann problem on the pixel mesh, whose
  domain :math:`[0, W-1]\times[0, H-1]` ends at the border pixels' centres: a Gaussian PSF is (up to sampling) the
  heat semigroup of that Neumann problem at time :math:`s^2/2`. :func:`blur_adjoint` is the exact transpose
  :math:`K^T` (zero-padded correlation, then the mirrored margins folded back), so that
  :math:`\langle Kx, y\rangle = \langle x, K^Ty\rangle` to round-off. Row sums of :math:`K` are 1; column sums are 1
  away from the border and for a symmetric PSF everywhere, so :math:`\|K^TK\|_2 \le \max_j \sum_i K_{ij}`
  (:func:`blur_norm_bound`, 1 for a symmetric PSF up to round-off).
* **mask** :math:`A = M = \mathrm{diag}(1 - m)` with :math:`m` the missing pixels (:func:`random_mask`,
  :func:`scratch_mask`); :math:`M^T = M`, :math:`\|M^TM\| = 1`.
* **restriction** :math:`A = S`, the mean over each :math:`k\times k` block (:func:`downsample`, the sensor of an image
  :math:`k` times coarser); :math:`S^T` spreads each coarse value divided by :math:`k^2` over its block
  (:func:`downsample_adjoint`), :math:`SS^T = I/k^2`, :math:`\|S^TS\| = 1/k^2`.

Colour images (H, W, C) are degraded channel by channel. Bad specifications raise
:class:`~fem_crossdiff.errors.InputError` with one line naming them. No Firedrake, no scipy: plain numpy (the
kernels are small; one shifted sum per PSF entry).
"""
import math
import os

import numpy as np

from ..errors import InputError
from .files import read_image

__all__ = ["parse_psf", "gaussian_psf", "box_psf", "motion_psf", "blur", "blur_adjoint", "blur_norm_bound",
           "random_mask", "scratch_mask", "downsample", "downsample_adjoint", "check_psf_fits", "PSF_KINDS",
           "MAX_PSF"]

#: The kinds of :func:`parse_psf` (besides a path to an image file).
PSF_KINDS = ("gaussian:S", "box:N", "motion:L,ANGLE")
#: The largest PSF side accepted from a specification (a typo such as ``gaussian:1000`` would otherwise allocate a
#: 6001² kernel; an image must be at least as large as its PSF anyway).
MAX_PSF = 255


# ----------------------------------------------------------------------------------------------------------- PSFs
def _normalised(kernel, where):
    """``kernel`` as an odd-sized square float64 array summing to 1, or :class:`InputError` naming ``where``."""
    k = np.asarray(kernel, dtype=float)
    if k.ndim != 2 or k.size == 0:
        raise InputError(f"{where}: a PSF must be a 2-D array, got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        raise InputError(f"{where}: the PSF holds NaN or infinite values")
    if np.any(k < 0):
        raise InputError(f"{where}: the PSF has negative entries (min {k.min():.3g}); a PSF must be non-negative")
    total = float(k.sum())
    if not total > 0:
        raise InputError(f"{where}: the PSF sums to {total:g}; it cannot be normalised to sum 1")
    side = max(k.shape)
    side += 1 - side % 2
    if side > MAX_PSF:
        raise InputError(f"{where}: PSF of {k.shape[0]}×{k.shape[1]} pixels; at most {MAX_PSF}×{MAX_PSF}")
    out = np.zeros((side, side))
    out[:k.shape[0], :k.shape[1]] = k                  # even sides: zeros appended, centre at index size // 2
    return out / out.sum()


def gaussian_psf(s):
    """The sampled Gaussian of standard deviation ``s`` pixels, radius :math:`\\lceil 3s\\rceil`, summing to 1."""
    if not (math.isfinite(s) and s > 0):
        raise InputError(f"--psf gaussian:{s}: the standard deviation must be a finite number > 0")
    r = int(math.ceil(3 * s))
    if 2 * r + 1 > MAX_PSF:
        raise InputError(f"--psf gaussian:{s:g}: kernel of {2 * r + 1} pixels; at most {MAX_PSF} (s <= 42)")
    x = np.arange(-r, r + 1)
    g = np.exp(-x ** 2 / (2 * s * s))
    return _normalised(np.outer(g, g), f"gaussian:{s:g}")


def box_psf(n):
    """The uniform :math:`n\\times n` PSF (``n`` odd >= 1; ``box:1`` is the identity)."""
    if not (n == int(n) and n >= 1 and n % 2 == 1):
        raise InputError(f"--psf box:{n}: the side must be an odd integer >= 1")
    n = int(n)
    if n > MAX_PSF:
        raise InputError(f"--psf box:{n}: at most {MAX_PSF}")
    return np.full((n, n), 1.0 / (n * n))


def motion_psf(length, angle):
    """A straight motion blur: the segment of ``length`` pixels through the centre at ``angle`` degrees
    (counter-clockwise from the x axis, the image's rows pointing down), anti-aliased: the segment sampled every
    1/16 pixel and each sample split bilinearly over its four nearest pixels; summing to 1. Length 1 or less is the
    identity. Symmetric about the centre (a point reflection), so :math:`K` and :math:`K^T` act alike."""
    if not (math.isfinite(length) and length > 0 and math.isfinite(angle)):
        raise InputError(f"--psf motion:{length},{angle}: expected a length > 0 and a finite angle in degrees")
    r = int(math.ceil(length / 2)) + 1
    if 2 * r + 1 > MAX_PSF:
        raise InputError(f"--psf motion:{length:g},{angle:g}: kernel of {2 * r + 1} pixels; at most {MAX_PSF}")
    n = max(2, int(math.ceil(16 * length)) + 1)
    t = np.linspace(-length / 2, length / 2, n)
    a = math.radians(angle)
    x, y = r + t * math.cos(a), r - t * math.sin(a)            # column, row
    k = np.zeros((2 * r + 1, 2 * r + 1))
    c0, r0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - c0, y - r0
    for dr, dc, wgt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        np.add.at(k, (r0 + dr, c0 + dc), wgt)
    k = 0.5 * (k + k[::-1, ::-1])                      # exactly point-symmetric (sampling round-off)
    return _normalised(_trim(k), f"motion:{length:g},{angle:g}")


def _trim(k):
    """Drop all-zero outer rings of a centred kernel (it stays odd-sized and centred)."""
    while k.shape[0] > 1 and not (k[0].any() or k[-1].any() or k[:, 0].any() or k[:, -1].any()):
        k = k[1:-1, 1:-1]
    return k


def _numbers(text, count, spec, where):
    parts = text.split(",")
    if len(parts) != count:
        raise InputError(f"{where} {spec}: expected {count} number(s) after the colon, got {text!r}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InputError(f"{where} {spec}: {text!r} is not {'a number' if count == 1 else 'numbers'}") from None
    return values


def parse_psf(spec, where="--psf"):
    """The PSF of a specification: ``gaussian:S`` (std ``S`` pixels, radius :math:`\\lceil 3S\\rceil`), ``box:N``
    (:math:`N\\times N`, ``N`` odd), ``motion:L,ANGLE`` (:func:`motion_psf`), or the path of an image file (grey;
    colour files are converted to grey; read by :func:`~fem_crossdiff.imaging.files.read_image`).

    A file's PSF must be non-negative with a positive sum; it is normalised to sum 1. A file of even side(s) is
    *padded*: zero rows/columns are appended at the bottom/right to the next odd square, so its centre is the pixel
    at index ``size // 2`` (scipy's convention for even kernels). Returns an odd-sized square float64 array,
    non-negative, summing to 1; :class:`~fem_crossdiff.errors.InputError` (one line naming ``spec``) otherwise.
    """
    if isinstance(spec, np.ndarray):
        return _normalised(spec, f"{where} (array)")
    spec = os.fspath(spec)
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("gaussian", "box", "motion") and not os.path.exists(spec):
        try:
            if kind == "gaussian":
                (s,) = _numbers(rest, 1, spec, where)
                return gaussian_psf(s)
            if kind == "box":
                (n,) = _numbers(rest, 1, spec, where)
                return box_psf(n)
            length, angle = _numbers(rest, 2, spec, where)
            return motion_psf(length, angle)
        except InputError as e:
            message = str(e)
            if not message.startswith(where):
                message = f"{where} {spec}: {message.split(': ', 1)[-1]}"
            raise InputError(message) from None
    if not os.path.exists(spec):
        raise InputError(f"{where} {spec!r}: neither a PSF ({', '.join(PSF_KINDS)}) nor an existing image file")
    img = read_image(spec)
    return _normalised(img, f"{where} {spec}")


def check_psf_fits(shape, psf, where="image"):
    """Refuse (:class:`~fem_crossdiff.errors.InputError`) an image of ``shape`` smaller than the PSF: the symmetric
    extension reflects once, so the PSF's side must not exceed the image's smaller side."""
    H, W = (int(s) for s in shape[:2])
    side = np.shape(psf)[0]
    if side > min(H, W):
        raise InputError(f"{where} of {H}×{W} pixels is too small for a PSF of {side}×{side} pixels; the PSF may be "
                         "at most as large as the image's smaller side")


# -------------------------------------------------------------------------------------------------------- blur
def _per_channel(fn, image, *args):
    if image.ndim == 3:
        return np.stack([fn(image[..., c], *args) for c in range(image.shape[2])], axis=-1)
    return fn(image, *args)


def _blur2(x, k):
    r = k.shape[0] // 2
    H, W = x.shape
    xp = np.pad(x, r, mode="reflect")
    out = np.zeros((H, W))
    for a in range(-r, r + 1):
        for b in range(-r, r + 1):
            wgt = k[a + r, b + r]
            if wgt:
                out += wgt * xp[r - a:r - a + H, r - b:r - b + W]
    return out


def _fold(p, r, n, axis):
    """The adjoint of ``np.pad(.., r, mode="reflect")`` along ``axis``: margins added onto their mirror pixels."""
    p = np.moveaxis(p, axis, 0)
    out = p[r:r + n].copy()
    for i in range(1, r + 1):
        out[i] += p[r - i]
        out[n - 1 - i] += p[r + n - 1 + i]
    return np.moveaxis(out, 0, axis)


def _blur2_adjoint(y, k):
    r = k.shape[0] // 2
    H, W = y.shape
    p = np.zeros((H + 2 * r, W + 2 * r))
    for a in range(-r, r + 1):
        for b in range(-r, r + 1):
            wgt = k[a + r, b + r]
            if wgt:
                p[r - a:r - a + H, r - b:r - b + W] += wgt * y
    return _fold(_fold(p, r, H, 0), r, W, 1)


def _checked(image, psf):
    if image.ndim not in (2, 3) or not np.all(np.isfinite(image)):
        raise InputError(f"image of shape {image.shape}: expected finite values, (H, W) or (H, W, C)")
    psf = np.asarray(psf, dtype=float)
    if psf.ndim != 2 or psf.shape[0] != psf.shape[1] or psf.shape[0] % 2 != 1:
        raise InputError(f"PSF of shape {psf.shape}: expected an odd-sized square array (see parse_psf)")
    check_psf_fits(image.shape, psf)
    return image, psf


def blur(image, psf):
    """:math:`Ku`: ``image`` (H, W) or (H, W, C) convolved with ``psf`` (odd square), same size, the image extended
    whole-sample symmetrically (scipy's ``mode="mirror"``; see the module docstring), channel by channel."""
    image, psf = _checked(np.asarray(image, dtype=float), psf)
    return _per_channel(_blur2, image, psf)


def blur_adjoint(image, psf):
    """:math:`K^Ty`, the exact transpose of :func:`blur` (:math:`\\langle Kx, y\\rangle = \\langle x, K^Ty\\rangle`)."""
    image, psf = _checked(np.asarray(image, dtype=float), psf)
    return _per_channel(_blur2_adjoint, image, psf)


def blur_norm_bound(shape, psf):
    """An upper bound of :math:`\\|K^TK\\|_2` for images of ``shape``: :math:`\\|K\\|_1\\|K\\|_\\infty` = the largest
    column sum (rows sum to 1), i.e. ``max(blur_adjoint(ones))``: 1 for a symmetric PSF, up to 2 near the border for
    a lopsided one."""
    return float(max(1.0, _blur2_adjoint(np.ones(tuple(shape[:2])), np.asarray(psf, dtype=float)).max()))


# -------------------------------------------------------------------------------------------------------- masks
def _shape2(shape):
    H, W = (int(s) for s in tuple(shape)[:2])
    if H < 2 or W < 2:
        raise InputError(f"mask of shape {(H, W)} is too small; need at least 2×2 pixels")
    return H, W


def random_mask(shape, missing, seed=0):
    """Bool (H, W), True = missing: exactly ``round(missing * H * W)`` pixels drawn without replacement by
    ``numpy.random.default_rng(seed)``; ``missing`` in (0, 1)."""
    H, W = _shape2(shape)
    if not (isinstance(missing, (int, float, np.number)) and 0 < missing < 1):
        raise InputError(f"missing fraction {missing!r}: expected a number in (0, 1)")
    n = int(round(missing * H * W))
    n = min(max(n, 1), H * W - 1)
    mask = np.zeros(H * W, dtype=bool)
    mask[np.random.default_rng(seed).permutation(H * W)[:n]] = True
    return mask.reshape(H, W)


def _stroke(mask, points, width):
    """Set the pixels within ``width / 2`` of the polyline ``points`` ((n, 2) of row, column)."""
    H, W = mask.shape
    half = width / 2
    for (r0, c0), (r1, c1) in zip(points[:-1], points[1:]):
        n = int(math.ceil(4 * max(abs(r1 - r0), abs(c1 - c0)))) + 1
        t = np.linspace(0, 1, n)[:, None]
        pts = (1 - t) * np.array([r0, c0]) + t * np.array([r1, c1])
        span = int(math.ceil(half))
        for dr in range(-span, span + 1):
            for dc in range(-span, span + 1):
                if dr * dr + dc * dc <= half * half + 0.25:
                    rr = np.clip(np.round(pts[:, 0] + dr).astype(int), 0, H - 1)
                    cc = np.clip(np.round(pts[:, 1] + dc).astype(int), 0, W - 1)
                    mask[rr, cc] = True


def scratch_mask(shape, seed=0, fraction=0.10):
    """Bool (H, W), True = missing: random scratches (long thin gently curved strokes, 1–3 pixels wide) and a line of
    text-like strokes (letter-sized boxes of straight strokes, 2 pixels wide) across the middle third, drawn until
    about ``fraction`` (default 10 %) of the pixels are covered. Deterministic in ``seed``."""
    H, W = _shape2(shape)
    rng = np.random.default_rng(seed)
    mask = np.zeros((H, W), dtype=bool)
    # a line of "text": letters of height ~H/12 as 3–5 random strokes between the corners and mid-points of a box
    size = max(4, min(H, W) // 12)
    row = H // 2 - size // 2 + int(rng.integers(-H // 6, H // 6 + 1))
    c = size // 2
    while c + size < W - size // 2 and mask.mean() < 0.5 * fraction:
        box = np.array([[row, c], [row, c + 0.6 * size], [row + size, c], [row + size, c + 0.6 * size],
                        [row + size / 2, c], [row + size / 2, c + 0.6 * size]])
        for _ in range(int(rng.integers(3, 6))):
            i, j = rng.choice(len(box), 2, replace=False)
            _stroke(mask, box[[i, j]], 2)
        c += int(size * 0.9)
    # scratches: random walks of slowly turning direction, until the fraction is reached
    for _ in range(1000):
        if mask.mean() >= fraction:
            break
        p = np.array([rng.uniform(0, H - 1), rng.uniform(0, W - 1)])
        angle = rng.uniform(0, 2 * np.pi)
        points = [p.copy()]
        for _ in range(int(rng.integers(4, 12))):
            angle += rng.normal(0, 0.25)
            p = p + rng.uniform(0.03, 0.08) * max(H, W) * np.array([np.sin(angle), np.cos(angle)])
            points.append(p.copy())
        _stroke(mask, np.array(points), float(rng.choice([1, 1, 2, 3])))
    return mask


# ----------------------------------------------------------------------------------------------------- sensor
def _factor(k, shape):
    if isinstance(k, bool) or not (isinstance(k, (int, np.integer)) or (isinstance(k, float) and k.is_integer())) \
            or k < 2:
        raise InputError(f"factor {k!r}: expected an integer >= 2")
    k = int(k)
    H, W = shape[:2]
    if H % k or W % k:
        raise InputError(f"image of {H}×{W} pixels: its sides must be multiples of the factor {k}")
    return k


def downsample(image, k):
    """:math:`Su`: the mean over each :math:`k\\times k` block of ``image`` (H, W) or (H, W, C), H and W multiples of
    ``k`` (:class:`~fem_crossdiff.errors.InputError` otherwise); shape (H/k, W/k[, C])."""
    image = np.asarray(image, dtype=float)
    k = _factor(k, image.shape)
    H, W = image.shape[:2]
    return image.reshape((H // k, k, W // k, k) + image.shape[2:]).mean(axis=(1, 3))


def downsample_adjoint(coarse, k):
    """:math:`S^Ty`: each coarse value divided by :math:`k^2` spread over its :math:`k\\times k` block (the exact
    transpose of :func:`downsample`)."""
    coarse = np.asarray(coarse, dtype=float)
    if isinstance(k, bool) or int(k) != k or k < 2:
        raise InputError(f"factor {k!r}: expected an integer >= 2")
    k = int(k)
    return np.repeat(np.repeat(coarse, k, axis=0), k, axis=1) / (k * k)
