"""End-to-end training: NDA in both modes, exact plain-GAN equivalence, exact resume, failures."""
import copy
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from negaug.cli import main
from negaug.experiment import NonFiniteLossError, load_config, load_run, resume_config, train
from negaug.experiment import checkpoint as ckpt

TINY = ["data.batch_size=8", "data.options.classes=[0, 1]", "model.options.width=4", "train.steps=4",
        "optim.num_d_steps=2", "train.progress=false", "train.log_every=1", "train.sample_every=0",
        "train.checkpoint_every=2", "train.ema_start=2", "train.ema_decay=0.9", "train.num_sample_images=4",
        "train.device=cpu"]


def tiny(tmp_path, *extra):
    return load_config("default", [*TINY, f"train.runs_dir={tmp_path}", *extra])


def tensors_by_path(tree, path=""):
    """{"discriminator.net.0.weight": tensor, ...}: every tensor of a nested state dict by its path."""
    if isinstance(tree, torch.Tensor):
        return {path: tree}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else []
    found = {}
    for key, value in items:
        found.update(tensors_by_path(value, f"{path}.{key}" if path else str(key)))
    return found


def weights(run_dir):
    found = ckpt.load_latest(Path(run_dir) / "checkpoints")
    return found.step, tensors_by_path(found.state)


def flat(run_dir, prefix="discriminator."):
    """All float tensors of one network in a checkpoint, concatenated."""
    tensors = weights(run_dir)[1]
    return torch.cat([v.flatten() for k, v in sorted(tensors.items()) if k.startswith(prefix) and v.is_floating_point()])


def assert_same_weights(a, b):
    assert a[0] == b[0]
    assert a[1].keys() == b[1].keys()
    for key in a[1]:
        assert torch.equal(a[1][key], b[1][key]), key


@pytest.mark.slow
def test_run_folder_describes_itself(tmp_path):
    result = train(tiny(tmp_path, "train.name=r"))
    run = tmp_path / "r"
    assert result.step == 4 and result.run_dir == run
    assert load_config(str(run / "config.yaml")).nda.lam == 0.75
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for key in ("loss/d", "loss/g", "d_out/real", "d_out/generated", "d_out/negative", "it_per_s"):
        assert all(key in r for r in records), key
    assert ckpt.list_steps(run / "checkpoints") == [2, 4]
    assert (run / "samples" / "step_0000004.png").exists() and (run / "report.md").exists()


@pytest.mark.parametrize("mode", ["weighted", "mixture"])
def test_lambda_one_is_the_plain_gan_bit_for_bit(tmp_path, mode):
    train(tiny(tmp_path, "train.name=plain", "nda.transform=none"))
    train(tiny(tmp_path, "train.name=lam1", "nda.lam=1.0", f"nda.mode={mode}"))
    assert_same_weights(weights(tmp_path / "plain"), weights(tmp_path / "lam1"))


def test_nda_changes_training_and_both_modes_run(tmp_path):
    for name, extra in (("plain", "nda.transform=none"), ("weighted", "nda.mode=weighted"), ("mixture", "nda.mode=mixture")):
        train(tiny(tmp_path, f"train.name={name}", extra))
    d_weights = {n: flat(tmp_path / n) for n in ("plain", "weighted", "mixture")}
    assert not torch.equal(d_weights["plain"], d_weights["weighted"])
    assert not torch.equal(d_weights["weighted"], d_weights["mixture"])


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    train(tiny(tmp_path, "train.name=a"))
    train(tiny(tmp_path, "train.name=b"))
    train(tiny(tmp_path, "train.name=c", "train.seed=1"))
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert not torch.equal(flat(tmp_path / "a", "generator."), flat(tmp_path / "c", "generator."))


AUGMENTED = ("train.diffaugment=color,translation,cutout", "loss.consistency=10")


