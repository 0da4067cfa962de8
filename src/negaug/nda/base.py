"""The NDA transform contract: `sample` random parameters, then `apply` them.

    t = negaug.nda.build("jigsaw", k=2)
    neg = t(x, generator=g)                       # x: float (B, C, H, W), any device and dtype
    params = t.sample(x.shape, g, x.device)       # dict of tensors, row i describes image i
    neg = t.apply(x, params)                      # deterministic given params

Parameters are drawn on the generator's device (a CPU `torch.Generator` by default) and then moved
to `device`, so one CPU generator drives CPU and CUDA inputs alike and a seed gives the same draw
on every device. Every parameter tensor has the batch size as its leading dimension; that is what
lets `mixture` and `positive` hand a subset of rows to a component.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from negaug.registry import Registry
from negaug.nda.native import scatter_rows
from negaug.nda.sampling import resolve_generator

TRANSFORMS = Registry("NDA transform")

Params = dict[str, torch.Tensor]


def select_rows(x: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    """x[rows], or x itself when rows is None (the whole batch)."""
    return x if rows is None else x.index_select(0, rows)


def slice_params(params: Params, rows: torch.Tensor) -> Params:
    """The parameters of the images `rows` (every tensor is indexed on its leading dimension)."""
    return {key: value.index_select(0, rows) for key, value in params.items()}


def prefix_params(prefix: str, params: Params) -> Params:
    return {f"{prefix}.{key}": value for key, value in params.items()}


def unprefix_params(prefix: str, params: Params) -> Params:
    start = len(prefix) + 1
    return {key[start:]: value for key, value in params.items() if key.startswith(prefix + ".")}


class NDATransform(nn.Module):
    """Base class of every NDA transform; subclasses implement `make_params` and `transform`.

    Inputs are float tensors (B, C, H, W), normally in [-1, 1]; outputs keep shape, device and dtype.
    """

    min_batch_size: int = 1  # pairing transforms need 2: an image is never paired with itself

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Negatives of x: `apply(x, sample(x.shape, generator, x.device))`, with the checks done
        once (this is the per-step hot path)."""
        self._check_input(x)
        generator = resolve_generator(generator)
        params = self.make_params(x.shape, generator)
        if generator.device != x.device:
            params = {key: value.to(x.device) for key, value in params.items()}
        return self.transform(x, params)

    def sample(self, shape: Sequence[int], generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> Params:
        """Random parameters for a batch of `shape` (B, C, H, W), drawn only from `generator`
        (None: a fresh generator seeded from OS entropy; the global RNG is never used), on the
        generator's device, then moved to `device` (default: left there)."""
        shape = torch.Size(shape)
        self.check_shape(shape)
        params = self.make_params(shape, resolve_generator(generator))
        if device is not None:
            params = {key: value.to(device) for key, value in params.items()}
        return params

    def apply(self, x: Any, params: Params | None = None) -> Any:  # type: ignore[override]
        """The negatives of x (B, C, H, W) described by `params` (from `sample`); deterministic."""
        if params is None and callable(x):
            # nn.Module.apply(fn) (e.g. weight init over a model holding this transform) still works.
            return super().apply(x)
        if params is None:
            raise ValueError(f"{self.name}.apply(x, params) needs the params drawn by {self.name}.sample(x.shape, generator)")
        return self.transform(x, self._checked(x, params))

    def _check_input(self, x: Any) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ValueError(f"{self.name} expects a float tensor, got {getattr(x, 'dtype', type(x).__name__)}")
        self.check_shape(x.shape)

    def _checked(self, x: Any, params: Params) -> Params:
        """params on x's device, after checking that x is a float batch they describe."""
        self._check_input(x)
        for key, value in params.items():
            if value.shape[:1] != x.shape[:1]:
                raise ValueError(f"{self.name}: parameter '{key}' describes {value.shape[0]} images, the batch has {x.shape[0]}")
        return {key: value.to(x.device) for key, value in params.items()}

    @property
    def name(self) -> str:
        return getattr(type(self), "registered_name", type(self).__name__)

    def check_shape(self, shape: torch.Size) -> None:
        """Raise ValueError when this transform is not defined for a batch of `shape`."""
        if len(shape) != 4:
            raise ValueError(f"{self.name} expects a batch of images (B, C, H, W), got shape {tuple(shape)}")
        batch, channels, height, width = shape
        if batch < self.min_batch_size:
            why = "pairs each image with a different one: it " if self.min_batch_size > 1 else ""
            raise ValueError(f"{self.name} {why}needs a batch of at least {self.min_batch_size} images, got {batch}")
        self.check_image_size(height, width, channels)

    def check_image_size(self, height: int, width: int, channels: int | None = None) -> None:
        """Raise ValueError when this transform is not defined for images of this size."""

    def make_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        """Random parameters (on generator.device) for a batch of `shape`, row i for image i."""
        raise NotImplementedError

    def transform(self, x: torch.Tensor, params: Params, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Negatives of the images `rows` of x (all of them when None), (R, C, H, W).

        `params` describe those rows (leading dimension R); the whole batch x stays available so
        that pairing transforms can take partners from it.
        """
        raise NotImplementedError

    def transform_into(self, out: torch.Tensor, x: torch.Tensor, params: Params, rows: torch.Tensor | None = None,
                       out_rows: torch.Tensor | None = None) -> None:
        """Write `transform(x, params, rows)` into out[out_rows] (out[:R] when None). Transforms
        with a C kernel override this to write in place; the default transforms, then copies."""
        scatter_rows(out, out_rows, self.transform(x, params, rows))

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.options().items())

    def options(self) -> dict[str, Any]:
        """The options this transform was built with (for repr and run records)."""
        return {}


class RowWriter(NDATransform):
    """A transform computed by one function that can write straight into an output (the fast
    paths of `negaug.nda.native`): subclasses implement `write`, and `transform` and
    `transform_into` both call it."""

    def write(self, x: torch.Tensor, params: Params, rows: torch.Tensor | None, out: torch.Tensor | None,
              out_rows: torch.Tensor | None) -> torch.Tensor:
        """The images `rows` of x as a new tensor (out=None) or written into out[out_rows]."""
        raise NotImplementedError

    def transform(self, x: torch.Tensor, params: Params, rows: torch.Tensor | None = None) -> torch.Tensor:
        return self.write(x, params, rows, None, None)

    def transform_into(self, out: torch.Tensor, x: torch.Tensor, params: Params, rows: torch.Tensor | None = None,
                       out_rows: torch.Tensor | None = None) -> None:
        self.write(x, params, rows, out, out_rows)


def register(name: str) -> Callable[[type], type]:
    """Register an NDATransform subclass under `name` (also kept as `cls.registered_name`)."""
    def decorator(cls: type) -> type:
        cls.registered_name = name
        return TRANSFORMS.register(name)(cls)

    return decorator


def build(name: str, **options: Any) -> NDATransform:
    """The transform `name` with `options`; unknown names or options raise ValueError naming the valid ones."""
    return TRANSFORMS.build(name, **options)


def names() -> list[str]:
    """Names of the registered NDA transforms, sorted."""
    return TRANSFORMS.names()


def from_spec(spec: str | dict[str, Any] | NDATransform) -> NDATransform:
    """A transform from a name ("jigsaw"), a dict ({"name": "mixup", "alpha": 10}) or a transform."""
    if isinstance(spec, NDATransform):
        return spec
    if isinstance(spec, str):
        return build(spec)
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        options = {key: value for key, value in spec.items() if key != "name"}
        return build(spec["name"], **options)
    raise ValueError(f"an NDA transform spec is a name, a dict with a 'name' key, or a transform; got {spec!r}")
