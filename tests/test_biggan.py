"""negaug.models.biggan: sizes against BigGAN-PyTorch, hierarchical z, the shared embedding,
attention only when asked, spectral norm in G, and the orthogonal penalty. (The generic G/D
contract tests of tests/test_models.py and tests/test_discriminator_contract.py cover biggan too.)"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import negaug.models as M
from negaug.models.biggan import (
    ConditionalBatchNorm2d,
    SelfAttention,
    orthogonal_penalty,
)


def build(num_classes: int = 0, seed: int = 0, **options):
    torch.manual_seed(seed)
    options = {"image_size": 32, "channels": 3, "width": 2, **options}
    return M.build("biggan", num_classes=num_classes, **options)


def count_attention(module: nn.Module) -> int:
    return sum(isinstance(m, SelfAttention) for m in module.modules())


# Parameter counts of BigGAN-PyTorch's Generator / Discriminator (the NDA authors' fork, BigGAN.py and
# layers.py at ermongroup/NDA), built with G_ch = D_ch = 64, dim_z 128, 3-channel images and counted
# as sum(p.numel() for p in model.parameters()). n_classes = 1 is their unconditional setting (label
# 0 for every image) and our num_classes = 0. "shared" = --G_shared --hier; "unshared" = neither
# (the authors' CIFAR scripts).
BIGGAN_PYTORCH_COUNTS = {
    # (image_size, attention, shared, n_classes): (G parameters, D parameters)
    (32, 0, False, 1): (4_276_739, 4_205_057),
    (32, 0, False, 10): (4_304_387, 4_207_361),
    (32, 0, True, 1): (4_372_099, 4_205_057),
    (32, 0, True, 10): (4_373_251, 4_207_361),
    (64, 0, True, 10): (31_786_755, 19_552_961),
    (64, 32, True, 10): (31_868_676, 19_558_082),
}


def biggan_32px_parameter_count_by_hand(n_classes: int, ch: int = 64, dim_z: int = 128) -> tuple[int, int]:
    """BigGAN's 32 px G and D (--G_shared --hier) counted from the architecture: c = 4 ch everywhere."""
    c, chunk = 4 * ch, dim_z // 4
    conv3, conv1 = lambda i, o: 9 * i * o + o, lambda i, o: i * o + o
    cbn = 2 * (dim_z + chunk) * c  # gain and bias Linear([embedding, chunk] -> c), no bias
    g_block = 2 * conv3(c, c) + conv1(c, c) + 2 * cbn
    g = n_classes * dim_z + (chunk * 16 * c + 16 * c) + 3 * g_block + 2 * c + conv3(c, 3)
    d_blocks = (conv3(3, c) + conv3(c, c) + conv1(3, c)) + (2 * conv3(c, c) + conv1(c, c)) + 2 * (2 * conv3(c, c))
    d = d_blocks + (c + 1) + n_classes * c  # linear head and projection embedding
    return g, d


@pytest.mark.slow
@pytest.mark.parametrize("key", BIGGAN_PYTORCH_COUNTS)
def test_parameter_counts_equal_biggan_pytorch(key):
    image_size, attention, shared, n_classes = key
    G, D = M.build("biggan", image_size=image_size, channels=3, num_classes=0 if n_classes == 1 else n_classes,
                   attention=attention, shared_embedding=shared, hierarchical=shared)
    assert (M.count_parameters(G), M.count_parameters(D)) == BIGGAN_PYTORCH_COUNTS[key]


@pytest.mark.parametrize("n_classes", [1, 10])
def test_hand_count_agrees_with_biggan_pytorch(n_classes):
    assert biggan_32px_parameter_count_by_hand(n_classes) == BIGGAN_PYTORCH_COUNTS[(32, 0, True, n_classes)]
    G, D = build(0 if n_classes == 1 else n_classes, width=3)
    assert (M.count_parameters(G), M.count_parameters(D)) == biggan_32px_parameter_count_by_hand(n_classes, ch=3)


def test_default_sizes_are_the_authors():
    G, D = build(width=64)
    assert G.latent_dim == 128 and G.chunk_size == 32 and len(G.blocks) == 3 and G.bottom_channels == 256
    assert D.num_features == 256 and count_attention(G) == count_attention(D) == 0
    G, _ = build(image_size=64, width=1)
    assert G.latent_dim == 125 and G.chunk_size == 25  # 5 chunks of 128 // 5, as BigGAN-PyTorch rounds down


@pytest.mark.parametrize("num_classes", [0, 3])
def test_every_z_chunk_changes_the_output(num_classes):
    G, _ = build(num_classes)
    G.eval()
    z, y = G.sample_latent(4, generator=torch.Generator().manual_seed(0)), torch.arange(4) % 3 if num_classes else None
    base = G(z, y)
    for i in range(4):  # the first linear layer's chunk, then one per block
        moved = z.clone()
        moved[:, i * G.chunk_size:(i + 1) * G.chunk_size] += 1.0
        assert not torch.allclose(G(moved, y), base, atol=1e-4), f"chunk {i} is unused"


