"""The YAML presets of `negaug pretrain PRESET` (contrastive pretraining, `PretrainConfig`), kept
apart from `negaug train`'s GAN presets so that neither command lists the other's."""
