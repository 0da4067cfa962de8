"""The Pix2Pix side of `negaug train` and `negaug eval` (`negaug.experiment.translate`): a preset
or YAML file with `kind: pix2pix` trains paired photo -> label-map translation with NDA, and a
Pix2Pix run folder is resumed and evaluated with segmentation scores."""
from __future__ import annotations

import signal
import sys

from negaug.cli.train import _StopFlag


def _warn(message: str) -> None:
    print(f"negaug: warning: {message}", file=sys.stderr)


def run_train(args, source: str | None, overrides: list[str]) -> int:
    from negaug.experiment import NonFiniteLossError, RunWriteError, resume_config
    from negaug.experiment.translate import prepare_translation, train_translation
    from negaug.experiment.translate_config import TranslationConfig, load_translation_config

    if args.resume:
        if source is not None:
            raise ValueError("--resume takes the run's own config; give only overrides such as train.steps=N")
        config = resume_config(args.resume, overrides, warn=_warn, cls=TranslationConfig)
    else:
        config = load_translation_config(source, overrides)
    if args.dry_run:
        prepare_translation(config)  # the same checks as a real run
        print(config.to_yaml(), end="")
        return 0

    def on_start(run_dir, device, step) -> None:
        start = f" from step {step}" if step else ""
        print(f"negaug: training pix2pix {config.train.steps} steps{start} in {run_dir} on {device}", flush=True)

    flag = _StopFlag()
    previous = {sig: signal.signal(sig, flag) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = train_translation(config, run_dir=args.resume, resume=bool(args.resume),
                                   stop_requested=lambda: flag.requested, on_start=on_start, warn=_warn)
    except (NonFiniteLossError, RunWriteError) as err:  # mid-run: exit 1
        print(f"negaug: error: {err}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if result.interrupted:
        print(f"negaug: stopped at step {result.step}; checkpoint saved. Continue with: "
              f"negaug train --resume {result.run_dir}", file=sys.stderr)
        return 128 + (flag.signal or signal.SIGINT)
    scores = result.scores or {}
    summary = ", ".join(f"{key} {scores[key]:.3f}" for key in ("pixel_accuracy", "class_accuracy", "mean_iou")
                        if key in scores)
    print(f"run folder: {result.run_dir} ({result.step} steps, {result.seconds:.0f} s; test {summary})")
    print(f"next: negaug eval {result.run_dir}   # segmentation scores -> {result.run_dir}/eval.json\n"
          f"      negaug train --resume {result.run_dir} train.steps={2 * result.step}   # train longer")
    return 0


def run_eval(args) -> int:
    from negaug.experiment.translate import evaluate_translation_run, format_scores

    given = [flag for flag, value in (("--metrics", args.metrics), ("--feature-extractor", args.feature_extractor),
                                      ("--inception-weights", args.inception_weights)) if value]
    if given:
        raise ValueError(f"{args.run} is a pix2pix run, scored by segmentation of its label maps; "
                         f"{', '.join(given)} apply to GAN runs only")
    entry = evaluate_translation_run(args.run, checkpoint_choice=args.checkpoint, num_samples=args.num_samples,
                                     batch_size=args.batch_size, device=args.device, data_root=args.data_root,
                                     warn=_warn)
    print(format_scores(entry))
    return 0
