"""The README's Python snippets run as written."""
import re
from pathlib import Path

import torch

from negaug import models

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block(after_heading: str) -> str:
    text = README.read_text()
    section = text[text.index(after_heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_three_line_nda_snippet_runs_and_uses_the_negatives():
    torch.manual_seed(0)
    G, D = models.build("dcgan", image_size=32, channels=1, width=4)
    real = torch.rand(8, 1, 32, 32) * 2 - 1
    z = G.sample_latent(8, generator=torch.Generator().manual_seed(1))
    fake = G(z).detach()
    scope = {"D": D, "G": G, "real": real, "fake": fake, "z": z}
    exec(python_block("## NDA in your own training loop"), scope)
    d_loss, terms = scope["d_loss"], scope["terms"]
    assert d_loss.ndim == 0 and torch.isfinite(d_loss)
    expected = terms["d_real"] + 0.25 * terms["d_fake"] + 0.75 * terms["d_neg"]
    torch.testing.assert_close(d_loss.detach(), expected)
    d_loss.backward()
    assert all(p.grad is not None for p in D.parameters())
