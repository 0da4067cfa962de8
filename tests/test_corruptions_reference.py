"""negaug's corruptions against the CIFAR-10-C benchmark's own functions, at the 8-bit level.

The oracle here is a transcription of the benchmark's generator, make_cifar_c.py in
hendrycks/robustness (ImageNet-C/create_c/make_cifar_c.py, Copyright (c) Dan Hendrycks, Apache
License 2.0), function by function, with three changes: `np.random.*` calls take injected draws
(`Draws`), skimage's old `multichannel=True` is spelt `channel_axis=-1`, and each OpenCV call is
replaced by a numpy transcription of OpenCV's C code (`cv_*` below: distanceTransform mask 5,
Canny, blur, equalizeHist, filter2D, cvtColor, GaussianBlur, getAffineTransform, warpAffine as
OpenCV 3.4 / 4.x compute them), written as the C code's loops, so that they share nothing with
negaug's batched torch. scipy, skimage and PIL calls are the real ones. Where `cv2` is installed,
`test_opencv_transcriptions_match_cv2` checks the `cv_*` functions against OpenCV itself.

Not transcribed: Wand's (ImageMagick's) motion blur. The suite compares snow before and after it;
where Wand and ImageMagick are installed, `test_motion_blur_and_snow_match_imagemagick` compares
motion_blur and snow whole with the benchmark's own Wand calls. Frost is not in negaug.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import map_coordinates
from scipy.ndimage import zoom as scizoom
from skimage import color
from skimage.filters import gaussian

from negaug.anomaly import corrupt
from negaug.anomaly.corruptions import _opencv, blur, digital, noise, weather

SEVERITIES = (1, 2, 3, 4, 5)
F32 = np.float32


# --------------------------------------------------------------------------------------------
# numpy transcriptions of the OpenCV calls (C code of OpenCV 3.4 / 4.x, imgproc)


def cv_round(v: float) -> int:
    return int(np.rint(v))  # cvRound: to nearest, ties to even


def cv_reflect101(p: int, n: int) -> int:
    """borderInterpolate(p, n, BORDER_REFLECT_101)."""
    if n == 1:
        return 0
    while p < 0 or p >= n:
        p = -p if p < 0 else 2 * n - 2 - p
    return p


def cv_distance_transform_l2_5(src: np.ndarray) -> np.ndarray:
    """distanceTransform(src, DIST_L2, 5) as OpenCV's usual (IPP) builds compute it: two raster
    passes of the 5x5 chamfer mask with getDistanceTransformMask's steps 1, 1.4, 2.1969, summed
    in float32, FLT_MAX outside the image."""
    hv, diag, knight = F32(1.0), F32(1.4), F32(2.1969)
    h, w = src.shape
    t = np.full((h + 4, w + 4), np.finfo(F32).max, dtype=F32)
    for i in range(h):
        for j in range(w):
            r, c = i + 2, j + 2
            if src[i, j] == 0:
                t[r, c] = 0
                continue
            t[r, c] = min(t[r - 2, c - 1] + knight, t[r - 2, c + 1] + knight, t[r - 1, c - 2] + knight,
                          t[r - 1, c - 1] + diag, t[r - 1, c] + hv, t[r - 1, c + 1] + diag,
                          t[r - 1, c + 2] + knight, t[r, c - 1] + hv)
    for i in range(h - 1, -1, -1):
        for j in range(w - 1, -1, -1):
            r, c = i + 2, j + 2
            t[r, c] = min(t[r, c], t[r + 2, c + 1] + knight, t[r + 2, c - 1] + knight, t[r + 1, c + 2] + knight,
                          t[r + 1, c + 1] + diag, t[r + 1, c] + hv, t[r + 1, c - 1] + diag,
                          t[r + 1, c - 2] + knight, t[r, c + 1] + hv)
    return t[2:-2, 2:-2].copy()


def cv_canny(img: np.ndarray, low: int, high: int) -> np.ndarray:
    """Canny(img, low, high): Sobel 3x3 (BORDER_REPLICATE), L1 magnitude, fixed-point non-maximum
    suppression, hysteresis from a stack. Returns uint8 0 / 255."""
    h, w = img.shape
    p = np.pad(img.astype(np.int64), 1, mode="edge")
    dx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    dy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    mag = np.zeros((h + 2, w + 2), dtype=np.int64)
    mag[1:-1, 1:-1] = np.abs(dx) + np.abs(dy)
    tg22 = int(0.4142135623730950488016887242097 * (1 << 15) + 0.5)
    state = np.ones((h, w), dtype=np.int64)  # 1: not an edge, 0: weak candidate, 2: edge
    stack = []
    for i in range(h):
        for j in range(w):
            m = mag[i + 1, j + 1]
            if m <= low:
                continue
            xs, ys = int(dx[i, j]), int(dy[i, j])
            x, y = abs(xs), abs(ys) << 15
            tg22x = x * tg22
            if y < tg22x:
                ok = m > mag[i + 1, j] and m >= mag[i + 1, j + 2]
            elif y > tg22x + (x << 16):
                ok = m > mag[i, j + 1] and m >= mag[i + 2, j + 1]
            else:
                s = -1 if (xs ^ ys) < 0 else 1
                ok = m > mag[i, j + 1 - s] and m > mag[i + 2, j + 1 + s]
            if ok:
                if m > high:
                    state[i, j] = 2
                    stack.append((i, j))
                else:
                    state[i, j] = 0
    while stack:
        i, j = stack.pop()
        for a in (-1, 0, 1):
            for b in (-1, 0, 1):
                if 0 <= i + a < h and 0 <= j + b < w and state[i + a, j + b] == 0:
                    state[i + a, j + b] = 2
                    stack.append((i + a, j + b))
    return np.where(state == 2, 255, 0).astype(np.uint8)


def cv_box_sum3(img: np.ndarray) -> np.ndarray:
    h, w = img.shape
    out = np.zeros((h, w), dtype=np.float64 if img.dtype.kind == "f" else np.int64)
    for i in range(h):
        for j in range(w):
            out[i, j] = sum(img[cv_reflect101(i + a, h), cv_reflect101(j + b, w)]
                            for a in (-1, 0, 1) for b in (-1, 0, 1))
    return out


def cv_blur_f32(img: np.ndarray) -> np.ndarray:
    """blur(float32, (3, 3)): double sums scaled by 1/9 (ColumnSum<double, float>)."""
    return (cv_box_sum3(img.astype(np.float64)) * (1.0 / 9)).astype(F32)


def cv_blur_u8(img: np.ndarray) -> np.ndarray:
    """blur(uint8, (3, 3)): ColumnSum<ushort, uchar>: ((s + d/2) * divScale) >> 16, d = 9."""
    return (((cv_box_sum3(img.astype(np.int64)) + 4) * 7282) >> 16).astype(np.uint8)


def cv_equalize_hist(img: np.ndarray) -> np.ndarray:
    hist = np.bincount(img.ravel(), minlength=256)
    i = 0
    while not hist[i]:
        i += 1
    total = img.size
    if hist[i] == total:
        return img.copy()
    scale = F32(255.0) / F32(total - hist[i])
    lut = np.zeros(256, dtype=np.uint8)
    running = 0
    for level in range(i + 1, 256):
        running += hist[level]
        lut[level] = min(255, max(0, cv_round(float(F32(running) * scale))))
    return lut[img]


def cv_filter2d_u8(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    h, w = img.shape
    out = np.zeros((h, w), dtype=np.int64)
    for i in range(h):
        for j in range(w):
            out[i, j] = sum(int(kernel[a + 1, b + 1]) * int(img[cv_reflect101(i + a, h), cv_reflect101(j + b, w)])
                            for a in (-1, 0, 1) for b in (-1, 0, 1))
    return np.clip(out, 0, 255).astype(np.uint8)


def cv_filter2d_f64(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """filter2D(float64, -1, float32 kernel): correlation, anchor at the centre, REFLECT_101."""
    kh, kw = kernel.shape
    padded = np.pad(img, ((kh // 2, kh // 2), (kw // 2, kw // 2)), mode="reflect")
    out = np.zeros(img.shape, dtype=np.float64)
    for a in range(kh):
        for b in range(kw):
            out += float(kernel[a, b]) * padded[a:a + img.shape[0], b:b + img.shape[1]]
    return out


def round_to_f32(q) -> np.float32:
    """The float32 nearest to the exact rational q, ties to even (one rounding)."""
    from fractions import Fraction

    f = F32(float(q))
    candidates = [np.nextafter(f, F32(-np.inf)), f, np.nextafter(f, F32(np.inf))]
    return min(candidates, key=lambda c: (abs(Fraction(float(c)) - q), int(np.array(c).view(np.uint32)) & 1))


def fma32(a, b, c) -> np.ndarray:
    """a * b + c rounded once to float32, as an FMA instruction (exact rational arithmetic)."""
    from fractions import Fraction

    shape = np.broadcast_shapes(np.shape(a), np.shape(b), np.shape(c))
    a, b, c = (np.broadcast_to(v, shape).ravel() for v in (a, b, c))
    out = [round_to_f32(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))) for x, y, z in zip(a, b, c)]
    return np.array(out, dtype=F32).reshape(shape)


def cv_rgb2gray_f32(img: np.ndarray) -> np.ndarray:
    """cvtColor(float32, RGB2GRAY) as IPP computes it with FMA: fma(B, .114, fma(R, .299, G * .587))."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return fma32(b, F32(0.114), fma32(r, F32(0.299), g * F32(0.587)))


