"""train.compile=true (nn.Module.compile of G and D) learns what eager training learns: the same
losses and weights after a few steps, the same checkpoint keys; refused with gradient penalties."""
import json
from pathlib import Path

import pytest
import torch

from negaug.experiment import checkpoint as ckpt
from negaug.experiment import load_config, train
from negaug.experiment.config import learning_settings

# the 2-D ring MLP without its R1 penalty (torch.compile cannot double-backward), with an EMA
RING = ["loss.r1_penalty=0", "train.steps=4", "train.progress=false", "train.log_every=1", "train.sample_every=0",
        "train.checkpoint_every=0", "train.device=cpu", "train.ema_decay=0.9", "train.ema_start=2",
        "data.batch_size=64", "train.num_sample_images=4"]


def _run(tmp_path: Path, compiled: bool) -> tuple[list[dict], dict]:
    name = "compiled" if compiled else "eager"
    config = load_config("ring", [*RING, f"train.runs_dir={tmp_path}", f"train.name={name}",
                                  f"train.compile={str(compiled).lower()}"])
    train(config)
    log = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    state = ckpt.load_latest(tmp_path / name / "checkpoints").state
    return [entry for entry in log if "loss/d" in entry], state


def _tensors(tree, path=""):
    if isinstance(tree, torch.Tensor):
        return {path: tree}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else []
    return {k: v for key, value in items for k, v in _tensors(value, f"{path}.{key}" if path else str(key)).items()}


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    eager_log, eager_state = _run(tmp_path, False)
    compiled_log, compiled_state = _run(tmp_path, True)
    assert [e["step"] for e in compiled_log] == [1, 2, 3, 4]
    for eager, compiled in zip(eager_log, compiled_log):
        for key in ("loss/d", "loss/d_real", "loss/d_fake", "loss/d_neg", "loss/g"):
            assert compiled[key] == pytest.approx(eager[key], rel=1e-5, abs=1e-6), (eager["step"], key)
    eager_tensors, compiled_tensors = _tensors(eager_state), _tensors(compiled_state)
    assert compiled_tensors.keys() == eager_tensors.keys()  # no "_orig_mod." prefixes: checkpoints interchange
    assert any(key.startswith("ema") for key in eager_tensors)
    for key, value in eager_tensors.items():
        if value.is_floating_point():
            torch.testing.assert_close(compiled_tensors[key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_compile_with_a_gradient_penalty_is_refused_before_training(tmp_path):
    config = load_config("ring", [*RING[1:], "loss.r1_penalty=0.1", "train.compile=true",
                                  f"train.runs_dir={tmp_path}", "train.name=r"])
    with pytest.raises(ValueError, match="train.compile=true cannot be combined with loss.r1_penalty=0.1"):
        train(config)


def test_compile_off_leaves_the_learning_settings_unchanged():
    """Cached reproduction runs are named by a hash of these settings: compile=false must not enter it."""
    off = learning_settings(load_config("default", ["train.compile=false"]))
    on = learning_settings(load_config("default", ["train.compile=true"]))
    assert "compile" not in off["train"] and on["train"]["compile"] is True


def test_compile_reaches_the_members_of_a_mixture_regression_silent_no_op(tmp_path):
    """Regression (red team): with model.mixture > 1 the mixture wrappers were compiled, but the
    MIX+GAN steps call the members, so training ran eager while the run said compile=true."""
    from negaug.experiment.build import build

    config = load_config("ring", ["model.mixture=2", "loss.r1_penalty=0", "train.compile=true", "train.device=cpu",
                                  f"train.runs_dir={tmp_path}"])
    _, state = build(config)
    for network in (state.generator, state.discriminator):
        assert all(member._compiled_call_impl is not None for member in network.members)


# Pix2Pix (issue 24): train.compile compiles its G and D through the same helper (build.compile_in_place)
PIX2PIX = ["data.batch_size=4", "data.options={num_samples: 24}", "model.width=4", "train.steps=3",
           "train.progress=false", "train.log_every=1", "train.sample_every=0", "train.checkpoint_every=0",
           "train.num_sample_images=2", "train.device=cpu", "eval.num_samples=8", "nda.transform=jigsaw",
           "model.dropout=0"]  # dropout: compiled code draws its masks from another generator than eager


def _pix2pix_run(tmp_path: Path, compiled: bool):
    from negaug.experiment.translate import load_translation_run, train_translation
    from negaug.experiment.translate_config import load_translation_config

    name = "compiled" if compiled else "eager"
    train_translation(load_translation_config("pix2pix-scenes", [*PIX2PIX, f"train.runs_dir={tmp_path}",
                                                                 f"train.name={name}",
                                                                 f"train.compile={str(compiled).lower()}"]))
    log = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return [entry for entry in log if "loss/d" in entry], load_translation_run(tmp_path / name)


@pytest.mark.slow
def test_compiled_pix2pix_learns_what_eager_learns(tmp_path):
    """3 steps: the same losses at every step (measured: 1e-7 relative) and the same G and D
    functions after them. The networks are compared by their outputs, not weight by weight: a conv
    bias before an instance norm has a gradient of zero up to round-off, whose sign Adam's first
    steps turn into +-lr (up to 7e-4 apart after 3 steps), without any effect on the outputs."""
    from negaug.experiment.translate_build import build_paired_split

    eager_log, eager = _pix2pix_run(tmp_path, False)
    compiled_log, compiled = _pix2pix_run(tmp_path, True)
    assert [e["step"] for e in compiled_log] == [1, 2, 3]
    for a, b in zip(eager_log, compiled_log):
        for key in ("loss/d", "loss/g", "loss/l1", "loss/d_real", "loss/d_fake", "loss/d_neg"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (a["step"], key)
    eager_state = ckpt.load_latest(tmp_path / "eager" / "checkpoints").state
    compiled_state = ckpt.load_latest(tmp_path / "compiled" / "checkpoints").state
    assert _tensors(compiled_state).keys() == _tensors(eager_state).keys()  # no "_orig_mod." prefixes
    conditions, targets = build_paired_split(eager.config, "test").get_batch(torch.arange(4))
    with torch.no_grad():
        outputs = [run.generator(conditions) for run in (eager, compiled)]
        torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)
        assert not torch.equal(outputs[0], torch.zeros_like(outputs[0]))
    scores = [patch_scores_of(state, eager.config, targets, conditions) for state in (eager_state, compiled_state)]
    torch.testing.assert_close(scores[1], scores[0], rtol=1e-4, atol=1e-5)


def patch_scores_of(state: dict, config, targets: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
    """The patch scores of the checkpoint's D (eval mode) on (targets, conditions)."""
    from negaug.experiment.translate_build import build_translation

    with torch.random.fork_rng(devices=[]):
        _, fresh = build_translation(config)
    fresh.discriminator.load_state_dict(state["discriminator"])
    with torch.no_grad():
        return fresh.discriminator.eval()(targets, conditions)


def test_pix2pix_compile_compiles_g_and_d_in_place(tmp_path):
    """Regression guard (as for MIX+GAN): train.compile=true must reach the networks the step calls."""
    from negaug.experiment.translate_build import build_translation
    from negaug.experiment.translate_config import load_translation_config

    for compiled in (False, True):
        config = load_translation_config("pix2pix-scenes", [*PIX2PIX, f"train.compile={str(compiled).lower()}"])
        _, state = build_translation(config)
        for network in (state.generator, state.discriminator):
            assert (network._compiled_call_impl is not None) == compiled
            assert not any(key.startswith("_orig_mod") for key in network.state_dict())


def _pretrain_config(tmp_path: Path, compiled: bool):
    from negaug.experiment.pretrain_config import load_pretrain_config
    from test_pretrain import TINY

    name = "compiled" if compiled else "eager"
    return load_pretrain_config("mnist", [*TINY, "train.steps=3", "train.log_every=1", "train.knn_every=0",
                                          "train.checkpoint_every=0", f"train.runs_dir={tmp_path}", f"train.name={name}",
                                          f"train.compile={str(compiled).lower()}"])


def test_pretrain_compile_compiles_both_encoders_and_heads_in_place(tmp_path):
    """Regression guard (as for MIX+GAN and Pix2Pix): train.compile=true must reach the networks
    MoCo-v2's step calls, and leave the checkpoint keys and the config hash of runs without it alone."""
    from negaug.experiment.pretrain_build import build_pretraining

    for compiled in (False, True):
        config = _pretrain_config(tmp_path, compiled)
        _, state = build_pretraining(config)
        model = state.model
        for network in (model.encoder_q, model.head_q, model.encoder_k, model.head_k):
            assert (network._compiled_call_impl is not None) == compiled
        assert not any("_orig_mod" in key for key in model.state_dict())
    # off, the key is left out of what decides the model (cached runs keep their hash); on, it is in
    assert "compile" not in learning_settings(_pretrain_config(tmp_path, False))["train"]
    assert learning_settings(_pretrain_config(tmp_path, True))["train"]["compile"] is True


@pytest.mark.slow
def test_compiled_pretraining_learns_what_eager_learns(tmp_path):
    """3 MoCo-v2 steps with jigsaw NDA: the same losses at every step and the same query-encoder
    features after them (tolerances two-sided: equal up to float rounding, not bit-equal)."""
    from negaug.contrastive import dataset_features
    from negaug.experiment.pretrain import pretrain
    from negaug.experiment.probe import load_pretrained

    logs, encoders = [], []
    for compiled in (False, True):
        result = pretrain(_pretrain_config(tmp_path, compiled))
        logs.append([json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
                     if '"loss"' in line])
        _, model, _, dataset = load_pretrained(result.run_dir, "latest", torch.device("cpu"), None, None, False)
        encoders.append(dataset_features(model.encoder_q, dataset, 256, torch.device("cpu"))[:64])
    assert [e["step"] for e in logs[1]] == [1, 2, 3]
    for a, b in zip(*logs):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6), a["step"]
    torch.testing.assert_close(encoders[1], encoders[0], rtol=1e-4, atol=1e-5)
    assert not torch.equal(encoders[0], torch.zeros_like(encoders[0]))
