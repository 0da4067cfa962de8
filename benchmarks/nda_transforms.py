"""Images per second of every NDA transform on the CPU, next to a per-image Python loop of the same
transform and kornia's equivalent (where it has one), all measured in the same run.

    python benchmarks/nda_transforms.py [--repeats 15] [--threads 2] [--stat median|min]

Methods are timed round-robin (a ~5 ms block of calls of each, after one untimed call, repeated),
so load from other processes hits them alike; each number is the median (or min) over repeats of
the time of one call (sampling included). Targets: ours >= 3x the loop and >= kornia.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from negaug import nda

# ----------------------------------------------------------------------------- per-image loops
# Straightforward implementations, one image at a time, as found in typical NDA code: `one_*`
# transforms image `img` (C, H, W) given a partner image (ignored by single-image transforms).
Rng = np.random.Generator


def one_jigsaw(img: torch.Tensor, partner: torch.Tensor, rng: Rng, k: int = 2) -> torch.Tensor:
    h, w = img.shape[-2] // k, img.shape[-1] // k
    perm = np.arange(k * k)
    while (perm == np.arange(k * k)).all():
        perm = rng.permutation(k * k)
    out = torch.empty_like(img)
    for dst, src in enumerate(perm):
        dr, dc, sr, sc = dst // k, dst % k, src // k, src % k
        out[:, dr * h:(dr + 1) * h, dc * w:(dc + 1) * w] = img[:, sr * h:(sr + 1) * h, sc * w:(sc + 1) * w]
    return out


def one_stitch(img: torch.Tensor, partner: torch.Tensor, rng: Rng) -> torch.Tensor:
    out = img.clone()
    if rng.random() < 0.5:
        out[:, img.shape[-2] // 2:, :] = partner[:, img.shape[-2] // 2:, :]
    else:
        out[:, :, img.shape[-1] // 2:] = partner[:, :, img.shape[-1] // 2:]
    return out


def _box(img: torch.Tensor, rng: Rng) -> tuple[int, int, int, int]:
    size_h, size_w = img.shape[-2:]
    ph = int(rng.integers(-(-size_h // 3), size_h // 2 + 1))
    pw = int(rng.integers(-(-size_w // 3), size_w // 2 + 1))
    return int(rng.integers(0, size_h - ph + 1)), int(rng.integers(0, size_w - pw + 1)), ph, pw


def one_cutout(img: torch.Tensor, partner: torch.Tensor, rng: Rng) -> torch.Tensor:
    out = img.clone()
    t, l, h, w = _box(img, rng)
    out[:, t:t + h, l:l + w] = img[:, t:t + h, l:l + w].mean((1, 2), keepdim=True)
    return out


def one_cutmix(img: torch.Tensor, partner: torch.Tensor, rng: Rng) -> torch.Tensor:
    out = img.clone()
    t, l, h, w = _box(img, rng)
    out[:, t:t + h, l:l + w] = partner[:, t:t + h, l:l + w]
    return out


def one_mixup(img: torch.Tensor, partner: torch.Tensor, rng: Rng, alpha: float = 25.0) -> torch.Tensor:
    gamma = float(rng.beta(alpha, alpha))
    return gamma * img + (1 - gamma) * partner


def one_random_crop(img: torch.Tensor, partner: torch.Tensor, rng: Rng, scale=(0.25, 0.75)) -> torch.Tensor:
    height, width = img.shape[-2:]
    side = float(np.sqrt(rng.uniform(*scale)))
    h, w = max(1, round(side * height)), max(1, round(side * width))
    t, l = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    crop = img[None, :, t:t + h, l:l + w]
    return F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False)[0]


def one_hflip(img: torch.Tensor, partner: torch.Tensor, rng: Rng) -> torch.Tensor:
    return img.flip(-1)


def one_vflip(img: torch.Tensor, partner: torch.Tensor, rng: Rng) -> torch.Tensor:
    return img.flip(-2)


NOISE_GENERATOR = torch.Generator().manual_seed(0)


def one_gaussian_noise(img: torch.Tensor, partner: torch.Tensor, rng: Rng, std: float = 0.1) -> torch.Tensor:
    # torch's generator, as in our batched version: numpy's normals are ~3x slower here, which
    # would credit batching with a difference that is only the random number generator's.
    noise = torch.randn(img.shape, generator=NOISE_GENERATOR)
    return (img + std * noise).clamp(-1, 1)


def one_mixture(img: torch.Tensor, partner: torch.Tensor, rng: Rng) -> torch.Tensor:
    """The default mixture: one of jigsaw, stitch, mixup, cutout, cutmix per image."""
    choices = (one_jigsaw, one_stitch, one_mixup, one_cutout, one_cutmix)
    return choices[int(rng.integers(len(choices)))](img, partner, rng)


def per_image_loop(one: Callable, pairing: bool) -> Callable[[torch.Tensor, Rng], torch.Tensor]:
    """Apply `one` image by image; pairing transforms get a partner j != i."""
    def run(x: torch.Tensor, rng: Rng) -> torch.Tensor:
        out = torch.empty_like(x)
        batch = x.shape[0]
        for i in range(batch):
            j = i
            if pairing:
                j = int(rng.integers(batch - 1))
                j += j >= i  # any image but i
            out[i] = one(x[i], x[j], rng)
        return out

    return run


def loop_other_data(source: torch.Tensor) -> Callable[[torch.Tensor, Rng], torch.Tensor]:
    def run(x: torch.Tensor, rng: Rng) -> torch.Tensor:
        out = torch.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = source[int(rng.integers(source.shape[0]))]
        return out

    return run


LOOPS = {
    "jigsaw": (one_jigsaw, False), "stitch": (one_stitch, True), "cutout": (one_cutout, False),
    "cutmix": (one_cutmix, True), "mixup": (one_mixup, True), "random_crop": (one_random_crop, False),
    "hflip": (one_hflip, False), "vflip": (one_vflip, False), "gaussian_noise": (one_gaussian_noise, False),
    "mixture": (one_mixture, True),
}


def kornia_equivalents(height: int, width: int) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """kornia.augmentation's closest equivalents with p=1 (kornia draws from the global RNG)."""
    import kornia.augmentation as K

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    return {
        "jigsaw": K.RandomJigsaw(grid=(2, 2), p=1.0, ensure_perm=True),
        "mixup": K.RandomMixUpV2(p=1.0, data_keys=["input"]),
        "cutmix": K.RandomCutMixV2(num_mix=1, cut_size=(1 / 3, 1 / 2), p=1.0, data_keys=["input"]),
        "cutout": K.RandomErasing(scale=(1 / 9, 1 / 4), ratio=(0.5, 2.0), value=0.0, p=1.0),
        "random_crop": K.RandomResizedCrop((height, width), scale=(0.25, 0.75), ratio=(1.0, 1.0), p=1.0),
        "hflip": K.RandomHorizontalFlip(p=1.0),
        "vflip": K.RandomVerticalFlip(p=1.0),
        "gaussian_noise": K.RandomGaussianNoise(std=0.1, p=1.0),
    }


