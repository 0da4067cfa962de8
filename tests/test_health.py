"""The training-health monitor: exact triggers on hand-made log lines, no false alarm on healthy ones."""
import torch
from PIL import Image

from negaug.experiment import load_config, train
from negaug.experiment.health import (
    ENCODER_HEALTHY,
    EncoderHealth,
    HealthMonitor,
    health_section,
    mean_pairwise_distance,
)
from negaug.experiment.pretrain import pretrain
from negaug.experiment.pretrain_config import load_pretrain_config
from negaug.experiment.runs import read_metrics


def record(step, d_real=0.5, d_fake=0.6, generated=-0.2, generated_g_step=-0.1):
    return {"step": step, "loss/d_real": d_real, "loss/d_fake": d_fake, "d_out/generated": generated,
            "d_out/generated_g_step": generated_g_step}


def test_healthy_log_lines_raise_no_warning():
    monitor = HealthMonitor()
    assert all(monitor.check_log(record(step)) == [] for step in range(100, 5000, 100))


def test_d_at_its_floor_warns_once_after_floor_steps_and_a_recovery_resets_the_clock():
    monitor = HealthMonitor(floor_steps=500)
    at_floor = {step: monitor.check_log(record(step, 0.001, 0.004)) for step in range(100, 700, 100)}
    assert [step for step, found in at_floor.items() if found] == [600]  # 600 - 100 = 500 steps at the floor
    assert "D has beaten G for 500 steps" in at_floor[600][0]
    assert monitor.check_log(record(700, 0.001, 0.004)) == []  # once
    fresh = HealthMonitor(floor_steps=500)
    fresh.check_log(record(100, 0.001, 0.004))
    fresh.check_log(record(400, 0.5, 0.5))  # recovered: the clock restarts
    assert [s for s in (500, 800, 900, 1000) if fresh.check_log(record(s, 0.001, 0.004))] == [1000]  # 1000 - 500


def test_negative_loss_terms_have_no_floor():
    monitor = HealthMonitor(floor_steps=100)
    assert all(monitor.check_log(record(step, -5.0, -4.0)) == [] for step in range(100, 2000, 100))


def test_generated_images_scored_apart_in_the_two_steps_warn():
    assert HealthMonitor().check_log(record(10, generated=-3.0, generated_g_step=3.0))  # the batch-norm collapse
    assert HealthMonitor().check_log(record(10, generated=-0.2, generated_g_step=0.3)) == []  # close
    assert HealthMonitor().check_log(record(10, generated=2.0, generated_g_step=5.0)) == []  # same sign


def test_collapsed_samples_warn_after_warm_up_and_diverse_ones_do_not():
    real = torch.rand(16, 1, 8, 8)
    monitor = HealthMonitor(collapse_after=500)
    monitor.set_real(real)
    collapsed = real[:1].repeat(16, 1, 1, 1) + 0.001 * torch.rand(16, 1, 8, 8)
    assert monitor.check_samples(100, collapsed) == []  # an untrained G is allowed to look collapsed
    assert monitor.check_samples(600, real.flip(0)) == []
    assert "samples collapsed" in monitor.check_samples(600, collapsed)[0]


def test_mean_pairwise_distance_by_hand():
    points = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    assert abs(mean_pairwise_distance(points) - (5 + 5 + 0) * 2 / 6) < 1e-6


def test_a_run_reports_its_health_and_curves(tmp_path):
    config = load_config("default", ["data.batch_size=8", "data.options.classes=[0, 1]", "model.options.width=4",
                                     "train.steps=6", "train.log_every=2", "train.progress=false", "train.device=cpu",
                                     f"train.runs_dir={tmp_path}", "train.name=r"])
    train(config)
    report = (tmp_path / "r" / "report.md").read_text()
    assert "## Health (this session)" in report and "- no warning" in report
    for name in ("curves_losses.png", "curves_d_outputs.png"):
        assert f"]({name})" in report and Image.open(tmp_path / "r" / name).format == "PNG"
    assert not any("warning" in r for r in read_metrics(tmp_path / "r"))


# --- runs without a discriminator (MoCo-v2, DPC) ---------------------------------------------------------


def test_encoder_loss_that_has_not_fallen_by_stall_after_warns_once():
    health = EncoderHealth(judge_after=300)
    assert health.check_log({"step": 20, "loss": 6.0}) == []
    assert health.check_log({"step": 200, "loss": 5.99}) == []  # too early to judge
    found = health.check_log({"step": 300, "loss": 5.9})  # 5.9 >= 0.98 * 6.0 = 5.88
    assert len(found) == 1 and "has not fallen (6.000 at the first log line, 5.900 now)" in found[0]
    assert health.check_log({"step": 320, "loss": 5.95}) == []  # once


def test_encoder_loss_that_fell_by_more_than_two_percent_is_healthy():
    health = EncoderHealth(judge_after=300)
    assert health.check_log({"step": 20, "loss": 6.0}) == []
    assert health.check_log({"step": 300, "loss": 5.87}) == []  # below 5.88
    assert health.check_log({"step": 400, "loss": 3.5, "queue_similarity": 0.05}) == []


