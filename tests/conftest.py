"""Suite-wide settings.

One intra-op thread: the suite's tensors are tiny, where a second thread costs more than it
gives, and bit-exact comparisons between a subprocess and this process need the same thread
count (subprocesses get OMP_NUM_THREADS=1 from the environment set here).
"""
import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(1)
