"""`other_data`: negatives drawn from another source of images supplied by the user (other classes
of the dataset, another dataset, dots images with another count; Appendix A of the paper)."""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from negaug.nda.base import NDATransform, Params, check_index, register


def materialise_source(source: Any) -> torch.Tensor:
    """A float tensor (N, ...) from a tensor, an in-memory dataset with `.images`, or any torch
    Dataset (or list) of (image, label) pairs or of bare images, read once item by item."""
    if isinstance(source, torch.Tensor):
        tensor = source
    elif isinstance(getattr(source, "images", None), torch.Tensor):
        tensor = source.images
    elif isinstance(source, (Dataset, list, tuple)):
        tensor = read_items(source)
    else:
        raise ValueError(f"other_data source must be a tensor (N, C, H, W) or a Dataset of (image, label), got {type(source).__name__}")
    if not tensor.is_floating_point() or tensor.ndim < 2 or tensor.shape[0] == 0:
        raise ValueError(f"other_data source must be a non-empty float tensor (N, C, H, W), got {tensor.dtype} {tuple(tensor.shape)}")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError("other_data source holds NaN or infinite values; give it images in [-1, 1]")
    if tensor.ndim in (4, 5) and (tensor.min() < -1 - 1e-6 or tensor.max() > 1 + 1e-6):
        raise ValueError(f"other_data source images must lie in [-1, 1] like the training images, got [{tensor.min():.3g}, {tensor.max():.3g}]")
    return tensor


def read_items(source: Any) -> torch.Tensor:
    """Every item of a Dataset or list (an (image, label) pair or a bare image) stacked into one tensor."""
    if len(source) == 0:
        raise ValueError("other_data source is an empty dataset; give it at least one image")
    items = [source[i] for i in range(len(source))]  # once, at construction
    images = [item[0] if isinstance(item, (tuple, list)) and item else item for item in items]
    if not all(isinstance(image, torch.Tensor) for image in images):
        kind = next(type(image).__name__ for image in images if not isinstance(image, torch.Tensor))
        raise ValueError(f"other_data source items must be image tensors (or (image, label) pairs), got a {kind}")
    if len({tuple(image.shape) for image in images}) > 1:
        raise ValueError("other_data source images must all have the same shape; resize them to the training images")
    return torch.stack(images)


@register("other_data")
class OtherData(NDATransform):
    """Negatives drawn uniformly (with replacement) from `source`; the batch only gives the count,
    device and dtype. `source`: a float tensor (N, C, H, W) in [-1, 1] or a torch Dataset of
    (image, label) pairs (materialised once). Non-image sources (N, D) work too, for 2-D toy data.
    For a batch of clips (B, T, C, H, W), an image source gives still clips (the drawn image on
    every frame: the same draw on every frame, as for the other transforms), and a source of clips
    (N, T, C, H, W) of the batch's clip shape gives whole source clips.

    The source is a non-persistent buffer: `.to(device)` moves it, state_dict does not store it.
    Parameters: `index` int64 (B,) into the source.
    """

    def __init__(self, source: Any):
        super().__init__()
        self.register_buffer("source", materialise_source(source), persistent=False)

    def options(self) -> dict:
        return {"source": f"tensor{tuple(self.source.shape)}"}

    def check_shape(self, shape: torch.Size) -> None:
        sample, source = tuple(shape[1:]), tuple(self.source.shape[1:])
        still_clip = len(shape) == 5 and shape[1] >= 1 and sample[1:] == source  # image source, clip batch
        if len(shape) < 2 or shape[0] < 1 or not (sample == source or still_clip):
            raise ValueError(
                f"other_data source holds samples of shape {tuple(self.source.shape[1:])}, "
                f"the batch has {tuple(shape[1:])}; resize the source to the training images"
            )

    def check_image_size(self, height: int, width: int, channels: int | None = None) -> None:
        if self.source.ndim not in (4, 5):
            raise ValueError(f"other_data source holds samples of shape {tuple(self.source.shape[1:])}, not images")
        frame = tuple(self.source.shape[-3:])  # (C, H, W) of an image or of a clip's frames
        expected = (channels if channels is not None else frame[0], height, width)
        if frame != expected:
            raise ValueError(
                f"other_data source images are {tuple(self.source.shape[1:])} (C, H, W), the training images "
                f"are {expected}; resize the source to the training images"
            )

    def make_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        count = self.source.shape[0]
        return {"index": torch.randint(count, (shape[0],), generator=generator, device=generator.device)}

    def check_params(self, params: Params, shape: torch.Size) -> None:
        check_index("other_data: index", params["index"], self.source.shape[0])

    def transform(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        index = params["index"].to(self.source.device)
        drawn = self.source.index_select(0, index)
        if drawn.ndim == 5:  # source clips, folded like the batch (base.py)
            drawn = drawn.flatten(1, 2)
        elif drawn.ndim == 4 and drawn.shape[1] != x.shape[1]:  # source images, a folded clip batch: still clips
            drawn = drawn.repeat(1, x.shape[1] // drawn.shape[1], 1, 1)
        return drawn.to(device=x.device, dtype=x.dtype)
