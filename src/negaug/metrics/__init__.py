"""Sample-quality evaluation: features -> statistics -> value, every value with its protocol.

- ``evaluate_generator(G, reference, metrics, num_samples, seed, **options)`` and
  ``evaluate_samples(fake, reference, ...)``: {result key: {"metric", "value", "higher_is_better",
  ..., "protocol"}} (a run's generator with its config's settings: ``negaug.experiment.evaluate``).
- ``negaug.metrics.features``: feature-extractor registry ("inception", "classifier", "raw").
- Values: ``fid_from_features``, ``kernel_distance``, ``inception_score``, ``precision_recall``,
  ``kde_log_likelihood``, ``count_dots`` (and its check ``count_dot_peaks``), ``toy_quality``, ``neural_net_distance``.

torch-fidelity is imported only when the Inception features are built (it installs a top-level
``tests`` package; importing it lazily keeps it away from everything else).
"""
from negaug.metrics import features
from negaug.metrics.dots import (
    count_dot_peaks,
    count_dots,
    count_histogram,
    fraction_with_count,
)
from negaug.metrics.evaluate import (
    METRICS,
    EvalSettings,
    check_feature_space,
    default_metrics,
    evaluate_generator,
    evaluate_samples,
    find_metric,
    find_result,
    generate_samples,
    record_sampling,
    result_names,
)
from negaug.metrics.fid import feature_statistics, fid_from_features, frechet_distance
from negaug.metrics.inception_score import inception_score
from negaug.metrics.kde import kde_log_likelihood, parzen_log_likelihood
from negaug.metrics.kid import kernel_distance
from negaug.metrics.nn_distance import neural_net_distance
from negaug.metrics.precision_recall import precision_recall
from negaug.metrics.toy import toy_quality


def names() -> list[str]:
    """Metric names accepted by ``evaluate_*(metrics=[...])``."""
    return METRICS.names()


__all__ = [
    "METRICS", "EvalSettings", "check_feature_space", "count_dot_peaks", "count_dots", "count_histogram", "default_metrics", "evaluate_generator",
    "evaluate_samples", "feature_statistics", "features", "fid_from_features",
    "find_metric", "find_result", "fraction_with_count", "frechet_distance", "generate_samples", "inception_score",
    "kde_log_likelihood", "kernel_distance", "names", "neural_net_distance", "parzen_log_likelihood", "precision_recall", "record_sampling", "result_names",
    "toy_quality",
]
