"""Batched torch transcriptions of the OpenCV calls in the benchmark's make_cifar_c.py.

Each follows OpenCV's own integer or float arithmetic, so that for 8-bit inputs the result is the
one OpenCV gives, bit for bit; tests/test_corruptions_reference.py holds numpy transcriptions of
the same C code and, where `cv2` happens to be installed, compares with OpenCV itself. negaug does
not need OpenCV. Images are (N, H, W) single-channel layers unless said otherwise.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

# distanceTransform(DIST_L2, mask 5): the 5x5 chamfer metric of getDistanceTransformMask, float32
CHAMFER_STEPS = (1.0, 1.4, 2.1969)  # horizontal/vertical, diagonal, knight's move
CANNY_TG22 = 13573  # int(tan(22.5 deg) * 2^15 + 0.5), Canny's fixed-point slope
R2Y, G2Y, B2Y = 0.299, 0.587, 0.114  # cvtColor RGB2GRAY coefficients, used as float32


def canny(layer: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """`cv2.Canny(layer_u8, low, high)` (3x3 Sobel with BORDER_REPLICATE, L1 magnitude): bool
    (N, H, W) edges. layer: (N, H, W) holding 8-bit levels."""
    padded = F.pad(layer.double()[:, None], (1, 1, 1, 1), mode="replicate")
    sobel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=torch.float64)
    dx = F.conv2d(padded, sobel.view(1, 1, 3, 3))[:, 0].long()
    dy = F.conv2d(padded, sobel.t().reshape(1, 1, 3, 3))[:, 0].long()
    magnitude = dx.abs() + dy.abs()
    candidate = (magnitude > low) & non_maximum(magnitude, dx, dy)
    strong = candidate & (magnitude > high)
    # hysteresis: candidates 8-connected to a strong pixel, within one image (never across the batch)
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True
    labels, _ = ndimage.label(candidate.numpy(), structure=structure)
    labels = torch.from_numpy(labels)
    strong_labels = torch.unique(labels[strong])
    return candidate & torch.isin(labels, strong_labels[strong_labels > 0])


def non_maximum(magnitude: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Canny's non-maximum suppression, in OpenCV's fixed point: the gradient direction is
    horizontal when |dy| 2^15 < |dx| TG22, vertical when |dy| 2^15 > |dx| (TG22 + 2^16), else
    diagonal. Along rows and columns a pixel must beat the neighbour before and not lose to the
    one after; along diagonals beat both. Outside the image the magnitude is 0."""
    padded = F.pad(magnitude[:, None], (1, 1, 1, 1))[:, 0]
    h, w = magnitude.shape[-2:]

    def at(row: int, col: int) -> torch.Tensor:
        return padded[:, 1 + row:1 + row + h, 1 + col:1 + col + w]

    ax, ay = dx.abs(), dy.abs() << 15
    tg22x = ax * CANNY_TG22
    horizontal = ay < tg22x
    vertical = ~horizontal & (ay > tg22x + (ax << 16))
    diagonal = ~horizontal & ~vertical
    opposite = (dx ^ dy) < 0  # OpenCV's s = -1
    keep = horizontal & (magnitude > at(0, -1)) & (magnitude >= at(0, 1))
    keep |= vertical & (magnitude > at(-1, 0)) & (magnitude >= at(1, 0))
    keep |= diagonal & ~opposite & (magnitude > at(-1, -1)) & (magnitude > at(1, 1))
    keep |= diagonal & opposite & (magnitude > at(-1, 1)) & (magnitude > at(1, -1))
    return keep


