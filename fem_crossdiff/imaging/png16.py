r"""PNG files at 16 bits per channel, read and written with numpy and zlib alone.

Pillow holds no multi-channel image deeper than 8 bits: it reads a 16-bit RGB, RGBA or grey+alpha PNG as its high
bytes and cannot write a 16-bit RGB PNG at all. A PNG (ISO/IEC 15948) is simple enough to do here: chunks
``length, type, data, CRC-32``; the header ``IHDR``; the pixels as one zlib stream over the ``IDAT`` chunks, row by
row, each row a filter type byte and its filtered bytes. With :math:`x` a byte, :math:`a` the byte one pixel to the
left, :math:`b` the byte above and :math:`c` the one above-left (0 outside the image), the filters store
:math:`x - p \bmod 256` for the prediction

.. math:: p_0 = 0,\quad p_1 = a,\quad p_2 = b,\quad p_3 = \lfloor (a + b)/2 \rfloor,\quad
          p_4 = \text{Paeth}(a, b, c) = \text{whichever of } a, b, c \text{ is nearest } a + b - c
          \text{ (ties: } a, \text{ then } b).

Filtering (writing) is elementwise. Reconstruction (reading) is a recurrence: a byte needs its reconstructed left,
upper and upper-left neighbours. These lie on earlier anti-diagonals :math:`x + y`, so the pixels of one
anti-diagonal are reconstructed together: :math:`H + W - 1` vector steps instead of :math:`HW` scalar ones.
Interlaced (Adam7) files are seven such sub-images. A ``tRNS`` colour becomes an alpha channel; an animation
(``acTL`` with several frames) is refused. The writer chooses each row's filter by the smallest sum of absolute
filtered bytes (libpng's heuristic).
"""
import struct
import zlib

import numpy as np

from ..errors import ImageError

__all__ = ["SIGNATURE", "DamagedPNG", "png_header", "read_png", "encode_png"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Channels of each colour type that this module reads (0 grey, 2 RGB, 4 grey + alpha, 6 RGBA; 3, a palette, is not).
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
#: Adam7 passes: (first row, first column, row step, column step).
ADAM7 = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1))


class DamagedPNG(ValueError):
    """A PNG file that is damaged or truncated (the message says how, without the file's name)."""


def png_header(head):
    """``(width, height, bit depth, colour type, interlace)`` from a file's first 33 bytes, or None if they do not
    start a PNG with its IHDR chunk."""
    if len(head) < 33 or not head.startswith(SIGNATURE) or head[12:16] != b"IHDR":
        return None
    width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
    return width, height, depth, ctype, interlace