def cv_gaussian_blur_3x3_f32(img: np.ndarray, sigma: float) -> np.ndarray:
    """GaussianBlur(float32, (3, 3), sigma): getGaussianKernel(3, sigma, CV_32F), rows then
    columns in float32, REFLECT_101."""
    taps = [F32(np.exp((-0.5 / (sigma * sigma)) * (i - 1.0) ** 2)) for i in range(3)]
    total = 0.0
    for tap in taps:
        total += float(tap)
    k = [F32(float(tap) * (1.0 / total)) for tap in taps]
    p = np.pad(img, 1, mode="reflect")
    rows = p[:, :-2] * k[0] + p[:, 1:-1] * k[1] + p[:, 2:] * k[2]
    return rows[:-2] * k[0] + rows[1:-1] * k[1] + rows[2:] * k[2]


def cv_get_affine_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    a, b = np.zeros((6, 6)), np.zeros(6)
    for i in range(3):
        a[2 * i, :3] = a[2 * i + 1, 3:] = (src[i, 0], src[i, 1], 1)
        b[2 * i], b[2 * i + 1] = dst[i]
    return np.linalg.solve(a, b).reshape(2, 3)


def cv_warp_affine_linear(img: np.ndarray, m: np.ndarray) -> np.ndarray:
    """warpAffine(float32 HxWxC, M, (W, H), INTER_LINEAR, BORDER_REFLECT_101): WarpAffineInvoker's
    fixed point (AB_BITS 10, INTER_BITS 5) and remapBilinear's float32 weight table."""
    m0, m1, m2, m3, m4, m5 = (float(v) for v in m.ravel())
    d = m0 * m4 - m1 * m3
    d = 1.0 / d if d != 0 else 0.0
    a11, a22 = m4 * d, m0 * d
    m0, m1, m3, m4 = a11, m1 * -d, m3 * -d, a22
    m2, m5 = -m0 * m2 - m1 * m5, -m3 * m2 - m4 * m5
    h, w, cn = img.shape
    out = np.zeros_like(img)
    for y in range(h):
        x0 = cv_round((m1 * y + m2) * 1024) + 16
        y0 = cv_round((m4 * y + m5) * 1024) + 16
        for x in range(w):
            fx = (x0 + cv_round(m0 * x * 1024)) >> 5
            fy = (y0 + cv_round(m3 * x * 1024)) >> 5
            sx, sy = fx >> 5, fy >> 5
            tx, ty = F32(fx & 31) * F32(1 / 32), F32(fy & 31) * F32(1 / 32)
            wts = ((F32(1) - ty) * (F32(1) - tx), (F32(1) - ty) * tx, ty * (F32(1) - tx), ty * tx)
            c0, c1 = cv_reflect101(sx, w), cv_reflect101(sx + 1, w)
            r0, r1 = cv_reflect101(sy, h), cv_reflect101(sy + 1, h)
            for k in range(cn):
                out[y, x, k] = (img[r0, c0, k] * wts[0] + img[r0, c1, k] * wts[1]
                                + img[r1, c0, k] * wts[2] + img[r1, c1, k] * wts[3])
    return out


