"""The NDA transform contract: `sample` random parameters, then `apply` them.

    t = negaug.nda.build("jigsaw", k=2)
    neg = t(x, generator=g)                       # x: float (B, C, H, W), any device and dtype
    params = t.sample(x.shape, g, x.device, images=x)  # dict of tensors, row i describes image i
    neg = t.apply(x, params)                      # deterministic given params: the same negatives

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

Transforms with a `min_changed` option (cutout, cutmix, mixup, stitch: default 1% of the pixels)
never return a positive in disguise: after the draw, the images whose negative changes fewer than
`min_changed` pixels are drawn again (only they), then fall back deterministically (min_change.py);
this needs the images, so `sample(shape, generator)` alone returns the first draw and
`sample(shape, generator, images=x)` the final one, which `forward` uses; the batch keeps its size
and order. A transform opts in by setting `min_changed` and `fallback_changes`, and by honouring a
`fallback` flag in its params; `redraw` and `with_fallback` have generic versions here.

Clips (the paper's video rule, Section 6: "the same transformation on all frames"): `forward`,
`sample` and `apply` also take clips (B, T, C, H, W). Parameters are drawn for the frame shape
(B, C, H, W), one draw per clip, and the clip is transformed with its frames folded into the
channels, (B, T * C, H, W), then unfolded: every spatial transform (jigsaw, flips, crop, stitch,
cutout, cutmix, mixup) moves or mixes the same pixels of every frame, and a clip equals its frames
transformed one by one with the same params. Per-channel rules keep their per-image meaning: a
cutout patch is filled with each frame's own per-channel mean; gaussian_noise adds the same noise
image (C, H, W) to every frame; other_data repeats one source image on every frame (an image
source) or takes a whole source clip (a source of clips (N, T, C, H, W)); `min_changed` counts the
positions (h, w) that change in some frame, out of H * W. `transform` and `make_params` never
see a clip: subclasses need nothing for it, except where a parameter has the channel size
(gaussian_noise) or the output does not come from x (other_data). Image batches take exactly the
path they took before clips existed (bit-identical outputs).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from negaug.nda.min_change import (
    changed_pixels,
    check_fits,
    enforce_min_changed,
    replace_rows,
    required_pixels,
)
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


def frame_shape(shape: Sequence[int]) -> torch.Size:
    """The shape parameters are drawn for: (B, C, H, W) of a clip batch (B, T, C, H, W); any other
    shape as it is."""
    shape = torch.Size(shape)
    return torch.Size((shape[0], *shape[2:])) if len(shape) == 5 else shape


def fold_frames(x: torch.Tensor) -> torch.Tensor:
    """A clip batch (B, T, C, H, W) with its frames folded into the channels, (B, T * C, H, W)
    (frame t holds channels t * C .. t * C + C - 1); any other tensor as it is."""
    return x.reshape(x.shape[0], -1, *x.shape[-2:]) if x.ndim == 5 else x


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
        """Negatives of x: `apply(x, sample(x.shape, generator, x.device, images=x))`, with the
        checks done once (this is the per-step hot path)."""
        self._check_input(x)
        if x.ndim != 5:
            return self._draw(x, resolve_generator(generator))[0]
        return self._draw(fold_frames(x), resolve_generator(generator), frame_shape(x.shape))[0].reshape(x.shape)

    def _draw(self, x: torch.Tensor, generator: torch.Generator,
              shape: torch.Size | None = None) -> tuple[torch.Tensor, Params]:
        """(negatives of x, their params on x's device); `min_changed` enforced (min_change.py).
        `shape`: the shape to draw params for, when x is a folded clip batch (default x.shape)."""
        shape = x.shape if shape is None else shape
        params = self.make_params(shape, generator)
        if generator.device != x.device:
            params = {key: value.to(x.device) for key, value in params.items()}
        out = self.transform(x, params)
        if self.requires_change():
            out, params = enforce_min_changed(self, x, out, params, generator, shape)
        return out, params

    def sample(self, shape: Sequence[int], generator: torch.Generator | None = None,
               device: torch.device | str | None = None, images: torch.Tensor | None = None) -> Params:
        """Random parameters for a batch of `shape` (B, C, H, W) (or clips (B, T, C, H, W): one
        draw per clip, as for (B, C, H, W)), drawn only from `generator`
        (None: a fresh generator seeded from OS entropy; the global RNG is never used), on the
        generator's device, then moved to `device` (default: left there).

        `images`: the batch (of `shape`) the params are for. A transform with `min_changed` then
        redraws the rows whose negative would change too few pixels, exactly as `forward` does, so
        `apply(images, params) == forward(images, generator)`; without `images` it returns the
        first draw, which `forward` keeps only for the rows that pass."""
        shape = torch.Size(shape)
        self.check_shape(shape)
        generator = resolve_generator(generator)
        if images is None or not self.requires_change():
            params = self.make_params(frame_shape(shape), generator)
        else:
            self._check_input(images)
            if images.shape != shape:
                raise ValueError(f"{self.name}.sample: images of shape {tuple(images.shape)} for a batch of shape {tuple(shape)}")
            params = self._draw(fold_frames(images), generator, frame_shape(shape))[1]
            device = generator.device if device is None else device
        if device is not None:
            params = {key: value.to(device) for key, value in params.items()}
        return params

    def apply(self, x: Any, params: Params | None = None) -> Any:  # type: ignore[override]
        """The negatives of x (B, C, H, W), or clips (B, T, C, H, W), described by `params` (from
        `sample`); deterministic."""
        if params is None and callable(x):
            # nn.Module.apply(fn) (e.g. weight init over a model holding this transform) still works.
            return super().apply(x)
        if params is None:
            raise ValueError(f"{self.name}.apply(x, params) needs the params drawn by {self.name}.sample(x.shape, generator)")
        self._check_input(x)
        for key, value in params.items():
            if value.shape[:1] != x.shape[:1]:
                raise ValueError(f"{self.name}: parameter '{key}' describes {value.shape[0]} images, the batch has {x.shape[0]}")
        self.check_params(params, frame_shape(x.shape))
        params = {key: value.to(x.device) for key, value in params.items()}
        if x.ndim != 5:
            return self.transform(x, params)
        return self.transform(fold_frames(x), params).reshape(x.shape)

    def _check_input(self, x: Any) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ValueError(f"{self.name} expects a float tensor, got {getattr(x, 'dtype', type(x).__name__)}")
        self.check_shape(x.shape)

    @property
    def name(self) -> str:
        return getattr(type(self), "registered_name", type(self).__name__)

    def check_shape(self, shape: torch.Size) -> None:
        """Raise ValueError when this transform is not defined for a batch of `shape`: images
        (B, C, H, W) or clips (B, T, C, H, W)."""
        if len(shape) not in (4, 5) or (len(shape) == 5 and shape[1] < 1):
            raise ValueError(f"{self.name} expects a batch of images (B, C, H, W) or of clips (B, T, C, H, W), "
                             f"got shape {tuple(shape)}")
        batch, channels, height, width = frame_shape(shape)
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

    # ----------------------------------------------------------------- min_changed (min_change.py)
    min_changed: float = 0  # changed pixels each negative must have: a count, or a fraction (0: no check)

    def requires_change(self) -> bool:
        """Whether drawing enforces a minimum of changed pixels (a mixture: any component's)."""
        return self.min_changed > 0

    def fallback_changes(self, height: int, width: int) -> int:
        """Pixels of a height x width image the fallback always changes (the largest min_changed)."""
        return 0

    def check_min_changed(self, height: int, width: int) -> None:
        """ValueError when `min_changed` asks more of a height x width image than the fallback gives."""
        if self.min_changed:
            check_fits(self.name, self.min_changed, height, width, self.fallback_changes(height, width))

    def changed(self, x: torch.Tensor, out: torch.Tensor, params: Params, rows: torch.Tensor | None = None) -> torch.Tensor:
        """int64 (R,): pixels each negative `out` (R, C, H, W) changes of the image(s) it is made
        from, x[rows] (rows None: all of x, R = B); `params` are the whole batch's."""
        return changed_pixels(x if rows is None else x.index_select(0, rows), out)

    def required_changed(self, params: Params, shape: torch.Size) -> torch.Tensor:
        """int64 (B,) on the params' device: the changed pixels each image of the batch needs."""
        device = next(iter(params.values())).device
        return torch.full((shape[0],), required_pixels(self.min_changed, *shape[-2:]), device=device)

    def redraw(self, params: Params, rows: torch.Tensor, shape: torch.Size, generator: torch.Generator) -> Params:
        """`params` (on rows' device) with the rows `rows` (R,) drawn afresh from `generator`."""
        fresh = self.make_params(torch.Size((rows.numel(), *shape[1:])), generator)
        return replace_rows(params, rows, fresh)

    def with_fallback(self, params: Params, rows: torch.Tensor, shape: torch.Size) -> Params:
        """`params` with the `fallback` flag (bool (B,), added when missing) set on `rows`."""
        flags = params.get("fallback")
        if flags is None:
            flags = torch.zeros(shape[0], dtype=torch.bool, device=rows.device)
        return {**params, "fallback": flags.index_fill(0, rows, True)}

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
