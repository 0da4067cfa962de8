"""Suite-wide settings.

Tests marked `cuda` need a GPU: without one they are skipped here, with their reason;
`python benchmarks/gpu_check.py` runs them (`pytest -m cuda`) on a CUDA machine.

One intra-op thread: the suite's tensors are tiny, where a second thread costs more than it
gives, and bit-exact comparisons between a subprocess and this process need the same thread
count (subprocesses get OMP_NUM_THREADS=1 from the environment set here).
"""
import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked cuda; python benchmarks/gpu_check.py runs it on a GPU)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
