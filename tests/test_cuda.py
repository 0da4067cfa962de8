"""The CUDA paths of training (issue 24): every kind of run resumes bit-identically on a GPU
(deterministic algorithms, CUBLAS_WORKSPACE_CONFIG, CPU generators driving CUDA tensors), so do
GAN, Pix2Pix and DPC runs in bf16 and in fp16 with its grad scaler, and a run trained on a GPU loads
on the CPU (a Pix2Pix fp16 run too).

Marked `cuda`: skipped without a GPU (tests/conftest.py); `python benchmarks/gpu_check.py` runs
every test so marked (`pytest -m cuda`) on a CUDA machine.
"""
from __future__ import annotations

import pytest
import torch

from negaug.experiment import checkpoint as ckpt
from negaug.experiment import kinds
from test_kinds import check_exact_resume, config_of

pytestmark = pytest.mark.cuda
DEVICE = "cuda"


@pytest.mark.parametrize("name", kinds.names())
def test_every_kind_resumes_bit_identically_on_cuda(tmp_path, name):
    check_exact_resume(tmp_path, name, [f"train.device={DEVICE}"])


@pytest.mark.parametrize("name", ["gan", "pix2pix", "dpc"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_runs_resume_bit_identically_on_cuda(tmp_path, name, precision):
    state = check_exact_resume(tmp_path, name, [f"train.device={DEVICE}", f"train.precision={precision}"])
    assert ("scaler" in state) == (precision == "fp16")  # fp16 alone has a grad scaler, and it is saved
    if precision == "fp16":
        whole = ckpt.load_latest(tmp_path / "whole" / "checkpoints").state["scaler"]
        assert state["scaler"] == whole  # scale, growth tracker: restored on resume, not restarted


def test_a_run_trained_on_cuda_loads_on_the_cpu_with_the_same_outputs(tmp_path):
    kind = kinds.get("gan")
    result = kind.train(config_of("gan", tmp_path, "r", 2, [f"train.device={DEVICE}"]))
    on_gpu, on_cpu = kind.load(result.run_dir, device=DEVICE), kind.load(result.run_dir, device="cpu")
    assert next(on_cpu.generator.parameters()).device.type == "cpu"
    z = torch.randn(4, on_cpu.generator.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        images_gpu, images_cpu = on_gpu.generator(z.to(DEVICE)).cpu(), on_cpu.generator(z)
    assert images_cpu.shape == (4, 1, 32, 32)
    torch.testing.assert_close(images_gpu, images_cpu, atol=1e-4, rtol=1e-4)


def test_a_pix2pix_fp16_run_trained_on_cuda_loads_on_the_cpu_with_the_same_outputs(tmp_path):
    """Loading G to score it builds the run in fp32 (fp16 alone would be refused on the CPU)."""
    kind = kinds.get("pix2pix")
    result = kind.train(config_of("pix2pix", tmp_path, "r", 2, [f"train.device={DEVICE}", "train.precision=fp16"]))
    on_gpu, on_cpu = kind.load(result.run_dir, device=DEVICE), kind.load(result.run_dir, device="cpu")
    assert on_cpu.config.train.precision == "fp32" and next(on_cpu.generator.parameters()).device.type == "cpu"
    conditions = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(on_gpu.generator(conditions.to(DEVICE)).cpu(), on_cpu.generator(conditions),
                                   atol=1e-4, rtol=1e-4)
