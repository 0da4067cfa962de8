"""The discriminator contract: every registered D declares whether its scores depend on the batch,
and training calls D in one function (`negaug.experiment.steps.score`) that honours the declaration."""
import pytest
import torch
from torch.nn.utils import parametrize

from negaug import models
from negaug.experiment import train
from negaug.experiment.build import build
from negaug.experiment.config import load_config
from negaug.experiment.steps import score
from negaug.models.base import has_batch_statistics, is_batch_dependent

# (model name, options, image size, channels) for every registered model, at a tiny width;
# a model added to the registry without an entry here fails `test_every_model_is_covered`.
MINIBATCH = {"minibatch_discrimination": 3, "minibatch_kernel_dim": 2}  # batch-dependent by design
VARIANTS = {
    "mlp": [{}, MINIBATCH],
    "dcgan": [{}, {"spectral_norm": True}, {"d_batch_norm": False}, {"spectral_norm": True, **MINIBATCH}],
    "sngan_resnet": [{}, {"spectral_norm": False}, MINIBATCH],
    "biggan": [{}, {"spectral_norm": False, "attention": 8}],
}
SHAPES = {"mlp": (None, None), "dcgan": (16, 3), "sngan_resnet": (16, 3), "biggan": (32, 3)}
CASES = [(name, options, num_classes) for name, variants in VARIANTS.items() for options in variants for num_classes in (0, 3)]


def test_every_model_is_covered():
    assert sorted(VARIANTS) == sorted(models.names())


def _build(name, options, num_classes):
    image_size, channels = SHAPES[name]
    width = {"mlp": {"width": 8}, "dcgan": {"width": 4}, "sngan_resnet": {"width": 4}, "biggan": {"width": 2}}[name]
    torch.manual_seed(0)
    _, D = models.build(name, image_size=image_size, channels=channels, num_classes=num_classes, **width, **options)
    shape = (2,) if image_size is None else (channels, image_size, image_size)
    return D, shape


@pytest.mark.parametrize("name,options,num_classes", CASES)
def test_declaration_matches_behaviour(name, options, num_classes):
    D, shape = _build(name, options, num_classes)
    assert isinstance(D.batch_dependent, bool)
    assert D.batch_dependent == has_batch_statistics(D)
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, *shape, generator=g), 3 * torch.randn(5, *shape, generator=g) + 1
    ya, yb = (torch.randint(max(num_classes, 1), (n,), generator=g) for n in (6, 5))
    ya, yb = (ya, yb) if num_classes else (None, None)
    D.train()
    with torch.no_grad(), parametrize.cached():  # one spectral-norm power iteration for all calls
        together = D(torch.cat([a, b]), None if ya is None else torch.cat([ya, yb]))
        apart = torch.cat([D(a, ya), D(b, yb)])
    if D.batch_dependent:
        assert not torch.allclose(together, apart, atol=1e-4), "declared batch-dependent but scores per sample"
    else:
        torch.testing.assert_close(together, apart, rtol=1e-5, atol=1e-5)


class Recorder(torch.nn.Module):
    """Wraps a D and records the batch size of every call."""

    def __init__(self, inner, declared):
        super().__init__()
        self.inner, self.calls = inner, []
        if declared is not None:
            self.batch_dependent = declared

    def forward(self, x, y=None):
        self.calls.append(x.shape[0])
        return self.inner(x, y)


@pytest.mark.parametrize("declared", [True, False, None])
def test_score_calls_a_batch_dependent_d_once_per_kind(tmp_path, declared):
    config = load_config("default", ["data.options.classes=[0, 1]", "model.options.width=4", "train.device=cpu",
                                     "model.options.spectral_norm=false"])
    recipe, state = build(config)
    discriminator = Recorder(state.discriminator, declared)
    real, fake, neg = (torch.rand(n, 1, 32, 32) * 2 - 1 for n in (4, 3, 2))
    scores = score(recipe, discriminator, [(real, None), (fake, None), (neg, None)])
    assert [s.shape[0] for s in scores] == [4, 3, 2]
    expected_dependent = True if declared is None else declared  # None: found by its batch norm
    assert is_batch_dependent(discriminator) == expected_dependent
    assert discriminator.calls == ([4, 3, 2] if expected_dependent else [9])


def d_call_sizes(tmp_path, monkeypatch, *overrides) -> list[int]:
    """The batch size of every call of a batch-norm DCGAN D in a tiny default-preset run."""
    config = load_config("default", ["data.options.classes=[0, 1]", "model.options.width=4", "train.device=cpu",
                                     "model.options.spectral_norm=false", "data.batch_size=8", "train.progress=false",
                                     "train.sample_every=0", f"train.runs_dir={tmp_path}", "train.name=r", *overrides])
    sizes = []
    original = models.dcgan.DCGANDiscriminator.forward
    monkeypatch.setattr(models.dcgan.DCGANDiscriminator, "forward",
                        lambda self, x, y=None: (sizes.append(x.shape[0]), original(self, x, y))[1])
    train(config)
    return sizes


@pytest.mark.parametrize("mode", ["weighted", "mixture"])
def test_batch_norm_d_never_sees_mixed_batches_in_training(tmp_path, monkeypatch, mode):
    """Regression (batch-norm collapse): in both steps, each D call holds one kind of sample."""
    sizes = d_call_sizes(tmp_path, monkeypatch, "train.steps=2", f"nda.mode={mode}", "nda.lam=0.25")
    # D step: real, generated, negatives (mixture: lam = 0.25 of a fake batch of 8 is generated); G step
    per_step = [8, 8, 8, 8] if mode == "weighted" else [8, 2, 6, 8]
    assert sizes == per_step * 2


def test_batch_norm_mixture_members_never_see_mixed_batches(tmp_path, monkeypatch):
    """The D contract for MIX+GAN (model.mixture=2): every D_j call holds one kind of sample."""
    sizes = d_call_sizes(tmp_path, monkeypatch, "train.steps=1", "model.mixture=2")
    # D step: per D_j real, negatives, 2 generated; G step: per D_j 2 generated -> 12 calls of 8
    assert sizes == [8] * 12


@pytest.mark.parametrize("penalty", ["loss.name=wgan-gp", "loss.r1_penalty=1"])
def test_penalties_on_a_batch_dependent_d_are_refused_before_any_work(tmp_path, penalty):
    config = load_config("default", ["model.options.spectral_norm=false", penalty, f"train.runs_dir={tmp_path}"])
    with pytest.raises(ValueError, match=r"batch norm; set model.options.spectral_norm=true"):
        train(config)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("mode", ["weighted", "mixture"])
def test_penalties_run_on_a_per_sample_d(tmp_path, mode):
    config = load_config("default", ["data.options.classes=[0, 1]", "model.options.width=4", "train.device=cpu",
                                     "model.options.d_batch_norm=false", "loss.name=wgan-gp", "data.batch_size=8",
                                     "train.steps=2", "train.progress=false", f"train.runs_dir={tmp_path}",
                                     "train.name=r", f"nda.mode={mode}", "loss.r1_penalty=1"])
    result = train(config)
    assert result.step == 2 and result.last_log["loss/gradient_penalty"] > 0 and result.last_log["loss/r1"] > 0
