"""Self-supervised video representation learning with NDA: Dense Predictive Coding (dpc.py).

    from negaug.video import DPC, dpc_nda_loss
    loss = dpc_nda_loss(DPC(in_channels=1), clips, nda=negaug.nda.build("jigsaw", k=2), generator=g)

Clip datasets: `negaug.data.build_clips("moving_mnist" | "ucf101" | "hmdb51")`. Linear probes of a
model's clip features and held-out DPC: `negaug.video.probe` (`negaug probe`, `negaug repro video`).
"""
from negaug.video.dpc import (
    DPC,
    BlockEncoder,
    ConvGRUCell,
    clip_negatives,
    dense_rows,
    dpc_logits,
    dpc_loss,
    dpc_nda_loss,
    to_blocks,
)

__all__ = [
    "DPC", "BlockEncoder", "ConvGRUCell", "clip_negatives", "dense_rows", "dpc_logits", "dpc_loss",
    "dpc_nda_loss", "to_blocks",
]
