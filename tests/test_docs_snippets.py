"""Every Python snippet in docs/*.md runs as written, given the objects its text says it takes
(a discriminator D, a generator G, images x...), built here at a tiny size."""
import re
from pathlib import Path

import pytest
import torch

from negaug import anomaly, models

DOCS = Path(__file__).resolve().parents[1] / "docs"


def blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), re.S)


@pytest.fixture
def context(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets that write files write here
    monkeypatch.setenv("NEGAUG_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    G, D = models.build("dcgan", image_size=32, channels=3, width=4)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1
    return {"G": G, "D": D, "g": g, "x": x, "y": None, "step": 1, "images": x, "z": G.sample_latent(8, generator=g),
            "x_fake": G(G.sample_latent(8, generator=g)), "x_neg": x.flip(-1)}


def test_every_docs_page_with_python_is_covered():
    covered = {"anomaly.md", "data.md", "evaluation.md", "models.md", "nda.md", "training.md",
               "contrastive.md", "pix2pix.md"}  # contrastive.md: tests/test_contrastive_readme.py; pix2pix.md: tests/test_pix2pix.py
    assert {p.name for p in DOCS.glob("*.md") if blocks(p.name)} == covered


@pytest.mark.parametrize("page", ["data.md", "models.md", "nda.md"])
def test_snippet_runs(page, context):
    for block in blocks(page):
        exec(block, context)


def test_anomaly_snippet_runs(context):
    results, diffs = anomaly.evaluate(context["D"], context["x"], "noise/uniform,nda/jigsaw")
    scores = anomaly.score(context["D"], context["x"])
    context.update(scores_in=scores, scores_out=scores + 1, diffs_a=diffs, diffs_b=diffs,
                   results_a=results, results_b=results)
    (block,) = blocks("anomaly.md")
    exec(block, context)
    assert (Path.cwd() / "hist.png").is_file()


@pytest.mark.slow
def test_evaluation_snippet_runs(context):
    (block,) = blocks("evaluation.md")
    exec(block, {**context, "G": models.build("dcgan", image_size=32, channels=1, width=4)[0]})


def test_training_snippet_runs(context):
    """As written but 2 steps instead of 500, in the test's folder."""
    block, mixgan = blocks("training.md")
    block = block.replace('"train.steps=500"', '"train.steps=2", "train.progress=false"')
    assert "train.steps=2" in block
    exec(block, context)
    assert context["run"].step == 2
    mixgan = mixgan.replace("range(400)", "range(3)")  # the MIX+GAN example, 3 steps instead of 400
    assert "range(3)" in mixgan
    exec(mixgan, context)
    assert context["points"].shape == (2000, 2) and set(context["component"].tolist()) <= {0, 1, 2}
