"""Negative data augmentation transforms (Appendix B and Table 1 of the paper).

    from negaug import nda
    t = nda.build("jigsaw", k=2)                  # nda.names() lists the transforms
    neg = t(x, generator=g)                       # x: float (B, C, H, W), any device and dtype
    params = t.sample(x.shape, g, x.device, images=x)  # replayable draw: dict of (B, ...) tensors
    neg = t.apply(x, params)                      # == t(x, generator=g) from the same generator state
    nda.build("cutout", min_changed=0.01)         # each negative changes >= 1% of the pixels (the default)
    pda = nda.positive("hflip", p=0.5)            # the same transforms as positive augmentation
    nda.check_compatible("jigsaw", image_size=32) # config-time validation (ValueError if not)

See base.py for the contract; all randomness comes from the generator passed in.
"""
from negaug.nda import other_data as _other_data  # noqa: F401
from negaug.nda import pairing as _pairing  # noqa: F401
from negaug.nda import transforms as _transforms  # noqa: F401  (registers the transforms)
from negaug.nda.base import TRANSFORMS, NDATransform, Params, build, from_spec, names
from negaug.nda.compose import Mixture, Positive, check_compatible, positive
from negaug.nda.sampling import derangement, sample_beta

__all__ = [
    "TRANSFORMS", "NDATransform", "Params", "build", "names", "from_spec", "derangement", "sample_beta",
    "Mixture", "Positive", "positive", "check_compatible",
]