def seconds_per_call(methods: dict[str, Callable[[], object]], repeats: int, stat: Callable[[list[float]], float],
                     block_s: float = 0.005) -> dict[str, float]:
    """`stat` (median or min) over repeats of the wall time of one call of each method.

    Each sample times a block of consecutive calls lasting about `block_s`, after one untimed call:
    without it the method measured right after kornia's (which allocates many temporaries) paid
    for the cold caches and heap it left behind, whichever method that was. Blocks are taken
    round-robin so that load from other processes affects every method alike. The garbage
    collector is off while timing, as in `timeit`: with torch and kornia loaded, a collection
    triggered by one method's allocations was charged to that call, which measured the size of
    the Python heap rather than the transform."""
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # as timeit does: a collection landing in one method's block is not that method's cost
    try:
        return _seconds_per_call(methods, repeats, stat, block_s)
    finally:
        if gc_was_enabled:
            gc.enable()


def _seconds_per_call(methods: dict[str, Callable[[], object]], repeats: int, stat: Callable[[list[float]], float],
                      block_s: float) -> dict[str, float]:
    calls = {}
    for name, fn in methods.items():
        start = time.perf_counter()
        for _ in range(3):  # warm-up, and a first estimate of the time per call
            fn()
        calls[name] = max(1, round(block_s / ((time.perf_counter() - start) / 3)))
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            fn()  # untimed: the first call after another method pays for the caches and heap it left
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            times[name].append((time.perf_counter() - start) / calls[name])
    return {name: stat(values) for name, values in times.items()}


