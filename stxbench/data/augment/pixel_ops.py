"""timm's RandAugment operations, computed on image batches as Pillow computes them.

Every function takes ``x``: a float32 batch ``[b, C, H, W]`` (C = 1 or 3) holding the integer
pixel values 0..255 of 8-bit images, and per-sample arguments as tensors of shape ``[b]``; it
returns the same kind of batch. The arithmetic follows Pillow's C code (Geometry.c's affine
bilinear/bicubic filters, Blend.c, Filter.c's 3x3 kernel, Convert.c's RGB->L, ImageOps'
lookup tables) in the same precision and order, so results equal Pillow's pixel for pixel
(tests/test_augment.py compares them on random images). Nothing here imports PIL.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# -- lookup-table operations ------------------------------------------------------------------


def invert(x: Tensor) -> Tensor:
    return 255.0 - x


def posterize(x: Tensor, bits: Tensor) -> Tensor:
    """Keep the ``bits`` high bits (``bits >= 8``: unchanged)."""
    drop = (8 - bits.clamp(max=8)).to(torch.int32).view(-1, 1, 1, 1)
    mask = (~((1 << drop) - 1)) & 0xFF
    return (x.to(torch.int32) & mask).to(x.dtype)


def solarize(x: Tensor, threshold: Tensor) -> Tensor:
    """Invert the pixels ``>= threshold``."""
    return torch.where(x < threshold.view(-1, 1, 1, 1), x, 255.0 - x)


def solarize_add(x: Tensor, add: Tensor, threshold: float = 128.0) -> Tensor:
    """Add ``add`` (capped at 255) to the pixels ``< threshold``."""
    return torch.where(x < threshold, (x + add.view(-1, 1, 1, 1)).clamp(max=255.0), x)


def _histograms(x: Tensor) -> Tensor:
    """Per (sample, channel) histograms of 256 bins: ``[b, C, 256]`` int64."""
    b, c = x.shape[:2]
    flat = x.to(torch.int64).reshape(b * c, -1)
    offsets = torch.arange(b * c, device=x.device).view(-1, 1) * 256
    counts = torch.bincount((flat + offsets).flatten(), minlength=b * c * 256)
    return counts.view(b, c, 256)


def _apply_lut(x: Tensor, lut: Tensor) -> Tensor:
    """``lut [b, C, 256]`` (values clipped to 0..255 as Image.point does) applied per channel."""
    b, c = x.shape[:2]
    idx = x.to(torch.int64).reshape(b, c, -1)
    return lut.clamp(0, 255).gather(2, idx).reshape(x.shape).to(x.dtype)


def auto_contrast(x: Tensor) -> Tensor:
    """ImageOps.autocontrast (cutoff 0): stretch each channel's [min, max] to [0, 255]."""
    flat = x.reshape(*x.shape[:2], -1).to(torch.float64)
    lo, hi = flat.amin(-1, keepdim=True), flat.amax(-1, keepdim=True)
    span = (hi - lo).clamp(min=1)
    scale = torch.full_like(span, 255.0) / span  # not 255.0 / span: torch divides through 1/span
    offset = -lo * scale
    ix = torch.arange(256, device=x.device, dtype=torch.float64)
    lut = (ix * scale + offset).trunc().clamp(0, 255)  # Python int() of a double, then clipped
    lut = torch.where(hi > lo, lut, ix.expand_as(lut))
    return _apply_lut(x, lut.to(torch.int64))


