"""2-D toy distributions for the MLP GAN, and negatives drawn from regions known to be empty.

- `ring`: M Gaussians (default 8) with centres at radius R (default 2), angles 2 pi m / M, isotropic
  std 0.02 (the "8 Gaussians" of Metz et al. 2017, unrolled GANs).
- `grid`: G x G Gaussians (default 5 x 5) at {-4, -2, 0, 2, 4}^2 (spacing 2), std 0.05 (as in
  VEEGAN / PacGAN).

Negative regions (`toy_negative_region_mask`, sampled by `toy_negatives`), both further restricted
to points at least 4 std from every centre (with the default stds this removes nothing):
- ring, "between": annular sectors midway between adjacent modes: radius in [R - R/8, R + R/8] and
  angle within pi / (2M) of a midpoint angle 2 pi (m + 1/2) / M (the middle half of each gap);
  "center": the disc of radius R / 2 around the origin.
- grid, "between": discs of radius spacing / 4 around the midpoints of horizontally or vertically
  adjacent centres; "center": discs of radius spacing / 4 around the centres of the grid's
  (G-1)^2 squares (the points furthest from every mode).
- "both": the union; `toy_negatives(kind="both")` draws each point from "between" or "center" with
  probability 1/2 each.
Inside a region, points are uniform (by area).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import Dataset

from negaug.data.base import MAX_SAMPLES, as_index, check_classes, check_split
from negaug.data.dots import derive_seed
from negaug.registry import check_float, check_int

NEGATIVE_KINDS = ("between", "center", "both")
MIN_STD_FROM_MODES = 4.0
MAX_MODES = 10_000
MAX_COORDINATE = 1e6  # radius, spacing and std: the toys live on a scale of a few units (float32 points)


def fresh_if_none(generator: torch.Generator | None) -> torch.Generator:
    """`generator`, or a new one seeded from OS entropy (`Generator.seed()` leaves the global RNG alone)."""
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    return generator


class ToyDataset(Dataset):
    """2-D points `(N, 2)` float32 with labels `(N,)` = index of the mode each was drawn from.

    Attributes: `points`, `labels`, `centers` (M, 2), `std`, `kind` ("ring" | "grid"), `dim` = 2,
    `num_classes` = M, `num_channels` = `image_size` = None (not images), `geometry` (radius or spacing)."""

    num_channels = None
    image_size = None
    dim = 2

    def __init__(self, kind: str, points: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor, std: float, geometry: float):
        self.kind, self.points, self.labels = kind, points, labels
        self.centers, self.std, self.geometry = centers, float(std), float(geometry)
        self.num_classes = int(centers.shape[0])
        self.name = kind

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.points[i], self.labels[i]

    def get_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.points[index], self.labels[index]

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Fresh draws from the mixture (uniform over modes): points `(n, 2)`, mode labels `(n,)`.
        generator None: a fresh OS-seeded generator (the global RNG is never used)."""
        generator = fresh_if_none(generator)
        modes = torch.randint(self.num_classes, (n,), generator=generator)
        noise = torch.randn(n, 2, generator=generator)
        return self.centers[modes] + self.std * noise, modes

    def subset(self, index) -> ToyDataset:
        index = as_index(index, len(self))
        return ToyDataset(self.kind, self.points[index], self.labels[index], self.centers, self.std, self.geometry)

    def select_classes(self, classes) -> ToyDataset:
        """Keep the points of the modes `classes` (mode indices; centers are kept whole)."""
        wanted = check_classes(classes, self.num_classes, self.name)
        return self.subset(torch.isin(self.labels, wanted))

    def __repr__(self) -> str:
        return f"ToyDataset(kind={self.kind!r}, n={len(self)}, modes={self.num_classes}, std={self.std})"


def ring_centers(num_modes: int, radius: float) -> torch.Tensor:
    angle = 2 * math.pi * torch.arange(num_modes, dtype=torch.float64) / num_modes
    return (radius * torch.stack([angle.cos(), angle.sin()], dim=1)).float()


def grid_centers(size: int, spacing: float) -> torch.Tensor:
    axis = (torch.arange(size, dtype=torch.float32) - (size - 1) / 2) * spacing
    return torch.cartesian_prod(axis, axis)


