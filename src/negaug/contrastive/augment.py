"""Positive views for contrastive learning: MoCo-v2's augmentation, batched, replayable.

    augment = ViewAugment.mocov2()                # MoCo v2's recipe (ViewAugment(): without hue, blur)
    x_q, x_k = augment(x, g), augment(x, g)       # two views of x (B, C, H, W) in [-1, 1]
    params = augment.sample(x.shape, g)           # or draw once, then replay: augment.apply(x, params)

Each image gets, in this order (each op off when its option is None / 0):
1. a random resized crop (`crop_scale`: range of the crop's share of the image area, `crop_ratio`:
   of its width / height), resized back to H x W by bilinear sampling (`affine_grid` +
   `grid_sample`), mirrored left-right with probability `flip_prob` in the same sampling pass.
   The box is drawn as torchvision's RandomResizedCrop does (10 tries of area and log-ratio, the
   first that fits; else the whole image), in fractions of the image, not rounded to pixels;
2. with probability `jitter_prob`, colour jitter: brightness, contrast and saturation factors
   drawn uniformly from [max(0, 1 - s), 1 + s], a hue shift from [-hue, hue] (a fraction of a
   turn of the colour wheel, as torchvision's `adjust_hue`), each result clipped to the image
   range. `jitter_order="random"` applies the four in a random order per image, as torchvision's
   ColorJitter does (a permutation per image, applied in 4 rounds with masks); "fixed" (the
   default, what negaug did before hue existed) in the order brightness, contrast, saturation, hue;
3. with probability `grayscale_prob`, grayscale (ITU-R 601 luma 0.299 R + 0.587 G + 0.114 B, copied
   to every channel);
4. with probability `blur_prob`, a Gaussian blur with a standard deviation drawn uniformly from
   `blur_sigma` (in pixels): separable, truncated at 3 sigma_max (kernel `blur_kernel_size`),
   reflect padding, as torchvision's `gaussian_blur`. MoCo's loader blurs with PIL's
   `GaussianBlur(radius=sigma)`, which approximates a Gaussian of that standard deviation by
   repeated box blurs, so its pixels differ slightly.
MoCo-v2's recipe (`main_moco.py --aug-plus`) is: crop (0.2, 1), jitter (0.4, 0.4, 0.4, 0.1) in a
random order with p 0.8, grayscale p 0.2, blur sigma (0.1, 2) with p 0.5, flip p 0.5
(`ViewAugment.mocov2()`); the flip commutes with the pixel-wise colour ops and the symmetric blur,
so doing it in the crop's sampling pass gives the same image.
Saturation, hue and grayscale leave 1-channel images unchanged. Without a crop, the flip is an exact
`x.flip(-1)`.

Like the NDA transforms: all randomness is drawn by `sample(shape, generator)` (on the generator's
device, then moved), `apply(x, params)` is deterministic and batched in plain torch ops, and
`augment(x, g) == augment.apply(x, augment.sample(x.shape, g, x.device))`. Image i's view depends
on image i and its own parameters only (no batch statistics).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from negaug.registry import check_float, check_list

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL and torchvision convert RGB to grey
CROP_TRIES = 10  # torchvision's RandomResizedCrop draws up to 10 boxes before its fallback
MAX_JITTER = 100.0
JITTER_OPS = ("brightness", "contrast", "saturation", "hue")  # torchvision's ColorJitter fn_idx 0..3
JITTER_ORDERS = ("fixed", "random")
MAX_BLUR_SIGMA = 100.0


def _check_range(name: str, value: Sequence[float] | None, low: float, high: float | None) -> tuple[float, float] | None:
    if value is None:
        return None
    first, second = (check_float(f"{name}[{i}]", v, low, high, open_low=True) for i, v in enumerate(check_list(name, value, 2)))
    if first > second:
        raise ValueError(f"{name}={list(value)} must be [low, high] with low <= high")
    return first, second


def _probability(name: str, value: float) -> float:
    return check_float(name, value, 0.0, 1.0)


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None, device) -> Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def _bernoulli(n: int, p: float, generator: torch.Generator | None, device) -> Tensor:
    return torch.rand(n, generator=generator, device=device) < p


def luma(u: Tensor) -> Tensor:
    """(B, 1, H, W): the grey level of images u (B, C, H, W) in [0, 1]; C = 1: u itself."""
    if u.shape[1] == 1:
        return u
    if u.shape[1] != 3:
        raise ValueError(f"colour jitter and grayscale need 1 or 3 channels, got {u.shape[1]}")
    weights = torch.tensor(LUMA, dtype=u.dtype, device=u.device).view(1, 3, 1, 1)
    return (u * weights).sum(1, keepdim=True)


def adjust_brightness(u: Tensor, factor: Tensor) -> Tensor:
    """u (B, C, H, W) in [0, 1] times factor (B, 1, 1, 1), clipped to [0, 1]."""
    return (u * factor).clamp(0, 1)


def adjust_contrast(u: Tensor, factor: Tensor) -> Tensor:
    """u (B, C, H, W) in [0, 1] blended with its mean grey level by factor (B, 1, 1, 1), clipped."""
    mean = luma(u).mean((1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return (factor * u + (1 - factor) * mean).clamp(0, 1)


def adjust_saturation(u: Tensor, factor: Tensor) -> Tensor:
    """u (B, C, H, W) in [0, 1] blended with its grey image by factor (B, 1, 1, 1), clipped; C = 1: u."""
    if u.shape[1] == 1:
        return u
    return (factor * u + (1 - factor) * luma(u)).clamp(0, 1)


def adjust_hue(u: Tensor, shift: Tensor) -> Tensor:
    """u (B, 3, H, W) in [0, 1] with its HSV hue turned by shift (B, 1, 1, 1) in [-0.5, 0.5] turns
    (value and saturation kept); C = 1: u. The hexcone HSV model, as torchvision's `adjust_hue`:
    hue h in [0, 1), value v = max, chroma c = max - min; back to RGB by the closed form
    channel_n = v - c * clamp(min(k, 4 - k), 0, 1), k = (n + 6 h) mod 6, n = 5, 3, 1 for R, G, B."""
    if u.shape[1] == 1:
        return u
    if u.shape[1] != 3:
        raise ValueError(f"hue needs 1 or 3 channels, got {u.shape[1]}")
    red, green, blue = u.unbind(1)  # (B, H, W) each
    value, argmax = u.max(1)
    chroma = value - u.amin(1)
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    sector = torch.where(argmax == 0, (green - blue) / safe,
                         torch.where(argmax == 1, 2 + (blue - red) / safe, 4 + (red - green) / safe))
    hue = torch.where(chroma > 0, sector / 6, torch.zeros_like(sector))  # in (-1/6, 1)
    hue = torch.remainder(hue + shift[:, 0], 1.0)  # (B, H, W)
    n = torch.tensor([5.0, 3.0, 1.0], dtype=u.dtype, device=u.device).view(1, 3, 1, 1)
    k = torch.remainder(n + 6 * hue[:, None], 6.0)  # (B, 3, H, W)
    return value[:, None] - chroma[:, None] * torch.minimum(k, 4 - k).clamp(0, 1)


ADJUST = {"brightness": adjust_brightness, "contrast": adjust_contrast, "saturation": adjust_saturation,
          "hue": adjust_hue}


def blur_kernel_size(sigma_max: float, height: int, width: int) -> int:
    """The odd kernel size of a blur with standard deviations up to sigma_max on H x W images:
    2 ceil(3 sigma_max) + 1, made smaller where reflect padding needs half the kernel < min(H, W)."""
    half = min(math.ceil(3 * sigma_max), min(height, width) - 1)
    return 2 * max(half, 0) + 1


def gaussian_blur(u: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """u (B, C, H, W) blurred with a Gaussian of standard deviation sigma (B,) pixels, per image:
    the kernel exp(-t^2 / (2 sigma^2)), t = -(K-1)/2 .. (K-1)/2, normalised to sum 1, applied
    along W then H (separable) over reflect padding; torchvision's `gaussian_blur(u[i], [K, K],
    [sigma_i, sigma_i])` up to rounding. One grouped convolution per axis for the whole batch."""
    batch, channels, height, width = u.shape
    half = kernel_size // 2
    t = torch.arange(-half, half + 1, dtype=u.dtype, device=u.device)
    kernel = torch.exp(-0.5 * (t / sigma.to(u.dtype)[:, None]) ** 2)  # (B, K)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(channels, 0)  # (B * C, K)
    flat = u.reshape(1, batch * channels, height, width)
    flat = F.conv2d(F.pad(flat, (half, half, 0, 0), mode="reflect"), kernel.view(-1, 1, 1, kernel_size),
                    groups=batch * channels)
    flat = F.conv2d(F.pad(flat, (0, 0, half, half), mode="reflect"), kernel.view(-1, 1, kernel_size, 1),
                    groups=batch * channels)
    return flat.view(batch, channels, height, width)


class ViewAugment(nn.Module):
    """Random positive views of image batches (module docstring). Defaults: negaug's CIFAR recipe
    before hue and blur existed (crop scale (0.2, 1), flip 0.5, jitter (0.4, 0.4, 0.4) in a fixed
    order with p 0.8, grayscale 0.2); `ViewAugment.mocov2()` is MoCo-v2's exactly."""

    def __init__(self, crop_scale: Sequence[float] | None = (0.2, 1.0), crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
                 flip_prob: float = 0.5, jitter_prob: float = 0.8, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.4, grayscale_prob: float = 0.2, hue: float = 0.0, jitter_order: str = "fixed",
                 blur_prob: float = 0.0, blur_sigma: Sequence[float] = (0.1, 2.0)):
        super().__init__()
        self.crop_scale = _check_range("crop_scale", crop_scale, 0.0, 1.0)
        self.crop_ratio = _check_range("crop_ratio", crop_ratio, 0.0, None)
        self.flip_prob = _probability("flip_prob", flip_prob)
        self.jitter_prob = _probability("jitter_prob", jitter_prob)
        self.brightness = check_float("brightness", brightness, 0.0, MAX_JITTER)
        self.contrast = check_float("contrast", contrast, 0.0, MAX_JITTER)
        self.saturation = check_float("saturation", saturation, 0.0, MAX_JITTER)
        self.hue = check_float("hue", hue, 0.0, 0.5)
        if jitter_order not in JITTER_ORDERS:
            raise ValueError(f"jitter_order='{jitter_order}' is not one of {', '.join(JITTER_ORDERS)}")
        self.jitter_order = jitter_order
        self.grayscale_prob = _probability("grayscale_prob", grayscale_prob)
        self.blur_prob = _probability("blur_prob", blur_prob)
        self.blur_sigma = _check_range("blur_sigma", blur_sigma, 0.0, MAX_BLUR_SIGMA)

    @classmethod
    def mocov2(cls) -> ViewAugment:
        """MoCo-v2's augmentation (`main_moco.py --aug-plus`): RandomResizedCrop(scale=(0.2, 1)),
        ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8, RandomGrayscale(0.2), GaussianBlur((0.1, 2))
        with p 0.5, RandomHorizontalFlip."""
        return cls(crop_scale=(0.2, 1.0), flip_prob=0.5, jitter_prob=0.8, brightness=0.4, contrast=0.4,
                   saturation=0.4, grayscale_prob=0.2, hue=0.1, jitter_order="random", blur_prob=0.5,
                   blur_sigma=(0.1, 2.0))

    def extra_repr(self) -> str:
        return (f"crop_scale={self.crop_scale}, crop_ratio={self.crop_ratio}, flip_prob={self.flip_prob}, "
                f"jitter_prob={self.jitter_prob}, brightness={self.brightness}, contrast={self.contrast}, "
                f"saturation={self.saturation}, hue={self.hue}, jitter_order={self.jitter_order}, "
                f"grayscale_prob={self.grayscale_prob}, blur_prob={self.blur_prob}, blur_sigma={self.blur_sigma}")

    def sample(self, shape: Sequence[int], generator: torch.Generator | None = None, device=None) -> dict[str, Tensor]:
        """Parameters for a batch of `shape` (B, C, H, W), drawn on the generator's device, moved
        to `device`: `box` (B, 4) = (left, top, width, height) as fractions of the image, `flip`,
        `jitter`, `grayscale`, `blur` (B,) bool, `brightness`, `contrast`, `saturation` (B,)
        factors, `hue` (B,) shifts in turns, `order` (B, 4) long (each row a permutation of the
        indices of JITTER_OPS; jitter_order="random" only), `blur_sigma` (B,) pixels.
        Only the enabled ops are drawn (a config without hue, random order or blur draws what it
        drew before they existed)."""
        n = int(shape[0])
        where = generator.device if generator is not None else torch.device("cpu")
        params: dict[str, Tensor] = {}
        if self.crop_scale is not None:
            params["box"] = self._sample_boxes(n, generator, where)
        if self.flip_prob > 0:
            params["flip"] = _bernoulli(n, self.flip_prob, generator, where)
        if self.jitter_prob > 0 and any(getattr(self, name) for name in JITTER_OPS):
            params.update(self._sample_jitter(n, generator, where))
        if self.grayscale_prob > 0:
            params["grayscale"] = _bernoulli(n, self.grayscale_prob, generator, where)
        if self.blur_prob > 0:
            params["blur"] = _bernoulli(n, self.blur_prob, generator, where)
            params["blur_sigma"] = _uniform(n, *self.blur_sigma, generator, where)
        return {key: value.to(device) for key, value in params.items()} if device is not None else params

    def _sample_jitter(self, n: int, generator: torch.Generator | None, device) -> dict[str, Tensor]:
        params = {"jitter": _bernoulli(n, self.jitter_prob, generator, device)}
        for name in ("brightness", "contrast", "saturation"):
            strength = getattr(self, name)
            if strength:
                params[name] = _uniform(n, max(0.0, 1 - strength), 1 + strength, generator, device)
        if self.hue:
            params["hue"] = _uniform(n, -self.hue, self.hue, generator, device)
        if self.jitter_order == "random":
            params["order"] = torch.rand(n, len(JITTER_OPS), generator=generator, device=device).argsort(1)
        return params

    def _sample_boxes(self, n: int, generator: torch.Generator | None, device) -> Tensor:
        """(n, 4) crop boxes: the first of CROP_TRIES (area, ratio) draws that fits, else the whole image."""
        area = _uniform(n * CROP_TRIES, *self.crop_scale, generator, device).view(n, CROP_TRIES)
        log_low, log_high = math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])
        ratio = _uniform(n * CROP_TRIES, log_low, log_high, generator, device).exp().view(n, CROP_TRIES)
        width, height = (area * ratio).sqrt(), (area / ratio).sqrt()  # fractions of W and H
        fits = (width <= 1) & (height <= 1)
        found, first = fits.any(1), fits.float().argmax(1)  # argmax: the first box that fits
        width = torch.where(found, width.gather(1, first[:, None])[:, 0], 1.0)
        height = torch.where(found, height.gather(1, first[:, None])[:, 0], 1.0)
        left = torch.rand(n, generator=generator, device=device) * (1 - width)
        top = torch.rand(n, generator=generator, device=device) * (1 - height)
        return torch.stack([left, top, width, height], 1)

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """The views (B, C, H, W) of x (B, C, H, W) in [-1, 1] with `params` from `sample`."""
        if x.ndim != 4:
            raise ValueError(f"ViewAugment takes image batches (B, C, H, W), got shape {tuple(x.shape)}")
        for key, value in params.items():
            if value.shape[0] != x.shape[0]:
                raise ValueError(f"params['{key}'] has {value.shape[0]} rows for a batch of {x.shape[0]}")
        params = {key: value.to(x.device) for key, value in params.items()}
        x = self._geometry(x, params)
        if "jitter" in params or "grayscale" in params or "blur" in params:
            x = self._colour(x, params)
        return x

    def _geometry(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        flip = params.get("flip")
        if "box" not in params:
            return x if flip is None else torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        left, top, width, height = params["box"].to(x.dtype).unbind(1)
        sign = 1 - 2 * flip.to(x.dtype) if flip is not None else torch.ones_like(width)
        theta = torch.zeros(x.shape[0], 2, 3, dtype=x.dtype, device=x.device)
        theta[:, 0, 0], theta[:, 0, 2] = width * sign, 2 * left + width - 1  # output [-1, 1] -> the box
        theta[:, 1, 1], theta[:, 1, 2] = height, 2 * top + height - 1
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _colour(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        u = (x + 1) / 2  # [0, 1], where the jitter factors are defined
        if "jitter" in params:
            u = torch.where(params["jitter"].view(-1, 1, 1, 1), self._jitter(u, params), u)
        if "grayscale" in params and u.shape[1] > 1:
            u = torch.where(params["grayscale"].view(-1, 1, 1, 1), luma(u).expand_as(u), u)
        if "blur" in params:
            size = blur_kernel_size(self.blur_sigma[1], u.shape[2], u.shape[3])
            blurred = gaussian_blur(u, params["blur_sigma"], size) if size > 1 else u
            u = torch.where(params["blur"].view(-1, 1, 1, 1), blurred, u)
        return u * 2 - 1

    def _jitter(self, u: Tensor, params: dict[str, Tensor]) -> Tensor:
        """The jittered u (B, C, H, W) in [0, 1]: the ops in `params` in JITTER_OPS order, or with
        `order` (B, 4), in round r image i gets op order[i, r] (each op computed on the whole
        batch in each round, kept where the mask says: no per-image loop)."""
        factor = {name: params[name].to(u.dtype).view(-1, 1, 1, 1) for name in JITTER_OPS if name in params}
        if "order" not in params:
            for name in factor:
                u = ADJUST[name](u, factor[name])
            return u
        for step in range(len(JITTER_OPS)):
            op_index = params["order"][:, step]  # (B,)
            for index, name in enumerate(JITTER_OPS):
                if name in factor:
                    u = torch.where((op_index == index).view(-1, 1, 1, 1), ADJUST[name](u, factor[name]), u)
        return u

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A random view of each image of x (B, C, H, W) in [-1, 1]."""
        return self.apply(x, self.sample(x.shape, generator, x.device))