def test_each_block_reads_its_own_chunk_joined_to_the_shared_embedding():
    G, _ = build(3)
    G.eval()
    seen = []
    for m in G.modules():
        if isinstance(m, ConditionalBatchNorm2d):
            m.register_forward_hook(lambda mod, args, out: seen.append(args[1]))
    z, y = G.sample_latent(4), torch.tensor([0, 1, 2, 1])
    G(z, y)
    embedded = G.shared(y)
    assert len(seen) == 6  # two batch norms per block
    for i, cond in enumerate(seen):
        chunk = z[:, (1 + i // 2) * G.chunk_size:(2 + i // 2) * G.chunk_size]
        assert torch.equal(cond, torch.cat([embedded, chunk], dim=1))


def test_shared_embedding_is_used_and_unconditional_models_embed_one_class():
    G, _ = build(0)
    assert G.shared.weight.shape == (1, 128)  # one class, as the authors' label 0 for every image
    G.eval()
    z = G.sample_latent(4)
    before = G(z)
    with torch.no_grad():
        G.shared.weight += 0.5
    assert not torch.allclose(G(z), before, atol=1e-4)
    G3, _ = build(3)
    assert G3.shared.weight.shape == (3, 128) and not any(
        m.weight is G3.shared.weight for m in G3.modules() if isinstance(m, nn.Embedding) and m is not G3.shared)


def test_unshared_model_uses_per_class_batch_norm():
    G, _ = build(3, hierarchical=False, shared_embedding=False)
    assert G.shared is None and G.chunk_size == 0
    assert not any(isinstance(m, ConditionalBatchNorm2d) for m in G.modules())
    with pytest.raises(ValueError, match="shared_embedding"):
        build(3, hierarchical=True, shared_embedding=False)


def test_attention_only_when_asked_and_it_trains():
    assert count_attention(build()[0]) == 0 and count_attention(build()[1]) == 0
    G, D = build(3, image_size=64, width=8, attention=32)  # width 8: no 1-element weight that SN pins to +-1
    assert count_attention(G) == 1 and count_attention(D) == 1  # D's first block outputs 32 px
    G64, D64 = build(image_size=64, width=1, attention=64)
    assert count_attention(G64) == 1 and count_attention(D64) == 0  # as BigGAN-PyTorch: no 64 px D block
    with pytest.raises(ValueError, match="attention"):
        build(attention=4)
    with torch.no_grad():  # gamma starts at 0 (SAGAN); open the gate so that the attention weights get gradients
        for m in (*G.modules(), *D.modules()):
            if isinstance(m, SelfAttention):
                m.gamma.fill_(0.5)
    y = torch.arange(4) % 3
    D(G(G.sample_latent(4), y), y).sum().backward()
    for m in (*G.modules(), *D.modules()):
        if isinstance(m, SelfAttention):
            for name, p in m.named_parameters():
                assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_64px_builds_with_default_width():
    G, D = M.build("biggan", image_size=64, channels=3)
    x = G(G.sample_latent(2))
    assert x.shape == (2, 3, 64, 64) and D(x).shape == (2,)
    assert [b.conv1.out_channels for b in G.blocks] == [1024, 512, 256, 128] and D.num_features == 1024


def test_spectral_norm_on_g_leaves_its_embedding_plain():
    G, _ = build(3)
    for _ in range(10):
        G(G.sample_latent(4), torch.arange(4) % 3)
    normalised = [m for m in G.modules() if hasattr(m, "parametrizations")]
    assert len(normalised) == 1 + 3 * (3 + 4) + 1  # stem; per block 3 convs and 2 CBNs x 2 linears; to_image
    assert not hasattr(G.shared, "parametrizations")
    with torch.no_grad():
        for m in normalised:
            sigma = torch.linalg.matrix_norm(m.weight.flatten(1), ord=2)
            assert_close(sigma, torch.tensor(1.0), rtol=0.05, atol=0)


def test_orthogonal_penalty_by_hand():
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]]))
    # W W^T = [[5, 2], [2, 2]]: off-diagonal entries 2 and 2 -> 2^2 + 2^2 = 8 (biases do not count)
    assert_close(orthogonal_penalty(layer), torch.tensor(8.0), rtol=0, atol=0)
    conv = nn.Conv2d(1, 2, (1, 3), bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]]).view(2, 1, 1, 3))
    both = nn.Sequential(layer, conv, nn.Embedding(4, 3))  # embeddings are left out
    assert_close(orthogonal_penalty(both), torch.tensor(16.0), rtol=0, atol=0)
    orthogonal = nn.Linear(4, 3)
    nn.init.orthogonal_(orthogonal.weight)
    assert orthogonal_penalty(orthogonal) < 1e-10


def test_orthogonal_penalty_reads_the_weight_before_spectral_norm_and_has_biggans_gradient():
    G, _ = build()
    layer = G.stem
    w = layer.parametrizations.weight.original.detach().clone().requires_grad_(True)
    penalty = orthogonal_penalty(nn.Sequential(layer))
    penalty.backward()
    gram = w.detach() @ w.detach().T
    off = gram - torch.diag(torch.diagonal(gram))
    assert_close(penalty.detach(), off.square().sum())
    # BigGAN-PyTorch's utils.ortho adds strength * 2 (W W^T * (1 - I)) W: half of this gradient.
    assert_close(layer.parametrizations.weight.original.grad, 4 * off @ w.detach(), rtol=1e-4, atol=1e-8)


@pytest.mark.slow
def test_imagenet_128_parameter_counts_equal_biggan_pytorchs():
    """launch_BigGAN_bs256x8.sh: G_ch = D_ch = 96, dim_z 120, shared_dim 128, --G_shared --hier,
    attention at 64 px, 1,000 classes. BigGAN-PyTorch's Generator / Discriminator built with these
    arguments count 70,433,988 and 87,982,370 parameters (checked by building theirs). Built here
    without init and spectral norm, which change no count."""
    G, D = M.build("biggan", image_size=128, channels=3, num_classes=1000, width=96, latent_dim=120,
                   shared_dim=128, attention=64, init="default", spectral_norm=False, g_spectral_norm=False)
    assert (M.count_parameters(G), M.count_parameters(D)) == (70_433_988, 87_982_370)
