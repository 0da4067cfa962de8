"""The README's Python snippets run as written."""
import re
import unicodedata
from pathlib import Path

import pytest
import torch

from negaug import models

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block(after_heading: str) -> str:
    text = README.read_text()
    section = text[text.index(after_heading):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_three_line_nda_snippet_runs_and_uses_the_negatives():
    torch.manual_seed(0)
    G, D = models.build("dcgan", image_size=32, channels=1, width=4)
    real = torch.rand(8, 1, 32, 32) * 2 - 1
    z = G.sample_latent(8, generator=torch.Generator().manual_seed(1))
    fake = G(z).detach()
    scope = {"D": D, "G": G, "real": real, "fake": fake, "z": z}
    exec(python_block("### NDA in your own training loop"), scope)
    d_loss, terms = scope["d_loss"], scope["terms"]
    assert d_loss.ndim == 0 and torch.isfinite(d_loss)
    expected = terms["d_real"] + 0.25 * terms["d_fake"] + 0.75 * terms["d_neg"]
    torch.testing.assert_close(d_loss.detach(), expected)
    d_loss.backward()
    assert all(p.grad is not None for p in D.parameters())


# --- links: every relative link in the README and docs/ points to a file and a heading that exist ---

ROOT = README.parent
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: link markup reduced to its text, lowercase, every character
    but letters, digits, '-', '_' and spaces dropped, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    kept = "".join(c for c in text if unicodedata.category(c)[0] in "LMN" or c in "-_ ")
    return kept.replace(" ", "-")


def prose(text: str) -> str:
    """Markdown without fenced code blocks and inline code (neither holds links or headings)."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def anchors(page: Path) -> set[str]:
    """Anchors of every heading of `page`; a repeated heading gets -1, -2, ... as on GitHub."""
    found: set[str] = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            anchor, number = github_anchor(match.group(1)), 1
            while anchor in found:
                anchor, number = f"{github_anchor(match.group(1))}-{number}", number + 1
            found.add(anchor)
    return found


def relative_links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto:


@pytest.mark.parametrize("heading, anchor", [
    ("Training: `negaug train`", "training-negaug-train"),
    ("NDA transforms (`negaug.nda`)", "nda-transforms-negaugnda"),
    ("Reproducing the paper's claims on a CPU: `negaug repro`", "reproducing-the-papers-claims-on-a-cpu-negaug-repro"),
    ("Results (full versions, 2 CPU cores)", "results-full-versions-2-cpu-cores"),
    ("negaug — Negative Data Augmentation for GANs", "negaug--negative-data-augmentation-for-gans"),
    ("keep_checkpoints and [resume](x.md)", "keep_checkpoints-and-resume"),
])
def test_github_anchor_rule(heading, anchor):
    assert github_anchor(heading) == anchor


def test_repeated_headings_get_numbered_anchors(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Speed\n## Speed\n```bash\n# not a heading\n```\n### Speed ###\n")
    assert anchors(page) == {"speed", "speed-1", "speed-2"}


def test_links_in_code_are_not_links():
    text = "[a](a.md) `[b](b.md)`\n```python\nx = [c](d)\n```\n[e](https://example.org) ![img](f.png)"
    assert [t for t in LINK.findall(prose(text)) if not re.match(r"[a-z][a-z0-9+.-]*:", t)] == ["a.md"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file_and_heading(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            broken.append(f"{target}: no heading with anchor #{anchor} in {file.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in relative_links(README)}
    assert set(PAGES[1:]) <= linked


# --- the README's commands ---

def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.DOTALL)


def test_the_readme_installs_exactly_as_ci_does():
    """.ci/run installs and tests "exactly as the README says": its commands are the README's."""
    ci = (ROOT / ".ci" / "run").read_text()
    install_and_test = bash_blocks(README.read_text())[1]
    for command in ("pip install torch==2.14.1 torchvision==0.29.1", 'pip install -e ".[test]"',
                    "python -m pytest -q"):
        assert command in ci and command in install_and_test


def test_readme_repro_commands_never_write_into_results():
    commands = [line for block in bash_blocks(README.read_text()) for line in block.splitlines()
                if "negaug repro" in line]
    assert commands
    for line in commands:
        out = re.search(r"--out\s+(\S+)", line)
        assert out and Path(out.group(1)).parts[0] != "results", line
