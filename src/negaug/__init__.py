"""negaug: Negative Data Augmentation for generative models and representation learners.

Submodules load on first use (`negaug.nda`, `negaug.losses`, ...), so `import negaug` stays light.
"""
import importlib

__version__ = "0.4.0"

_SUBMODULES = ("anomaly", "augment", "contrastive", "data", "experiment", "losses", "metrics", "models", "nda", "registry",
               "repro", "video", "viz")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"negaug.{name}")
    raise AttributeError(f"module 'negaug' has no attribute '{name}'")


def __dir__():
    return sorted([*globals(), *_SUBMODULES])
