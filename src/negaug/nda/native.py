"""Fast paths for the memory-moving transforms and the noise bits, with pure-torch fallbacks.

The optional C module `negaug._native` (built at install when a C compiler is present; see
setup.py) copies tile rows and image halves with memcpy, which is 2-4x faster on the CPU than the
index_select the torch path uses (one call per 16-pixel row on 32x32 images). Every function here
gives bit-identical results with and without it (tested), so a run never depends on whether the
module was built. The C path is used for CPU tensors when autograd does not need a graph;
`NEGAUG_NATIVE=0` in the environment turns it off.
"""
from __future__ import annotations

import math
import os

import torch

try:
    from negaug import _native
except ImportError:  # no C compiler at install time: the torch fallbacks below are used
    _native = None

# SplitMix64 constants as signed int64 (torch has no full uint64 arithmetic): multiplication
# wraps modulo 2^64 exactly as in the C kernel.
GOLDEN_GAMMA = 0x9E3779B97F4A7C15 - (1 << 64)
MIX_1 = 0xBF58476D1CE4E5B9 - (1 << 64)
MIX_2 = 0x94D049BB133111EB - (1 << 64)


def native_enabled() -> bool:
    """True when the C kernels are built and not turned off with NEGAUG_NATIVE=0."""
    return _native is not None and os.environ.get("NEGAUG_NATIVE", "1") != "0"


def _use_native(*tensors: torch.Tensor) -> bool:
    if not native_enabled():
        return False
    for tensor in tensors:
        if tensor.device.type != "cpu" or not tensor.is_contiguous():
            return False
        if tensor.requires_grad and torch.is_grad_enabled():
            return False  # autograd needs the torch ops
    return True


def jigsaw_tiles(x: torch.Tensor, perm: torch.Tensor, k: int) -> torch.Tensor:
    """Output tile t (row-major, K x K tiles) of image b shows input tile perm[b, t]; x (B, C, H, W)
    with H and W divisible by k, perm int64 (B, k*k) with values in [0, k*k)."""
    batch, channels, height, width = x.shape
    if _use_native(x):
        perm = perm.to(torch.int64).contiguous()
        out = torch.empty_like(x)
        _native.jigsaw(out.data_ptr(), x.data_ptr(), perm.data_ptr(), batch, channels, height, width, k, x.element_size())
        return out
    tile_h, tile_w = height // k, width // k
    if bool(((perm < 0) | (perm >= k * k)).any()):
        raise ValueError(f"jigsaw: perm values must lie in [0, {k * k})")
    # View the batch as (B*C*H*K) chunks of tile_w contiguous pixels: chunk (b, c, y, j) is image row
    # y inside tile column j. One index_select of whole chunks does the permutation.
    src_tile_row, src_tile_col = perm.div(k, rounding_mode="floor"), perm.remainder(k)
    tile_offset = (src_tile_row * (tile_h * k) + src_tile_col).view(batch, 1, k, 1, k)
    row_offset = torch.arange(tile_h, device=x.device).mul_(k).view(1, 1, 1, tile_h, 1)
    image_offset = torch.arange(batch * channels, device=x.device).mul_(height * k).view(batch, channels, 1, 1, 1)
    index = (tile_offset + row_offset).add(image_offset).view(-1)  # (B*C*K*h*K,) in output order
    return x.reshape(-1, tile_w).index_select(0, index).view(batch, channels, height, width)


def stitch_halves(own: torch.Tensor, pool: torch.Tensor, partner: torch.Tensor, split_rows: torch.Tensor) -> torch.Tensor:
    """own (B, C, H, W) with its second half taken from pool[partner] (pool: (N, C, H, W)): rows
    from H // 2 on where split_rows (bool (B,)), else columns from W // 2 on."""
    batch, _, height, width = own.shape
    if _use_native(own, pool) and pool.dtype == own.dtype:
        partner = partner.to(torch.int64).contiguous()
        split = split_rows.to(torch.bool).contiguous()
        out = torch.empty_like(own)
        _native.stitch(out.data_ptr(), own.data_ptr(), pool.data_ptr(), partner.data_ptr(), split.data_ptr(),
                       batch, own.shape[1], height, width, pool.shape[0], own.element_size())
        return out
    if bool(((partner < 0) | (partner >= pool.shape[0])).any()):
        raise ValueError(f"stitch: partner values must lie in [0, {pool.shape[0]})")
    rows = split_rows.to(own.dtype).view(batch, 1, 1, 1)
    second_row_half = (torch.arange(height, device=own.device) >= height // 2).to(own.dtype).view(1, 1, height, 1)
    second_col_half = (torch.arange(width, device=own.device) >= width // 2).to(own.dtype).view(1, 1, 1, width)
    keep_own = rows * (1 - second_row_half) + (1 - rows) * (1 - second_col_half)  # (B, 1, H, W) of 0/1
    # lerp is exact at weights 0 and 1: each pixel is exactly own or partner.
    return pool.index_select(0, partner).lerp_(own, keep_own)


def _mix64(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's output function on int64 bit patterns, in place (logical shifts by masking)."""
    z.bitwise_xor_(z.bitwise_right_shift(30).bitwise_and_((1 << 34) - 1)).mul_(MIX_1)
    z.bitwise_xor_(z.bitwise_right_shift(27).bitwise_and_((1 << 37) - 1)).mul_(MIX_2)
    return z.bitwise_xor_(z.bitwise_right_shift(31).bitwise_and_((1 << 33) - 1))


def uniform_pairs(keys: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two float32 (B, n) uniforms from SplitMix64 streams keyed per row: for row b and i < n,
    z = mix64(keys[b] + (i + 1) * golden_gamma); u1 = ((z >> 40) + 1) / 2^24 in (0, 1] and
    u2 = ((z >> 16) mod 2^24) / 2^24 in [0, 1). Counter-based, so any row can be regenerated from
    its key alone, on any device, with the same bits."""
    keys = keys.to(torch.int64).contiguous()
    batch = keys.shape[0]
    if _use_native(keys):
        u1 = torch.empty(batch, n, dtype=torch.float32)
        u2 = torch.empty(batch, n, dtype=torch.float32)
        _native.uniform_pairs(u1.data_ptr(), u2.data_ptr(), keys.data_ptr(), batch, n)
        return u1, u2
    counter = torch.arange(1, n + 1, device=keys.device, dtype=torch.int64).mul_(GOLDEN_GAMMA)
    z = _mix64(keys[:, None] + counter)
    u1 = z.bitwise_right_shift(40).bitwise_and_((1 << 24) - 1).add_(1).float().mul_(2.0 ** -24)
    u2 = z.bitwise_right_shift(16).bitwise_and_((1 << 24) - 1).float().mul_(2.0 ** -24)
    return u1, u2


def normal_noise(keys: torch.Tensor, size: int) -> torch.Tensor:
    """Standard normal float32 (B, size), row b a function of keys[b] alone: Box-Muller on
    `uniform_pairs` (the first half of a row takes the cosines, the second the sines). The uniforms
    have 24 bits, so |z| <= sqrt(2 ln 2^24) = 5.77 (the tail beyond has probability 8e-9)."""
    pairs = -(-size // 2)
    u1, u2 = uniform_pairs(keys, pairs)
    radius = u1.log_().mul_(-2.0).sqrt_()
    angle = u2.mul_(2.0 * math.pi)
    noise = torch.cat([angle.cos().mul_(radius), angle.sin_().mul_(radius)], 1)
    return noise if 2 * pairs == size else noise[:, :size]