# --------------------------------------------------------------------------------------------
# the benchmark's functions (make_cifar_c.py), np.random replaced by injected draws


class Draws:
    """Stands for np.random: each call returns the next injected draw (U[0, 1) for uniform,
    standard normal for normal, as NumPy's legacy sampler combines them with loc/low)."""

    def __init__(self, draws):
        self.queue = list(draws)

    def pop(self, shape):
        draw = np.asarray(self.queue.pop(0))
        assert draw.shape == tuple(shape), (draw.shape, shape)
        return draw

    def normal(self, size=None, loc=0.0, scale=1.0):
        return loc + scale * self.pop(size)

    def uniform(self, low=0.0, high=1.0, size=None):
        return low + (high - low) * self.pop(size)

    def randint(self, low, high, size=None):
        return self.pop(size)

    def poisson(self, lam):
        return self.pop(np.shape(lam))


R = Draws([])


def ref_disk(radius, alias_blur=0.1, dtype=np.float32):
    L = np.arange(-8, 8 + 1)
    X, Y = np.meshgrid(L, L)
    aliased_disk = np.array((X ** 2 + Y ** 2) <= radius ** 2, dtype=dtype)
    aliased_disk /= np.sum(aliased_disk)
    return cv_gaussian_blur_3x3_f32(aliased_disk, alias_blur)


def ref_plasma_fractal(mapsize=32, wibbledecay=3):
    maparray = np.empty((mapsize, mapsize), dtype=np.float64)
    maparray[0, 0] = 0
    stepsize = mapsize
    wibble = 100

    def wibbledmean(array):
        return array / 4 + wibble * R.uniform(-wibble, wibble, array.shape)

    def fillsquares():
        cornerref = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squareaccum = cornerref + np.roll(cornerref, shift=-1, axis=0)
        squareaccum += np.roll(squareaccum, shift=-1, axis=1)
        maparray[stepsize // 2:mapsize:stepsize, stepsize // 2:mapsize:stepsize] = wibbledmean(squareaccum)

    def filldiamonds():
        mapsize = maparray.shape[0]
        drgrid = maparray[stepsize // 2:mapsize:stepsize, stepsize // 2:mapsize:stepsize]
        ulgrid = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        ldrsum = drgrid + np.roll(drgrid, 1, axis=0)
        lulsum = ulgrid + np.roll(ulgrid, -1, axis=1)
        ltsum = ldrsum + lulsum
        maparray[0:mapsize:stepsize, stepsize // 2:mapsize:stepsize] = wibbledmean(ltsum)
        tdrsum = drgrid + np.roll(drgrid, 1, axis=1)
        tulsum = ulgrid + np.roll(ulgrid, -1, axis=0)
        ttsum = tdrsum + tulsum
        maparray[stepsize // 2:mapsize:stepsize, 0:mapsize:stepsize] = wibbledmean(ttsum)

    while stepsize >= 2:
        fillsquares()
        filldiamonds()
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


def ref_clipped_zoom(img, zoom_factor):
    h = img.shape[0]
    ch = int(np.ceil(h / zoom_factor))
    top = (h - ch) // 2
    img = scizoom(img[top:top + ch, top:top + ch], (zoom_factor, zoom_factor, 1), order=1)
    trim_top = (img.shape[0] - h) // 2
    return img[trim_top:trim_top + h, trim_top:trim_top + h]


def ref_gaussian_noise(x, severity=1):
    c = [0.04, 0.06, .08, .09, .10][severity - 1]
    x = np.array(x) / 255.
    return np.clip(x + R.normal(size=x.shape, scale=c), 0, 1) * 255


def ref_shot_noise(x, severity=1):
    c = [500, 250, 100, 75, 50][severity - 1]
    x = np.array(x) / 255.
    return np.clip(R.poisson(x * c) / c, 0, 1) * 255


def ref_impulse_noise(x, severity=1):
    # sk.util.random_noise(np.array(x) / 255., mode='s&p', amount=c): its `flipped` and `salted`
    # masks injected, then its replacement and clip
    out = np.array(x) / 255.
    flipped, salted = R.pop(out.shape), R.pop(out.shape)
    out[flipped & salted] = 1
    out[flipped & ~salted] = 0
    x = np.clip(out, 0, 1)
    return np.clip(x, 0, 1) * 255


def ref_speckle_noise(x, severity=1):
    c = [.06, .1, .12, .16, .2][severity - 1]
    x = np.array(x) / 255.
    return np.clip(x + x * R.normal(size=x.shape, scale=c), 0, 1) * 255


def ref_gaussian_blur(x, severity=1):
    c = [.4, .6, 0.7, .8, 1][severity - 1]
    x = gaussian(np.array(x) / 255., sigma=c, channel_axis=-1)
    return np.clip(x, 0, 1) * 255


def ref_glass_blur(x, severity=1):
    c = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)][severity - 1]
    x = np.uint8(gaussian(np.array(x) / 255., sigma=c[0], channel_axis=-1) * 255)
    for i in range(c[2]):  # noqa: B007 (Hendrycks' code, as written)
        for h in range(32 - c[1], c[1], -1):
            for w in range(32 - c[1], c[1], -1):
                dx, dy = R.randint(-c[1], c[1], size=(2,))
                h_prime, w_prime = h + dy, w + dx
                x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]
    return np.clip(gaussian(x / 255., sigma=c[0], channel_axis=-1), 0, 1) * 255


def ref_defocus_blur(x, severity=1):
    c = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][severity - 1]
    x = np.array(x) / 255.
    kernel = ref_disk(radius=c[0], alias_blur=c[1])
    channels = []
    for d in range(3):
        channels.append(cv_filter2d_f64(x[:, :, d], kernel))
    channels = np.array(channels).transpose((1, 2, 0))
    return np.clip(channels, 0, 1) * 255


