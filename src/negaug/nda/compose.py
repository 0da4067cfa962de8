"""Transforms built from other transforms: `mixture` (a per-image random choice among several,
a mixture of augmentation policies) and `positive` (apply a transform to a random
fraction of a real batch: positive data augmentation, PDA, Table 1)."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from negaug.nda.base import (
    NDATransform,
    Params,
    check_index,
    from_spec,
    prefix_params,
    register,
    slice_params,
    unprefix_params,
)
from negaug.nda.min_change import changed_from_both, changed_pixels
from negaug.nda.sampling import derangement
from negaug.nda.transforms import check_probability, draw_flags
from negaug.registry import check_float, check_int, check_list, short

Spec = str | dict[str, Any] | NDATransform
PartnersOf = Callable[[torch.Tensor], torch.Tensor]  # rows (R,) -> their partner images (R, C, H, W)

# The five spatially corrupting transforms the paper keeps after Table 1.
DEFAULT_MIXTURE = ("jigsaw", "stitch", "mixup", "cutout", "cutmix")


def component_params(component: NDATransform, shape: torch.Size, generator: torch.Generator,
                     partner: torch.Tensor | None) -> Params:
    """`component`'s params for a batch of `shape`; a pairing component uses the caller's
    `partner` (kept once by the caller, so left out here)."""
    if not component.pairs:
        return component.make_params(shape, generator)
    params = component.make_params(shape, generator, partner)
    del params["partner"]
    return params


def stored_params(component: NDATransform, params: Params, prefix: str) -> Params:
    """The params of the component stored under `prefix`, with the shared `partner` if it pairs."""
    own = unprefix_params(prefix, params)
    if component.pairs:
        own["partner"] = params["partner"]
    return own


def transform_rows(component: NDATransform, images: torch.Tensor, params: Params, rows: torch.Tensor,
                   partners_of: PartnersOf | None) -> torch.Tensor:
    """`component`'s negatives of images[rows] (R, C, H, W); `params` are those rows' own."""
    own = images.index_select(0, rows)
    if component.pairs:
        return component.combine_(own, partners_of(rows), params)  # partners_of gathers afresh
    return component.transform(own, params)


def batch_partners(x: torch.Tensor, partner: torch.Tensor) -> PartnersOf:
    """The partner images of rows of x: x[partner[rows]], gathered only for the rows asked."""
    return lambda rows: x.index_select(0, partner.index_select(0, rows))


def component_from_spec(option: str, spec: Spec) -> NDATransform:
    """`from_spec(spec)`, its ValueError prefixed with the option that held the spec."""
    try:
        return from_spec(spec)
    except ValueError as err:
        raise ValueError(f"{option}: {err}") from None


def check_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """`count` finite non-negative weights with a positive, finite sum (None: equal weights)."""
    if weights is None:
        return [1.0] * count
    weights = [check_float("mixture weights", w, low=0.0) for w in check_list("mixture weights", weights, count)]
    if not 0.0 < sum(weights) < math.inf:
        raise ValueError(f"mixture weights={short(weights)} must have a positive, finite sum")
    return weights


@register("mixture")
class Mixture(NDATransform):
    """Each image gets one of `transforms` (names, {"name": ..., **options} dicts or transforms),
    chosen independently with probabilities proportional to `weights` (default: equal).

    Every component draws parameters for the whole batch, and is applied only to the images that
    chose it: a loop over components, not images. Pairing components take partners among all
    images and share one derangement. Parameters: `choice` int64 (B,), `partner` int64 (B,) when a
    component pairs images, and each component's other parameters under "<index>.<key>".
    """

    def __init__(self, transforms: Sequence[Spec] = DEFAULT_MIXTURE, weights: Sequence[float] | None = None):
        super().__init__()
        if not isinstance(transforms, (list, tuple)) or len(transforms) == 0:
            raise ValueError("mixture transforms must be a non-empty list, e.g. ['jigsaw', {'name': 'mixup', 'alpha': 10}]")
        self.components = nn.ModuleList(component_from_spec("mixture transforms", spec) for spec in transforms)
        self.weights = check_weights(weights, len(self.components))
        self.min_batch_size = max(component.min_batch_size for component in self.components)
        self.pairs = any(component.pairs for component in self.components)

    def options(self) -> dict:
        return {"weights": self.weights}

    def check_image_size(self, height: int, width: int, channels: int | None = None) -> None:
        for component in self.components:
            component.check_image_size(height, width, channels)

    def check_params(self, params: Params, shape: torch.Size) -> None:
        check_index("mixture: choice", params["choice"], len(self.components))
        for index, component in enumerate(self.components):
            component.check_params(stored_params(component, params, str(index)), shape)

    def make_params(self, shape: torch.Size, generator: torch.Generator, partner: torch.Tensor | None = None) -> Params:
        weights = torch.tensor(self.weights, dtype=torch.float64, device=generator.device)
        params = {"choice": torch.multinomial(weights, shape[0], replacement=True, generator=generator)}
        if self.pairs:
            params["partner"] = derangement(shape[0], generator) if partner is None else partner
        for index, component in enumerate(self.components):
            drawn = component_params(component, shape, generator, params.get("partner"))
            params.update(prefix_params(str(index), drawn))
        return params

    def transform(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return self._assemble(x, params, batch_partners(x, params["partner"]) if self.pairs else None)

    # A mixture enforces each component's own min_changed on the images that chose it.
    def requires_change(self) -> bool:
        return any(component.requires_change() for component in self.components)

    def check_min_changed(self, height: int, width: int) -> None:
        for component in self.components:
            component.check_min_changed(height, width)

    def changed(self, x: torch.Tensor, out: torch.Tensor, params: Params, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Pixels changed of the own image, and of the partner too for images whose component pairs."""
        if not self.pairs:
            return changed_pixels(x if rows is None else x.index_select(0, rows), out)
        both = changed_from_both(x, out, params["partner"], rows)
        choice = params["choice"] if rows is None else params["choice"].index_select(0, rows)
        pairing = torch.tensor([c.pairs for c in self.components], device=choice.device)[choice]
        if bool(pairing.all()):
            return both
        own = changed_pixels(x if rows is None else x.index_select(0, rows), out)
        return torch.where(pairing, both, own)

    def required_changed(self, params: Params, shape: torch.Size) -> torch.Tensor:
        required = torch.zeros(shape[0], dtype=torch.int64, device=params["choice"].device)
        for index, component in enumerate(self.components):
            if component.requires_change():
                own = component.required_changed(stored_params(component, params, str(index)), shape)
                required = torch.where(params["choice"] == index, own, required)
        return required

    def redraw(self, params: Params, rows: torch.Tensor, shape: torch.Size, generator: torch.Generator) -> Params:
        """The chosen component's redraw for each of `rows` (the choice itself is kept)."""
        return self._per_component(params, rows, lambda c, own, mine: c.redraw(own, mine, shape, generator))

    def with_fallback(self, params: Params, rows: torch.Tensor, shape: torch.Size) -> Params:
        return self._per_component(params, rows, lambda c, own, mine: c.with_fallback(own, mine, shape))

    def _per_component(self, params: Params, rows: torch.Tensor, update: Callable) -> Params:
        """`params` with `update(component, its params, its rows among rows)` for each component
        that enforces min_changed (only those have rows to update)."""
        choice = params["choice"].index_select(0, rows)
        for index, component in enumerate(self.components):
            mine = rows[choice == index]
            if not component.requires_change() or mine.numel() == 0:
                continue
            own = update(component, stored_params(component, params, str(index)), mine)
            params = dict(params, **prefix_params(str(index), {k: v for k, v in own.items() if k != "partner"}))
            if component.pairs:
                params["partner"] = own["partner"]
        return params

    def combine(self, images: torch.Tensor, partners: torch.Tensor, params: Params) -> torch.Tensor:
        return self._assemble(images, params, lambda rows: partners.index_select(0, rows))

    def _assemble(self, images: torch.Tensor, params: Params, partners_of: PartnersOf | None) -> torch.Tensor:
        out = torch.empty_like(images)
        choice = params["choice"]
        for index, component in enumerate(self.components):
            rows = (choice == index).nonzero().squeeze(1)
            if rows.numel():
                own = slice_params(stored_params(component, params, str(index)), rows)
                out[rows] = transform_rows(component, images, own, rows, partners_of)
        return out


