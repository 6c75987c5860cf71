r"""Synthetic training images: the dead-leaves model of natural-image statistics (numpy only).

The model (Matheron 1968/1975, "random closed sets"; for images Lee, Mumford & Huang 2001, "Occlusion models for
natural images: a statistical study of a scale-invariant dead leaves model", IJCV 41) drops random shapes
("leaves") on the plane, each hiding what lies below it. An image is the view from above of infinitely many leaves:
equivalently, painting *front to back*, each pixel takes the first leaf that covers it. Here:

- **Places**: the leaves' centres are uniform (a Poisson process) on the image grown by the largest leaf's reach on
  every side, so that the borders are covered like the interior (the model is stationary); leaves that cannot reach
  the image are dropped before they are drawn.
- **Sizes**: radii :math:`r` with density :math:`f(r) \propto r^{-3}` on :math:`[r_\min, r_\max]`, drawn by the
  inverse of its distribution :math:`F(r) = (r_\min^{-2} - r^{-2}) / (r_\min^{-2} - r_\max^{-2})`. The exponent 3
  is the one that makes the model scale invariant (Lee, Mumford & Huang, §3): between :math:`r_\min` and
  :math:`r_\max` a zoomed image has the statistics of the original, every octave of sizes covers the same share of
  the plane (:math:`\int r^2 f(r)\,dr` grows by :math:`\log 2` per octave), and the power spectrum falls like
  :math:`1/|f|^2`, as it does in natural images. The edges therefore come at all scales, which is what a denoiser
  must learn to keep.
- **Shapes**: discs, ellipses (axes :math:`r` and :math:`\rho r`, :math:`\rho \in [0.35, 1]`) and rectangles
  (half-sides :math:`r` and :math:`\rho r`), turned by a uniform angle; the kind is uniform among ``shapes``.
- **Shading**: each leaf is not flat but a base value plus a random linear and quadratic ramp in the leaf's own
  coordinates, :math:`b + \mathbf g\cdot\mathbf d/r + q\,|\mathbf d|^2/r^2` (:math:`\mathbf d` the offset from its
  centre, :math:`|\mathbf g| \le 0.2`, :math:`|q| \le 0.1`): smooth illumination, which a piecewise-constant
  model lacks.
- **Texture**: with probability ``texture`` a leaf carries an oriented sinusoid
  :math:`a \sin(2\pi\,\mathbf k\cdot\mathbf x + \varphi)` of small amplitude :math:`a \in [0.02, 0.1]` and
  frequency :math:`|\mathbf k|` log-uniform in [1/24, 1/3] cycles per pixel, of uniform orientation: fine
  oscillating detail, the hardest thing for a diffusion to keep apart from noise.
- **Colour**: grey leaves have a uniform base value in [0, 1]; colour leaves a uniform luminance plus a small
  chroma (normal, standard deviation 0.12 per channel, mean removed), and the shading and texture are common to
  the channels: the channels are strongly correlated, as in photographs. Values are clipped to [0, 1].

**Painting.** Leaves are drawn in batches, front to back; every batch is rasterised at once (each leaf's bounding
box, clipped to the image, unrolled into one array of pixel indices, half a million per chunk), its inside
test evaluated for all at once, and each pixel keeps the frontmost leaf covering it (``np.minimum.at`` on a z-buffer
of leaf numbers). The first batch holds enough leaves to cover each pixel :math:`\approx 6` times on average (so a
share :math:`\approx e^{-6}` is left uncovered); later batches lie *behind* everything painted and keep only the
leaves whose box holds an uncovered pixel (counted with a summed-area table), until no pixel is left: every pixel
is painted, by the leaf that would be in front in the infinite model. The shading and texture are then evaluated
once per pixel, for its leaf. Deterministic in ``seed`` (one ``numpy.random.default_rng(seed)`` draws everything,
in a fixed order); a 256² image takes about a tenth of a second.

For training a denoiser on such images (instead of, or beside, photographs), see Achddou, Gousseau & Ladjal,
"Synthetic images as a regularity prior for image restoration neural networks" (SSVM 2021), and
``fem_crossdiff/learned/README.md`` §13 for what it does here.
"""
import math

import numpy as np

from ..errors import InputError

__all__ = ["dead_leaves", "leaf_radii", "SHAPES"]

#: The leaves' shapes.
SHAPES = ("disc", "ellipse", "rectangle")
_FIRST_COVER, _LATER_COVER = 6.0, 4.0    # mean leaves per pixel of the first batch, of each later one
_CHUNK = 1 << 19                          # rasterised pixels per chunk: bounds the temporary arrays (~ 60 MB)
_MAX_BATCHES = 200