def ref_zoom_blur(x, severity=1):
    c = [np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01),
         np.arange(1, 1.21, 0.01), np.arange(1, 1.26, 0.01)][severity - 1]
    x = (np.array(x) / 255.).astype(np.float32)
    out = np.zeros_like(x)
    for zoom_factor in c:
        out += ref_clipped_zoom(x, zoom_factor)
    x = (x + out) / (len(c) + 1)
    return np.clip(x, 0, 1) * 255


def ref_fog(x, severity=1):
    c = [(.2, 3), (.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][severity - 1]
    x = np.array(x) / 255.
    max_val = x.max()
    x += c[0] * ref_plasma_fractal(wibbledecay=c[1])[:32, :32][..., np.newaxis]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1) * 255


SNOW = [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)]


def ref_snow_before_motion_blur(x, severity=1):
    c = SNOW[severity - 1]
    x = np.array(x, dtype=np.float32) / 255.
    snow_layer = R.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    snow_layer = ref_clipped_zoom(snow_layer[..., np.newaxis], c[2])
    snow_layer[snow_layer < c[3]] = 0
    return (np.clip(snow_layer.squeeze(), 0, 1) * 255).astype(np.uint8)


def ref_snow_after_motion_blur(x, blurred_u8, severity=1):
    c = SNOW[severity - 1]
    x = np.array(x, dtype=np.float32) / 255.
    snow_layer = blurred_u8 / 255.
    snow_layer = snow_layer[..., np.newaxis]
    x = c[6] * x + (1 - c[6]) * np.maximum(x, cv_rgb2gray_f32(x).reshape(32, 32, 1) * 1.5 + 0.5)
    return np.clip(x + snow_layer + np.rot90(snow_layer, k=2), 0, 1) * 255


def ref_spatter(x, severity=1):
    c = [(0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
         (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1)][severity - 1]
    x = np.array(x, dtype=np.float32) / 255.
    liquid_layer = R.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    liquid_layer = gaussian(liquid_layer, sigma=c[2])
    liquid_layer[liquid_layer < c[3]] = 0
    if c[5] == 0:
        with np.errstate(invalid="ignore"):
            liquid_layer = (liquid_layer * 255).astype(np.uint8)  # wraps above 255, on x86
        dist = 255 - cv_canny(liquid_layer, 50, 150)
        dist = cv_distance_transform_l2_5(dist)
        dist = np.minimum(dist, F32(20))  # cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv_blur_f32(dist).astype(np.uint8)
        dist = cv_equalize_hist(dist)
        ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
        dist = cv_filter2d_u8(dist, ker)
        dist = cv_blur_u8(dist).astype(np.float32)
        m = liquid_layer * dist  # cv2.cvtColor(., GRAY2BGRA): three copies and alpha 1, which drops out
        m = np.repeat(m[..., None], 3, axis=2)
        m /= np.max(m, axis=(0, 1))
        m *= c[4]
        color = np.concatenate((175 / 255. * np.ones_like(m[..., :1]),
                                238 / 255. * np.ones_like(m[..., :1]),
                                238 / 255. * np.ones_like(m[..., :1])), axis=2)
        return np.clip(x + m * color, 0, 1) * 255
    else:
        m = np.where(liquid_layer > c[3], 1, 0)
        m = gaussian(m.astype(np.float32), sigma=c[4])
        m[m < 0.8] = 0
        color = np.concatenate((63 / 255. * np.ones_like(x[..., :1]),
                                42 / 255. * np.ones_like(x[..., :1]),
                                20 / 255. * np.ones_like(x[..., :1])), axis=2)
        color *= m[..., np.newaxis]
        x *= (1 - m[..., np.newaxis])
        return np.clip(x + color, 0, 1) * 255


def ref_contrast(x, severity=1):
    c = [.75, .5, .4, .3, 0.15][severity - 1]
    x = np.array(x) / 255.
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def ref_brightness(x, severity=1):
    c = [.05, .1, .15, .2, .3][severity - 1]
    x = np.array(x) / 255.
    x = color.rgb2hsv(x)
    x[:, :, 2] = np.clip(x[:, :, 2] + c, 0, 1)
    x = color.hsv2rgb(x)
    return np.clip(x, 0, 1) * 255


def ref_saturate(x, severity=1):
    c = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)][severity - 1]
    x = np.array(x) / 255.
    x = color.rgb2hsv(x)
    x[:, :, 1] = np.clip(x[:, :, 1] * c[0] + c[1], 0, 1)
    x = color.hsv2rgb(x)
    return np.clip(x, 0, 1) * 255


def ref_jpeg_compression(x, severity=1):
    c = [80, 65, 58, 50, 40][severity - 1]
    output = io.BytesIO()
    x.save(output, 'JPEG', quality=c)
    return Image.open(output)


def ref_pixelate(x, severity=1):
    c = [0.95, 0.9, 0.85, 0.75, 0.65][severity - 1]
    x = x.resize((int(32 * c), int(32 * c)), Image.BOX)
    return x.resize((32, 32), Image.BOX)


