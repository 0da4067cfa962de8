"""Batched image operations shared by the corruptions. Every image tensor here is float
(N, C, H, W) (or (N, H, W) for single-channel layers), on the CPU.

The CIFAR-10-C reference (make_cifar_c.py of Hendrycks & Dietterich's robustness benchmark) builds
its corruptions from skimage, scipy, PIL, OpenCV and ImageMagick calls on one image at a time; these
are batched equivalents of the scipy, PIL and ImageMagick pieces it uses, each documented with the
call it stands for and, where it is exact, with the arithmetic order that makes it so (the OpenCV
pieces are in `_opencv`).
"""
from __future__ import annotations

import functools
import math
import sys

import torch
from scipy import ndimage

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 (the exact RGB2GRAY of the benchmark is _opencv.rgb_to_grey)


def gaussian_filter(x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """`skimage.filters.gaussian(x, sigma)` over the last two axes only (defaults as skimage's)."""
    if sigma <= 0:
        return x.clone()
    sigmas = (0.0,) * (x.dim() - 2) + (sigma, sigma)
    out = ndimage.gaussian_filter(x.numpy(), sigma=sigmas, mode=mode, truncate=truncate)
    return torch.from_numpy(out)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) grey level of (N, C, H, W) images; a single channel is its own grey level."""
    if x.shape[1] == 1:
        return x
    weights = torch.tensor(LUMA, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def filter2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """`cv2.filter2D(x, -1, kernel)` on every channel: correlation over the last two axes with
    border REFLECT_101 (scipy's "mirror"). x: (..., H, W); kernel: (kh, kw)."""
    weights = kernel.to(torch.float64).numpy().reshape((1,) * (x.dim() - 2) + tuple(kernel.shape))
    out = ndimage.correlate(x.numpy(), weights.astype(x.numpy().dtype), mode="mirror")
    return torch.from_numpy(out)


def zoom_taps(size_in: int, size_out: int, keep: slice) -> tuple[torch.Tensor, ...]:
    """Linear-interpolation taps of `scipy.ndimage.zoom(order=1)` along one axis, for the output
    pixels `keep`: output pixel o reads input o * (in - 1) / (out - 1) (align-corners), with
    scipy's weights w0 = 1 - t and w1 = 1 - w0 (not t). Returns (first index, second index, w0,
    w1), each (len(keep),)."""
    zoom = (size_in - 1) / (size_out - 1) if size_out > 1 else 1.0
    coords = torch.arange(size_out, dtype=torch.float64)[keep] * zoom
    start = torch.floor(coords)
    w0 = 1.0 - (coords - start)
    first = start.long().clamp(0, size_in - 1)
    second = (first + 1).clamp(max=size_in - 1)  # read with weight 0 at the last pixel
    return first, second, w0, 1.0 - w0


def zoom_linear(x: torch.Tensor, size: tuple[int, int], rows: slice = slice(None),
                cols: slice = slice(None), dtype: torch.dtype | None = None) -> torch.Tensor:
    """`scipy.ndimage.zoom(x, ..., order=1)` over the last two axes to `size` (then [rows, cols]
    of it), bit for bit, in `dtype` (x's by default; float32 or float64). scipy computes in float64,
    summing the four taps (value * row weight) * column weight in raster order, and casts.

    A float64 result takes exactly that path. A float32 one comes from two float64 matrix products,
    whose rounding differs from scipy's in the last bits of a double; that changes the float32
    cast only near a float32 tie, and those few values are recomputed in scipy's order.
    """
    taps = zoom_taps(x.shape[-2], size[0], rows), zoom_taps(x.shape[-1], size[1], cols)
    if (dtype or x.dtype) == torch.float64:
        return _zoom_in_scipy_order(x, *taps)
    (rows0, rows1, wr0, wr1), (cols0, cols1, wc0, wc1) = taps
    row_weights = torch.zeros(len(rows0), x.shape[-2], dtype=torch.float64)
    col_weights = torch.zeros(len(cols0), x.shape[-1], dtype=torch.float64)
    for weights, first, second, w0, w1 in ((row_weights, rows0, rows1, wr0, wr1),
                                           (col_weights, cols0, cols1, wc0, wc1)):
        span = torch.arange(len(first))
        weights.index_put_((span, first), w0, accumulate=True).index_put_((span, second), w1, accumulate=True)
    approx = row_weights @ x.double() @ col_weights.t()

    def exact_at(where: torch.Tensor) -> torch.Tensor:
        *batch, i, j = where.nonzero(as_tuple=True)
        pick = [(rows0, wr0, cols0, wc0), (rows0, wr0, cols1, wc1), (rows1, wr1, cols0, wc0), (rows1, wr1, cols1, wc1)]
        total = torch.zeros(len(i), dtype=torch.float64)
        for r, wr, c, wc in pick:
            total = total + x[(*batch, r[i], c[j])].double() * wr[i] * wc[j]
        return total

    return cast_float32_exactly(approx, exact_at)


def _zoom_in_scipy_order(x: torch.Tensor, taps_rows, taps_cols) -> torch.Tensor:
    (rows0, rows1, wr0, wr1), (cols0, cols1, wc0, wc1) = taps_rows, taps_cols
    x = x.double()
    top = x[..., rows0, :] * wr0[:, None]  # value * row weight
    bottom = x[..., rows1, :] * wr1[:, None]
    out = top[..., cols0] * wc0
    out += top[..., cols1] * wc1
    out += bottom[..., cols0] * wc0
    out += bottom[..., cols1] * wc1
    return out


def cast_float32_exactly(approx: torch.Tensor, exact_at, ulps: int = 256) -> torch.Tensor:
    """float32 of float64 values known only to within a few units in the last place (`approx`:
    sums of same-sign terms, so never cancelled, zero or in float32's normal range): the cast is
    right unless a value lies within `ulps` (a power of two) double ulps of a float32 tie, i.e.
    its 29 low mantissa bits are near 2^28; there `exact_at(mask)` supplies the exact float64
    values (in mask.nonzero() order) to cast instead."""
    approx = approx.contiguous()
    low_word = approx.view(torch.int32)[..., 0::2] if sys.byteorder == "little" else approx.view(torch.int32)[..., 1::2]
    low_bits = low_word & ((1 << 29) - 1)  # int32 arithmetic: three times faster than int64 here
    window = ulps.bit_length()  # 2^window = 2 ulps: low bits in [2^28 - ulps, 2^28 + ulps)
    near = ((low_bits + ulps) >> window) == ((1 << 28) >> window)
    out = approx.float()
    if near.any():
        out[near] = exact_at(near).float()
    return out


def clipped_zoom(x: torch.Tensor, zoom: float, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The benchmark's `clipped_zoom`: zoom into the centre by `zoom` >= 1 and crop back to
    (H, W). Its `scipy.ndimage.zoom(centre_crop, zoom, order=1)` output has size round(crop * zoom)
    and the input's dtype, `dtype` here (x's by default: a float32 image may come as float64);
    only the kept (H, W) window is computed."""
    h, w = x.shape[-2:]
    crop_h, crop_w = math.ceil(h / zoom), math.ceil(w / zoom)
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    crop = x[..., top:top + crop_h, left:left + crop_w]
    size = (round(crop_h * zoom), round(crop_w * zoom))
    trim_h, trim_w = (size[0] - h) // 2, (size[1] - w) // 2
    return zoom_linear(crop, size, slice(trim_h, trim_h + h), slice(trim_w, trim_w + w), dtype)


def motion_blur(x: torch.Tensor, radius: float, sigma: float, angle_deg: torch.Tensor) -> torch.Tensor:
    """ImageMagick's MotionBlurImage (the reference calls it through Wand), batched.

    A one-sided line kernel: taps i = 0 .. 2 * ceil(radius) with weights exp(-i^2 / (2 sigma^2))
    (normalised), tap i reading the pixel at offset (ceil(i cos a - 0.5), ceil(i sin a - 0.5))
    (x right, y down) with edge pixels repeated outside the image. x: (N, C, H, W);
    angle_deg: (N,) one angle per image.
    """
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    width = int(2 * math.ceil(radius) + 1)
    taps = torch.arange(width, dtype=torch.float64)
    weights = torch.exp(-taps**2 / (2 * sigma**2))
    weights = (weights / weights.sum()).to(x.dtype)
    angle = torch.deg2rad(angle_deg.to(torch.float64))[:, None]  # (N, 1)
    dx = torch.ceil(taps * torch.cos(angle) - 0.5).long()  # (N, width)
    dy = torch.ceil(taps * torch.sin(angle) - 0.5).long()
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    flat = x.reshape(n, -1, h * w)
    out = torch.zeros_like(flat)
    for i in range(width):  # at most 37 taps; each one is one batched gather
        src_rows = (rows + dy[:, i, None, None]).clamp(0, h - 1)  # (N, H, 1)
        src_cols = (cols + dx[:, i, None, None]).clamp(0, w - 1)  # (N, 1, W)
        source = (src_rows * w + src_cols).view(n, 1, h * w).expand_as(flat)
        out += weights[i] * flat.gather(2, source)
    return out.view(x.shape)


def imagemagick_levels(values: torch.Tensor) -> torch.Tensor:
    """8-bit levels of ImageMagick's (6.9, Q16) result `values` on the 0..255 scale: it keeps
    pixels as 16-bit quanta (value * 257, rounded by ClampToQuantum) and hands the benchmark
    floor(quantum / 257) (measured against Wand + ImageMagick 6.9.11 Q16: exact on every value)."""
    return torch.floor(torch.floor(values * 257 + 0.5) / 257)


def plasma_shapes(n: int, size: int) -> list[tuple[int, int, int]]:
    """Shapes of the uniform draws `plasma_fractal` consumes, in order: three per level."""
    assert size & (size - 1) == 0, "plasma map size must be a power of two"
    shapes, step = [], size
    while step >= 2:
        shapes += [(n, size // step, size // step)] * 3
        step //= 2
    return shapes


def plasma_fractal(uniforms: list[torch.Tensor], size: int, decay: float) -> torch.Tensor:
    """(n, size, size) float64 diamond-square height maps in [0, 1], each min-max normalised.

    The reference's `plasma_fractal`, batched, in its float64 arithmetic: `uniforms` are U[0, 1)
    draws shaped as `plasma_shapes` says; each stands for `np.random.uniform(-wibble, wibble)`,
    which is -wibble + 2 wibble u, and is scaled by wibble again (the reference's wibble^2 quirk,
    kept because it sets the fog's texture); wibble shrinks by `decay` per level.
    """
    n = uniforms[0].shape[0]
    maps = torch.zeros(n, size, size, dtype=torch.float64)
    step, wibble, draws = size, 100.0, iter(uniforms)

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        return total / 4 + wibble * (-wibble + (wibble + wibble) * next(draws).double())

    while step >= 2:
        half = step // 2
        corners = maps[:, 0::step, 0::step]
        square = corners + corners.roll(-1, dims=1)
        square = square + square.roll(-1, dims=2)
        maps[:, half::step, half::step] = wibbled_mean(square)
        centres = maps[:, half::step, half::step]
        left_right = (centres + centres.roll(1, dims=1)) + (corners + corners.roll(-1, dims=2))
        maps[:, 0::step, half::step] = wibbled_mean(left_right)
        up_down = (centres + centres.roll(1, dims=2)) + (corners + corners.roll(-1, dims=1))
        maps[:, half::step, 0::step] = wibbled_mean(up_down)
        step, wibble = half, wibble / decay
    flat = maps.reshape(n, -1)
    flat = flat - flat.min(dim=1, keepdim=True).values
    flat = flat / flat.max(dim=1, keepdim=True).values
    return flat.reshape(n, size, size)


PIL_PRECISION_BITS = 22  # Pillow's 8-bit resampling: 32 - 8 - 2 fraction bits


@functools.cache
def pil_box_coefficients(size_in: int, size_out: int) -> torch.Tensor:
    """(size_out, size_in) fixed-point weights of Pillow's `resize(..., Image.BOX)` along one axis.

    Pillow's `precompute_coeffs` (double arithmetic, in its order) then `normalize_coeffs_8bpc`:
    every input pixel whose centre lies in the output pixel's footprint (half-open on the left)
    gets weight 1, the weights are normalised and scaled to integers with 22 fraction bits.
    """
    scale = size_in / size_out
    filterscale = max(scale, 1.0)
    support, inverse = 0.5 * filterscale, 1.0 / filterscale
    weights = torch.zeros(size_out, size_in, dtype=torch.float64)
    for out in range(size_out):
        centre = (out + 0.5) * scale
        first = max(int(centre - support + 0.5), 0)
        count = min(int(centre + support + 0.5), size_in) - first
        taps = [1.0 if -0.5 < (i + first - centre + 0.5) * inverse <= 0.5 else 0.0 for i in range(count)]
        total = sum(taps)
        for i, tap in enumerate(taps):
            weights[out, first + i] = int(0.5 + (tap / total if total else tap) * (1 << PIL_PRECISION_BITS))
    return weights


def pil_box_resize(levels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`Image.resize(size[::-1], Image.BOX)` of 8-bit images (..., H, W) holding levels, bit for
    bit: a horizontal then a vertical pass, each rounding to 8 bits as Pillow does
    (clip8((2^21 + sum level * weight) >> 22)). Integer sums are exact in float64."""
    half = float(1 << (PIL_PRECISION_BITS - 1))
    scale = float(1 << PIL_PRECISION_BITS)
    out = levels.double()
    if size[1] != out.shape[-1]:
        cols = pil_box_coefficients(out.shape[-1], size[1])
        out = torch.floor((out @ cols.t() + half) / scale).clamp(0, 255)
    if size[0] != out.shape[-2]:
        rows = pil_box_coefficients(out.shape[-2], size[0])
        out = torch.floor((rows @ out + half) / scale).clamp(0, 255)
    return out


def _reflect_coordinate(coords: torch.Tensor, size: int) -> torch.Tensor:
    """scipy.ndimage's map_coordinate(mode='reflect') of float coordinates outside [0, size - 1]
    (half-sample symmetric: ... b a | a b ... | y z | z y ...); only those are touched."""
    period, out = 2 * size, coords.clone()
    low, high = coords < 0, coords > size - 1
    if low.any():
        c = coords[low]
        c = torch.where(c < -period, period * torch.trunc(-c / period) + c, c)
        out[low] = torch.where(c < -size, c + period, torch.where(c > -1e-15, 1e-15, -c) - 1)
    if high.any():
        c = coords[high]
        c = c - period * torch.trunc(c / period)
        out[high] = torch.where(c >= size, period - c - 1, c)
    return out


def _reflect_index(index: torch.Tensor, size: int) -> torch.Tensor:
    """Half-sample symmetric integer indices: -1 -> 0, size -> size - 1."""
    low, high = int(index.min()), int(index.max())
    if low >= -1 and high <= size:  # one pixel out at most: the mirror is the edge pixel
        return index.clamp(0, size - 1)
    if low < -size or high >= 2 * size:
        index = index.remainder(2 * size)
    return torch.where(index < 0, -index - 1, torch.where(index >= size, 2 * size - index - 1, index))


def map_coordinates_reflect(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """`scipy.ndimage.map_coordinates(image, (rows, cols, channel), order=1, mode='reflect')` of
    (N, C, H, W) images at float64 coordinates (N, H, W), per channel; float64 result, summed as
    scipy sums: the four taps (value * row weight) * column weight in raster order."""
    n, c, h, w = x.shape
    rows, cols = _reflect_coordinate(rows, h), _reflect_coordinate(cols, w)
    top, left = torch.floor(rows), torch.floor(cols)
    wy0, wx0 = 1.0 - (rows - top), 1.0 - (cols - left)
    wy1, wx1 = 1.0 - wy0, 1.0 - wx0
    top, left = top.long(), left.long()
    row_index = [_reflect_index(top + dy, h) * w for dy in (0, 1)]
    col_index = [_reflect_index(left + dx, w) for dx in (0, 1)]
    flat = x.double().reshape(n, c, h * w)

    def tap(dy: int, dx: int) -> torch.Tensor:
        index = row_index[dy] + col_index[dx]
        return flat.gather(2, index.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)

    wy0, wy1, wx0, wx1 = wy0[:, None], wy1[:, None], wx0[:, None], wx1[:, None]
    out = tap(0, 0) * wy0 * wx0 + tap(0, 1) * wy0 * wx1
    return out + tap(1, 0) * wy1 * wx0 + tap(1, 1) * wy1 * wx1