class Positive(NDATransform):
    """Positive data augmentation: each image is replaced by its transformed version with
    probability p and kept as is otherwise. Parameters: `apply` bool (B,), `partner` when the
    transform pairs images, and the transform's other parameters under "transform.<key>" (drawn
    for the whole batch)."""

    def __init__(self, transform: Spec, p: float = 0.5):
        super().__init__()
        self.inner = component_from_spec("positive transform", transform)
        self.p = check_probability("positive p", p)
        self.min_batch_size = self.inner.min_batch_size
        self.pairs = self.inner.pairs

    def options(self) -> dict:
        return {"p": self.p}

    def check_image_size(self, height: int, width: int, channels: int | None = None) -> None:
        self.inner.check_image_size(height, width, channels)

    def check_params(self, params: Params, shape: torch.Size) -> None:
        self.inner.check_params(stored_params(self.inner, params, "transform"), shape)

    def make_params(self, shape: torch.Size, generator: torch.Generator, partner: torch.Tensor | None = None) -> Params:
        params = {"apply": draw_flags(shape[0], self.p, generator)}
        if self.pairs:
            params["partner"] = derangement(shape[0], generator) if partner is None else partner
        params.update(prefix_params("transform", component_params(self.inner, shape, generator, params.get("partner"))))
        return params

    def transform(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return self._replace(x, params, batch_partners(x, params["partner"]) if self.pairs else None)

    def combine(self, images: torch.Tensor, partners: torch.Tensor, params: Params) -> torch.Tensor:
        return self._replace(images, params, lambda rows: partners.index_select(0, rows))

    def _replace(self, images: torch.Tensor, params: Params, partners_of: PartnersOf | None) -> torch.Tensor:
        out = images.clone()
        rows = params["apply"].nonzero().squeeze(1)
        if rows.numel():
            own = slice_params(stored_params(self.inner, params, "transform"), rows)
            out[rows] = transform_rows(self.inner, images, own, rows, partners_of)
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
    sides = [image_size, image_size] if not isinstance(image_size, (list, tuple)) else check_list("image_size", image_size, 2)
    height, width = (check_int("image_size", side, low=1) for side in sides)
    channels = None if channels is None else check_int("channels", channels, low=1)
    batch_size = None if batch_size is None else check_int("batch_size", batch_size, low=1)
    built.check_image_size(height, width, channels)
    if batch_size is not None and batch_size < built.min_batch_size:
        raise ValueError(f"{built.name} needs a batch of at least {built.min_batch_size} images, got batch_size={batch_size}")
    return built
