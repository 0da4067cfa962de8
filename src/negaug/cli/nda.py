"""`negaug nda show`: the paper's Figure 2 for real images, one labelled row per NDA transform.

    negaug nda show --dataset mnist5k --transforms jigsaw,jigsaw:k=4,stitch,mixup:alpha=10 --out nda.png

Transform syntax: transforms are separated by commas; options follow the name as `:key=value`
(repeatable, e.g. `mixup:alpha=10:min_changed=0.05`); values are read as YAML (`3`, `0.5`, `true`,
`[4, 5, 7]`; commas inside [...] do not split transforms). `other_data` takes its negatives from a
dataset: `other_data:dataset=dots:count=[4,5,7]` (every key but `dataset` is a dataset option).
cutout, cutmix, mixup and stitch take `min_changed` (default 0.01: each negative changes at least
1% of the pixels of its source; an integer is a count; `cutout:min_changed=0` shows the unchecked
draw, where a patch over MNIST's background can leave the image as it was).
"""
from __future__ import annotations

import argparse
from typing import Any

import yaml

from negaug.presets import yaml_load  # yaml.safe_load that reads 1e-4 as a float

HELP = "negative data augmentations: `nda show` draws them on real images (the paper's Figure 2)"
PAPER_ORDER = ("jigsaw", "stitch", "cutout", "cutmix", "mixup")  # Figure 2 / Appendix B order
NOT_SHOWN_BY_DEFAULT = ("other_data", "mixture")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="nda_command", required=True, metavar="{show}")
    show = sub.add_parser("show", help="write a PNG: a row of originals, then one row per transform",
                          formatter_class=argparse.RawDescriptionHelpFormatter, epilog="""examples:
  negaug nda show --out nda.png                                     # every transform on MNIST-5k
  negaug nda show --dataset dots --data-option count=3 --transforms "jigsaw,other_data:dataset=dots:count=[4,5,7]" --out dots.png
  negaug nda show --dataset cifar10 --data-root ~/data --download --transforms jigsaw:k=4,mixup:alpha=10 --out c.png
  negaug nda show --transforms cutout,cutout:min_changed=0,cutmix:min_changed=20 --out c.png  # min_changed: a fraction or a count

cutout, cutmix, mixup and stitch redraw (then fall back for) any image whose negative would change
fewer than min_changed of its pixels (default 0.01 = 1%); min_changed=0 turns the check off.""")
    show.add_argument("--dataset", default="mnist5k", help="dataset name (default: mnist5k)")
    show.add_argument("--transforms", default=None,
                      help="comma-separated transforms with optional :key=value options, e.g. "
                           "jigsaw:k=3,stitch (default: every image transform but other_data and mixture)")
    show.add_argument("--out", required=True, help="output PNG file")
    show.add_argument("--num-images", type=int, default=8, help="images per row (default: 8)")
    show.add_argument("--seed", type=int, default=0, help="seed for picking images and drawing transforms")
    show.add_argument("--data-root", "--root", dest="root", default=None,
                      help="dataset folder (default: $NEGAUG_DATA or ~/.cache/negaug/data), as in negaug anomaly")
    show.add_argument("--download", action="store_true", help="download the dataset if it is missing")
    show.add_argument("--split", default="train", help="dataset split (default: train)")
    show.add_argument("--image-size", type=int, default=None, help="resize images to this size")
    show.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                      help="extra dataset option, repeatable (e.g. count=6 for dots, classes=[0,1])")
    show.add_argument("--scale", type=int, default=None,
                      help="integer enlargement of each image (default: the smallest that shows it at >= 64 px)")


def split_top_level(text: str, separator: str) -> list[str]:
    """Split on `separator` outside [...] brackets; pieces stripped, empty ones dropped."""
    pieces, depth, current = [], 0, []
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == separator and depth == 0:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
    pieces.append("".join(current))
    return [piece.strip() for piece in pieces if piece.strip()]


