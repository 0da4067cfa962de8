"""negaug repro numerosity: the claim table (shares at 4-8 dots and 'other', Holm over its rows,
verdict words in the paper's direction), its headline, the counter-agreement check and the
full-size report, on fabricated per-seed numbers (exact); the tiny end-to-end run is in
test_repro.py."""
from __future__ import annotations

import pytest
import torch
from scipy import stats as scipy_stats

from negaug.repro import numerosity
from negaug.repro.common import Study, TrainedArm

BASELINE = {"share_4": [.30, .31, .29], "share_5": [.30, .40, .20], "share_6": [.20, .21, .19],
            "share_7": [.05, .06, .04], "share_8": [.05, .05, .05], "share_other": [.10, .10, .10]}
NDA = {"share_4": [.10, .11, .09], "share_5": [.25, .35, .15], "share_6": [.50, .51, .49],
       "share_7": [.20, .21, .19], "share_8": [.05, .05, .05], "share_other": [.20, .20, .20]}


def entries(values: dict[str, list[float]], agreement: float = 1.0) -> list[dict]:
    """Per-seed entries as `evaluate_arm` writes them (3 seeds, 100 samples each)."""
    disagreements = {} if agreement == 1.0 else {"5->6": round(100 * (1 - agreement))}
    return [{"seed": i, "num_samples": 100, **{key: v[i] for key, v in values.items()}, "fraction_within_one": 0.5,
             "mean_count": 5.0 + i, "num_distinct_counts": 6, "histogram": {"6": 50, "5": 50},
             "counter_agreement": {"num_images": 100, "agreement": agreement, "disagreements": disagreements}}
            for i in range(3)]


def test_count_shares_hand_checked():
    shares = numerosity.count_shares(torch.tensor([4, 6, 6, 7, 9, 0, 6, 5]))
    assert shares == {"share_4": 0.125, "share_5": 0.125, "share_6": 0.375, "share_7": 0.125, "share_8": 0.0,
                      "share_other": 0.25}


def test_claim_table_verdicts_in_the_papers_direction():
    table = numerosity.claim_table("full", entries(BASELINE), entries(NDA))
    assert list(table) == ["share_4", "share_5", "share_6", "share_7", "share_8", "share_other"]
    assert {k: c["verdict"] for k, c in table.items()} == {
        "share_4": "reproduced", "share_5": "direction only", "share_6": "reproduced", "share_7": "opposite",
        "share_8": "-", "share_other": "-"}  # 8 and other: the paper claims no direction, so no verdict
    assert [table[k]["paper_direction"] for k in table] == ["falls", "falls", "rises", "falls", None, None]
    assert table["share_6"]["difference"] == pytest.approx(0.30) and table["share_7"]["difference"] == pytest.approx(0.15)
    # Holm over all six rows: other (p ~ 0: no spread but rounding) x6, share_6 x5, share_4 x4, share_7 x3, share_5 x2, share_8 x1
    welch = {k: scipy_stats.ttest_ind(NDA[k], BASELINE[k], equal_var=False).pvalue for k in ("share_4", "share_6", "share_7")}
    assert table["share_6"]["holm_p"] == pytest.approx(5 * welch["share_6"], rel=1e-6)
    assert table["share_4"]["holm_p"] == pytest.approx(4 * welch["share_4"], rel=1e-6)
    assert table["share_7"]["holm_p"] == pytest.approx(3 * welch["share_7"], rel=1e-6)
    assert table["share_5"]["holm_p"] == 1.0 and table["share_8"]["holm_p"] == 1.0 and table["share_other"]["holm_p"] < 1e-30
    assert table["share_6"]["ci95"][0] > 0.25 and table["share_6"]["ci95"][1] < 0.35


def test_verdicts_read_the_holm_p_not_the_raw_p():
    """share_5 at p = 0.038 alone, 0.075 after Holm (second largest of six): direction only."""
    base, treated = {**BASELINE, "share_5": [.30, .32, .28]}, {**NDA, "share_5": [.25, .27, .23]}
    row = numerosity.claim_table("full", entries(base), entries(treated))["share_5"]
    assert row["welch_p"] == pytest.approx(0.0376, abs=5e-4) and row["holm_p"] == pytest.approx(2 * row["welch_p"])
    assert row["verdict"] == "direction only"