def _shape(size):
    shape = (size, size) if np.ndim(size) == 0 else tuple(size)
    if (len(shape) != 2 or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1 for n in shape)):
        raise InputError(f"dead leaves: size {size!r}; expected a positive integer or (height, width)")
    return int(shape[0]), int(shape[1])


def leaf_radii(rng, n, rmin, rmax):
    r"""``n`` radii of density :math:`\propto r^{-3}` on [rmin, rmax] (inverse transform sampling)."""
    u = rng.random(n)
    return (rmin ** -2 - u * (rmin ** -2 - rmax ** -2)) ** -0.5


def _mean_r2(rmin, rmax):
    r""":math:`E[r^2]` of the radii: :math:`2\log(r_\max/r_\min) / (r_\min^{-2} - r_\max^{-2})`."""
    if rmax <= rmin * (1 + 1e-12):
        return rmin ** 2
    return 2 * math.log(rmax / rmin) / (rmin ** -2 - rmax ** -2)


def _draw(rng, n, H, W, pad, rmin, rmax, kinds, colour, texture):
    """The parameters of ``n`` leaves (arrays of ``n``), every one drawn whatever is used, in a fixed order."""
    p = dict(cy=rng.uniform(-pad, H - 1 + pad, n), cx=rng.uniform(-pad, W - 1 + pad, n),
             r=leaf_radii(rng, n, rmin, rmax), kind=np.asarray(kinds)[rng.integers(len(kinds), size=n)],
             aspect=rng.uniform(0.35, 1.0, n), angle=rng.uniform(0, np.pi, n))
    p["aspect"] = np.where(p["kind"] == 0, 1.0, p["aspect"])                      # discs are round
    g, phi = rng.uniform(0, 0.2, n), rng.uniform(0, 2 * np.pi, n)
    p.update(gy=g * np.sin(phi), gx=g * np.cos(phi), q=rng.uniform(-0.1, 0.1, n))
    k, theta = np.exp(rng.uniform(np.log(1 / 24), np.log(1 / 3), n)), rng.uniform(0, np.pi, n)
    p.update(ky=k * np.sin(theta), kx=k * np.cos(theta), phase=rng.uniform(0, 2 * np.pi, n),
             amp=np.where(rng.random(n) < texture, rng.uniform(0.02, 0.1, n), 0.0))
    base = rng.random(n)
    chroma = rng.normal(0, 0.12, (n, 3))
    p["base"] = base[:, None] + (chroma - chroma.mean(axis=1, keepdims=True)) if colour else base[:, None]
    # the bounding box's half-extent: the circumscribed circle of the shape
    p["reach"] = p["r"] * np.where(p["kind"] == 2, np.sqrt(1 + p["aspect"] ** 2), 1.0)
    return p


def _boxes(p, H, W):
    """Each leaf's bounding box clipped to the image: (r0, r1, c0, c1), half-open."""
    r0 = np.clip(np.ceil(p["cy"] - p["reach"]), 0, H).astype(np.int64)
    r1 = np.clip(np.floor(p["cy"] + p["reach"]) + 1, 0, H).astype(np.int64)
    c0 = np.clip(np.ceil(p["cx"] - p["reach"]), 0, W).astype(np.int64)
    c1 = np.clip(np.floor(p["cx"] + p["reach"]) + 1, 0, W).astype(np.int64)
    return r0, r1, c0, c1


def _paint(z, p, idx, offset, boxes, W, holes):
    """Rasterise the leaves ``idx`` (their boxes ``boxes``) and keep in the z-buffer ``z`` the frontmost leaf number
    (``offset`` + index) of every pixel; ``holes``: only pixels not yet painted take part (None: all)."""
    r0, r1, c0, c1 = (b[idx] for b in boxes)
    sizes = (r1 - r0) * (c1 - c0)
    ends = np.cumsum(sizes)
    cuts = np.searchsorted(ends, np.arange(_CHUNK, ends[-1] if len(ends) else 0, _CHUNK), side="right")
    for part in np.split(np.arange(len(idx)), cuts):
        if len(part) == 0:
            continue
        s = sizes[part]
        leaf = np.repeat(part, s)
        k = np.arange(int(s.sum())) - np.repeat(np.cumsum(s) - s, s)
        w = np.repeat((c1 - c0)[part], s)
        y, x = np.repeat(r0[part], s) + k // w, np.repeat(c0[part], s) + k % w
        j = idx[leaf]
        dy, dx = y - p["cy"][j], x - p["cx"][j]
        cos, sin = np.cos(p["angle"][j]), np.sin(p["angle"][j])
        a = p["r"][j]
        u, v = (cos * dx + sin * dy) / a, (cos * dy - sin * dx) / (a * p["aspect"][j])
        inside = np.where(p["kind"][j] == 2, np.maximum(np.abs(u), np.abs(v)) <= 1, u * u + v * v <= 1)
        pix = y * W + x
        if holes is not None:
            inside &= holes[pix]
        np.minimum.at(z, pix[inside], j[inside] + offset)


