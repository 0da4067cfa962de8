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
