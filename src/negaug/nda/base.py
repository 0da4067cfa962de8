"""The NDA transform contract: `sample` random parameters, then `apply` them.

    t = negaug.nda.build("jigsaw", k=2)
    neg = t(x, generator=g)                       # x: float (B, C, H, W), any device and dtype
    params = t.sample(x.shape, g, x.device)       # dict of tensors, row i describes image i
    neg = t.apply(x, params)                      # deterministic given params

A transform implements two methods: `make_params(shape, generator) -> params` and
`transform(x, params) -> x_neg`, both batched (no per-image Python loop). Parameters are drawn on
the generator's device (a CPU `torch.Generator` by default) and then moved to x's device, so one
CPU generator drives CPU and CUDA inputs alike and a seed gives the same draw on every device; the
transform itself runs on whatever device x is on. Every parameter tensor has the batch size as its
leading dimension, which lets `mixture` and `positive` hand a subset of images to a component.

Pairing transforms (`pairs = True`: stitch, cutmix, mixup, and a mixture or positive holding one)
combine each image with a partner image: their params hold `partner` (B,), indices into the batch,
and they also implement `combine(images, partners, params)`, which takes the partner images
themselves, so that a mixture can pass x[rows] and x[partner[rows]].
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from negaug.nda.sampling import resolve_generator
from negaug.registry import Registry, short

TRANSFORMS = Registry("NDA transform")

Params = dict[str, torch.Tensor]


def slice_params(params: Params, rows: torch.Tensor) -> Params:
    """The parameters of the images `rows` (every tensor is indexed on its leading dimension)."""
    return {key: value.index_select(0, rows) for key, value in params.items()}


def prefix_params(prefix: str, params: Params) -> Params:
    return {f"{prefix}.{key}": value for key, value in params.items()}


def unprefix_params(prefix: str, params: Params) -> Params:
    start = len(prefix) + 1
    return {key[start:]: value for key, value in params.items() if key.startswith(prefix + ".")}


def check_index(name: str, values: torch.Tensor, limit: int) -> None:
    """ValueError unless every value lies in [0, limit) (parameters given to `apply` by a caller)."""
    if values.numel() and bool(((values < 0) | (values >= limit)).any()):
        raise ValueError(f"{name} holds values outside [0, {limit})")


class NDATransform(nn.Module):
    """Base class of every NDA transform; subclasses implement `make_params` and `transform`.

    Inputs are float tensors (B, C, H, W), normally in [-1, 1]; outputs keep shape, device and dtype.
    """

    min_batch_size: int = 1  # pairing transforms need 2: an image is never paired with itself
    pairs: bool = False  # True: params hold `partner`, and `combine` takes the partner images

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
        self._check_input(x)
        for key, value in params.items():
            if value.shape[:1] != x.shape[:1]:
                raise ValueError(f"{self.name}: parameter '{key}' describes {value.shape[0]} images, the batch has {x.shape[0]}")
        self.check_params(params, x.shape)
        return self.transform(x, {key: value.to(x.device) for key, value in params.items()})

    def _check_input(self, x: Any) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ValueError(f"{self.name} expects a float tensor, got {getattr(x, 'dtype', type(x).__name__)}")
        self.check_shape(x.shape)

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

    def check_params(self, params: Params, shape: torch.Size) -> None:
        """Raise ValueError when `params` (given to `apply`) index outside a batch of `shape`."""

    def make_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        """Random parameters (on generator.device) for a batch of `shape`, row i for image i."""
        raise NotImplementedError

    def transform(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """Negatives of x (B, C, H, W) given `params` already on x's device; no checks."""
        raise NotImplementedError

    def combine(self, images: torch.Tensor, partners: torch.Tensor, params: Params) -> torch.Tensor:
        """Pairing transforms only: negatives of `images` (R, C, H, W), image r combined with
        `partners[r]` (R, C, H, W), `params` the images' own (any `partner` entry is ignored)."""
        raise NotImplementedError(f"{self.name} does not pair images")

    def combine_(self, images: torch.Tensor, partners: torch.Tensor, params: Params) -> torch.Tensor:
        """`combine`, allowed to write the result into `partners` (a fresh gather the caller no
        longer needs) and return it; transforms that gain from it (stitch) override this."""
        return self.combine(images, partners, params)

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.options().items())

    def options(self) -> dict[str, Any]:
        """The options this transform was built with (for repr and run records)."""
        return {}


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
    if isinstance(spec, dict) and isinstance(spec.get("name"), str) and all(isinstance(key, str) for key in spec):
        options = {key: value for key, value in spec.items() if key != "name"}
        return build(spec["name"], **options)
    raise ValueError("an NDA transform spec is a name, a dict with a 'name' key and option names, or a transform; "
                     f"got {short(spec)}")