def ref_elastic_transform(image, severity=1):
    IMSIZE = 32
    c = [(IMSIZE * 0, IMSIZE * 0, IMSIZE * 0.08), (IMSIZE * 0.05, IMSIZE * 0.2, IMSIZE * 0.07),
         (IMSIZE * 0.08, IMSIZE * 0.06, IMSIZE * 0.06), (IMSIZE * 0.1, IMSIZE * 0.04, IMSIZE * 0.05),
         (IMSIZE * 0.1, IMSIZE * 0.03, IMSIZE * 0.03)][severity - 1]
    image = np.array(image, dtype=np.float32) / 255.
    shape = image.shape
    shape_size = shape[:2]
    center_square = np.float32(shape_size) // 2
    square_size = min(shape_size) // 3
    pts1 = np.float32([center_square + square_size,
                       [center_square[0] + square_size, center_square[1] - square_size],
                       center_square - square_size])
    pts2 = pts1 + R.uniform(-c[2], c[2], size=pts1.shape).astype(np.float32)
    M = cv_get_affine_transform(pts1, pts2)
    image = cv_warp_affine_linear(image, M)
    dx = (gaussian(R.uniform(-1, 1, size=shape[:2]), c[1], mode='reflect', truncate=3) * c[0]).astype(np.float32)
    dy = (gaussian(R.uniform(-1, 1, size=shape[:2]), c[1], mode='reflect', truncate=3) * c[0]).astype(np.float32)
    dx, dy = dx[..., np.newaxis], dy[..., np.newaxis]
    x, y, z = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]), np.arange(shape[2]))
    indices = np.reshape(y + dy, (-1, 1)), np.reshape(x + dx, (-1, 1)), np.reshape(z, (-1, 1))
    return np.clip(map_coordinates(image, indices, order=1, mode='reflect').reshape(shape), 0, 1) * 255


def reference(fn, images: np.ndarray, severity: int, draws=None, *extra) -> np.ndarray:
    """The benchmark's loop: np.uint8(corruption(PIL image)) per image. images: uint8 (N, 32, 32, 3);
    draws[i]: image i's np.random draws in call order."""
    global R
    out = []
    for i, image in enumerate(images):
        R = Draws(draws[i] if draws is not None else [])
        args = [e[i] for e in extra]
        out.append(np.uint8(fn(Image.fromarray(image), *args, severity)))
        assert not R.queue, "the benchmark used fewer draws than given"
    return np.stack(out)


# --------------------------------------------------------------------------------------------
# images and the negaug side


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    """uint8 (N, 32, 32, 3): skimage's bundled photos, MNIST digits (grey, as RGB copies) and noise."""
    from skimage import data, transform

    from negaug.data import offline

    crops = [data.astronaut()[:256, 128:384], data.coffee()[:256, 200:456], data.chelsea()[:256, 100:356],
             data.astronaut()[256:, 256:]]
    photos = np.stack([transform.resize(c / 255.0, (32, 32), anti_aliasing=True) for c in crops])
    digits = offline.mnist5k(image_size=32).storage[:4, 0]
    digits = torch.round((digits + 1) * 127.5).to(torch.uint8).numpy()
    noise_images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    return {"photos": np.round(photos * 255).astype(np.uint8), "grey": np.repeat(digits[..., None], 3, axis=3),
            "noise": noise_images}


def as_input(u8: np.ndarray, grey: bool) -> torch.Tensor:
    """negaug's input: float32 (N, C, H, W) in [-1, 1], x = level / 127.5 - 1; grey: C = 1."""
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1
    return x[:, :1] if grey else x


def as_levels(u8: np.ndarray, grey: bool) -> torch.Tensor:
    return torch.round((as_input(u8, grey).double() + 1) * 127.5)


def to_uint8(values: torch.Tensor) -> np.ndarray:
    """negaug's closing truncation (as corrupt()), back to uint8 (N, H, W, C)."""
    return torch.floor(values.double().clamp(0, 255)).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def assert_same_levels(ours: np.ndarray, ref: np.ndarray, grey: bool):
    """Exact equality of 8-bit levels; for a grey input the benchmark's three channels agree and
    negaug's one channel is each of them."""
    if grey:
        assert (ref == ref[..., :1]).all()
        ref = ref[..., :1]
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert diff.max() == 0, f"{(diff > 0).sum()} of {diff.size} levels differ, by up to {diff.max()}"


def hwc(draw: torch.Tensor, i: int) -> np.ndarray:
    """Image i's per-pixel draw (N, C, H, W) as the benchmark's (H, W, 3) (a grey draw repeated)."""
    a = draw[i].permute(1, 2, 0).numpy()
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a


SETS = ("photos", "grey", "noise")


# --------------------------------------------------------------------------------------------
# deterministic corruptions: corrupt() itself against the benchmark


DETERMINISTIC = {"gaussian_blur": ref_gaussian_blur, "defocus_blur": ref_defocus_blur, "zoom_blur": ref_zoom_blur,
                 "contrast": ref_contrast, "brightness": ref_brightness, "saturate": ref_saturate,
                 "pixelate": ref_pixelate, "jpeg_compression": ref_jpeg_compression}