def check_toy_options(kind: str, split: Any, image_size: Any, std: Any, num_samples: Any, seed: Any) -> None:
    """ValueError naming the option unless the options ring and grid share are valid."""
    check_split(split, ("train", "val", "test"), kind)
    if image_size is not None:
        raise ValueError(f"dataset '{kind}' holds 2-D points, not images; leave image_size unset (null)")
    check_float(f"{kind} std", std, 0.0, MAX_COORDINATE, open_low=True)
    check_int(f"{kind} num_samples", num_samples, 0, MAX_SAMPLES)
    check_int(f"{kind} seed", seed)


def _toy(kind, centers, std, geometry, split, image_size, num_samples, seed) -> ToyDataset:
    # options are checked, not converted: the seed is derived from the values as given
    generator = torch.Generator().manual_seed(derive_seed(seed, split, kind, centers.shape[0], geometry, std))
    shell = ToyDataset(kind, torch.empty(0, 2), torch.empty(0, dtype=torch.int64), centers, std, geometry)
    points, labels = shell.sample(num_samples, generator)
    return ToyDataset(kind, points, labels, centers, std, geometry)


def ring(
    *, root=None, split: str = "train", download: bool = False, image_size: int | None = None,
    num_modes: int = 8, radius: float = 2.0, std: float = 0.02, num_samples: int = 10_000, seed: int = 0,
) -> ToyDataset:
    """A ring of `num_modes` Gaussians; `num_samples` points (train and test are independent draws)."""
    check_int("ring num_modes", num_modes, 2, MAX_MODES)
    check_float("ring radius", radius, 0.0, MAX_COORDINATE, open_low=True)
    check_toy_options("ring", split, image_size, std, num_samples, seed)
    return _toy("ring", ring_centers(num_modes, radius), std, radius, split, image_size, num_samples, seed)


def grid(
    *, root=None, split: str = "train", download: bool = False, image_size: int | None = None,
    size: int = 5, spacing: float = 2.0, std: float = 0.05, num_samples: int = 10_000, seed: int = 0,
) -> ToyDataset:
    """A `size` x `size` grid of Gaussians centred on the origin, `spacing` apart."""
    check_int("grid size", size, 2, math.isqrt(MAX_MODES))
    check_float("grid spacing", spacing, 0.0, MAX_COORDINATE, open_low=True)
    check_toy_options("grid", split, image_size, std, num_samples, seed)
    return _toy("grid", grid_centers(size, spacing), std, spacing, split, image_size, num_samples, seed)


# --- regions known to be empty, and negatives drawn from them ------------------------------------

def _check_toy(dataset, kind: str) -> None:
    if not isinstance(dataset, ToyDataset):
        raise ValueError(f"expected a ring or grid toy dataset, got {type(dataset).__name__}")
    if kind not in NEGATIVE_KINDS:
        raise ValueError(f"unknown toy negative kind '{kind}'; valid: {', '.join(NEGATIVE_KINDS)}")


def _grid_discs(dataset: ToyDataset, kind: str) -> tuple[torch.Tensor, float]:
    """Disc centres `(D, 2)` and radius of a grid's "between" (edge midpoints) or "center" (cell centres)."""
    size, spacing = int(round(math.sqrt(dataset.num_classes))), dataset.geometry
    axis = grid_centers(size, spacing)[::size, 0]  # (size,) coordinates along one axis
    mids = axis[:-1] + spacing / 2
    if kind == "between":
        discs = torch.cat([torch.cartesian_prod(mids, axis), torch.cartesian_prod(axis, mids)])
    else:
        discs = torch.cartesian_prod(mids, mids)
    return discs, spacing / 4


def _ring_mask(dataset: ToyDataset, points: torch.Tensor, kind: str) -> torch.Tensor:
    num_modes, radius = dataset.num_classes, dataset.geometry
    rho = points.norm(dim=1)
    if kind == "center":
        return rho <= radius / 2
    theta = torch.atan2(points[:, 1], points[:, 0])
    phase = theta * num_modes / (2 * math.pi) - 0.5  # integer at every midpoint angle
    angle_from_mid = (phase - phase.round()).abs() * 2 * math.pi / num_modes
    return ((rho - radius).abs() <= radius / 8) & (angle_from_mid <= math.pi / (2 * num_modes))