def chamfer_distance(zero: torch.Tensor) -> torch.Tensor:
    """`cv2.distanceTransform(src, cv2.DIST_L2, 5)` where `zero` (bool (N, H, W)) marks src == 0:
    float32 (N, H, W) distances to the nearest zero pixel of the same image.

    Two raster passes of the 5x5 chamfer mask (steps 1, 1.4 and 2.1969, not the Euclidean 1,
    sqrt(2), sqrt(5)), accumulated in float32, with FLT_MAX outside the image (and in an image
    without a zero pixel): what OpenCV returns in its usual builds, which run the mask through
    Intel IPP (ippiDistanceTransform_5x5_8u32f; checked with OpenCV 3.4.18, 4.14 and 5.0). Built
    without IPP, OpenCV accumulates in 16-bit fixed point instead, which differs by up to ~1e-4.
    Rows above (below, on the way back) are a min over shifted rows for the whole batch; the
    in-row step t[j] = min(c[j], t[j -+ 1] + 1) is sequential, as float32 sums must be.
    """
    n, h, w = zero.shape
    hv, diag, knight = (torch.tensor(step, dtype=torch.float32) for step in CHAMFER_STEPS)
    border = torch.finfo(torch.float32).max
    grid = torch.full((n, h + 4, w + 4), border, dtype=torch.float32)  # two border rows and columns

    def row_candidates(near: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
        """min over the mask's taps in the adjacent row `near` and the row `far` beyond it."""
        taps = [far[:, 1:w + 1] + knight, far[:, 3:w + 3] + knight, near[:, :w] + knight,
                near[:, 1:w + 1] + diag, near[:, 2:w + 2] + hv, near[:, 3:w + 3] + diag, near[:, 4:w + 4] + knight]
        return torch.stack(taps).amin(dim=0)

    for i in range(h):  # forward pass: rows above, then left to right
        r = i + 2
        candidates = torch.where(zero[:, i], 0.0, row_candidates(grid[:, r - 1], grid[:, r - 2]))
        for j in range(w):
            grid[:, r, j + 2] = torch.minimum(candidates[:, j], grid[:, r, j + 1] + hv)
    for i in reversed(range(h)):  # backward pass: rows below, then right to left
        r = i + 2
        candidates = torch.minimum(grid[:, r, 2:w + 2], row_candidates(grid[:, r + 1], grid[:, r + 2]))
        for j in reversed(range(w)):
            grid[:, r, j + 2] = torch.minimum(candidates[:, j], grid[:, r, j + 3] + hv)
    return grid[:, 2:h + 2, 2:w + 2].clone()


def _reflect101_pad(x: torch.Tensor) -> torch.Tensor:
    """One pixel of BORDER_REFLECT_101 around (N, H, W)."""
    return F.pad(x[:, None], (1, 1, 1, 1), mode="reflect")[:, 0]


def _box3_sum(x: torch.Tensor) -> torch.Tensor:
    padded = _reflect101_pad(x)
    h, w = x.shape[-2:]
    return sum(padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3))


def blur3_float(x: torch.Tensor) -> torch.Tensor:
    """`cv2.blur(x, (3, 3))` of a float32 layer: OpenCV sums in double and scales by 1/9, then
    casts to float32 (the sums of float32 values here are exact in float64)."""
    return (_box3_sum(x.double()) * (1.0 / 9)).float()


def blur3_uint8(x: torch.Tensor) -> torch.Tensor:
    """`cv2.blur(x, (3, 3))` of an 8-bit layer: OpenCV's fixed-point mean
    ((sum + 4) * 7282) >> 16, an 8-bit result. x: (N, H, W) levels; returns int64 levels."""
    return ((_box3_sum(x.long()) + 4) * 7282) >> 16


def equalize_hist(x: torch.Tensor) -> torch.Tensor:
    """`cv2.equalizeHist` per image. x: (N, H, W) int64 levels -> int64 levels.

    lut[first] = 0 for the lowest level present and lut[i] = cvRound(sum * scale) above it, with
    the running count `sum` above `first` and the float32 scale 255 / (total - count[first]); an
    image of one level is left as it is.
    """
    n = x.shape[0]
    flat = x.reshape(n, -1)
    counts = torch.zeros(n, 256, dtype=torch.long).scatter_add_(1, flat, torch.ones_like(flat))
    first = (counts > 0).long().argmax(dim=1, keepdim=True)
    first_count = counts.gather(1, first)
    total = flat.shape[1]
    scale = torch.tensor(255.0, dtype=torch.float32) / (total - first_count).clamp_min(1).float()
    above = (counts.cumsum(dim=1) - first_count).float()  # `sum` at levels >= first
    lut = torch.round(above * scale).clamp(0, 255).long()  # cvRound: half to even
    lut = torch.where(first_count == total, torch.arange(256).expand(n, 256), lut)
    return lut.gather(1, flat).reshape(x.shape)