def dead_leaves(size, seed=0, colour=False, rmin=2.0, rmax=None, shapes=SHAPES, texture=0.5, return_labels=False):
    r"""A dead-leaves image (see the module's docstring): float64 in [0, 1], (H, W) or with ``colour`` (H, W, 3).

    Parameters
    ----------
    size : int or (int, int)
        The image's side, or (height, width).
    seed : int or sequence of ints
        Everything is drawn from ``numpy.random.default_rng(seed)``: the same seed gives the same image.
    colour : bool
        Colour leaves (correlated channels) instead of grey ones.
    rmin, rmax : float
        The range of the radii, density :math:`\propto r^{-3}`; ``rmax`` defaults to half the shorter side.
        ``rmin == rmax``: leaves of one size (not scale invariant).
    shapes : sequence of str
        Among :data:`SHAPES`.
    texture : float
        The share of leaves carrying an oriented sinusoid (0: none).
    return_labels : bool
        Also return the (H, W) map of the leaf painted at each pixel (numbered front to back from 0).
    """
    H, W = _shape(size)
    rmax = min(H, W) / 2 if rmax is None else rmax
    if not (np.isfinite(rmin) and np.isfinite(rmax) and 0 < rmin <= rmax):
        raise InputError(f"dead leaves: radii rmin {rmin!r}, rmax {rmax!r}; expected 0 < rmin <= rmax")
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown or not len(shapes):
        raise InputError(f"dead leaves: shapes {list(shapes)!r}; expected some of {', '.join(SHAPES)}")
    if not (np.isfinite(texture) and 0 <= texture <= 1):
        raise InputError(f"dead leaves: texture share {texture!r}; expected a number in [0, 1]")
    kinds = sorted({SHAPES.index(s) for s in shapes})
    rng = np.random.default_rng(seed)
    pad = math.ceil(rmax * math.sqrt(2)) + 1
    area = (H + 2 * pad) * (W + 2 * pad)
    mean_area = math.pi * _mean_r2(rmin, rmax) * (1.0 if kinds == [0] else 0.8)
    none = np.iinfo(np.int64).max
    z, params, offset = np.full(H * W, none, np.int64), [], 0
    for batch in range(_MAX_BATCHES + 1):
        holes = None if batch == 0 else z == none
        if holes is not None and not holes.any():
            break
        if batch == _MAX_BATCHES:
            raise RuntimeError(f"dead leaves: {int(holes.sum())} pixel(s) still unpainted after {batch} batches")
        n = math.ceil((_FIRST_COVER if batch == 0 else _LATER_COVER) * area / mean_area)
        p = _draw(rng, n, H, W, pad, float(rmin), float(rmax), kinds, colour, texture)
        boxes = _boxes(p, H, W)
        r0, r1, c0, c1 = boxes
        keep = (r1 > r0) & (c1 > c0)
        if holes is not None:                       # behind everything painted: only boxes with a hole matter
            sat = np.zeros((H + 1, W + 1), np.int64)
            sat[1:, 1:] = holes.reshape(H, W).cumsum(0).cumsum(1)
            keep &= (sat[r1, c1] - sat[r0, c1] - sat[r1, c0] + sat[r0, c0]) > 0
        _paint(z, p, np.flatnonzero(keep), offset, boxes, W, holes)
        params.append(p)
        offset += n
    p = {key: np.concatenate([q[key] for q in params]) for key in params[0]}
    y, x = np.divmod(np.arange(H * W), W)
    dy, dx, r = y - p["cy"][z], x - p["cx"][z], p["r"][z]
    shade = (p["gy"][z] * dy + p["gx"][z] * dx) / r + p["q"][z] * (dy * dy + dx * dx) / (r * r)
    shade += p["amp"][z] * np.sin(2 * np.pi * (p["ky"][z] * y + p["kx"][z] * x) + p["phase"][z])
    img = np.clip(p["base"][z] + shade[:, None], 0.0, 1.0)
    img = img.reshape(H, W, 3) if colour else img.reshape(H, W)
    return (img, z.reshape(H, W)) if return_labels else img
