"""The "NDA in your own MoCo or SimCLR loop" snippet of docs/contrastive.md (also in the README)
runs as written, given a query encoder q, a key encoder k, two views and a queue, and its NDA
negatives change the loss exactly as eq. 8 says; the Python pretraining snippet runs at 2 steps."""
import copy
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from negaug import nda
from negaug.contrastive import ENCODERS, info_nce

DOCS = Path(__file__).resolve().parents[1] / "docs" / "contrastive.md"
HEADING = "## NDA in your own MoCo or SimCLR loop"


def python_block(after_heading: str) -> str:
    text = DOCS.read_text()
    return re.search(r"```python\n(.*?)```", text[text.index(after_heading):], re.DOTALL).group(1)


def encoders():
    torch.manual_seed(0)
    q = nn.Sequential(ENCODERS.build("small_cnn", in_channels=3, width=4), nn.Linear(32, 8))
    return q, copy.deepcopy(q).requires_grad_(False)


def test_three_line_snippet_runs_and_adds_the_jigsaw_negatives_of_eq_8():
    q, k = encoders()
    q.eval(), k.eval()  # batch norm on running statistics: the snippet's encodings can be replayed exactly
    g = torch.Generator().manual_seed(1)
    x_q, x_k = torch.rand(2, 8, 3, 16, 16, generator=g) * 2 - 1
    queue = F.normalize(torch.randn(32, 8, generator=g), dim=1)
    scope = {"q": q, "k": k, "x_q": x_q, "x_k": x_k, "queue": queue}
    exec(python_block(HEADING), scope)
    loss, logits = scope["loss"], scope["logits"]
    assert logits.shape == (8, 1 + 32 + 1)  # positive, queue, one NDA negative per query
    negatives = k(nda.build("jigsaw", k=2)(x_q, generator=torch.Generator().manual_seed(0))).unsqueeze(1)
    expected, _ = info_nce(q(x_q), k(x_k), queue, nda=negatives, temperature=0.07)
    torch.testing.assert_close(loss, expected)
    plain, _ = info_nce(q(x_q), k(x_k), queue, temperature=0.07)
    assert loss > plain  # an extra negative can only raise InfoNCE
    loss.backward()
    assert all(p.grad is not None for p in q.parameters())


def test_the_simclr_line_of_the_snippet_runs_as_written():
    q, _ = encoders()
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    simclr = next(line for line in python_block(HEADING).splitlines() if line.startswith("# SimCLR"))
    scope = {"q": q, "x_q": x, "x_k": x.flip(-1), "g": torch.Generator().manual_seed(0),
             "jigsaw": nda.build("jigsaw", k=2)}
    exec("from negaug.contrastive import info_nce_in_batch\n" + simclr.split(": ", 1)[1], scope)
    assert scope["loss"].ndim == 0 and torch.isfinite(scope["loss"])


def test_the_python_pretraining_snippet_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    block = python_block("## From Python")
    tiny = ('"train.steps=2", "train.progress=false", "data.batch_size=16", "objective.num_splits=2", '
            '"model.options.width=4", "objective.queue_size=32", "data.image_size=16", "eval.probe_epochs=1", ')
    assert '"train.name=jigsaw"' in block
    exec(block.replace('"train.name=jigsaw"', tiny + '"train.name=jigsaw"'), {})
    assert (tmp_path / "runs" / "jigsaw" / "probe.json").is_file()


def test_the_readme_shows_the_same_snippet():
    readme = (DOCS.parents[1] / "README.md").read_text()
    section = readme[readme.index("### Contrastive learning with NDA"):]
    assert re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1) == python_block(HEADING)
