"""Fast paths for the memory-moving transforms and the noise bits, with pure-torch fallbacks.

The optional C module `negaug._native` (built at install when a C compiler is present; see
setup.py) copies tile rows, image halves, boxes and whole images with memcpy, which is 2-4x faster
on the CPU than the torch versions (index_select copies one 16-pixel row at a time on 32x32
images; masks and lerps take several passes). Every function here gives bit-identical results
with and without it (tested), so a run never depends on whether the module was built. The C path
is used for contiguous CPU tensors when autograd does not need a graph; `NEGAUG_NATIVE=0` in the
environment turns it off.

Row arguments, as in `NDATransform.transform_into`: the functions compute images for the input
rows `rows` of x (all of x when None) and either return them as a new (R, C, H, W) tensor
(`out=None`) or write them into `out[out_rows]` (`out_rows=None`: out[:R]) and return `out`.
"""
from __future__ import annotations

import math
import os

import torch

try:
    from negaug import _native
except ImportError:  # no C compiler at install time: the torch fallbacks below are used
    _native = None


def _loaded_libgomp() -> str | None:
    """Path of the GNU OpenMP runtime torch loaded (Linux builds of torch), or None."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rsplit(None, 1)[-1]
                if "/libgomp" in path and os.sep + "torch" + os.sep in path:
                    return path
    except OSError:
        pass
    return None


# The kernels share torch's OpenMP threads when torch runs on GNU OpenMP; otherwise they are serial.
OPENMP = bool(_native is not None and (path := _loaded_libgomp()) and _native.use_openmp(path))

# SplitMix64 constants as signed int64 (torch has no full uint64 arithmetic): multiplication
# wraps modulo 2^64 exactly as in the C kernel.
GOLDEN_GAMMA = 0x9E3779B97F4A7C15 - (1 << 64)
MIX_1 = 0xBF58476D1CE4E5B9 - (1 << 64)
MIX_2 = 0x94D049BB133111EB - (1 << 64)
# The constants of the C kernel's normal noise (doubles; both sides round them to float32).
LN2 = 0.69314718055994530942
SQRT2 = 1.41421356237309504880
PI_OVER_2_23 = math.pi / 8388608.0


def native_enabled() -> bool:
    """True when the C kernels are built and not turned off with NEGAUG_NATIVE=0."""
    return _native is not None and os.environ.get("NEGAUG_NATIVE", "1") != "0"


def _use_native(*tensors: torch.Tensor | None) -> bool:
    if not native_enabled():
        return False
    for tensor in tensors:
        if tensor is None:
            continue
        if tensor.device.type != "cpu" or not tensor.is_contiguous():
            return False
        if tensor.requires_grad and torch.is_grad_enabled():
            return False  # autograd needs the torch ops
    return True


def _index(values: torch.Tensor | None) -> torch.Tensor | None:
    return None if values is None else values.to(torch.int64).contiguous()


def _address(values: torch.Tensor | None) -> int:
    return 0 if values is None else values.data_ptr()


def _check_range(name: str, values: torch.Tensor, limit: int) -> None:
    if values.numel() and bool(((values < 0) | (values >= limit)).any()):
        raise ValueError(f"{name} holds values outside [0, {limit})")


class _Call:
    """Shared set-up of a row-aware kernel call: decides between the C kernel and the torch
    fallback and provides the output tensor and the common leading arguments."""

    def __init__(self, x: torch.Tensor, rows: torch.Tensor | None, out: torch.Tensor | None,
                 out_rows: torch.Tensor | None):
        self.x, self.rows, self.out, self.out_rows = x, _index(rows), out, _index(out_rows)
        self.count = x.shape[0] if rows is None else self.rows.shape[0]
        compatible = out is None or (out.dtype == x.dtype and out.shape[1:] == x.shape[1:])
        self.native = compatible and _use_native(x, out) and x.dim() == 4

    def batch_args(self) -> tuple:
        if self.out is None:
            self.out = torch.empty((self.count, *self.x.shape[1:]), dtype=self.x.dtype)
        _, channels, height, width = self.x.shape
        return (self.out.data_ptr(), _address(self.out_rows), self.out.shape[0], self.x.data_ptr(), _address(self.rows),
                self.x.shape[0], self.count, channels, height, width, self.x.element_size(), torch.get_num_threads())

    def own(self) -> torch.Tensor:
        """The input images (torch fallback)."""
        if self.rows is not None:
            _check_range("input rows", self.rows, self.x.shape[0])
        return self.x if self.rows is None else self.x.index_select(0, self.rows)

    def place(self, result: torch.Tensor) -> torch.Tensor:
        """Put the fallback's result where the caller asked for it."""
        if self.out is None:
            return result
        if self.out_rows is None:
            self.out[: result.shape[0]].copy_(result)
        else:
            _check_range("output rows", self.out_rows, self.out.shape[0])
            self.out.index_copy_(0, self.out_rows, result)
        return self.out