def _region_mask(dataset: ToyDataset, points: torch.Tensor, kind: str) -> torch.Tensor:
    """Geometric region only (before the 4-std rule); kind "between" or "center"."""
    if dataset.kind == "ring":
        return _ring_mask(dataset, points, kind)
    discs, disc_radius = _grid_discs(dataset, kind)
    return torch.cdist(points, discs).amin(dim=1) <= disc_radius


def toy_negative_region_mask(dataset: ToyDataset, points: torch.Tensor, kind: str = "both") -> torch.Tensor:
    """`(N, 2)` points -> `(N,)` bool: inside the negative region `kind` (see the module docstring)."""
    _check_toy(dataset, kind)
    points = points.float()
    kinds = ("between", "center") if kind == "both" else (kind,)
    inside = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    for name in kinds:
        inside |= _region_mask(dataset, points, name)
    far = torch.cdist(points, dataset.centers.to(points.device)).amin(dim=1) >= MIN_STD_FROM_MODES * dataset.std
    return inside & far


def toy_mode_assignment(dataset: ToyDataset, points: torch.Tensor, num_std: float = 3.0) -> torch.Tensor:
    """`(N, 2)` -> `(N,)` int64: index of the nearest mode when within `num_std` std of it, else -1."""
    distance = torch.cdist(points.float(), dataset.centers.to(points.device))
    nearest, mode = distance.min(dim=1)
    return torch.where(nearest <= num_std * dataset.std, mode, torch.full_like(mode, -1))


def _propose(dataset: ToyDataset, n: int, kind: str, generator) -> torch.Tensor:
    """`(n, 2)` points uniform (by area) in the geometric region `kind` ("between" or "center")."""
    u = torch.rand(n, 3, generator=generator, dtype=torch.float64)
    if dataset.kind == "ring" and kind == "between":
        num_modes, radius = dataset.num_classes, dataset.geometry
        sector = (u[:, 0] * num_modes).floor()
        angle = 2 * math.pi * (sector + 0.5) / num_modes + (2 * u[:, 1] - 1) * math.pi / (2 * num_modes)
        inner, outer = radius * 7 / 8, radius * 9 / 8
        rho = torch.sqrt(inner**2 + u[:, 2] * (outer**2 - inner**2))
        return torch.stack([rho * angle.cos(), rho * angle.sin()], dim=1).float()
    if dataset.kind == "ring":
        discs, disc_radius = torch.zeros(1, 2), dataset.geometry / 2
    else:
        discs, disc_radius = _grid_discs(dataset, kind)
    which = (u[:, 0] * discs.shape[0]).long().clamp_max(discs.shape[0] - 1)
    rho, angle = disc_radius * u[:, 1].sqrt(), 2 * math.pi * u[:, 2]
    offset = torch.stack([rho * angle.cos(), rho * angle.sin()], dim=1)
    return (discs[which].double() + offset).float()


def toy_negatives(dataset: ToyDataset, n: int, generator: torch.Generator | None = None, kind: str = "between") -> torch.Tensor:
    """`n` points `(n, 2)` uniform in the negative region `kind`; never within 4 std of a mode.

    Proposals that break the 4-std rule (only when std is large) are redrawn. generator None: a fresh
    OS-seeded generator (the global RNG is never used)."""
    _check_toy(dataset, kind)
    generator = fresh_if_none(generator)
    out = torch.empty(0, 2)
    for _ in range(100):
        need = n - out.shape[0]
        if need <= 0:
            return out[:n]
        if kind == "both":
            from_center = torch.rand(need, generator=generator) < 0.5
            proposals = torch.where(
                from_center[:, None], _propose(dataset, need, "center", generator), _propose(dataset, need, "between", generator)
            )
        else:
            proposals = _propose(dataset, need, kind, generator)
        out = torch.cat([out, proposals[toy_negative_region_mask(dataset, proposals, kind)]])
    raise ValueError(f"the '{kind}' negative region of this {dataset.kind} is (almost) empty: std too large")
