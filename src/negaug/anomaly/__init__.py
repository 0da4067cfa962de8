"""Anomaly detection with a GAN discriminator (Section 5 and Table 5 of the paper).

    from negaug import anomaly
    scores = anomaly.score(D, images)                       # raw D(x), (N,)
    anomaly.detection_metrics(scores_in, scores_out)        # auroc, aupr, fpr_at_95_tpr
    x_ood = anomaly.build_ood("corruption/fog", images, severity=5, seed=0)
    results, diffs = anomaly.evaluate(D, images, "corruption/all,noise/all")
    anomaly.plot_difference_histograms({"run": diffs}, "hist.png")
    anomaly.compare(results_a, results_b)

Images are float (N, C, H, W) in [-1, 1], preprocessed as the discriminator's training data.
"""
from negaug.anomaly.corruptions import corrupt
from negaug.anomaly.evaluate import compare, evaluate, format_comparison, format_results, summarize
from negaug.anomaly.ood import OODPlan, build_ood, is_paired, ood_names, plan_ood
from negaug.anomaly.plots import difference_histograms_figure, plot_difference_histograms, scale_free_gaps
from negaug.anomaly.scoring import detection_metrics, fpr_at_tpr, score

__all__ = [
    "OODPlan", "build_ood", "compare", "corrupt", "detection_metrics", "difference_histograms_figure", "evaluate",
    "format_comparison",
    "format_results", "fpr_at_tpr", "is_paired", "ood_names", "plan_ood", "plot_difference_histograms",
    "scale_free_gaps", "score", "summarize",
]
