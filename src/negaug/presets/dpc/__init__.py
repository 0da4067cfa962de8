"""The YAML presets of Dense Predictive Coding runs (`negaug pretrain dpc-moving-mnist`,
`DPCConfig`), kept apart from the MoCo presets: `negaug pretrain` dispatches to the DPC kind for
these."""