def scatter_rows(out: torch.Tensor, out_rows: torch.Tensor | None, x: torch.Tensor,
                 rows: torch.Tensor | None = None) -> torch.Tensor:
    """out[out_rows] = x[rows] (whole images; None: in order); returns out."""
    call = _Call(x, rows, out, out_rows)
    if call.native:
        _native.scatter_rows(*call.batch_args())
        return call.out
    return call.place(call.own())


def jigsaw_tiles(x: torch.Tensor, perm: torch.Tensor, k: int, rows: torch.Tensor | None = None,
                 out: torch.Tensor | None = None, out_rows: torch.Tensor | None = None) -> torch.Tensor:
    """Output tile t (row-major, K x K tiles) of image r shows input tile perm[r, t] of x[rows[r]];
    H and W divisible by k, perm int64 (R, k*k) with values in [0, k*k)."""
    call = _Call(x, rows, out, out_rows)
    perm = _index(perm)
    if call.native:
        _native.jigsaw(*call.batch_args(), perm.data_ptr(), k)
        return call.out
    _check_range("jigsaw: perm", perm, k * k)
    own = call.own()
    batch, channels, height, width = own.shape
    tile_h, tile_w = height // k, width // k
    # View the batch as (B*C*H*K) chunks of tile_w contiguous pixels: chunk (b, c, y, j) is image row
    # y inside tile column j. One index_select of whole chunks does the permutation.
    src_tile_row, src_tile_col = perm.div(k, rounding_mode="floor"), perm.remainder(k)
    tile_offset = (src_tile_row * (tile_h * k) + src_tile_col).view(batch, 1, k, 1, k)
    row_offset = torch.arange(tile_h, device=own.device).mul_(k).view(1, 1, 1, tile_h, 1)
    image_offset = torch.arange(batch * channels, device=own.device).mul_(height * k).view(batch, channels, 1, 1, 1)
    index = (tile_offset + row_offset).add(image_offset).view(-1)  # (B*C*K*h*K,) in output order
    return call.place(own.reshape(-1, tile_w).index_select(0, index).view(batch, channels, height, width))


