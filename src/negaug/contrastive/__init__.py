"""NDA for contrastive representation learning (Section 4, eq. 8, Theorem 2 and Section 6 of the paper).

    from negaug import nda
    from negaug.contrastive import ENCODERS, MoCo, nda_views, info_nce, cosine_distance
    model = MoCo(ENCODERS.build("small_cnn", in_channels=3), queue_size=4096, num_splits=8)
    loss, logits, stats = model(x_q, x_k, nda=nda_views(nda.build("cutout"), [x_q, x_k], g), generator=g)

- objectives.py: `info_nce` / `info_nce_in_batch` with NDA negatives (eq. 8), registry OBJECTIVES;
- encoders.py: registry ENCODERS ("small_cnn", "resnet18_cifar") and `mlp_head`;
- moco.py: `MoCo` (MoCo-v2 with NDA negatives through the key encoder, single-process Shuffle-BN);
- batchnorm.py: `SplitBatchNorm2d`, `convert_split_batch_norm`, `frozen_batch_norm_stats`;
- augment.py: `ViewAugment`, the positive views (random resized crop, flip, colour jitter, grayscale);
- evaluation.py: `dataset_features`, `knn_accuracy` (weighted k-NN), `linear_probe` on frozen features,
  `separator_auroc` (a linear separator between representations of data and of NDA: Theorem 2);
- analysis.py: `cosine_distance` between representations of data and of its NDA (Figure 9);
- toy.py: a 2-D problem with disjoint data / NDA supports where Theorem 2's optimum is known.
"""
from negaug.contrastive.analysis import (
    cosine_distance,
    nearest_data_distance,
    representations,
)
from negaug.contrastive.augment import ViewAugment
from negaug.contrastive.batchnorm import (
    SplitBatchNorm2d,
    convert_split_batch_norm,
    frozen_batch_norm_stats,
)
from negaug.contrastive.encoders import ENCODERS, mlp_head
from negaug.contrastive.evaluation import (
    dataset_features,
    knn_accuracy,
    knn_predict,
    linear_probe,
    separator_auroc,
)
from negaug.contrastive.moco import MoCo, nda_views, step_stats
from negaug.contrastive.objectives import (
    OBJECTIVES,
    InfoNCE,
    InfoNCEInBatch,
    info_nce,
    info_nce_in_batch,
)

__all__ = [
    "ENCODERS",
    "OBJECTIVES",
    "InfoNCE",
    "InfoNCEInBatch",
    "MoCo",
    "SplitBatchNorm2d",
    "ViewAugment",
    "convert_split_batch_norm",
    "cosine_distance",
    "dataset_features",
    "frozen_batch_norm_stats",
    "info_nce",
    "info_nce_in_batch",
    "knn_accuracy",
    "knn_predict",
    "linear_probe",
    "mlp_head",
    "nda_views",
    "nearest_data_distance",
    "representations",
    "separator_auroc",
    "step_stats",
]