def test_collapsed_embeddings_warn_and_a_healthy_negative_similarity_does_not():
    assert EncoderHealth().check_log({"step": 300, "queue_similarity": 0.8}) == []  # at the bound
    assert EncoderHealth().check_log({"step": 280, "queue_similarity": 0.93}) == []  # untrained: alike
    found = EncoderHealth().check_log({"step": 300, "queue_similarity": 0.93})
    assert len(found) == 1 and "embeddings collapsed" in found[0] and "0.93" in found[0]


def test_knn_near_chance_warns_and_above_one_and_a_half_times_chance_does_not():
    assert EncoderHealth().check_knn(200, 0.16, num_classes=10) == []
    found = EncoderHealth().check_knn(200, 0.14, num_classes=10)
    assert len(found) == 1 and "near chance (0.100)" in found[0]
    assert EncoderHealth().check_knn(200, 0.0, num_classes=0) == []  # no labels, no chance level


def health_warnings(run_dir) -> list[str]:
    """The run's warnings but the step-pace one (a loaded machine may slow any run's steps)."""
    return [r["warning"] for r in read_metrics(run_dir) if "warning" in r and "slower than this run's" not in r["warning"]]


def test_a_pretraining_run_that_cannot_learn_warns_in_its_metrics_and_a_learning_one_does_not(tmp_path):
    from test_pretrain import TINY  # the tiny MoCo-v2 settings of the pretraining tests
    base = [*TINY, "train.steps=320", "train.log_every=20", "train.checkpoint_every=0", "train.knn_every=0",
            f"train.runs_dir={tmp_path}"]
    frozen = pretrain(load_pretrain_config("mnist", [*base, "optim.lr=1e-9", "train.name=frozen"]))
    warnings = health_warnings(frozen.run_dir)
    # an encoder that never moved: its loss has not fallen, and its embeddings sit close together
    assert len(warnings) == 2 and "the loss has not fallen" in warnings[0] and "collapsed" in warnings[1]
    health = (frozen.run_dir / "report.md").read_text().split("## Health (this session)")[1].split("## ")[0]
    assert "- step 300: the loss has not fallen" in health and "- step 300: the embeddings collapsed" in health
    learning = pretrain(load_pretrain_config("mnist", [*base, "train.name=learning"]))
    assert health_warnings(learning.run_dir) == []
    report = (learning.run_dir / "report.md").read_text()
    assert "## Health (this session)" in report and "has not fallen" not in report and "collapsed" not in report


def test_health_section_lists_the_warnings_or_says_what_was_checked():
    assert health_section([], ENCODER_HEALTHY) == ["", "## Health (this session)", "", f"- no warning: {ENCODER_HEALTHY}"]
    assert health_section(["a", "b"], "unused") == ["", "## Health (this session)", "", "- a", "- b"]


# --- review regressions --------------------------------------------------------------------------


def test_resumed_encoder_run_is_not_told_its_trained_loss_has_not_fallen_regression():
    """A session resumed past step 300 took its first logged (already trained) loss as the yardstick
    and compared that very record with itself: every resumed MoCo-v2 / DPC run was told at its
    first log line that "the encoder is not learning"."""
    resumed = EncoderHealth(judge_after=300, start_step=5000)
    assert resumed.check_log({"step": 5020, "loss": 1.0}) == []
    assert resumed.check_log({"step": 5400, "loss": 0.995}) == []  # a converged loss: no judgement
    fresh = EncoderHealth(judge_after=300)  # start_step 0: the run's own first loss is the yardstick
    assert fresh.check_log({"step": 20, "loss": 6.0}) == []
    assert len(fresh.check_log({"step": 300, "loss": 5.9})) == 1


def test_the_first_log_line_is_never_judged_against_itself_regression():
    """log_every >= judge_after: the first record (step 500) was its own yardstick and warned at once."""
    health = EncoderHealth(judge_after=300)
    assert health.check_log({"step": 500, "loss": 2.0}) == []
    found = health.check_log({"step": 1000, "loss": 1.99})  # judged against step 500's loss
    assert len(found) == 1 and "(2.000 at the first log line, 1.990 now)" in found[0]


def test_d_floor_advice_names_the_fix_of_the_run_kind_regression():
    """Pix2Pix has neither spectral norm nor a gradient penalty; its D-floor warning named both."""
    record = {"step": 10, "loss/d_real": 0.001, "loss/d_fake": 0.001}
    gan = HealthMonitor(floor_steps=0).check_log(record)
    assert len(gan) == 1 and "add spectral norm or a gradient penalty" in gan[0]
    pix2pix = HealthMonitor(floor_steps=0, floor_fix="lower optim.lr_d or loss.d_scale").check_log(record)
    assert len(pix2pix) == 1 and pix2pix[0].endswith("lower optim.lr_d or loss.d_scale")
    assert "spectral" not in pix2pix[0]