def stitch_halves(x: torch.Tensor, partner: torch.Tensor, split_rows: torch.Tensor, rows: torch.Tensor | None = None,
                  out: torch.Tensor | None = None, out_rows: torch.Tensor | None = None) -> torch.Tensor:
    """x[rows[r]] with its second half taken from x[partner[r]]: rows from H // 2 on where
    split_rows[r] (bool (R,)), else columns from W // 2 on."""
    call = _Call(x, rows, out, out_rows)
    partner = _index(partner)
    if call.native:
        split = split_rows.to(torch.bool).contiguous()
        _native.stitch(*call.batch_args(), partner.data_ptr(), split.data_ptr())
        return call.out
    _check_range("stitch: partner", partner, x.shape[0])
    own = call.own()
    batch, _, height, width = own.shape
    by_rows = split_rows.to(own.dtype).view(batch, 1, 1, 1)
    second_row_half = (torch.arange(height, device=own.device) >= height // 2).to(own.dtype).view(1, 1, height, 1)
    second_col_half = (torch.arange(width, device=own.device) >= width // 2).to(own.dtype).view(1, 1, 1, width)
    keep_own = by_rows * (1 - second_row_half) + (1 - by_rows) * (1 - second_col_half)  # (B, 1, H, W) of 0/1
    # lerp is exact at weights 0 and 1: each pixel is exactly own or partner.
    return call.place(x.index_select(0, partner).lerp_(own, keep_own))


def mixup_blend(x: torch.Tensor, partner: torch.Tensor, gamma: torch.Tensor, rows: torch.Tensor | None = None,
                out: torch.Tensor | None = None, out_rows: torch.Tensor | None = None) -> torch.Tensor:
    """partner + (own - partner) * gamma = gamma * own + (1 - gamma) * partner, with own = x[rows[r]],
    partner = x[partner[r]], gamma float (R,): three roundings in x's dtype (not torch.lerp, whose
    fused and unfused paths round differently), the same in the C kernel."""
    call = _Call(x, rows, out, out_rows)
    partner = _index(partner)
    if call.native and x.dtype == torch.float32:
        weight = gamma.to(torch.float32).contiguous()
        _native.mixup(*call.batch_args(), partner.data_ptr(), weight.data_ptr())
        return call.out
    _check_range("mixup: partner", partner, x.shape[0])
    own = call.own()
    other = x.index_select(0, partner)
    return call.place((own - other).mul_(gamma.to(own.dtype).view(-1, 1, 1, 1)).add_(other))


def patch_mask(box: torch.Tensor, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, H, W) mask of each box (top, left, height, width), 1 inside and 0 outside, as floats
    of `dtype`. Float masks are used with `torch.lerp`, which is exact at weights 0 and 1 and about
    ten times faster than `torch.where` with a bool mask on the CPU."""
    top, left, box_h, box_w = box.unbind(1)
    rows = torch.arange(height, device=box.device)
    cols = torch.arange(width, device=box.device)
    in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])  # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])  # (B, W)
    return in_rows.to(dtype)[:, None, :, None] * in_cols.to(dtype)[:, None, None, :]


def cutmix_boxes(x: torch.Tensor, partner: torch.Tensor, box: torch.Tensor, rows: torch.Tensor | None = None,
                 out: torch.Tensor | None = None, out_rows: torch.Tensor | None = None) -> torch.Tensor:
    """x[rows[r]] with the box (top, left, height, width) = box[r] (int64 (R, 4)) taken from
    x[partner[r]] at the same place."""
    call = _Call(x, rows, out, out_rows)
    partner, box = _index(partner), _index(box)
    if call.native:
        _native.cutmix(*call.batch_args(), partner.data_ptr(), box.data_ptr())
        return call.out
    _check_range("cutmix: partner", partner, x.shape[0])
    _check_boxes("cutmix", box, *x.shape[-2:])
    own = call.own()
    height, width = own.shape[-2:]
    mask = patch_mask(box, height, width, own.dtype)  # (R, 1, H, W) of 0/1
    return call.place(x.index_select(0, partner).lerp_(own, 1 - mask))  # exact at weights 0 and 1


def patch_boxes_from_uniforms(u: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """int64 (B, 4) boxes (top, left, height, width) from float64 (B, 4) uniforms in [0, 1): each
    side low + floor(u * count) over its ceil(S/3)..floor(S/2) range, each start floor(u * (S -
    side + 1)). Floors of float64 products, the same in C and in torch."""
    u = u.to(torch.float64).contiguous()
    if _use_native(u):
        out = torch.empty(u.shape[0], 4, dtype=torch.int64)
        _native.patch_boxes(out.data_ptr(), u.data_ptr(), u.shape[0], height, width)
        return out
    low = torch.tensor([-(-height // 3), -(-width // 3)], dtype=torch.float64, device=u.device)
    count = torch.tensor([height // 2, width // 2], dtype=torch.float64, device=u.device) - low + 1.0
    sides = (u[:, :2] * count).floor_().add_(low)
    size = torch.tensor([height, width], dtype=torch.float64, device=u.device)
    starts = (u[:, 2:] * ((size - sides) + 1.0)).floor_()
    return torch.cat([starts, sides], 1).to(torch.int64)


def _check_boxes(name: str, box: torch.Tensor, height: int, width: int) -> None:
    top, left, box_h, box_w = box.unbind(1)
    if bool(((box < 0).any(1) | (top + box_h > height) | (left + box_w > width)).any()):
        raise ValueError(f"{name}: a box does not fit a {height}x{width} image")


def cutout_boxes(x: torch.Tensor, box: torch.Tensor, rows: torch.Tensor | None = None,
                 out: torch.Tensor | None = None, out_rows: torch.Tensor | None = None) -> torch.Tensor:
    """x[rows[r]] with the box (top, left, height, width) = box[r] filled, per channel, with the
    box's mean: summed in float64 and rounded once to x's dtype. The float64 sum of float32 pixels
    is exact, hence the same in any order (C kernel or torch), unless a box mixes values below
    ~2^-29 in magnitude with values near 1."""
    call = _Call(x, rows, out, out_rows)
    box = _index(box)
    if call.native and x.dtype in (torch.float32, torch.float64):
        _native.cutout(*call.batch_args(), box.data_ptr())
        return call.out
    _check_boxes("cutout", box, *x.shape[-2:])
    own = call.own()
    mask = patch_mask(box, *own.shape[-2:], torch.float64)
    sums = (own.double() * mask).sum((2, 3), keepdim=True)  # (R, C, 1, 1)
    area = (box[:, 2] * box[:, 3]).clamp_min(1).to(torch.float64).view(-1, 1, 1, 1)
    # lerp is exact at weights 0 and 1: 0 keeps the pixel, 1 takes the mean
    return call.place(torch.lerp(own, (sums / area).to(own.dtype), mask.to(own.dtype)))


def _bilinear_taps(start: torch.Tensor, length: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source taps to resample the span [start, start + length) (fractions of the axis, float32
    (B,) each) to `size` pixels: lower and upper indices, int64 (B, size), and the upper weight,
    float32 (B, size). Half-pixel centres and border clamping, as grid_sample(align_corners=False,
    padding_mode="border"). The C kernel computes the same float32 operations."""
    centres = torch.arange(size, device=start.device, dtype=torch.float32).add_(0.5)
    coord = start[:, None] * size + centres * length[:, None] - 0.5  # source pixel coordinate
    lower = coord.floor()
    lower_index = lower.long()
    return lower_index.clamp(0, size - 1), (lower_index + 1).clamp_(0, size - 1), coord - lower


def _resample_rows(x: torch.Tensor, start: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling of x (B, C, H, W) along H: each output row is below + (above - below) *
    weight of two source rows gathered as whole rows with index_select (three separate roundings,
    as in the C kernel; torch.lerp fuses them differently on different paths)."""
    batch, channels, height, width = x.shape
    lower, upper, weight = _bilinear_taps(start, length, height)
    first_row = torch.arange(batch * channels, device=x.device).mul_(height).view(batch, channels, 1)
    rows = x.reshape(batch * channels * height, width)  # copies when x is a transposed view
    below = rows.index_select(0, (first_row + lower[:, None]).view(-1)).view(x.shape)
    above = rows.index_select(0, (first_row + upper[:, None]).view(-1)).view(x.shape)
    return (above - below).mul_(weight.to(x.dtype).view(batch, 1, height, 1)).add_(below)


def crop_resize(x: torch.Tensor, box: torch.Tensor, rows: torch.Tensor | None = None,
                out: torch.Tensor | None = None, out_rows: torch.Tensor | None = None) -> torch.Tensor:
    """x[rows[r]] cropped to box[r] = (top, left, height, width) (fractions of H and W, float32
    (R, 4)) and resized back to H x W, bilinear and separable (columns, then rows)."""
    call = _Call(x, rows, out, out_rows)
    box = box.to(torch.float32).contiguous()
    if call.native and x.dtype == torch.float32:
        _native.random_crop(*call.batch_args(), box.data_ptr())
        return call.out
    own = call.own()
    top, left, box_h, box_w = box.unbind(1)
    by_cols = _resample_rows(own.transpose(-1, -2), left, box_w).transpose(-1, -2)
    return call.place(_resample_rows(by_cols, top, box_h))


def _mix64(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's output function on int64 bit patterns, in place (logical shifts by masking)."""
    z.bitwise_xor_(z.bitwise_right_shift(30).bitwise_and_((1 << 34) - 1)).mul_(MIX_1)
    z.bitwise_xor_(z.bitwise_right_shift(27).bitwise_and_((1 << 37) - 1)).mul_(MIX_2)
    return z.bitwise_xor_(z.bitwise_right_shift(31).bitwise_and_((1 << 33) - 1))


def keyed_derangement(key: int, n: int, device: torch.device | str = "cpu", max_tries: int = 200) -> torch.Tensor:
    """A derangement of range(n) (int64 (n,), perm[i] != i) determined by the 64-bit `key`: try t
    is the permutation sorting the keys mix64(key + (t*n + i + 1) * golden) (signed int64, all
    distinct because mix64 is a bijection), the first without a fixed point is returned: uniform
    over derangements, e = 2.72 tries on average. Same result from the C kernel and from torch on
    any device."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 items (got {n}): pairing transforms need a batch of 2 or more images")
    device = torch.device(device)
    if native_enabled() and device.type == "cpu":
        out = torch.empty(n, dtype=torch.int64)
        _native.derangement(out.data_ptr(), n, key, max_tries)
        return out
    identity = torch.arange(n, device=device)
    for tries in range(max_tries):
        counter = torch.arange(tries * n + 1, tries * n + n + 1, device=device, dtype=torch.int64).mul_(GOLDEN_GAMMA)
        perm = torch.argsort(_mix64(counter.add_(key)))
        if not bool((perm == identity).any()):
            return perm
    raise RuntimeError("derangement: rejection sampling did not terminate")


def uniform_bits(keys: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The integers behind `normal_noise`, int64 (B, n) each: for row b and i < n,
    z = mix64(keys[b] + (i + 1) * golden_gamma) (SplitMix64's stream seeded with keys[b]);
    k1 = (z >> 40) + 1 in [1, 2^24] and k2 = (z >> 16) mod 2^24."""
    keys = keys.to(torch.int64)
    counter = torch.arange(1, n + 1, device=keys.device, dtype=torch.int64).mul_(GOLDEN_GAMMA)
    z = _mix64(keys[:, None] + counter)
    k1 = z.bitwise_right_shift(40).bitwise_and_((1 << 24) - 1).add_(1)
    k2 = z.bitwise_right_shift(16).bitwise_and_((1 << 24) - 1)
    return k1, k2


def _horner(x: torch.Tensor, coefficients: tuple[float, ...]) -> torch.Tensor:
    """((c0 x + c1) x + c2) x + ... with one rounding per multiply and per add, as in the C kernel."""
    result = x * coefficients[0]
    result.add_(coefficients[1])
    for coefficient in coefficients[2:]:
        result.mul_(x).add_(coefficient)
    return result


def box_muller(k1: torch.Tensor, k2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float32 radius sqrt(-2 ln(k1 / 2^24)) and cos, sin of the angle 2 pi k2 / 2^24, for int64
    k1 in [1, 2^24] and k2 in [0, 2^24): the torch twin of the C kernel's arithmetic (the same
    float32 operations in the same order; Python float constants round to float32 as in C)."""
    # ln(k1 / 2^24): k1 = m 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh((m - 1) / (m + 1)).
    # k1 < 2^25 is exact in float32: its exponent field is e + 127, and the mantissa with the
    # exponent field set to 127 is k1 / 2^e in [1, 2).
    bits = k1.to(torch.float32).view(torch.int32)
    e = bits.bitwise_right_shift(23).sub_(127)
    m = bits.bitwise_and_(0x007FFFFF).bitwise_or_(127 << 23).view(torch.float32)
    high = m > SQRT2
    m = torch.lerp(m, m * 0.5, high.to(torch.float32))  # exact at weights 0 and 1
    e = e.add_(high).to(torch.float32)
    t = (m - 1.0).div_(m + 1.0)
    poly = _horner(t * t, (1 / 9, 1 / 7, 1 / 5, 1 / 3, 1.0))
    log_u1 = e.sub_(24.0).mul_(LN2).add_(t.mul_(poly).mul_(2.0))
    # torch.sqrt is not correctly rounded on the CPU (SLEEF, <= 1 ulp); the float64 square root
    # rounded to float32 is (its error is far below the distance of sqrt of a float32 from a
    # float32 rounding boundary), so it equals the C kernel's IEEE sqrtf.
    radius = torch.sqrt(log_u1.mul_(-2.0).double()).to(torch.float32)
    # angle = 2 pi k2 / 2^24 = turn * pi / 2 + phi, turn the nearest quarter turn
    turn = (k2 + 0x200000).bitwise_right_shift_(22)
    phi = (k2 - turn * (1 << 22)).to(torch.float32).mul_(PI_OVER_2_23)
    p2 = phi * phi
    sin_phi = _horner(p2, (1 / 362880, -1 / 5040, 1 / 120, -1 / 6, 1.0)).mul_(phi)
    cos_phi = _horner(p2, (-1 / 3628800, 1 / 40320, -1 / 720, 1 / 24, -1 / 2, 1.0))
    # rotate by turn quarter turns: odd turns swap cos and sin (lerp at weights 0/1 selects
    # exactly), then signs: cos < 0 for quadrants 1 and 2, sin < 0 for 2 and 3
    quadrant = turn.bitwise_and_(3)
    swap = quadrant.bitwise_and(1).to(torch.float32)
    cos = torch.lerp(cos_phi, sin_phi, swap).mul_((quadrant + 1).bitwise_right_shift_(1).bitwise_and_(1).mul_(-2).add_(1))
    sin = torch.lerp(sin_phi, cos_phi, swap).mul_(quadrant.bitwise_right_shift(1).mul_(-2).add_(1))
    return radius, cos, sin


def normal_noise(keys: torch.Tensor, size: int) -> torch.Tensor:
    """Standard normal float32 (B, size), row b a function of keys[b] alone: Box-Muller on the
    counter-based bits of `uniform_bits`; the first half of a row takes the cosines, the second
    the sines. The logarithm, sine and cosine are our own (range reduction and polynomials in
    float32, within a few ulps), evaluated with the same IEEE operations in the same order by the
    C kernel and by this torch code, so both give the same bits on every device. The uniforms have
    24 bits, so |z| <= sqrt(2 ln 2^24) = 5.77 (the tail beyond has probability 8e-9)."""
    keys = keys.to(torch.int64).contiguous()
    batch, pairs = keys.shape[0], -(-size // 2)
    if _use_native(keys):
        out = torch.empty(batch, size, dtype=torch.float32)
        _native.normal_rows(out.data_ptr(), keys.data_ptr(), batch, size, torch.get_num_threads())
        return out
    k1, k2 = uniform_bits(keys, pairs)
    radius, cos, sin = box_muller(k1, k2)
    noise = torch.cat([radius * cos, radius * sin], 1)
    return noise if 2 * pairs == size else noise[:, :size].contiguous()
