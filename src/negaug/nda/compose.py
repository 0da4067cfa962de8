"""Transforms built from other transforms: `mixture` (a per-image random choice among several,
a mixture of augmentation policies) and `positive` (apply a transform to a random
fraction of a real batch: positive data augmentation, PDA, Table 1)."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from negaug.nda.base import NDATransform, Params, from_spec, prefix_params, register, slice_params, unprefix_params
from negaug.nda.native import scatter_rows
from negaug.nda.pairing import PairingTransform
from negaug.nda.sampling import derangement
from negaug.nda.transforms import check_probability, draw_flags

Spec = str | dict[str, Any] | NDATransform

# The five spatially corrupting transforms the paper keeps after Table 1.
DEFAULT_MIXTURE = ("jigsaw", "stitch", "mixup", "cutout", "cutmix")


def _transform_rows_into(component: NDATransform, out: torch.Tensor, x: torch.Tensor, params: Params,
                         local: torch.Tensor, rows: torch.Tensor | None, out_rows: torch.Tensor | None) -> None:
    """Write component's output for the images `local` (indices into the rows being transformed)
    into out[out_rows[local]]: C kernels write in place, the others transform then scatter (one
    memcpy per image; the concatenate-then-gather it replaces took two passes over the batch)."""
    global_rows = local if rows is None else rows.index_select(0, local)
    target = local if out_rows is None else out_rows.index_select(0, local)
    component.transform_into(out, x, slice_params(params, local), global_rows, target)


def _empty_output(x: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    count = x.shape[0] if rows is None else rows.shape[0]
    return torch.empty((count, *x.shape[1:]), dtype=x.dtype, device=x.device)


@register("mixture")
class Mixture(NDATransform):
    """Each image gets one of `transforms` (names, {"name": ..., **options} dicts or transforms),
    chosen independently with probabilities proportional to `weights` (default: equal).

    Every component draws parameters for the whole batch (so pairing components pick partners
    among all images; they share one derangement), and is applied only to the images that chose
    it, writing into the output in place: a loop over components, not images. Parameters: `choice` int64 (B,) and each component's under "<index>.<key>".
    """

    def __init__(self, transforms: Sequence[Spec] = DEFAULT_MIXTURE, weights: Sequence[float] | None = None):
        super().__init__()
        if isinstance(transforms, (str, dict)) or len(transforms) == 0:
            raise ValueError("mixture transforms must be a non-empty list, e.g. ['jigsaw', {'name': 'mixup', 'alpha': 10}]")
        self.components = nn.ModuleList(from_spec(spec) for spec in transforms)
        weights = [1.0] * len(self.components) if weights is None else [float(w) for w in weights]
        if len(weights) != len(self.components) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"mixture weights {weights} must be {len(self.components)} non-negative numbers with a positive sum")
        self.weights = weights
        self.min_batch_size = max(component.min_batch_size for component in self.components)

    def options(self) -> dict:
        return {"weights": self.weights}

    def check_image_size(self, height: int, width: int, channels: int | None = None) -> None:
        for component in self.components:
            component.check_image_size(height, width, channels)

    def make_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        weights = torch.tensor(self.weights, dtype=torch.float64, device=generator.device)
        params = {"choice": torch.multinomial(weights, shape[0], replacement=True, generator=generator)}
        pairing = [isinstance(component, PairingTransform) for component in self.components]
        partner = derangement(shape[0], generator) if any(pairing) else None  # one for all pairing components
        for index, component in enumerate(self.components):
            drawn = component.make_params(shape, generator, partner) if pairing[index] else component.make_params(shape, generator)
            params.update(prefix_params(str(index), drawn))
        return params

    def transform(self, x: torch.Tensor, params: Params, rows: torch.Tensor | None = None) -> torch.Tensor:
        out = _empty_output(x, rows)
        self.transform_into(out, x, params, rows)
        return out

    def transform_into(self, out: torch.Tensor, x: torch.Tensor, params: Params, rows: torch.Tensor | None = None,
                       out_rows: torch.Tensor | None = None) -> None:
        choice = params["choice"]
        for index, component in enumerate(self.components):
            local = (choice == index).nonzero().squeeze(1)
            if local.numel():
                _transform_rows_into(component, out, x, unprefix_params(str(index), params), local, rows, out_rows)


class Positive(NDATransform):
    """Positive data augmentation: each image is replaced by its transformed version with
    probability p and kept as is otherwise. Parameters: `apply` bool (B,) and the inner
    transform's under "transform.<key>" (drawn for the whole batch)."""

    def __init__(self, transform: Spec, p: float = 0.5):
        super().__init__()
        self.inner = from_spec(transform)
        self.p = check_probability("p", p)
        self.min_batch_size = self.inner.min_batch_size

    def options(self) -> dict:
        return {"p": self.p}

    def check_image_size(self, height: int, width: int, channels: int | None = None) -> None:
        self.inner.check_image_size(height, width, channels)

    def make_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        params = {"apply": draw_flags(shape[0], self.p, generator)}
        params.update(prefix_params("transform", self.inner.make_params(shape, generator)))
        return params

    def transform(self, x: torch.Tensor, params: Params, rows: torch.Tensor | None = None) -> torch.Tensor:
        applied = params["apply"]
        kept, changed = (~applied).nonzero().squeeze(1), applied.nonzero().squeeze(1)
        out = _empty_output(x, rows)
        scatter_rows(out, kept, x, kept if rows is None else rows.index_select(0, kept))
        if changed.numel():
            _transform_rows_into(self.inner, out, x, unprefix_params("transform", params), changed, rows, None)
        return out


def positive(transform: Spec, p: float = 0.5) -> Positive:
    """`transform` as a positive augmentation of real images: `positive("hflip", p=0.5)(real, g)`
    replaces each image by its transformed version with probability p (Table 1's PDA)."""
    return Positive(transform, p)


def check_compatible(transform: Spec, image_size: int | Sequence[int], channels: int | None = None,
                     batch_size: int | None = None) -> NDATransform:
    """Build `transform` (name, dict or transform) and check that it is defined for images of
    `image_size` (an int for square images, or (H, W)), `channels` and `batch_size` when given.
    Raises ValueError naming the problem (e.g. jigsaw k=3 on 32x32); returns the transform."""
    built = from_spec(transform)
    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    built.check_image_size(int(height), int(width), channels)
    if batch_size is not None and batch_size < built.min_batch_size:
        raise ValueError(f"{built.name} needs a batch of at least {built.min_batch_size} images, got batch_size={batch_size}")
    return built
