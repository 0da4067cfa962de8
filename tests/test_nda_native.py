"""The optional C kernels (negaug._native) against their pure-torch fallbacks, and the counter-based
noise against a pure-Python SplitMix64 and the normal distribution."""
from __future__ import annotations

import math
import os
import shutil
import sysconfig

import pytest
import scipy.stats
import torch
from hypothesis import given, settings, strategies as st

from negaug import nda
from negaug.nda import native

U64 = (1 << 64) - 1
needs_native = pytest.mark.skipif(native._native is None, reason="negaug._native was not built (no C compiler at install)")


def mix64_reference(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & U64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & U64
    return z ^ (z >> 31)


def both_paths(monkeypatch, fn):
    """fn() with the C kernels, then with NEGAUG_NATIVE=0 (the torch fallback)."""
    with_native = fn()
    monkeypatch.setenv("NEGAUG_NATIVE", "0")
    assert not native.native_enabled()
    without = fn()
    monkeypatch.delenv("NEGAUG_NATIVE")
    return with_native, without


def test_native_module_is_built_where_a_compiler_exists():
    headers = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    if (shutil.which("cc") is None and shutil.which("gcc") is None) or not os.path.exists(headers):
        pytest.skip("no C compiler or no Python headers: the install uses the torch fallbacks")
    assert native._native is not None, "a C compiler exists but negaug._native was not built: reinstall with pip install -e ."
    assert native.native_enabled() == (os.environ.get("NEGAUG_NATIVE", "1") != "0")


def test_uniform_bits_match_a_python_splitmix64():
    keys = torch.tensor([0, -1, -(1 << 63), 123456789, (1 << 63) - 1], dtype=torch.int64)
    k1, k2 = native.uniform_bits(keys, 9)
    for b, key in enumerate(keys.tolist()):
        for i in (0, 4, 8):
            z = mix64_reference((key + (i + 1) * 0x9E3779B97F4A7C15) & U64)
            assert k1[b, i].item() == (z >> 40) + 1 and k2[b, i].item() == (z >> 16) & 0xFFFFFF


@needs_native
@pytest.mark.parametrize("size", [1, 2, 3, 3072, 12289])
def test_normal_noise_native_equals_fallback(monkeypatch, size):
    keys = torch.randint(-(1 << 63), (1 << 63) - 1, (37,), generator=torch.Generator().manual_seed(0))
    keys[:3] = torch.tensor([0, -1, -(1 << 63)])
    a, b = both_paths(monkeypatch, lambda: native.normal_noise(keys, size))
    assert a.shape == (37, size) and torch.equal(a, b)


def test_normal_noise_equals_box_muller_with_libm_functions():
    keys = torch.randint(-(1 << 63), (1 << 63) - 1, (16,), generator=torch.Generator().manual_seed(2))
    pairs = 1000
    k1, k2 = native.uniform_bits(keys, pairs)
    radius = torch.sqrt(-2 * torch.log(k1.double() / 2 ** 24))
    angle = 2 * math.pi * k2.double() / 2 ** 24
    expected = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], 1)
    got = native.normal_noise(keys, 2 * pairs).double()
    # our float32 polynomials: a few float32 ulps of |z| < 5.8
    assert float((got - expected).abs().max()) < 3e-6
    # the extremes of the 24-bit uniforms: k1 = 1 gives the largest radius, k1 = 2^24 radius 0
    assert float(got.abs().max()) <= math.sqrt(2 * 24 * math.log(2)) + 1e-5


def test_normal_noise_is_standard_normal():
    keys = torch.randint(-(1 << 63), (1 << 63) - 1, (64,), generator=torch.Generator().manual_seed(1))
    z = native.normal_noise(keys, 3 * 32 * 32).double()
    flat = z.flatten()
    assert abs(flat.mean().item()) < 0.005  # 196k draws: the mean's std is 0.0023
    assert abs(flat.std().item() - 1) < 0.005
    assert abs(scipy.stats.kurtosis(flat.numpy(), fisher=False) - 3) < 0.05
    assert scipy.stats.kstest(flat.numpy(), "norm").pvalue > 1e-3
    assert float(flat.abs().max()) <= math.sqrt(2 * 24 * math.log(2)) + 1e-5
    # rows are independent streams: correlations between rows and between halves are ~0
    corr = torch.corrcoef(z[:8])
    assert float((corr - torch.eye(8, dtype=corr.dtype)).abs().max()) < 0.06  # 3072 pairs: std 0.018
    assert abs(torch.corrcoef(torch.stack([z[0, :1536], z[0, 1536:]]))[0, 1].item()) < 0.06


