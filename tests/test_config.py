"""The typed, strict configuration: presets, overrides, errors that name the key."""
import pytest
import yaml

from negaug.experiment.config import Config, config_from_dict, load_config, parse_override, preset_names


def test_default_preset_is_the_cpu_recipe():
    cfg = load_config()
    assert (cfg.data.name, cfg.model.name, cfg.loss.name, cfg.nda.transform) == ("mnist5k", "dcgan", "hinge", "jigsaw")
    assert cfg.nda.lam == 0.75 and cfg.nda.options == {"k": 2}  # chosen on validation (results/lambda)
    assert cfg.preset == "default"


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_resolves(name):
    cfg = load_config(name)
    assert isinstance(cfg, Config)
    assert 0 < cfg.nda.lam <= 1


def test_paper_presets_follow_appendix_k():
    c10, c100 = load_config("cifar10"), load_config("cifar100")
    assert (c10.data.batch_size, c10.optim.num_d_steps, c10.optim.lr_g, c10.optim.lr_d) == (64, 4, 2e-4, 2e-4)
    assert (c10.optim.beta1, c10.optim.beta2) == (0.0, 0.999)
    assert c10.nda.lam == 0.25 and c100.nda.lam == 0.5  # Table 2 / FACTS
    assert c100.data.name == "cifar100" and c100.model.name == c10.model.name  # base preset inherited


@pytest.mark.parametrize("name,image_size,fid_samples", [("cifar10", None, 10000), ("cifar100", None, 10000),
                                                         ("stl10", 32, 8000), ("celeba64", 64, 19962)])
def test_paper_presets_train_the_authors_biggan(name, image_size, fid_samples):
    cfg = load_config(name)
    assert cfg.model.name == "biggan" and cfg.data.image_size == image_size  # None: the data's own 32 px
    options = cfg.model.options
    assert (options["width"], options["latent_dim"], options["attention"]) == (64, 128, 0)
    # train_C10.sh: N02 init, SN in G and D, G_ortho 0, no --G_shared / --hier
    assert options["init"] == "normal" and options["spectral_norm"] and options["g_spectral_norm"]
    assert not options["hierarchical"] and not options["shared_embedding"] and cfg.optim.ortho_reg == 0.0
    assert (cfg.train.ema_decay, cfg.train.ema_start) == (0.9999, 1000)
    assert (cfg.eval.num_samples, cfg.eval.best_metric) == (fid_samples, "fid")


def test_overrides_are_typed_and_nested():
    cfg = load_config("default", ["nda.lam=0.5", "train.steps=7", "nda.options.k=4", "train.tensorboard=true"])
    assert cfg.nda.lam == 0.5 and isinstance(cfg.nda.lam, float)
    assert cfg.train.steps == 7 and cfg.nda.options == {"k": 4}
    assert cfg.train.tensorboard is True
    assert load_config("default", ["nda.lam=1"]).nda.lam == 1.0  # an int is a valid float


def test_parse_override_shape():
    assert parse_override("a.b.c=[1, 2]") == {"a": {"b": {"c": [1, 2]}}}
    with pytest.raises(ValueError, match="section.key=value"):
        parse_override("train.steps")
    with pytest.raises(ValueError, match="section.key"):
        parse_override("steps=3")


def test_unknown_key_names_the_nearest_valid_one():
    with pytest.raises(ValueError, match=r"unknown config key 'nda.lamda'.*did you mean 'lam'"):
        load_config("default", ["nda.lamda=0.5"])
    with pytest.raises(ValueError, match=r"unknown config key 'trian'.*did you mean 'train'"):
        load_config("default", ["trian.steps=3"])


def test_wrong_type_names_the_key():
    with pytest.raises(ValueError, match=r"train.steps: expected int, got 'many'"):
        load_config("default", ["train.steps=many"])
    with pytest.raises(ValueError, match=r"nda.lam: expected float"):
        load_config("default", ["nda.lam=true"])


def test_unknown_preset_and_missing_file():
    with pytest.raises(ValueError, match=r"unknown preset 'cifar1'.*did you mean"):
        load_config("cifar1")
    with pytest.raises(FileNotFoundError, match="config file 'nope.yaml' not found"):
        load_config("nope.yaml")


def test_yaml_file_with_base_and_round_trip(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: default\nnda: {lam: 0.5}\n")
    cfg = load_config(str(path), ["train.seed=3"])
    assert cfg.nda.lam == 0.5 and cfg.train.seed == 3 and cfg.data.name == "mnist5k"
    again = config_from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


def test_exponent_floats_without_a_dot_are_floats():
    """YAML 1.1 would read `1e-4` as a string; people type it that way."""
    cfg = load_config("default", ["optim.lr_g=1e-4", "optim.lr_d=2E-3"])
    assert cfg.optim.lr_g == 1e-4 and cfg.optim.lr_d == 2e-3
    assert parse_override("a.b=e5") == {"a": {"b": "e5"}}