def test_headline_reads_the_table_and_smoke_sizes_judge_nothing():
    table = numerosity.claim_table("full", entries(BASELINE), entries(NDA))
    assert numerosity.headline(table) == (
        "share at 6: reproduced (paper: rises); share at 4: reproduced (paper: falls); share at 5: direction only "
        "(paper: falls); share at 7: opposite (paper: falls); counts constrained to 6 (every claimed row reproduced): no")
    steady = {**BASELINE, "share_5": [.30, .31, .29]}
    strong = {**NDA, "share_5": [.10, .11, .09], "share_7": [.01, .02, .00]}
    assert numerosity.headline(numerosity.claim_table("full", entries(steady), entries(strong))).endswith("reproduced): yes")
    for size in ("tiny", "quick"):
        assert {c["verdict"] for c in numerosity.claim_table(size, entries(BASELINE), entries(NDA)).values()} == {"-"}


def test_counter_agreement_pools_seeds_and_flags_below_90_percent():
    check = numerosity.counter_agreement({"baseline": entries(BASELINE, 0.95), "nda": entries(NDA, 0.85)})
    assert check["baseline"]["agreement"]["mean"] == pytest.approx(0.95) and check["baseline"]["below_minimum"] is False
    assert check["nda"]["disagreements"] == {"5->6": 45} and check["nda"]["below_minimum"] is True
    assert check["nda"]["images_per_seed"] == 100


def test_full_size_report_carries_verdicts_and_the_flag(tmp_path):
    study = Study(tmp_path, size="full", seeds=[0, 1, 2])
    per_seed = {"baseline": entries(BASELINE, 0.95), "nda": entries(NDA, 0.85)}
    run = TrainedArm("baseline", 0, tmp_path, {"loss": {"name": "wgan-gp"}}, 1.0, False)
    real = {"num_images": 10, "accuracy": 1.0, "histogram": {6: 10}, "second_counter_accuracy": 1.0}
    results = numerosity.summarize(study, per_seed, [run], real)
    assert results["targets"] == {"nda_at_least_90_percent_at_6": False, "nda_every_claimed_row_reproduced": False}
    report = "\n".join(numerosity.report(results))
    # nda's counters agree on 85% (< 90%): the words stay in the table, the verdict is withheld
    assert "**No verdict**: the two dot counters agree on only nda (negatives 4, 5, 7) 85%" in report
    assert "**Verdict**" not in report and results["verdict_withheld"].startswith("the two dot counters")
    agreed = numerosity.summarize(study, {"baseline": entries(BASELINE, 0.95), "nda": entries(NDA, 0.95)}, [run], real)
    assert agreed["verdict_withheld"] is None
    assert f"**Verdict** (nda (negatives 4, 5, 7)): {agreed['headline']['nda']}." in "\n".join(numerosity.report(agreed))
    assert "## Claim table (" in report and "| verdict (nda) |" in report
    assert "| 7 dots (a negative) | falls | 0.050 ± 0.010 | 0.200 ± 0.010 | +0.150 [" in report and "| opposite |" in report
    assert "partly" not in report and "within" not in report
    assert "**Flag: the two counters agree on fewer than 90% of the generated images of nda (negatives 4, 5, 7)**" in report
    assert "| baseline | 100 | 0.950 ± 0.000 | 5->6: 15 |" in report and "| 0.850 ± 0.000 | 5->6: 45 |" in report


def test_verdicts_are_withheld_when_the_two_counters_disagree_on_generated_images():
    """Regression (first full rerun, 2026-12-07): the counters agreed on 17-18% of the generated
    images, yet the report printed verdict words as a claim."""
    from negaug.repro.numerosity import counts_in_doubt

    def results(rate):
        entry = {"agreement": {"mean": rate}, "below_minimum": rate < 0.9}
        return {"protocol": {"counter_agreement_on_generated_images": {"baseline": entry, "nda": dict(entry)}}}

    assert counts_in_doubt(results(0.95)) == ""
    reason = counts_in_doubt(results(0.178))
    assert "agree on only" in reason and "18%" in reason and "counts are in doubt" in reason