def filter2d_uint8(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """`cv2.filter2D(x_u8, cv2.CV_8U, integer kernel)`: correlation with BORDER_REFLECT_101, the
    (integer, hence exact) result saturated to 0..255. x: (N, H, W) levels; kernel 3x3."""
    padded = _reflect101_pad(x.double())[:, None]
    return F.conv2d(padded, kernel.double().view(1, 1, 3, 3))[:, 0].clamp(0, 255).long()


def fma_float32(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Fused a * b + c of float32 tensors, rounded once to float32 as an FMA instruction does.

    a * b is exact in float64; the float64 sum's error is recovered (TwoSum), and where the sum
    sits exactly on a float32 tie, the error decides the side that a single rounding would take.
    """
    product, addend = a.double() * b.double(), c.double()
    total = product + addend
    back = total - product
    error = (product - (total - back)) + (addend - back)
    rounded = total.float()
    other = torch.nextafter(rounded, torch.where(total > rounded.double(), torch.inf, -torch.inf).float())
    tie = (rounded.double() + other.double()) / 2 == total
    wanted = torch.where(error > 0, torch.maximum(rounded, other), torch.minimum(rounded, other))
    return torch.where(tie & (error != 0), wanted, rounded)


def rgb_to_grey(x: torch.Tensor) -> torch.Tensor:
    """`cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)` of float32 (N, C, H, W) images -> (N, 1, H, W).

    0.299 R + 0.587 G + 0.114 B with float32 coefficients, as OpenCV's usual (Intel IPP) builds
    compute it on CPUs with FMA: fma(B, 0.114, fma(R, 0.299, G * 0.587)) (checked with OpenCV
    3.4.18, 4.14 and 5.0). A grey image counts as R = G = B.
    """
    r, g, b = (x[:, 0:1], x[:, 1:2], x[:, 2:3]) if x.shape[1] == 3 else (x, x, x)
    coeffs = torch.tensor([R2Y, G2Y, B2Y], dtype=torch.float32)
    return fma_float32(b, coeffs[2], fma_float32(r, coeffs[0], g * coeffs[1]))


def affine_from_points(source: torch.Tensor, moves: torch.Tensor) -> torch.Tensor:
    """`cv2.getAffineTransform(source, source + moves)`: float64 (N, 2, 3) maps taking the three
    float32 points `source` (3, 2) (x, y) to `source + moves` (moves: float32 (N, 3, 2)).

    OpenCV solves the 6x6 system by its own LU; we solve the equivalent 3x3 one by LAPACK, which
    can differ in the last bit of a double: far below the 1/1024 pixel that warp_affine resolves.
    """
    target = (source + moves).double()  # float32 sums, as NumPy's pts1 + jitter
    n = moves.shape[0]
    points = torch.cat([source.double(), torch.ones(3, 1, dtype=torch.float64)], dim=1).expand(n, 3, 3)
    return torch.linalg.solve(points, target).transpose(1, 2)  # (N, 2, 3)


def _reflect101_index(index: torch.Tensor, size: int) -> torch.Tensor:
    """OpenCV's borderInterpolate(BORDER_REFLECT_101) of integer indices: ... 2 1 | 0 1 2 ..."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * size - 2
    if index.min() < 1 - size or index.max() >= period:
        index = index.remainder(period)
    return torch.where(index < 0, -index, torch.where(index >= size, period - index, index))


def warp_affine(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """`cv2.warpAffine(x, matrix, (W, H), borderMode=BORDER_REFLECT_101)` (bilinear) of float32
    (N, C, H, W) images, as OpenCV 3.4 and 4.x compute it (OpenCV 5.0 computes it otherwise, which
    moves some values by a few levels).

    OpenCV inverts the map in double, walks the output grid in fixed point (10 fraction bits,
    rounded to 1/32 pixel), takes the bilinear weights from its float32 table of 1/32 steps and
    sums the four taps in float32 in the order (top-left, top-right, bottom-left, bottom-right).
    """
    n, c, h, w = x.shape
    m0, m1, m2, m3, m4, m5 = matrix.reshape(n, 6).unbind(1)
    det = m0 * m4 - m1 * m3
    det = torch.where(det != 0, 1.0 / det, torch.zeros_like(det))
    a11, a22 = m4 * det, m0 * det
    m0, m1, m3, m4 = a11, m1 * -det, m3 * -det, a22
    m2, m5 = -m0 * m2 - m1 * m5, -m3 * m2 - m4 * m5
    cols = torch.arange(w, dtype=torch.float64)
    rows = torch.arange(h, dtype=torch.float64)
    adelta = torch.round(m0[:, None] * cols * 1024).long()[:, None, :]  # (N, 1, W), cvRound
    bdelta = torch.round(m3[:, None] * cols * 1024).long()[:, None, :]
    x0 = torch.round((m1[:, None] * rows + m2[:, None]) * 1024).long()[:, :, None] + 16  # (N, H, 1)
    y0 = torch.round((m4[:, None] * rows + m5[:, None]) * 1024).long()[:, :, None] + 16
    fixed_x, fixed_y = (x0 + adelta) >> 5, (y0 + bdelta) >> 5  # (N, H, W) in 1/32 pixel
    left, top = fixed_x >> 5, fixed_y >> 5
    tx = (fixed_x & 31).float() * (1.0 / 32)
    ty = (fixed_y & 31).float() * (1.0 / 32)
    flat = x.reshape(n, c, h * w)
    row_index = [_reflect101_index(top + dy, h) * w for dy in (0, 1)]
    col_index = [_reflect101_index(left + dx, w) for dx in (0, 1)]

    def tap(dy: int, dx: int) -> torch.Tensor:
        index = row_index[dy] + col_index[dx]
        return flat.gather(2, index.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)

    wx0, wx1, wy0, wy1 = (1 - tx)[:, None], tx[:, None], (1 - ty)[:, None], ty[:, None]
    out = tap(0, 0) * (wy0 * wx0) + tap(0, 1) * (wy0 * wx1)
    return out + tap(1, 0) * (wy1 * wx0) + tap(1, 1) * (wy1 * wx1)