def measure(name: str, x: torch.Tensor, repeats: int, stat: Callable[[list[float]], float]) -> dict[str, float]:
    """Images per second of ours (full call, and apply only), the loop and kornia."""
    batch, channels, height, width = x.shape
    source = torch.rand(1000, channels, height, width) * 2 - 1
    transform = nda.build(name, source=source) if name == "other_data" else nda.build(name)
    generator = torch.Generator().manual_seed(0)
    params = transform.sample(x.shape, generator)
    rng = np.random.default_rng(0)
    loop = loop_other_data(source) if name == "other_data" else per_image_loop(*LOOPS[name])
    methods = {
        "ours": lambda: transform(x, generator),
        "apply": lambda: transform.apply(x, params),
        "loop": lambda: loop(x, rng),
    }
    kornia_op = kornia_equivalents(height, width).get(name)
    if kornia_op is not None:
        methods["kornia"] = lambda: kornia_op(x)
    return {key: batch / seconds for key, seconds in seconds_per_call(methods, repeats, stat).items()}


def format_row(name: str, shape: tuple[int, ...], r: dict[str, float]) -> str:
    kornia = r.get("kornia")
    cells = [name, "x".join(map(str, shape)), f"{r['ours']:,.0f}", f"{r['apply']:,.0f}", f"{r['loop']:,.0f}",
             f"{kornia:,.0f}" if kornia else "-", f"{r['ours'] / r['loop']:.1f}x", f"{r['ours'] / kornia:.1f}x" if kornia else "-"]
    return "| " + " | ".join(cells) + " |"


def pin_malloc_thresholds() -> None:
    """Keep freed multi-MB buffers in glibc's heap instead of returning them to the OS: otherwise
    some calls page-fault a fresh 3 MB output and others reuse one, a swing in time per call that
    depends on allocation history rather than on the transform. Affects every method alike; glibc only."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: allocations up to 32 MB come from the heap
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: do not trim the heap below 1 GB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stat", choices=("median", "min"), default="median",
                        help="statistic over repeats; min approximates the uncontended time on a shared machine")
    parser.add_argument("--no-malloc-pinning", action="store_true", help="leave glibc's malloc thresholds alone")
    args = parser.parse_args()
    if not args.no_malloc_pinning:
        pin_malloc_thresholds()
    torch.set_num_threads(args.threads)
    shapes = [(256, 3, 32, 32), (64, 3, 64, 64)]
    stat = statistics.median if args.stat == "median" else min
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.stat} of {args.repeats} "
          f"round-robin repeats; images/s\n")
    print("| transform | batch | ours | apply only | per-image loop | kornia | ours / loop | ours / kornia |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    missed = []
    for name in nda.names():
        for shape in shapes:
            x = torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
            r = measure(name, x, args.repeats, stat)
            print(format_row(name, shape, r))
            kornia = r.get("kornia")
            if r["ours"] < 3 * r["loop"]:
                missed.append(f"{name} {shape}: {r['ours'] / r['loop']:.1f}x the loop (target 3x)")
            if kornia and r["ours"] < kornia:
                missed.append(f"{name} {shape}: {r['ours'] / kornia:.2f}x kornia (target 1x)")
    print("\ntargets missed:" if missed else "\nall targets met")
    for line in missed:
        print(" -", line)


if __name__ == "__main__":
    main()