@pytest.mark.parametrize("extra", [(), AUGMENTED], ids=["plain", "diffaugment+consistency"])
def test_resume_continues_exactly(tmp_path, extra):
    train(tiny(tmp_path, "train.name=whole", "train.steps=6", *extra))
    train(tiny(tmp_path, "train.name=split", "train.steps=2", *extra))
    config = resume_config(tmp_path / "split", ["train.steps=6"])
    result = train(config, run_dir=tmp_path / "split", resume=True)
    assert result.step == 6
    assert_same_weights(weights(tmp_path / "whole"), weights(tmp_path / "split"))
    steps = [json.loads(l)["step"] for l in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_augmentation_off_draws_nothing_and_equals_explicitly_off(tmp_path):
    """Default off: the augmentation stream is never drawn from and the run is the one with the
    options given explicitly off; on, each option changes training."""
    train(tiny(tmp_path, "train.name=default"))
    train(tiny(tmp_path, "train.name=explicit", "train.diffaugment=none", "loss.consistency=0"))
    assert_same_weights(weights(tmp_path / "default"), weights(tmp_path / "explicit"))
    untouched = torch.Generator().manual_seed(0 + 3).get_state()  # train.seed + 3, as `build` seeds it
    assert torch.equal(ckpt.load_latest(tmp_path / "default" / "checkpoints").state["rng"]["augment"], untouched)
    for name, extra in (("diffaugment", AUGMENTED[0]), ("consistency", AUGMENTED[1])):
        train(tiny(tmp_path, f"train.name={name}", extra))
        assert not torch.equal(flat(tmp_path / "default"), flat(tmp_path / name)), name
    records = [json.loads(line) for line in (tmp_path / "consistency" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["loss/consistency"] > 0 for r in records)


@pytest.mark.parametrize("spectral_norm", [True, False], ids=["per-sample D", "batch-norm D"])
def test_every_image_d_sees_is_augmented_in_both_steps(tmp_path, spectral_norm):
    """DiffAugment transforms real, generated and negative batches in the D step and the generated
    batch in the G step (draws from the augmentation stream in both); CR's T(x) is scored through
    `score`: with a batch-dependent D, in a call of its own."""
    from negaug.experiment.build import build
    from negaug.experiment.stats import Stats
    from negaug.experiment.steps import discriminator_step, generator_step

    config = tiny(tmp_path, *AUGMENTED, f"model.options.spectral_norm={str(spectral_norm).lower()}")
    recipe, state = build(config)
    seen = []
    state.discriminator.register_forward_hook(lambda module, args, out: seen.append(args[0].detach().clone()))
    real, labels = state.batches.next()
    before = state.augment_rng.get_state()
    discriminator_step(recipe, state, real, labels, 1, Stats())
    assert len(seen) == (1 if spectral_norm else 4)  # real, generated, negatives, T(real)
    images = torch.cat(seen)
    assert images.shape[0] == 4 * 8
    assert (images[:8] != real).any(dim=(1, 2, 3)).all()  # the reals D saw are augmented
    assert ((images == 0).flatten(1).sum(1) >= 16 * 16 // 4).all()  # each of the 4 kinds carries its cutout
    after_d = state.augment_rng.get_state()
    assert not torch.equal(before, after_d)
    seen.clear()
    generator_step(recipe, state, 1, Stats())
    assert len(seen) == 1 and not torch.equal(after_d, state.augment_rng.get_state())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in state.generator.parameters())


def test_augmentation_keys_leave_the_settings_hash_of_earlier_runs_alone():
    """Cached reproduction runs are named by a hash of `learning_settings`: the keys added in 0.4
    count only when on, so every run cached before them keeps its name."""
    from negaug.experiment.config import learning_settings

    off = learning_settings(load_config("default"))
    assert "diffaugment" not in off["train"] and "consistency" not in off["loss"]
    on = learning_settings(load_config("default", list(AUGMENTED)))
    assert on["train"]["diffaugment"] == "color,translation,cutout" and on["loss"]["consistency"] == 10.0


def test_resume_refuses_changes_that_break_the_run(tmp_path):
    train(tiny(tmp_path, "train.name=r", "train.steps=2"))
    with pytest.raises(ValueError, match="nda.lam cannot change when resuming"):
        resume_config(tmp_path / "r", ["nda.lam=0.5"])


def test_corrupted_latest_checkpoint_resumes_from_previous(tmp_path):
    train(tiny(tmp_path, "train.name=r", "train.steps=4"))
    bad = tmp_path / "r" / "checkpoints" / "step_0000004.safetensors"
    bad.write_bytes(bad.read_bytes()[:100])
    warnings = []
    result = train(resume_config(tmp_path / "r", ["train.steps=4"]), run_dir=tmp_path / "r", resume=True,
                   warn=warnings.append)
    assert any("step_0000004.safetensors" in w and "truncated" in w for w in warnings)
    assert result.step == 4  # redone from step 2
    train(tiny(tmp_path, "train.name=whole", "train.steps=4"))
    assert_same_weights(weights(tmp_path / "whole"), weights(tmp_path / "r"))


def test_a_checkpoint_whose_state_does_not_fit_is_reported_and_skipped(tmp_path):
    """Regression: a parseable record with a broken state tree gave a KeyError traceback and no fallback."""
    train(tiny(tmp_path, "train.name=r", "train.steps=4"))
    record_path = tmp_path / "r" / "checkpoints" / "step_0000004.json"
    record = json.loads(record_path.read_text())
    del record["state"]["generator"]
    record["record_sha256"] = ckpt._record_hash(record)  # self-consistent, but not a state of this run
    record_path.write_text(json.dumps(record))
    warnings = []
    loaded = load_run(tmp_path / "r", warn=warnings.append)
    assert loaded.step == 2 and len(warnings) == 1
    assert "step_0000004.json does not fit this run (KeyError" in warnings[0]
    result = train(resume_config(tmp_path / "r"), run_dir=tmp_path / "r", resume=True, warn=warnings.append)
    assert result.step == 4 and "step_0000004.json does not fit this run" in warnings[1]
    train(tiny(tmp_path, "train.name=whole", "train.steps=4"))
    assert_same_weights(weights(tmp_path / "whole"), weights(tmp_path / "r"))


def test_train_leaves_the_callers_config_rng_and_switches_alone(tmp_path):
    config = tiny(tmp_path, "train.steps=2")
    before = copy.deepcopy(config)
    torch.manual_seed(1234)
    expected_draw = torch.rand(3)
    torch.manual_seed(1234)
    torch.use_deterministic_algorithms(False)
    train(config, run_dir=tmp_path / "elsewhere")
    assert config == before  # the run folder was given as an argument, not written into the config
    assert torch.equal(torch.rand(3), expected_draw)
    assert not torch.are_deterministic_algorithms_enabled()
    assert (tmp_path / "elsewhere" / "config.yaml").exists()


def test_load_run_leaves_the_callers_rng_alone(tmp_path):
    train(tiny(tmp_path, "train.name=r", "train.steps=2"))
    torch.manual_seed(99)
    expected_draw = torch.rand(3)
    torch.manual_seed(99)
    load_run(tmp_path / "r")
    assert torch.equal(torch.rand(3), expected_draw)


def test_resume_without_run_dir_uses_train_name(tmp_path):
    train(tiny(tmp_path, "train.name=r", "train.steps=2"))
    assert train(tiny(tmp_path, "train.name=r", "train.steps=4"), resume=True).step == 4
    with pytest.raises(ValueError, match="resume=True needs the run folder"):
        train(tiny(tmp_path, "train.steps=4"), resume=True)


def test_a_format_1_run_of_negaug_0_1_resumes_like_an_uninterrupted_run(tmp_path):
    """tests/data/format1_run: 2 steps written by negaug 0.1.0 (commit 0300ad0, flat checkpoint layout).
    Resumed to 4 steps it equals a 4-step run of today's code (jigsaw draws are unchanged)."""
    run = tmp_path / "format1"
    shutil.copytree(Path(__file__).parent / "data" / "format1_run", run)
    warnings = []
    result = train(resume_config(run, ["train.steps=4"]), run_dir=run, resume=True, warn=warnings.append)
    assert result.step == 4 and warnings == []
    fresh = resume_config(run, ["train.steps=4"])
    fresh.train.runs_dir, fresh.train.name = str(tmp_path), "fresh"
    train(fresh)
    (step_a, fresh_state), (step_b, resumed_state) = weights(tmp_path / "fresh"), weights(run)
    # torch's global generator differs (0.1.0 kept it running after weight init; it is reseeded now)
    # and no CPU training op draws from it; everything else is equal, to float rounding: the stored
    # two steps were computed on another CPU, whose kernels round differently in the last bits (3e-8
    # measured); a wrong data order, stream or random draw moves weights by orders of magnitude more
    assert fresh_state.pop("rng.torch").shape == resumed_state.pop("rng.torch").shape
    assert step_a == step_b and fresh_state.keys() == resumed_state.keys()
    for key in fresh_state:
        torch.testing.assert_close(fresh_state[key], resumed_state[key], rtol=1e-5, atol=1e-6, msg=key)


def test_non_finite_loss_stops_with_step_and_term(tmp_path, monkeypatch):
    from negaug import losses

    original = losses.build

    def poisoned(name, **options):
        loss = original(name, **options)
        d_loss = loss.d_loss

        def bad_d_loss(d_real, d_fake, d_neg=None, lam=1.0):
            total, terms = d_loss(d_real, d_fake, d_neg, lam=lam)
            terms = dict(terms)
            first = next(iter(terms))
            terms[first] = terms[first] * float("nan")
            return total * float("nan"), terms

        loss.d_loss = bad_d_loss
        return loss

    monkeypatch.setattr(losses, "build", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"step 1 \(term: "):
        train(tiny(tmp_path, "train.name=nan"))
    assert ckpt.list_steps(tmp_path / "nan" / "checkpoints") == []  # nothing bad saved


def test_load_run_gives_ema_generator_and_discriminator(tmp_path):
    train(tiny(tmp_path, "train.name=r"))
    run = load_run(tmp_path / "r")
    assert run.step == 4 and not run.generator.training and not run.discriminator.training
    z = run.generator.sample_latent(3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = run.generator(z)
        scores = run.discriminator(images)
    assert images.shape == (3, 1, 32, 32) and scores.shape == (3,)
    assert run.reference_dataset("test").images.shape[1:] == (1, 32, 32)


# --- command line ----------------------------------------------------------------------------

def cli(capsys, *args):
    code = main(["train", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("override, expected", [
    ("nda.lamda=0.5", "unknown config key 'nda.lamda'"),
    ("nda.lam=1.5", "nda.lam=1.5 is outside (0, 1]"),
    ("nda.lam=0", "nda.lam=0.0 is outside (0, 1]"),
    ("nda.options.k=3", "jigsaw k=3 must divide the image size"),
    ("data.name=cifar10", "cifar"),
    ("eval.best_metric=kde", "eval.best_metric='kde' is not among the evaluated metrics (fid, kid, is, pr)"),
    ("model.name=dcgann", "did you mean 'dcgan'"),
    ("train.steps=abc", "train.steps: expected int"),
    ("nda.mode=mix", "nda.mode='mix' is not one of weighted, mixture"),
    ("train.diffaugment=color,flip", "train.diffaugment: unknown DiffAugment op 'flip'"),
    ("train.diffaugment=colour", "valid: color, translation, cutout"),
    ("train.diffaugment=", "train.diffaugment: expected str, got None"),
    ("loss.consistency=-1", "loss.consistency=-1.0 must be >= 0"),
    ("loss.consistency=ten", "loss.consistency: expected float"),
])
def test_bad_config_is_one_line_exit_2_before_any_work(tmp_path, capsys, override, expected):
    code, out, err = cli(capsys, *TINY, f"train.runs_dir={tmp_path}", "train.name=bad", override)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("negaug: error:") and expected in lines[0], err
    assert "Traceback" not in err and not (tmp_path / "bad").exists()


def test_dry_run_prints_resolved_config(tmp_path, capsys):
    code, out, err = cli(capsys, "--dry-run", *TINY, "nda.lam=0.5")
    assert code == 0 and "lam: 0.5" in out and "name: mnist5k" in out


def test_cli_trains_and_resumes(tmp_path, capsys):
    code, out, _ = cli(capsys, *TINY, f"train.runs_dir={tmp_path}", "train.name=r", "train.steps=2")
    assert code == 0 and "run folder" in out
    code, _, _ = cli(capsys, "--resume", str(tmp_path / "r"), "train.steps=4")
    assert code == 0 and ckpt.list_steps(tmp_path / "r" / "checkpoints")[-1] == 4
    code, _, err = cli(capsys, "--resume", str(tmp_path / "nothing"))
    assert code == 2 and "nothing does not exist" in err and not (tmp_path / "nothing").exists()
    (tmp_path / "empty").mkdir()
    code, _, err = cli(capsys, "--resume", str(tmp_path / "empty"))
    assert code == 2 and "not a negaug run folder" in err


def test_resume_of_a_missing_folder_says_it_does_not_exist(tmp_path, capsys):
    """Regression (red team): `--resume runs/k2` on a folder that does not exist said "not a negaug
    run folder (no checkpoints/)", as if the folder were there but wrong."""
    for argv in (["train", "--resume"], ["pretrain", "--resume"]):
        from negaug.cli import main
        code = main([*argv, str(tmp_path / "k2")])
        err = capsys.readouterr().err
        assert code == 2 and "k2 does not exist" in err and err.count("\n") == 1


# --- kills and signals (subprocesses) ---------------------------------------------------------

def _spawn(tmp_path, name, *extra):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    args = [sys.executable, "-m", "negaug", "train", *TINY, f"train.runs_dir={tmp_path}", f"train.name={name}", *extra]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_step(run_dir, step, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ckpt.list_steps(run_dir / "checkpoints") and ckpt.list_steps(run_dir / "checkpoints")[-1] >= step:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tmp_path):
    steps = ["train.steps=40", "train.checkpoint_every=5"]
    proc = _spawn(tmp_path, "killed", *steps)
    _wait_for_step(tmp_path / "killed", 10, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = ckpt.list_steps(tmp_path / "killed" / "checkpoints")[-1]
    assert done < 40, "the run finished before the kill; make it longer"
    assert main(["train", "--resume", str(tmp_path / "killed")]) == 0
    assert main(["train", *TINY, f"train.runs_dir={tmp_path}", "train.name=whole", *steps]) == 0
    assert_same_weights(weights(tmp_path / "whole"), weights(tmp_path / "killed"))


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    proc = _spawn(tmp_path, "term", "train.steps=100000", "train.checkpoint_every=1000")
    deadline = time.time() + 120
    while not (tmp_path / "term" / "metrics.jsonl").exists() or not (tmp_path / "term" / "metrics.jsonl").read_text():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err  # 143, as the shell reports a terminated command
    assert "checkpoint saved" in err and "--resume" in err
    steps = ckpt.list_steps(tmp_path / "term" / "checkpoints")
    assert len(steps) == 1 and 0 < steps[0] < 100000


def test_tensorboard_logs_scalars_sample_grids_and_the_config(tmp_path):
    pytest.importorskip("tensorboard")
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny(tmp_path, "train.name=tb", "train.tensorboard=true", "train.steps=3", "train.sample_every=2"))
    events = list((tmp_path / "tb" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    board = EventAccumulator(str(events[0]), size_guidance={"images": 0, "tensors": 0, "scalars": 0}).Reload()
    tags = board.Tags()
    assert [e.step for e in board.Scalars("loss/d")] == [1, 2, 3]
    images = board.Images("samples")
    assert [e.step for e in images] == [2, 3]  # every sample step, and the final grid
    png = Image.open(tmp_path / "tb" / "samples" / "step_0000003.png")
    assert (images[-1].width, images[-1].height) == png.size  # the grid of samples/, enlarged alike
    assert min(png.size) >= 2 * 64 + 3 * 2  # 2 x 2 tiles of >= 64 px, 2 px padding
    assert "config/text_summary" in tags["tensors"]
    (config,) = board.Tensors("config/text_summary")
    text = config.tensor_proto.string_val[0].decode()
    assert "    lam: 0.25" in text and "    steps: 3" in text  # the resolved YAML, as preformatted markdown


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed")
def test_tensorboard_without_the_package_is_refused_before_any_folder(tmp_path):
    with pytest.raises(ValueError, match="needs the tensorboard package"):
        train(tiny(tmp_path, "train.name=tb", "train.tensorboard=true"))
    assert not (tmp_path / "tb").exists()


def _one_generator_step(config, hand: bool = False):
    """(G parameters after one G step, stats) of a freshly built run; `hand`: the plain G step written
    out here (hinge generator loss, Adam), to compare with `generator_step`."""
    from negaug.experiment.build import build
    from negaug.experiment.stats import Stats
    from negaug.experiment.steps import generator_step, sample_generated

    recipe, state = build(config)
    stats = Stats()
    if hand:
        z, labels = sample_generated(recipe, state, recipe.batch_size)
        state.discriminator.requires_grad_(False)
        loss = -state.discriminator(state.generator(z, labels), labels).mean()
        state.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        state.opt_g.step()
    else:
        generator_step(recipe, state, 1, stats)
    return [p.detach().clone() for p in state.generator.parameters()], stats.collect(), state


def test_ortho_reg_zero_leaves_the_generator_step_bit_identical(tmp_path):
    after, stats, _ = _one_generator_step(tiny(tmp_path))
    by_hand, _, _ = _one_generator_step(tiny(tmp_path), hand=True)
    assert all(torch.equal(a, b) for a, b in zip(after, by_hand))
    assert "loss/ortho" not in stats and "loss/g" in stats


def test_ortho_reg_adds_the_orthogonal_penalty_to_the_generator_loss(tmp_path):
    from negaug.experiment.build import build
    from negaug.models import orthogonal_penalty

    _, state = build(tiny(tmp_path))
    expected = float(orthogonal_penalty(state.generator).detach())  # G's weights before the step
    plain, plain_stats, _ = _one_generator_step(tiny(tmp_path))
    after, stats, _ = _one_generator_step(tiny(tmp_path, "optim.ortho_reg=10.0"))
    assert stats["loss/ortho"] == pytest.approx(expected, rel=1e-6) and expected > 0
    assert stats["loss/g"] == pytest.approx(plain_stats["loss/g"], rel=1e-6)  # loss/g stays the GAN loss
    assert not all(torch.equal(a, b) for a, b in zip(after, plain))


@pytest.mark.parametrize("value", ["-1e-4", "nan", "inf"])
def test_ortho_reg_must_be_finite_and_non_negative(tmp_path, value):
    from negaug.experiment.build import build

    with pytest.raises(ValueError, match="optim.ortho_reg"):
        build(tiny(tmp_path, f"optim.ortho_reg={value}"))