@pytest.mark.parametrize("name", DETERMINISTIC)
@pytest.mark.parametrize("severity", SEVERITIES)
def test_deterministic_corruptions_equal_the_benchmark(name, severity, images):
    for set_name in SETS:
        grey = set_name == "grey"
        if grey and name == "saturate":
            continue
        ours = corrupt(as_input(images[set_name], grey), name, severity)
        ours = torch.round((ours.double() + 1) * 127.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        assert_same_levels(ours, reference(DETERMINISTIC[name], images[set_name], severity), grey)


# --------------------------------------------------------------------------------------------
# random corruptions: the same draw given to both


def draws_for(name: str, severity: int, levels: torch.Tensor, rng: np.random.Generator):
    """(negaug's draw arguments, the benchmark's per-image draw lists) from one numpy draw."""
    n, c, h, w = levels.shape
    if name in ("gaussian_noise", "speckle_noise"):
        normal = torch.from_numpy(rng.standard_normal((n, c, h, w)))
        return (normal,), [[hwc(normal, i)] for i in range(n)]
    if name == "shot_noise":
        counts = torch.from_numpy(rng.poisson(levels.numpy() / 255 * noise.PHOTONS[severity - 1]).astype(np.float64))
        return (counts,), [[hwc(counts, i)] for i in range(n)]
    if name == "impulse_noise":
        hit = torch.from_numpy(rng.random((n, c, h, w)) < noise.IMPULSE_AMOUNT[severity - 1])
        salt = torch.from_numpy(rng.random((n, c, h, w)) < 0.5)
        return (hit, salt), [[hwc(hit, i), hwc(salt, i)] for i in range(n)]
    if name == "glass_blur":
        shifts = torch.from_numpy(rng.integers(-1, 1, (blur.GLASS[severity - 1][1], 2, n, h, w)))
        per_image = [[np.array([int(s[1, i, y, x]), int(s[0, i, y, x])])  # (dx, dy), as the benchmark
                      for s in shifts for y in range(h - 1, 1, -1) for x in range(w - 1, 1, -1)] for i in range(n)]
        return (shifts,), per_image
    if name == "fog":
        uniforms = [torch.from_numpy(rng.random(shape)) for shape in _plasma_shapes(n)]
        return (uniforms,), [[u[i].numpy() for u in uniforms] for i in range(n)]
    if name == "spatter":
        normal = torch.from_numpy(rng.standard_normal((n, h, w)))
        return (normal,), [[normal[i].numpy()] for i in range(n)]
    assert name == "elastic_transform"
    jitter, fields = torch.from_numpy(rng.random((n, 3, 2))), torch.from_numpy(rng.random((2, n, h, w)))
    return (jitter, fields), [[jitter[i].numpy(), fields[0, i].numpy(), fields[1, i].numpy()] for i in range(n)]


def _plasma_shapes(n: int) -> list[tuple[int, int, int]]:
    from negaug.anomaly.corruptions import _ops

    return _ops.plasma_shapes(n, 32)


RANDOM = {"gaussian_noise": (ref_gaussian_noise, noise.apply_gaussian_noise),
          "shot_noise": (ref_shot_noise, noise.apply_shot_noise),
          "impulse_noise": (ref_impulse_noise, noise.apply_impulse_noise),
          "speckle_noise": (ref_speckle_noise, noise.apply_speckle_noise),
          "glass_blur": (ref_glass_blur, blur.apply_glass_blur),
          "fog": (ref_fog, weather.apply_fog),
          "spatter": (ref_spatter, weather.apply_spatter),
          "elastic_transform": (ref_elastic_transform, digital.apply_elastic_transform)}


@pytest.mark.parametrize("name", RANDOM)
@pytest.mark.parametrize("severity", SEVERITIES)
def test_random_corruptions_equal_the_benchmark_given_the_same_draw(name, severity, images):
    ref_fn, apply = RANDOM[name]
    rng = np.random.default_rng(severity)
    for set_name in SETS:
        grey = set_name == "grey"
        if grey and name == "spatter":  # the benchmark's water and mud are coloured; see test below
            continue
        levels = as_levels(images[set_name], grey)
        ours_draws, ref_draws = draws_for(name, severity, levels, rng)
        ours = to_uint8(apply(levels, severity, *ours_draws))
        assert_same_levels(ours, reference(ref_fn, images[set_name], severity, ref_draws), grey)


@pytest.mark.parametrize("name", RANDOM)
def test_registered_corruption_is_its_apply_on_the_generators_draw(name, images):
    """corrupt() draws from the generator in a fixed order, then applies: replay that draw."""
    x = as_input(images["photos"], False)
    levels = as_levels(images["photos"], False)
    n, _, h, w = levels.shape
    g = torch.Generator().manual_seed(11)
    if name in ("gaussian_noise", "speckle_noise"):
        draws = (torch.randn(levels.shape, generator=g, dtype=torch.float64),)
    elif name == "shot_noise":
        draws = (torch.poisson(levels / 255 * noise.PHOTONS[2], generator=g),)
    elif name == "impulse_noise":
        hit = torch.rand(levels.shape, generator=g) < noise.IMPULSE_AMOUNT[2]
        draws = (hit, torch.rand(levels.shape, generator=g) < 0.5)
    elif name == "glass_blur":
        draws = (torch.randint(-1, 1, (1, 2, n, h, w), generator=g),)
    elif name == "fog":
        draws = ([torch.rand(s, generator=g, dtype=torch.float64) for s in _plasma_shapes(n)],)
    elif name == "spatter":
        draws = (torch.randn((n, h, w), generator=g, dtype=torch.float64),)
    else:
        draws = (torch.rand((n, 3, 2), generator=g, dtype=torch.float64),
                 torch.rand((2, n, h, w), generator=g, dtype=torch.float64))
    expected = torch.floor(RANDOM[name][1](levels, 3, *draws).double().clamp(0, 255))
    out = corrupt(x, name, 3, torch.Generator().manual_seed(11))
    assert torch.equal(torch.round((out.double() + 1) * 127.5), expected)


def test_float32_cast_near_a_tie_takes_the_exact_value():
    """zoom_blur's fast float64 products can sit on the other side of a float32 tie than scipy's
    sum; those values are recomputed. Here 1 + 2^-24 is the tie between 1 and the next float32."""
    from negaug.anomaly.corruptions import _ops

    tie = 1.0 + 2.0**-24
    exact = torch.tensor([tie + 2.0**-52, tie - 2.0**-52, 0.75 + 2.0**-50, 0.0], dtype=torch.float64)
    approx = torch.tensor([tie - 2.0**-52, tie + 2.0**-52, 0.75, 0.0], dtype=torch.float64)
    out = _ops.cast_float32_exactly(approx, lambda near: exact[near])
    assert torch.equal(out, exact.float()) and not torch.equal(approx.float(), exact.float())
    assert out[0] == torch.nextafter(torch.tensor(1.0), torch.tensor(2.0)) and out[1] == 1.0


@pytest.mark.parametrize("severity", SEVERITIES)
def test_snow_equals_the_benchmark_before_and_after_its_motion_blur(severity, images):
    """Snow's motion blur is ImageMagick's (not transcribed here); the stages around it are exact."""
    rng = np.random.default_rng(severity)
    for set_name in SETS:
        grey = set_name == "grey"
        levels = as_levels(images[set_name], grey)
        normal = torch.from_numpy(rng.standard_normal((levels.shape[0], 1, 32, 32)))
        flakes = weather.snow_flakes(severity, normal)
        draws = [[normal[i, 0].numpy()] for i in range(len(normal))]
        ref_flakes = reference(ref_snow_before_motion_blur, images[set_name], severity, draws)
        assert np.array_equal(flakes[:, 0].numpy(), ref_flakes)
        blurred = torch.from_numpy(rng.integers(0, 256, flakes.shape)).double()  # any 8-bit layer
        ours = to_uint8(weather.apply_snow(levels, severity, blurred))
        ref = reference(ref_snow_after_motion_blur, images[set_name], severity, None, blurred[:, 0].numpy())
        assert_same_levels(ours, ref, grey)


def test_grey_spatter_paints_with_the_grey_level_of_the_colour(images):
    """The benchmark has no grey spatter; negaug's is the colour version with grey paint."""
    levels = as_levels(images["grey"], True)
    normal = torch.from_numpy(np.random.default_rng(0).standard_normal((4, 32, 32)))
    for severity in SEVERITIES:
        grey = weather.apply_spatter(levels, severity, normal)
        paint = weather.spatter_colour(weather.WATER_RGB if severity <= 3 else weather.MUD_RGB, 1)
        colour = weather.spatter_colour(weather.WATER_RGB if severity <= 3 else weather.MUD_RGB, 3)
        assert paint.shape == (1, 1, 1, 1) and colour.min() < paint.item() < colour.max()
        assert (torch.floor(grey) != levels).any()  # the draw does leave drops or blots


# --------------------------------------------------------------------------------------------
# the three reported bugs, each pinned by hand-checked values


def test_output_truncates_not_rounds():
    """The benchmark's np.uint8 truncates: contrast 1 of levels (0, 255) keeps 75% of the
    distance to the mean 127.5: 31.875 and 223.125 -> 31 and 223 (rounding would give 32)."""
    x = torch.tensor([0.0, 255.0]).view(1, 1, 1, 2) / 127.5 - 1
    out = corrupt(x, "contrast", 1)
    assert torch.round((out + 1) * 127.5).flatten().tolist() == [31.0, 223.0]


def test_glass_blur_severity1_keeps_levels_regression(images):
    """A float32 round trip of the input used to lower levels 1..63 by one at severity 1 (sigma
    0.05 leaves a pixel as it is). Flat images of every level come back unchanged, as in the
    benchmark, whatever the scramble."""
    levels = torch.arange(256.0).view(256, 1, 1, 1).expand(256, 3, 32, 32)
    out = corrupt(levels / 127.5 - 1, "glass_blur", 1, torch.Generator().manual_seed(0))
    assert torch.equal(torch.round((out + 1) * 127.5), levels)
    ref = reference(ref_glass_blur, levels[:64].permute(0, 2, 3, 1).to(torch.uint8).numpy(), 1,
                    [[np.zeros(2, dtype=int)] * 900] * 64)
    assert (ref == np.arange(64).reshape(64, 1, 1, 1)).all()


def test_spatter_wraps_like_uint8_cast():
    """The benchmark's `(liquid * 255).astype(np.uint8)` wraps above 255 (x86 NumPy): a layer at
    1.2 is level 50, at 1.004 level 0; negaug used to clamp them to 255."""
    liquid = torch.tensor([0.0, 0.5, 1.0, 1.004, 1.2, 1.99])
    assert weather.liquid_levels(liquid).tolist() == [0, 127, 255, 0, 50, 251]
    with np.errstate(invalid="ignore"):
        assert (liquid.numpy().astype(np.float64) * 255).astype(np.uint8).tolist() == [0, 127, 255, 0, 50, 251]


def test_spatter_distance_is_opencvs_mask5_chamfer_not_euclidean():
    """cv2.distanceTransform(DIST_L2, 5) steps 1, 1.4 and 2.1969 (float32 sums) where the
    Euclidean distance is 1, sqrt(2) = 1.4142 and sqrt(5) = 2.2361; negaug used the Euclidean."""
    zero = torch.zeros(1, 7, 7, dtype=torch.bool)
    zero[0, 3, 3] = True
    dist = _opencv.chamfer_distance(zero)[0].numpy()
    hv, diag, knight = F32(1.0), F32(1.4), F32(2.1969)
    assert dist[3, 3] == 0 and dist[3, 4] == hv and dist[2, 2] == diag and dist[1, 2] == knight
    assert dist[1, 1] == diag + diag and dist[0, 0] == diag + diag + diag and dist[3, 6] == 3 * hv
    assert dist[0, 2] == knight + hv and dist[3, 4] != np.sqrt(2) and dist[1, 2] != F32(np.sqrt(5))
    assert np.array_equal(dist, dist[::-1]) and np.array_equal(dist, dist.T)


def test_chamfer_distance_equals_the_c_loops_on_random_masks():
    rng = np.random.default_rng(0)
    masks = rng.random((6, 12, 17)) < np.array([0.0, 0.01, 0.03, 0.1, 0.3, 1.0]).reshape(6, 1, 1)
    ours = _opencv.chamfer_distance(torch.from_numpy(masks)).numpy()
    for mask, dist in zip(masks, ours):
        assert np.array_equal(dist, cv_distance_transform_l2_5(np.where(mask, 0, 255)))
    assert (ours[0] == np.finfo(F32).max).all()  # no zero pixel: OpenCV's border, truncated to 20 by spatter


def test_canny_blur_and_equalize_equal_the_c_loops():
    rng = np.random.default_rng(1)
    layers = rng.integers(0, 256, (3, 16, 16))
    layers[1] = np.where(layers[1] > 170, 255, 0)  # hard edges
    layers[2] = 128  # one level: no edge, identity equalisation
    t = torch.from_numpy(layers)
    for ours, ref in zip(_opencv.canny(t, 50, 150).numpy(), layers):
        assert np.array_equal(np.where(ours, 255, 0), cv_canny(ref.astype(np.uint8), 50, 150))
    for ours, ref in zip(_opencv.equalize_hist(t).numpy(), layers):
        assert np.array_equal(ours, cv_equalize_hist(ref.astype(np.uint8)))
    for ours, ref in zip(_opencv.blur3_uint8(t).numpy(), layers):
        assert np.array_equal(ours, cv_blur_u8(ref.astype(np.uint8)))
    distances = torch.from_numpy(rng.integers(0, 20 * 65536, (2, 9, 9)) / 65536).float()
    for ours, ref in zip(_opencv.blur3_float(distances).numpy(), distances.numpy()):
        assert np.array_equal(ours, cv_blur_f32(ref))


# --------------------------------------------------------------------------------------------
# the numpy transcriptions of OpenCV against OpenCV itself, where it is installed


def test_opencv_transcriptions_match_cv2(images):
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(2)
    layer = np.where(rng.random((32, 32)) < 0.4, 0, rng.integers(150, 256, (32, 32))).astype(np.uint8)
    edges = cv2.Canny(layer, 50, 150)
    assert np.array_equal(edges, cv_canny(layer, 50, 150))
    dist = cv2.distanceTransform(255 - edges, cv2.DIST_L2, 5)
    assert np.array_equal(dist, cv_distance_transform_l2_5(255 - edges))
    _, truncated = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    assert np.array_equal(cv2.blur(truncated, (3, 3)), cv_blur_f32(np.minimum(dist, F32(20))))
    assert np.array_equal(cv2.equalizeHist(layer), cv_equalize_hist(layer))
    ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
    assert np.array_equal(cv2.filter2D(layer, cv2.CV_8U, ker), cv_filter2d_u8(layer, ker))
    assert np.array_equal(cv2.blur(layer, (3, 3)), cv_blur_u8(layer))
    photo = images["photos"][0].astype(np.float32) / 255
    assert np.array_equal(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), cv_rgb2gray_f32(photo))
    for radius, alias in ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)):
        disk = np.array(np.add.outer(np.arange(-8, 9) ** 2, np.arange(-8, 9) ** 2) <= radius**2, dtype=np.float32)
        disk /= disk.sum()
        assert np.array_equal(cv2.GaussianBlur(disk, (3, 3), alias), cv_gaussian_blur_3x3_f32(disk, alias))
        kernel = cv_gaussian_blur_3x3_f32(disk, alias)
        channel = photo[..., 0].astype(np.float64)
        assert np.abs(cv2.filter2D(channel, -1, kernel) - cv_filter2d_f64(channel, kernel)).max() < 1e-14
    pts1 = np.float32([[26, 26], [26, 6], [6, 6]])
    pts2 = pts1 + rng.uniform(-2.56, 2.56, (3, 2)).astype(np.float32)
    matrix = cv2.getAffineTransform(pts1, pts2)
    assert np.abs(matrix - cv_get_affine_transform(pts1, pts2)).max() < 1e-12
    if int(cv2.__version__.split(".")[0]) < 5:  # OpenCV 5 computes warpAffine otherwise
        warped = cv2.warpAffine(photo, matrix, (32, 32), borderMode=cv2.BORDER_REFLECT_101)
        assert np.array_equal(warped, cv_warp_affine_linear(photo, matrix))


