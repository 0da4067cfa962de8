"""negaug: Negative Data Augmentation for generative models and representation learners."""
__version__ = "0.1.0"