def _chunks(data):
    """``[(type, payload), ...]`` of a PNG's bytes, CRCs of the critical chunks (and tRNS) checked, up to IEND."""
    if not data.startswith(SIGNATURE):
        raise DamagedPNG("it does not start with the PNG signature")
    out, pos = [], len(SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise DamagedPNG("it ends before its IEND chunk")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 8 + length + 4
        if end > len(data):
            raise DamagedPNG(f"its {kind.decode('latin-1')} chunk is cut short")
        payload = data[pos + 8:pos + 8 + length]
        crc, = struct.unpack(">I", data[end - 4:end])
        if (kind[:1].isupper() or kind == b"tRNS") and zlib.crc32(kind + payload) != crc:
            raise DamagedPNG(f"the checksum of its {kind.decode('latin-1')} chunk is wrong")
        out.append((kind, payload))
        pos = end
        if kind == b"IEND":
            return out


def _paeth(a, b, c):
    """The Paeth predictor of int16 byte arrays ``a`` (left), ``b`` (up), ``c`` (up-left)."""
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _unfilter(rows, width, bpp):
    """Reconstructed bytes (H, W, bpp) uint8 of the filtered rows (H, 1 + W·bpp), one anti-diagonal at a time."""
    height = rows.shape[0]
    kinds = rows[:, 0].astype(np.int16)
    if kinds.size and kinds.max() > 4:
        raise DamagedPNG(f"unknown row filter {int(kinds.max())}")
    raw = rows[:, 1:].reshape(height, width, bpp).astype(np.int16)
    if not np.any(kinds >= 1):                                         # no prediction at all
        return raw.astype(np.uint8)
    out = np.zeros((height + 1, width + 1, bpp), np.int16)             # a zero row above, a zero column left
    for d in range(height + width - 1):
        ys = np.arange(max(0, d - width + 1), min(height - 1, d) + 1)
        xs = d - ys
        a, b, c = out[ys + 1, xs], out[ys, xs + 1], out[ys, xs]
        k = kinds[ys][:, None]
        pred = np.where(k == 1, a, np.where(k == 2, b, np.where(k == 3, (a + b) >> 1,
                                                                  np.where(k == 4, _paeth(a, b, c), 0))))
        out[ys + 1, xs + 1] = (raw[ys, xs] + pred) & 0xFF
    return out[1:, 1:].astype(np.uint8)


def read_png(path, name=None):
    """The pixels of a non-palette PNG of 8 or 16 bits per sample, as uint8 or uint16 of shape (H, W) for grey or
    (H, W, C) for grey + alpha (C = 2), RGB (3) or RGBA (4). Raises :class:`DamagedPNG` for a damaged file and
    :class:`ImageError` for an animation or a kind it does not read."""
    name = name or str(path)
    with open(path, "rb") as fh:
        data = fh.read()
    chunks = _chunks(data)
    if chunks[0][0] != b"IHDR" or len(chunks[0][1]) != 13:
        raise DamagedPNG("it does not start with its header")
    width, height, depth, ctype, method, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    if ctype not in CHANNELS or depth not in (8, 16) or method or filtering or interlace > 1:
        raise DamagedPNG(f"colour type {ctype} at {depth} bits, interlace {interlace}: not a PNG this reader holds")
    if width == 0 or height == 0:
        raise DamagedPNG(f"size {width}×{height}")
    for kind, payload in chunks:
        if kind == b"acTL" and len(payload) >= 4 and struct.unpack(">I", payload[:4])[0] > 1:
            raise ImageError(f"{name}: holds {struct.unpack('>I', payload[:4])[0]} images (an animated PNG); give "
                             "one image per file")
    channels, size = CHANNELS[ctype], depth // 8
    bpp = channels * size
    passes = ADAM7 if interlace else ((0, 0, 1, 1),)
    shapes = [(-(-(height - y0) // dy), -(-(width - x0) // dx)) for y0, x0, dy, dx in passes]
    expected = sum(h * (1 + w * bpp) for h, w in shapes if h and w)
    stream = zlib.decompressobj()
    try:
        pixels = stream.decompress(b"".join(p for k, p in chunks if k == b"IDAT"), expected + 1)
    except zlib.error as e:
        raise DamagedPNG(f"its compressed pixels are corrupt ({e})") from None
    if len(pixels) < expected:
        raise DamagedPNG(f"{len(pixels)} of its {expected} pixel bytes")
    out = np.zeros((height, width, bpp), np.uint8)
    buf, pos = np.frombuffer(pixels, np.uint8), 0
    for (y0, x0, dy, dx), (h, w) in zip(passes, shapes):
        if not (h and w):
            continue
        rows = buf[pos:pos + h * (1 + w * bpp)].reshape(h, 1 + w * bpp)
        pos += rows.size
        out[y0::dy, x0::dx] = _unfilter(rows, w, bpp)
    samples = out.view(">u2").astype(np.uint16) if size == 2 else out
    samples = samples.reshape(height, width, channels)
    trns = next((p for k, p in chunks if k == b"tRNS"), None)
    if trns is not None and ctype in (0, 2) and len(trns) == 2 * channels:
        key = np.array(struct.unpack(f">{channels}H", trns), np.uint16)
        opaque = ~np.all(samples == key.astype(samples.dtype), axis=-1, keepdims=True)
        alpha = opaque.astype(samples.dtype) * np.iinfo(samples.dtype).max
        samples = np.concatenate([samples, alpha.astype(samples.dtype)], axis=-1)
    return samples[..., 0] if samples.shape[-1] == 1 else samples


def _chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def encode_png(img, level=6):
    """The bytes of a PNG holding ``img``: uint8 or uint16, grey (H, W) or (H, W, C) with C = 1 (grey), 2 (grey +
    alpha), 3 (RGB) or 4 (RGBA); each row filtered by the filter of the smallest sum of absolute filtered bytes."""
    img = np.asarray(img)
    channels = 1 if img.ndim == 2 else img.shape[-1]
    if img.dtype not in (np.uint8, np.uint16) or img.ndim not in (2, 3) or not 1 <= channels <= 4:
        raise ValueError(f"encode_png: expected uint8/uint16 (H, W) or (H, W, 1..4), got {img.dtype} {img.shape}")
    height, width = img.shape[:2]
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    size = img.dtype.itemsize
    x = np.ascontiguousarray(img, dtype=">u2" if size == 2 else np.uint8).view(np.uint8).reshape(height, -1)
    bpp = channels * size
    a, b, c = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)      # left, up, up-left (uint8: mod 256)
    a[:, bpp:] = x[:, :-bpp]
    b[1:] = x[:-1]
    c[1:, bpp:] = x[:-1, :-bpp]
    average = ((a.astype(np.uint16) + b) >> 1).astype(np.uint8)
    paeth = _paeth(a.astype(np.int16), b.astype(np.int16), c.astype(np.int16)).astype(np.uint8)
    filtered = np.stack([x, x - a, x - b, x - average, x - paeth])    # (5, H, W·bpp), wrapping mod 256
    cost = np.minimum(filtered, 0 - filtered).sum(axis=2, dtype=np.int64)     # |filtered byte as signed|
    best = cost.argmin(axis=0)
    rows = np.empty((height, 1 + x.shape[1]), np.uint8)
    rows[:, 0] = best
    rows[:, 1:] = filtered[best, np.arange(height)]
    header = struct.pack(">IIBBBBB", width, height, 8 * size, ctype, 0, 0, 0)
    return (SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level))
            + _chunk(b"IEND", b""))
