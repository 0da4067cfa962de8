"""The scripts in examples/ run end to end (at a tiny size) and print what they promise."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str, tmp_path: Path, stderr: list[str] | None = None) -> str:
    env = {**os.environ, "NEGAUG_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    if stderr is not None:
        stderr.append(done.stderr)
    return done.stdout


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == [
        "evaluate_your_generator.py", "nda_in_your_gan_loop.py", "train_on_your_image_folder.py"]


@pytest.mark.slow  # runs the example end to end in a subprocess
def test_nda_in_your_gan_loop(tmp_path):
    out = run_example("nda_in_your_gan_loop.py", "--out", str(tmp_path / "out"), "--steps", "3",
                      "--eval-samples", "0", tmp_path=tmp_path)
    assert "step 3: d_loss" in out and (tmp_path / "out" / "samples.png").stat().st_size > 1000


@pytest.mark.slow  # runs the example end to end in a subprocess
def test_evaluate_your_generator_ranks_real_above_negatives_above_noise(tmp_path):
    err = []
    out = run_example("evaluate_your_generator.py", "--dataset", "digits", tmp_path=tmp_path, stderr=err)
    assert "training feature classifier" in err[0]  # never silent while the classifier trains
    fid = {name.strip(): float(value) for name, value in re.findall(r"^\s*(.+?): FID\s+([\d.]+)", out, re.M)}
    assert fid["real training images"] < fid["jigsaw negatives"] < fid["untrained network"], out
    assert "trained on the reference's training split" in out and "reference digits/test, 359 vs 359" in out


@pytest.mark.slow  # runs the example end to end in a subprocess
def test_train_on_your_image_folder(tmp_path):
    out = run_example("train_on_your_image_folder.py", "--out", str(tmp_path / "out"), "--steps", "3",
                      tmp_path=tmp_path)
    assert len(list((tmp_path / "out" / "images" / "faces").glob("*.png"))) == 100
    assert (tmp_path / "out" / "run" / "report.md").is_file()
    assert re.search(r"kde: -?[\d.]+ nats \(1000 samples, reference image_folder/test with 20 held-out images\)", out), out
