"""Digital corruptions (brightness, contrast, saturate, pixelate, JPEG, elastic).
x: float (N, C, H, W) in [0, 1]."""
from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from negaug.anomaly.corruptions import _ops
from negaug.anomaly.corruptions.base import register


@register("brightness")
def brightness(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """HSV value + c, in closed form: every channel of a pixel is V (1 - S k(H)), so raising V
    to V' with S and H fixed scales the pixel by V' / V; black pixels (V = 0) become grey V'.
    A grey image (C = 1) is its own V."""
    shift = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    value = x.amax(dim=1, keepdim=True)
    new_value = (value + shift).clamp(0, 1)
    scaled = x * new_value / value.clamp_min(1e-12)
    return torch.where(value > 0, scaled, new_value.expand_as(x))


@register("contrast")
def contrast(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Pull every channel towards its own mean over the image."""
    factor = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    means = x.mean(dim=(2, 3), keepdim=True)
    return (x - means) * factor + means


@register("saturate", needs_colour=True)
def saturate(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """HSV saturation S -> clip(S a + b), in closed form (H and V fixed).

    With V = max and m = min over channels, S = (V - m) / V and a channel is V - S V k with
    k = (V - channel) / (V - m) in [0, 1], so the new channel is V - S' V k. A grey pixel has
    skimage's hue 0 (red): k = (0, 1, 1), which is what the benchmark's rgb2hsv / hsv2rgb give.
    """
    scale, offset = ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))[severity - 1]
    value = x.amax(dim=1, keepdim=True)
    spread = value - x.amin(dim=1, keepdim=True)
    saturation = torch.where(value > 0, spread / value.clamp_min(1e-12), torch.zeros_like(value))
    new_saturation = (saturation * scale + offset).clamp(0, 1)
    red_hue = torch.tensor([0.0, 1.0, 1.0], dtype=x.dtype).view(1, 3, 1, 1)
    k = torch.where(spread > 0, (value - x) / spread.clamp_min(1e-12), red_hue)
    return value - new_saturation * value * k


@register("pixelate")
def pixelate(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """PIL BOX resize down to int(size * c) and back up, as two separable linear maps."""
    factor = (0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1]
    h, w = x.shape[-2:]
    small_h, small_w = max(1, int(h * factor)), max(1, int(w * factor))
    down_h, down_w = _ops.box_resize_matrix(h, small_h), _ops.box_resize_matrix(w, small_w)
    up_h, up_w = _ops.box_resize_matrix(small_h, h), _ops.box_resize_matrix(small_w, w)
    rows = (up_h @ down_h).to(x.dtype)  # (H, H)
    cols = (up_w @ down_w).to(x.dtype)  # (W, W)
    return torch.einsum("ih,nchw,jw->ncij", rows, x, cols)


@register("jpeg_compression")
def jpeg_compression(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """JPEG round trip at quality 80 .. 40 through PIL, one image at a time, as the benchmark.

    No batched JPEG codec exists. torchvision's list API (deprecated since 0.29) loops in C++ and
    measured only 1.4x faster warm, slower cold (its import costs ~2 s), so PIL it is: it is the
    benchmark's own codec, and 10k 32 px images take about 3 s."""
    quality = (80, 65, 58, 50, 40)[severity - 1]
    images = torch.round(x * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, "JPEG", quality=quality)
        out.append(np.asarray(Image.open(buffer)).reshape(image.shape))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.dtype) / 255


@register("elastic_transform")
def elastic_transform(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """A random affine warp of three control points, then a smooth random displacement field.

    Constants in units of the image size as in the benchmark: (displacement scale, its smoothing
    sigma, affine jitter) = size * c.
    """
    size = min(x.shape[-2:])
    scale, smooth, jitter = [size * c for c in (
        (0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03),
    )[severity - 1]]
    x = random_affine(x, jitter, generator)
    n, _, h, w = x.shape
    fields = torch.rand((2, n, h, w), generator=generator, dtype=torch.float64) * 2 - 1
    fields = _ops.gaussian_filter(fields.reshape(2 * n, h, w), smooth, mode="reflect", truncate=3)
    dx, dy = (fields.reshape(2, n, h, w) * scale).float()
    rows = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    cols = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    # map_coordinates(order=1, mode="reflect") mirrors about the image border: align_corners=False
    grid = torch.stack([(2 * (cols + dx) + 1) / w - 1, (2 * (rows + dy) + 1) / h - 1], dim=-1)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="reflection", align_corners=False)


def random_affine(x: torch.Tensor, jitter: float, generator: torch.Generator) -> torch.Tensor:
    """cv2.warpAffine with the affine map moving three points around the centre by U(-jitter,
    jitter) each, bilinear, border REFLECT_101 (mirrors about edge pixel centres: align_corners=True)."""
    n, _, h, w = x.shape
    centre = torch.tensor([float(w // 2), float(h // 2)], dtype=torch.float64)
    half = min(h, w) // 3
    points = torch.stack([centre + half, centre + torch.tensor([half, -half]), centre - half])  # (3, 2) x, y
    moved = points + (torch.rand((n, 3, 2), generator=generator, dtype=torch.float64) * 2 - 1) * jitter
    ones = torch.ones(n, 3, 1, dtype=torch.float64)
    forward = torch.linalg.solve(torch.cat([points.expand(n, 3, 2), ones], dim=2), moved)  # (N, 3, 2)
    matrix = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
    matrix[:, :2, :] = forward.transpose(1, 2)
    inverse = torch.linalg.inv(matrix)  # output pixel -> source pixel
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    pixels = torch.stack([cols, rows, torch.ones_like(rows)], dim=-1).reshape(1, h * w, 3)
    source = (pixels @ inverse.transpose(1, 2))[..., :2].reshape(n, h, w, 2)
    grid = torch.stack([2 * source[..., 0] / max(w - 1, 1) - 1, 2 * source[..., 1] / max(h - 1, 1) - 1], dim=-1)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="reflection", align_corners=True)