def equalize(x: Tensor) -> Tensor:
    """ImageOps.equalize: per channel, ``lut[i] = (step // 2 + #pixels below i) // step`` with
    ``step = (#pixels - #pixels of the top value) // 255``; identity for a flat channel."""
    h = _histograms(x)
    nonzero = h > 0
    idx = torch.arange(256, device=x.device).expand_as(h)
    top = torch.where(nonzero, idx, -1).amax(-1, keepdim=True)
    step = (h.sum(-1, keepdim=True) - h.gather(-1, top.clamp(min=0))) // 255
    below = h.cumsum(-1) - h
    lut = (step // 2 + below) // step.clamp(min=1)
    usable = (nonzero.sum(-1, keepdim=True) > 1) & (step > 0)
    return _apply_lut(x, torch.where(usable, lut, idx))


# -- ImageEnhance: blends with a degenerate image ------------------------------------------


def blend(degenerate: Tensor, x: Tensor, factor: Tensor) -> Tensor:
    """Image.blend(degenerate, x, factor) for 8-bit images: ``d + f * (x - d)`` in float32
    (Pillow takes the factor as a C float), truncated; clipped to 0..255 when extrapolating."""
    f = factor.to(torch.float32).view(-1, 1, 1, 1)
    return (degenerate + f * (x - degenerate)).clamp(0.0, 255.0).trunc()


def grayscale(x: Tensor) -> Tensor:
    """RGB -> L as Pillow converts (ITU-R 601-2 in 16-bit fixed point); L stays L."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.to(torch.int32).unbind(1)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(x.dtype).unsqueeze(1)


def color(x: Tensor, factor: Tensor) -> Tensor:
    return blend(grayscale(x).expand_as(x), x, factor)


def contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with a flat image at the rounded mean of the grayscale image."""
    total = grayscale(x).to(torch.float64).sum(dim=(1, 2, 3))  # exact: integers below 2**53
    mean = (total / torch.full_like(total, x.shape[-1] * x.shape[-2]) + 0.5).floor().to(x.dtype)
    return blend(mean.view(-1, 1, 1, 1).expand_as(x), x, factor)


def brightness(x: Tensor, factor: Tensor) -> Tensor:
    return blend(torch.zeros_like(x), x, factor)


SMOOTH = (1.0, 1.0, 1.0, 1.0, 5.0, 1.0, 1.0, 1.0, 1.0)  # ImageFilter.SMOOTH, divided by 13


def smooth(x: Tensor) -> Tensor:
    """ImageFilter.SMOOTH as Filter.c computes it: float32 kernel/13, rows summed bottom,
    middle, top, +0.5 and truncated; the border pixels are copied."""
    if x.shape[-1] < 3 or x.shape[-2] < 3:
        return x
    k = torch.tensor(SMOOTH, dtype=torch.float32) / torch.tensor(13.0, dtype=torch.float32)
    k = k.tolist()
    H, W = x.shape[-2:]

    def row(r: Tensor, k0: float, k1: float, k2: float) -> Tensor:  # KERNEL1x3 on inner columns
        return r[..., :-2] * k0 + r[..., 1:-1] * k1 + r[..., 2:] * k2

    ss = torch.full_like(x[..., 1:-1, 1:-1], 0.5)
    ss = ss + row(x[..., 2:, :], *k[0:3])
    ss = ss + row(x[..., 1:-1, :], *k[3:6])
    ss = ss + row(x[..., :-2, :], *k[6:9])
    out = x.clone()
    out[..., 1:-1, 1:-1] = ss.clamp(0.0, 255.0).trunc()
    return out


def sharpness(x: Tensor, factor: Tensor) -> Tensor:
    return blend(smooth(x), x, factor)


# -- affine transforms (Image.transform AFFINE, Image.rotate) -------------------------------


def _cubic(v1: Tensor, v2: Tensor, v3: Tensor, v4: Tensor, d: Tensor) -> Tensor:
    """Geometry.c's BICUBIC macro (the a = -1 cubic), in the same order of operations."""
    p1 = v2
    p2 = -v1 + v3
    p3 = 2 * (v1 - v2) + v3 - v4
    p4 = -v1 + v2 - v3 + v4
    return p1 + d * (p2 + d * (p3 + d * p4))


def affine(x: Tensor, matrix: Tensor, fill: Tensor, resample: Tensor) -> Tensor:
    """Image.transform(size, AFFINE, matrix, resample, fillcolor=fill) per sample.

    ``matrix [b, 6]`` (float64) maps an output pixel's centre ``(x + 0.5, y + 0.5)`` to input
    coordinates; a pixel whose source lies outside the image takes ``fill [C]``; inside, the
    input is sampled with edge-clamped neighbours, bilinear (``resample`` 2) or bicubic (3).
    """
    b, c, H, W = x.shape
    dev = x.device
    xs = torch.arange(W, device=dev, dtype=torch.float64) + 0.5
    ys = torch.arange(H, device=dev, dtype=torch.float64) + 0.5
    a = matrix.to(dev, torch.float64).view(b, 6, 1, 1)
    xin = a[:, 0] * xs.view(1, 1, W) + a[:, 1] * ys.view(1, H, 1) + a[:, 2]  # [b, H, W]
    yin = a[:, 3] * xs.view(1, 1, W) + a[:, 4] * ys.view(1, H, 1) + a[:, 5]
    inside = (xin >= 0) & (xin < W) & (yin >= 0) & (yin < H)
    xin, yin = xin - 0.5, yin - 0.5
    x0, y0 = xin.floor(), yin.floor()
    dx, dy = (xin - x0).unsqueeze(1), (yin - y0).unsqueeze(1)
    flat = x.to(torch.float64).reshape(b, c, H * W)

    def taps(first: Tensor, n: int, size: int) -> list[Tensor]:
        return [(first + i).clamp(0, size - 1).to(torch.int64) for i in range(n)]

    def at(yy: Tensor, xx: Tensor) -> Tensor:  # [b, C, H, W] values at integer coordinates
        idx = (yy * W + xx).view(b, 1, H * W).expand(b, c, H * W)
        return flat.gather(2, idx).view(b, c, H, W)

    bilinear_out = bicubic_out = None
    if bool((resample == 2).any()):
        cols, rows = taps(x0, 2, W), taps(y0, 2, H)
        v = [at(r, cols[0]) + (at(r, cols[1]) - at(r, cols[0])) * dx for r in rows]
        bilinear_out = (v[0] + (v[1] - v[0]) * dy).trunc()
    if bool((resample == 3).any()):
        cols, rows = taps(x0 - 1, 4, W), taps(y0 - 1, 4, H)
        v = [_cubic(*(at(r, col) for col in cols), dx) for r in rows]
        bicubic_out = _cubic(*v, dy).clamp(0.0, 255.0).trunc()
    if bilinear_out is None:
        out = bicubic_out
    elif bicubic_out is None:
        out = bilinear_out
    else:
        out = torch.where((resample == 3).view(b, 1, 1, 1), bicubic_out, bilinear_out)
    filled = fill.to(dev, torch.float64).view(1, c, 1, 1).expand(b, c, H, W)
    return torch.where(inside.unsqueeze(1), out, filled).to(x.dtype)


def rotation_matrix(degrees: float, width: int, height: int) -> tuple[float, ...] | None:
    """Image.rotate's inverse matrix about the centre (None: the angle is 0, an exact copy).
    Python floats, as Pillow computes it (angle taken mod 360 first)."""
    angle = degrees % 360.0
    if angle == 0:
        return None
    angle = -math.radians(angle)
    m = [round(math.cos(angle), 15), round(math.sin(angle), 15), 0.0,
         round(-math.sin(angle), 15), round(math.cos(angle), 15), 0.0]
    cx, cy = width / 2.0, height / 2.0
    m[2] = m[0] * -cx + m[1] * -cy + m[2] + cx
    m[5] = m[3] * -cx + m[4] * -cy + m[5] + cy
    return tuple(m)
