"""The statistics every comparison of negaug's reproductions uses, fixed before the runs.

- **Test**: Welch's t-test (unequal variances) on per-seed values of two arms; the difference
  (treated - baseline) with a 95% confidence interval from the Welch-Satterthwaite degrees of freedom.
- **Family**: Holm's step-down correction over the comparisons of one table (`holm`).
- **Verdict words** (`verdict_word`), from the Holm-adjusted p and the direction the paper claims:
  *reproduced* (adjusted p < 0.05, in the paper's direction), *opposite* (adjusted p < 0.05, against
  it), *direction only* (not significant, mean difference in the paper's direction), *not
  reproduced* (not significant, mean difference zero or against it). With one seed per arm there
  is no test: *no test (1 seed)*.

"Within the seed spread" is not a verdict here: a difference is judged by its adjusted p and its
interval, never by comparing it with a standard deviation.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

ALPHA = 0.05
VERDICTS = ("reproduced", "opposite", "direction only", "not reproduced", "no test (1 seed)")


def welch(baseline: Sequence[float], treated: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Welch's t-test of mean(treated) - mean(baseline): {"difference", "ci95": [low, high], "p",
    "df"}; p and the interval are None when either arm has fewer than 2 values. Two arms without
    any spread give p = 1 for equal means and 0 otherwise, and a zero-width interval."""
    a, b = np.asarray(baseline, dtype=float), np.asarray(treated, dtype=float)
    difference = float(b.mean() - a.mean())
    if a.size < 2 or b.size < 2:
        return {"difference": difference, "ci95": None, "p": None, "df": None}
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0:
        return {"difference": difference, "ci95": [difference, difference], "p": 0.0 if difference != 0 else 1.0,
                "df": float(a.size + b.size - 2)}
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    t = difference / se
    p = float(2 * scipy_stats.t.sf(abs(t), df))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df) * se)
    return {"difference": difference, "ci95": [difference - half, difference + half], "p": p, "df": float(df)}


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (same order; None stays None and is not counted):
    the i-th smallest of m p-values becomes max over j <= i of min(1, (m - j + 1) p_(j))."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    adjusted: list[float | None] = [None] * len(p_values)
    running, m = 0.0, len(present)
    for rank, (p, index) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


def verdict_word(difference: float, adjusted_p: float | None, direction: int) -> str:
    """The verdict of one comparison (module docstring); direction = +1 when the paper claims the
    treated arm is higher, -1 when lower (e.g. FID)."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction!r}")
    if adjusted_p is None:
        return VERDICTS[4]
    along = difference * direction > 0
    if adjusted_p < ALPHA:
        return VERDICTS[0] if along else VERDICTS[1]
    return VERDICTS[2] if along else VERDICTS[3]


def adjust_family(comparisons: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Add "holm_p" to each comparison of one table (dicts with "p" or "welch_p"), in place."""
    names = list(comparisons)
    raw = [comparisons[n].get("p", comparisons[n].get("welch_p")) for n in names]
    for name, adjusted in zip(names, holm(raw)):
        comparisons[name]["holm_p"] = adjusted
    return comparisons


def format_difference(comparison: dict[str, Any], digits: int = 3) -> str:
    """'+0.120 [+0.010, +0.230], p=0.01, Holm p=0.03' for a report cell."""
    text = f"{comparison['difference']:+.{digits}f}"
    if comparison.get("ci95") is not None:
        low, high = comparison["ci95"]
        text += f" [{low:+.{digits}f}, {high:+.{digits}f}]"
    p = comparison.get("p", comparison.get("welch_p"))
    if p is not None:
        text += f", p={p:.2g}"
    if comparison.get("holm_p") is not None:
        text += f", Holm p={comparison['holm_p']:.2g}"
    return text


RULES = ("Welch's t-test on per-seed values; difference = treated - baseline with its 95% confidence "
         "interval (Welch-Satterthwaite df); p-values Holm-adjusted over the comparisons of each table; "
         "verdicts: reproduced = Holm p < 0.05 in the paper's direction, opposite = Holm p < 0.05 against "
         "it, direction only = not significant but in the paper's direction, not reproduced = not "
         "significant and not in its direction")