def test_normal_noise_rows_depend_on_their_key_only_and_odd_sizes_work():
    keys = torch.tensor([7, 8, 9])
    full = native.normal_noise(keys, 11)
    assert full.shape == (3, 11)
    assert torch.equal(native.normal_noise(keys[1:2], 11), full[1:2])
    assert torch.equal(native.normal_noise(keys, 12)[:, :6], full[:, :6])  # cosines come first
    assert not torch.equal(full[0], full[1])


@needs_native
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("k,size", [(2, (8, 8)), (2, (6, 10)), (3, (9, 12)), (4, (16, 8))])
def test_jigsaw_native_equals_fallback(monkeypatch, dtype, k, size):
    x = torch.randn(5, 3, *size, generator=torch.Generator().manual_seed(0)).to(dtype)
    t = nda.build("jigsaw", k=k)
    params = t.sample(x.shape, torch.Generator().manual_seed(1))
    a, b = both_paths(monkeypatch, lambda: t.apply(x, params))
    assert a.dtype == dtype and torch.equal(a, b)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("size", [(8, 8), (7, 9), (2, 2), (5, 12)])
def test_stitch_native_equals_fallback(monkeypatch, dtype, size):
    x = torch.randn(6, 2, *size, generator=torch.Generator().manual_seed(0)).to(dtype)
    t = nda.build("stitch")
    params = t.sample(x.shape, torch.Generator().manual_seed(1))
    a, b = both_paths(monkeypatch, lambda: t.apply(x, params))
    assert torch.equal(a, b)


def _every_transform():
    source = torch.rand(5, 3, 8, 8) * 2 - 1
    built = {name: nda.build(name, source=source) if name == "other_data" else nda.build(name) for name in nda.names()}
    built["mixture_all"] = nda.build("mixture", transforms=[n for n in nda.names() if n not in ("mixture", "other_data")])
    built["positive"] = nda.positive("cutmix", p=0.5)
    return built