def test_motion_blur_and_snow_match_imagemagick(images):
    """The benchmark's motion_blur and snow, with its Wand calls, where Wand and ImageMagick are
    installed (negaug was checked with ImageMagick 6.9.11 Q16)."""
    import ctypes

    pytest.importorskip("wand.image")
    cv2 = pytest.importorskip("cv2")
    from wand.api import library
    from wand.image import Image as WandImage

    library.MagickMotionBlurImage.argtypes = (ctypes.c_void_p, ctypes.c_double, ctypes.c_double, ctypes.c_double)

    def wand_motion_blur(layer_u8: np.ndarray, radius, sigma, angle) -> np.ndarray:
        output = io.BytesIO()
        Image.fromarray(layer_u8).save(output, format="PNG")
        with WandImage(blob=output.getvalue()) as image:
            library.MagickMotionBlurImage(image.wand, radius, sigma, angle)
            decoded = cv2.imdecode(np.frombuffer(image.make_blob(), np.uint8), cv2.IMREAD_UNCHANGED)
        return decoded[..., [2, 1, 0]] if decoded.ndim == 3 else np.stack([decoded] * 3, axis=2)

    x = as_input(images["photos"], False)
    for severity in SEVERITIES:
        radius, sigma = blur.MOTION[severity - 1]
        g = torch.Generator().manual_seed(severity)
        angle = torch.rand(len(x), generator=torch.Generator().manual_seed(severity), dtype=torch.float64) * 90 - 45
        ours = torch.round((corrupt(x, "motion_blur", severity, g).double() + 1) * 127.5).permute(0, 2, 3, 1).numpy()
        ref = np.stack([wand_motion_blur(im, radius, sigma, float(a)) for im, a in zip(images["photos"], angle)])
        assert np.array_equal(ours, ref)
        g = torch.Generator().manual_seed(severity)
        normal = torch.randn((len(x), 1, 32, 32), generator=g, dtype=torch.float64)
        angle = torch.rand(len(x), generator=g, dtype=torch.float64) * 90 - 135
        flakes = weather.snow_flakes(severity, normal)[:, 0].to(torch.uint8).numpy()
        radius, sigma = weather.SNOW[severity - 1][4:6]
        blurred = np.stack([wand_motion_blur(f, radius, sigma, float(a))[..., 0] for f, a in zip(flakes, angle)])
        ours = corrupt(x, "snow", severity, torch.Generator().manual_seed(severity))
        ref = reference(ref_snow_after_motion_blur, images["photos"], severity, None, blurred)
        assert np.array_equal(torch.round((ours.double() + 1) * 127.5).permute(0, 2, 3, 1).numpy(), ref)