def parse_option(text: str, what: str) -> tuple[str, Any]:
    """'key=value' -> (key, YAML value of value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{what} option '{text}' is not key=value")
    try:
        return key.strip(), yaml_load(value)
    except yaml.YAMLError:
        raise ValueError(f"{what} option '{text}': cannot read the value {value!r}") from None


def parse_transform_specs(text: str) -> list[tuple[str, str, dict[str, Any]]]:
    """'jigsaw:k=3,stitch' -> [("jigsaw:k=3", "jigsaw", {"k": 3}), ("stitch", "stitch", {})]."""
    specs = []
    for spec in split_top_level(text, ","):
        name, *options = split_top_level(spec, ":")
        specs.append((spec, name, dict(parse_option(option, f"transform '{name}'") for option in options)))
    if not specs:
        raise ValueError("--transforms is empty; give at least one transform, e.g. --transforms jigsaw")
    return specs


def default_specs() -> list[tuple[str, str, dict[str, Any]]]:
    from negaug import nda

    shown = [name for name in nda.names() if name not in NOT_SHOWN_BY_DEFAULT]
    ordered = [name for name in PAPER_ORDER if name in shown] + sorted(set(shown) - set(PAPER_ORDER))
    return [(name, name, {}) for name in ordered]


def build_transform(name: str, options: dict[str, Any], args: argparse.Namespace, image_size: int):
    """An NDA transform; `other_data` gets its source from the dataset named by its `dataset` option."""
    from negaug import data, nda

    if name == "other_data":
        options = dict(options)
        source_name = options.pop("dataset", None)
        if source_name is None:
            raise ValueError("other_data needs a source dataset, e.g. other_data:dataset=dots:count=[4,5,7]")
        source = data.build(source_name, root=args.root, split=args.split, download=args.download,
                            image_size=image_size, **options)
        return nda.build("other_data", source=source.images)
    try:
        return nda.build(name, **options)
    except TypeError as err:  # e.g. a required option left out
        raise ValueError(f"transform '{name}': {err}") from None


def figure_rows(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """[("original", images), (spec, negatives), ...], every row from the same seeded images."""
    import torch

    from negaug import data

    if not 1 <= args.num_images <= 256:
        raise ValueError(f"--num-images must be from 1 to 256, got {args.num_images}")
    if abs(args.seed) > 2**31 - 1:
        raise ValueError(f"--seed={args.seed} must be an integer in -{2**31 - 1}..{2**31 - 1}")
    data_options = dict(parse_option(text, "--data-option") for text in args.data_option)
    dataset = data.build(args.dataset, root=args.root, split=args.split, download=args.download,
                         image_size=args.image_size, **data_options)
    if getattr(dataset, "image_size", None) is None:
        raise ValueError(f"nda show needs an image dataset; '{args.dataset}' holds 2-D points")
    if len(dataset) == 0:
        raise ValueError(f"dataset '{args.dataset}' is empty")
    specs = parse_transform_specs(args.transforms) if args.transforms else default_specs()
    transforms = [(label, build_transform(name, options, args, dataset.image_size)) for label, name, options in specs]
    generator = torch.Generator().manual_seed(args.seed)
    index = torch.randperm(len(dataset), generator=generator)[: args.num_images]
    images, _ = dataset.get_batch(index)
    rows = [("original", images)]
    with torch.no_grad():
        rows += [(label, transform(images, generator=generator)) for label, transform in transforms]
    return rows


def run(args: argparse.Namespace) -> int:
    from negaug import viz
    from negaug.files import check_output_path

    check_output_path(args.out, "--out")  # a device, a FIFO or a symlink is refused before any work
    rows = figure_rows(args)
    size = rows[0][1].shape[-1]
    scale = args.scale if args.scale is not None else viz.readable_scale(size)
    if not (1 <= scale and scale * size <= 2048):
        raise ValueError(f"--scale must be at least 1 and make images of at most 2048 px, got {scale} for {size} px images")
    path = viz.save_labelled_rows(rows, args.out, scale=scale)
    print(f"wrote {path} ({len(rows)} rows of {rows[0][1].shape[0]} images)")
    return 0