@needs_native
@pytest.mark.parametrize("name", sorted(_every_transform()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_every_transform_gives_the_same_bits_with_and_without_the_kernels(monkeypatch, name, dtype):
    t = _every_transform()[name]
    x = (torch.rand(12, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(dtype)
    params = t.sample(x.shape, torch.Generator().manual_seed(1))
    a, b = both_paths(monkeypatch, lambda: t.apply(x, params))
    assert torch.equal(a, b)
    # a subset of rows, written into a larger output at other rows (what mixture does)
    rows, out_rows = torch.tensor([3, 0, 7]), torch.tensor([5, 1, 2])
    sub = {key: value[rows] for key, value in params.items()}

    def into():
        out = torch.zeros(6, 3, 8, 8, dtype=dtype)
        t.transform_into(out, x, sub, rows, out_rows)
        return out

    c, d = both_paths(monkeypatch, into)
    assert torch.equal(c, d) and torch.equal(c[out_rows], t.transform(x, sub, rows))
    assert torch.equal(c[[0, 3, 4]], torch.zeros(3, 3, 8, 8, dtype=dtype))


@pytest.mark.parametrize("use_native", [True, False])
def test_out_of_range_rows_are_refused(monkeypatch, use_native):
    if not use_native:
        monkeypatch.setenv("NEGAUG_NATIVE", "0")
    x, out = torch.rand(4, 3, 8, 8), torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match="output rows"):
        native.scatter_rows(out, torch.tensor([0, 2]), x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="input rows"):
        native.scatter_rows(out, torch.tensor([0, 1]), x, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="box"):
        native.cutout_boxes(x, torch.tensor([[0, 0, 4, 4], [0, 6, 4, 4], [0, 0, 1, 1], [0, 0, 1, 1]]))
    with pytest.raises(ValueError, match="box"):
        native.cutmix_boxes(x, torch.tensor([1, 0, 3, 2]), torch.tensor([[0, 0, 4, 4], [5, 0, 4, 4], [0, 0, 1, 1], [0, 0, 1, 1]]))


@pytest.mark.parametrize("use_native", [True, False])
def test_out_of_range_parameters_are_refused_not_read(monkeypatch, use_native):
    if not use_native:
        monkeypatch.setenv("NEGAUG_NATIVE", "0")
    x = torch.rand(4, 3, 8, 8)
    with pytest.raises(ValueError, match=r"perm .*\[0, 4\)"):
        nda.build("jigsaw").apply(x, {"perm": torch.tensor([[0, 1, 2, 4]] * 4)})
    with pytest.raises(ValueError, match=r"partner .*\[0, 4\)"):
        nda.build("stitch").apply(x, {"partner": torch.tensor([1, 2, 3, 4]), "split_rows": torch.ones(4, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"partner .*\[0, 4\)"):
        nda.build("stitch").apply(x, {"partner": torch.tensor([1, 2, 3, -1]), "split_rows": torch.zeros(4, dtype=torch.bool)})


def test_layouts_and_autograd_take_the_torch_path_with_the_same_result():
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for name in ("jigsaw", "stitch"):
        t = nda.build(name)
        params = t.sample(x.shape, torch.Generator().manual_seed(1))
        expected = t.apply(x, params)
        assert torch.equal(t.apply(x.to(memory_format=torch.channels_last), params), expected)
        leaf = x.clone().requires_grad_(True)
        out = t.apply(leaf, params)
        assert torch.equal(out.detach(), expected)
        out.sum().backward()
        assert_grad = leaf.grad
        assert assert_grad is not None and float(assert_grad.sum()) == pytest.approx(x.numel())


@needs_native
@pytest.mark.parametrize("n", [2, 3, 4, 17, 256, 4096])  # 4096: ~128 ties in the top 16 bits of the keys
def test_keyed_derangement_native_equals_fallback(monkeypatch, n):
    for key in (0, -1, 12345, -(1 << 63), (1 << 63) - 1):
        a, b = both_paths(monkeypatch, lambda: native.keyed_derangement(key, n))
        assert torch.equal(a, b)
        assert sorted(a.tolist()) == list(range(n)) and not bool((a == torch.arange(n)).any())


def test_keyed_derangement_is_uniform_without_the_kernels_too(monkeypatch):
    monkeypatch.setenv("NEGAUG_NATIVE", "0")
    counts: dict[tuple, int] = {}
    for key in range(900):
        perm = tuple(native.keyed_derangement(key * 7919, 4).tolist())
        counts[perm] = counts.get(perm, 0) + 1
    assert len(counts) == 9 and all(65 <= c <= 135 for c in counts.values()), counts  # 100 expected, sd ~9.4


def test_box_muller_at_the_edges_of_the_24_bit_grid():
    k1 = torch.tensor([1, 2, 3, 1 << 23, (1 << 23) + 1, 11863283, 11863284, (1 << 24) - 1, 1 << 24])
    k2 = torch.tensor([0, (1 << 21) - 1, 1 << 21, 1 << 22, 3 << 21, (1 << 24) - (1 << 21), (1 << 24) - (1 << 21) - 1,
                       (1 << 24) - 1, 12345])
    radius, cos, sin = native.box_muller(k1, k2)
    angle = 2 * math.pi * k2.double() / 2 ** 24
    assert_close_abs(radius.double(), torch.sqrt(-2 * torch.log(k1.double() / 2 ** 24)), 3e-6)
    assert_close_abs(cos.double(), torch.cos(angle), 3e-7)
    assert_close_abs(sin.double(), torch.sin(angle), 3e-7)
    assert float(radius[-1]) == 0.0  # k1 = 2^24: u1 = 1


def assert_close_abs(a: torch.Tensor, b: torch.Tensor, tolerance: float) -> None:
    assert float((a - b).abs().max()) < tolerance, (a - b).abs().max()


@needs_native
@pytest.mark.parametrize("height,width", [(2, 2), (3, 7), (8, 8), (32, 32), (64, 48), (101, 99)])
def test_patch_boxes_native_equals_fallback_and_stay_in_bounds(monkeypatch, height, width):
    u = torch.rand(500, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    u[0], u[1] = 0.0, 1.0 - 2.0 ** -53  # the extremes of torch.rand
    a, b = both_paths(monkeypatch, lambda: native.patch_boxes_from_uniforms(u, height, width))
    assert torch.equal(a, b)
    top, left, box_h, box_w = a.unbind(1)
    assert int(box_h.min()) == -(-height // 3) and int(box_h.max()) == height // 2
    assert int(box_w.min()) == -(-width // 3) and int(box_w.max()) == width // 2
    assert bool((top >= 0).all() and (left >= 0).all() and (top + box_h <= height).all() and (left + box_w <= width).all())


@needs_native
@settings(max_examples=60, deadline=None)
@given(st.sampled_from([n for n in nda.names() if n != "other_data"]), st.integers(2, 9), st.integers(1, 4),
       st.integers(2, 19), st.integers(2, 19), st.integers(0, 2**31))
def test_kernels_equal_the_torch_twins_on_any_size(name, batch, channels, height, width, seed):
    if name in ("jigsaw", "mixture"):  # jigsaw k=2 needs even sides; the other transforms take odd ones
        height, width = height + height % 2, width + width % 2
    t = nda.build(name)
    x = torch.rand(batch, channels, height, width, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    params = t.sample(x.shape, torch.Generator().manual_seed(seed + 1))
    with_kernels = t.apply(x, params)
    os.environ["NEGAUG_NATIVE"] = "0"
    try:
        twins = t.apply(x, params)
    finally:
        del os.environ["NEGAUG_NATIVE"]
    assert torch.equal(with_kernels, twins)
