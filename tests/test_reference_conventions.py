"""negaug against transcriptions of the reference code it says it follows (issue 27).

Each oracle below is a transcription of one function of the reference implementation, with its
random draws injected (the references use the global RNG), run on small hand-made inputs and
compared with torch.testing.assert_close. The reference's source is named in each docstring.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from negaug.augment import ConsistencyTransform, DiffAugment

# --------------------------------------------------------------------------------------------
# DiffAugment_pytorch.py (mit-han-lab/data-efficient-gans, DiffAugment-stylegan2-pytorch/, the
# latest version: sizes rounded half up), and CR-BigGAN's transform (DiffAugment-biggan-cifar/
# BigGAN.py, G_D.forward with CR_augment="flip,translation")


def ref_rand_translation(x, translation_x, translation_y, ratio=0.125):
    """rand_translation with its two torch.randint draws given as (B,) tensors."""
    shift_x, shift_y = int(x.size(2) * ratio + 0.5), int(x.size(3) * ratio + 0.5)
    assert translation_x.abs().max() <= shift_x and translation_y.abs().max() <= shift_y
    translation_x, translation_y = translation_x.view(-1, 1, 1), translation_y.view(-1, 1, 1)
    grid_batch, grid_x, grid_y = torch.meshgrid(
        torch.arange(x.size(0), dtype=torch.long, device=x.device),
        torch.arange(x.size(2), dtype=torch.long, device=x.device),
        torch.arange(x.size(3), dtype=torch.long, device=x.device),
        indexing="ij",
    )
    grid_x = torch.clamp(grid_x + translation_x + 1, 0, x.size(2) + 1)
    grid_y = torch.clamp(grid_y + translation_y + 1, 0, x.size(3) + 1)
    x_pad = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
    x = x_pad.permute(0, 2, 3, 1).contiguous()[grid_batch, grid_x, grid_y].permute(0, 3, 1, 2)
    return x


def ref_rand_cutout(x, offset_x, offset_y, ratio=0.5):
    """rand_cutout with its two torch.randint draws given as (B,) tensors."""
    cutout_size = int(x.size(2) * ratio + 0.5), int(x.size(3) * ratio + 0.5)
    assert offset_x.max() < x.size(2) + (1 - cutout_size[0] % 2) and offset_y.max() < x.size(3) + (1 - cutout_size[1] % 2)
    offset_x, offset_y = offset_x.view(-1, 1, 1), offset_y.view(-1, 1, 1)
    grid_batch, grid_x, grid_y = torch.meshgrid(
        torch.arange(x.size(0), dtype=torch.long, device=x.device),
        torch.arange(cutout_size[0], dtype=torch.long, device=x.device),
        torch.arange(cutout_size[1], dtype=torch.long, device=x.device),
        indexing="ij",
    )
    grid_x = torch.clamp(grid_x + offset_x - cutout_size[0] // 2, min=0, max=x.size(2) - 1)
    grid_y = torch.clamp(grid_y + offset_y - cutout_size[1] // 2, min=0, max=x.size(3) - 1)
    mask = torch.ones(x.size(0), x.size(2), x.size(3), dtype=x.dtype, device=x.device)
    mask[grid_batch, grid_x, grid_y] = 0
    x = x * mask.unsqueeze(1)
    return x


def ref_cr_augment(x, flip_draw, translation_x, translation_y):
    """CR-BigGAN's x_CR_aug: flip where torch.randint(0, 2) > 0, then DiffAugment 'translation'."""
    x = torch.where(flip_draw.view(-1, 1, 1, 1) > 0, x.flip(3), x)
    return ref_rand_translation(x, translation_x, translation_y)


def images(batch, height, width):
    return torch.arange(batch * 2 * height * width, dtype=torch.float).view(batch, 2, height, width) + 1


@pytest.mark.parametrize("height, width", [(32, 32), (28, 28), (33, 20), (8, 12)])
def test_a_replayed_translation_draw_gives_the_reference_s_image(height, width):
    augment = DiffAugment("translation")
    p = augment.sample(16, height, width, torch.Generator().manual_seed(height))
    x = images(16, height, width)
    assert_close(augment.apply(x, p), ref_rand_translation(x, p["shift_y"], p["shift_x"]), rtol=0, atol=0)


def test_translation_and_cutout_sizes_round_half_up_as_the_reference():
    p = DiffAugment("translation").sample(3000, 28, 33, torch.Generator().manual_seed(0))
    assert set(p["shift_y"].tolist()) == set(range(-4, 5))  # int(28 / 8 + 0.5) = 4 (28 // 8 = 3)
    assert set(p["shift_x"].tolist()) == set(range(-4, 5))  # int(33 / 8 + 0.5) = 4
    p = DiffAugment("cutout").sample(3000, 33, 32, torch.Generator().manual_seed(0))
    assert set(p["center_y"].tolist()) == set(range(0, 33))  # cutout 17 (odd): randint(0, 33 + 1 - 1)
    assert set(p["center_x"].tolist()) == set(range(0, 33))  # cutout 16 (even): randint(0, 32 + 1)


@pytest.mark.parametrize("height, width", [(32, 32), (33, 33), (28, 30), (9, 8)])
def test_a_replayed_cutout_draw_gives_the_reference_s_image(height, width):
    augment = DiffAugment("cutout")
    p = augment.sample(16, height, width, torch.Generator().manual_seed(height))
    x = images(16, height, width)
    assert_close(augment.apply(x, p), ref_rand_cutout(x, p["center_y"], p["center_x"]), rtol=0, atol=0)
    assert (augment.apply(x, p) == 0).flatten(1).sum(1).min() > 0  # a cutout is never empty


@pytest.mark.parametrize("size", [32, 28])
def test_the_consistency_transform_is_cr_biggan_s(size):
    transform = ConsistencyTransform(padding="zeros")
    p = transform.sample(16, size, size, torch.Generator().manual_seed(size))
    x = images(16, size, size)
    expected = ref_cr_augment(x, p["flip"].long(), p["shift_y"], p["shift_x"])
    assert_close(transform.apply(x, p), expected, rtol=0, atol=0)
    reflected = ConsistencyTransform().apply(x, p)  # the default: the border reflected (measured better)
    differs = (reflected != expected).any(dim=1).float().mean()  # the fraction of pixels the option changes
    assert 0.05 < differs < 0.25


# --------------------------------------------------------------------------------------------
# pix2pix's Cityscapes scores (phillipi/pix2pix, scripts/eval_cityscapes/util.py, used by
# evaluate.py: hist accumulated with fast_hist, then get_scores)


def ref_fast_hist(a, b, n):
    import numpy as np
    k = np.where((a >= 0) & (a < n))[0]
    bc = np.bincount(n * a[k].astype(int) + b[k], minlength=n**2)
    if len(bc) != n**2:
        return 0  # ignore this example if dimension mismatch
    return bc.reshape(n, n)


def ref_get_scores(hist):
    import numpy as np
    acc = np.diag(hist).sum() / (hist.sum() + 1e-12)  # mean pixel accuracy
    cl_acc = np.diag(hist) / (hist.sum(1) + 1e-12)  # per class accuracy
    iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist) + 1e-12)  # per class IoU
    return acc, np.nanmean(cl_acc), np.nanmean(iu), cl_acc, iu


def eight_class_maps():
    """Truth and prediction (1, 18, 40): classes 0..6 with 100 pixels each, class 7 absent;
    68 pixels right in classes 0-5, 70 in class 6, the rest predicted as the next class; 20 void."""
    truth = torch.arange(7).repeat_interleave(100)
    correct = torch.tensor([68, 68, 68, 68, 68, 68, 70])
    within = torch.arange(700) % 100
    predicted = torch.where(within < correct[truth], truth, (truth + 1) % 7)
    truth = torch.cat([truth, torch.full((20,), 255)])  # void pixels, never counted
    predicted = torch.cat([predicted, torch.zeros(20, dtype=torch.long)])
    return predicted.view(1, 18, 40), truth.view(1, 18, 40)


def test_segmentation_scores_all_are_pix2pix_s_get_scores_and_present_differs():
    import numpy as np

    from negaug.metrics.segmentation import confusion_matrix, segmentation_scores
    predicted, truth = eight_class_maps()
    hist = ref_fast_hist(truth.flatten().numpy(), predicted.flatten().numpy(), 8)
    acc, class_acc, iou, _, _ = ref_get_scores(hist)
    confusion = confusion_matrix(predicted, truth, 8)
    assert np.array_equal(confusion.numpy(), hist)
    ours = segmentation_scores(confusion, "all")
    assert_close(torch.tensor([ours["pixel_accuracy"], ours["class_accuracy"], ours["mean_iou"]], dtype=torch.float64),
                 torch.tensor([acc, class_acc, iou], dtype=torch.float64))
    present = segmentation_scores(confusion, "present")
    assert_close(torch.tensor([ours["class_accuracy"], present["class_accuracy"]], dtype=torch.float64),
                 torch.tensor([4.78 / 8, 4.78 / 7], dtype=torch.float64))  # 0.598 and 0.683
    assert present["pixel_accuracy"] == ours["pixel_accuracy"]


def test_cityscapes_data_are_scored_as_pix2pix_s_evaluation_by_default():
    from types import SimpleNamespace

    from negaug.metrics.segmentation import default_average
    assert default_average(SimpleNamespace(name="cityscapes-val")) == "all"
    assert default_average(SimpleNamespace(name="scenes-test")) == "present"
    with pytest.raises(ValueError, match="average='mean' is not one of all, present"):
        from negaug.metrics.segmentation import segmentation_scores
        segmentation_scores(torch.eye(2, dtype=torch.long), "mean")


# --------------------------------------------------------------------------------------------
# Pix2Pix's discriminator input (junyanz/pytorch-CycleGAN-and-pix2pix, models/pix2pix_model.py:
# fake_AB = torch.cat((self.real_A, self.fake_B), 1); pred_fake = self.netD(fake_AB.detach()))


def test_pix2pix_d_reads_condition_then_output_as_the_reference():
    from negaug.models.pix2pix import PatchDiscriminator
    torch.manual_seed(0)
    D = PatchDiscriminator(in_channels=3 + 1, width=4, norm="instance").eval()
    real_A, fake_B = torch.rand(2, 3, 32, 32), torch.rand(2, 1, 32, 32)  # condition (photo), output (labels)
    assert_close(D(fake_B, real_A), D.model(torch.cat((real_A, fake_B), 1)), rtol=0, atol=0)


# --------------------------------------------------------------------------------------------
# Minibatch discrimination (openai/improved-gan, mnist_svhn_cifar10/nn.py, MinibatchLayer.
# get_output_for without init, numpy for theano; W is their weight-normalised theta, given here)


def ref_minibatch_layer(input, W, b):
    import numpy as np
    activation = np.tensordot(input, W, [[1], [0]])  # (B, K, C)
    abs_dif = (np.sum(abs(activation[:, :, :, None] - activation.transpose(1, 2, 0)[None]), axis=2)
               + 1e6 * np.eye(input.shape[0])[:, None, :])
    f = np.sum(np.exp(-abs_dif), axis=2)
    f += b[None, :]
    return np.concatenate([input, f], axis=1)


def test_minibatch_discrimination_is_improved_gan_s_layer_and_old_checkpoints_keep_their_outputs():
    from negaug.models.layers import MinibatchDiscrimination
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(6, num_kernels=4, kernel_dim=3).double()
    with torch.no_grad():
        layer.T.mul_(20)  # distances of order one, so that exp(-d) is not ~1 everywhere
        layer.bias.copy_(torch.tensor([-1.0, 0.5, 0.0, 2.0]))
    f = torch.randn(5, 6, dtype=torch.float64)
    expected = ref_minibatch_layer(f.numpy(), layer.T.detach().numpy(), layer.bias.detach().numpy())
    assert_close(layer(f), torch.from_numpy(expected))
    old_state = {"T": layer.T.detach().clone()}  # negaug < 0.5: no bias, j = i summed (+1)
    old = MinibatchDiscrimination(6, num_kernels=4, kernel_dim=3).double()
    old.load_state_dict(old_state)
    m = torch.einsum("ba,akc->bkc", f, layer.T.detach())
    with_self = torch.exp(-(m[:, None] - m[None]).abs().sum(-1)).sum(1)  # the old layer's o
    assert_close(old(f)[:, 6:], with_self)


# --------------------------------------------------------------------------------------------
# Feature matching (openai/improved-gan, mnist_svhn_cifar10/train_cifar_feature_matching.py:
# m1 = T.mean(output_unl,axis=0); m2 = T.mean(output_gen,axis=0); loss_gen = T.mean(abs(m1-m2)))


def ref_feature_matching(output_unl, output_gen):
    import numpy as np
    m1, m2 = np.mean(output_unl, axis=0), np.mean(output_gen, axis=0)
    return np.mean(abs(m1 - m2))


def test_feature_matching_mean_abs_is_improved_gan_s_and_sum_is_the_paper_s():
    from negaug.losses.feature_matching import feature_matching_loss
    real = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]], dtype=torch.float64)
    fake = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 2.0], [3.0, 1.0, 0.0]], dtype=torch.float64)
    expected = ref_feature_matching(real.numpy(), fake.numpy())
    assert_close(feature_matching_loss(real, fake, "mean_abs").double(), torch.tensor(expected, dtype=torch.float64))
    # means: real (2, 1, 0.5), fake (1, 1, 1); the paper's ||.||^2 = 1 + 0 + 0.25
    assert_close(feature_matching_loss(real, fake).double(), torch.tensor(1.25, dtype=torch.float64))
    with pytest.raises(ValueError, match="reduction 'max' is not one of sum, mean_abs"):
        feature_matching_loss(real, fake, "max")


# --------------------------------------------------------------------------------------------
# GMMN (yujiali/gmmn, core/generative.py: GaussianKernelMmdLoss and SqrtGaussianKernelMmdLoss,
# loss value only, numpy for gnumpy; sigma is a variance)


def ref_gmmn_sqrt_loss(pred, target, sigma):
    import numpy as np
    n_pred, n_target = pred.shape[0], target.shape[0]
    s = np.zeros((n_pred + n_target, 1))
    s[:n_pred] = 1
    W = s / n_pred - (1 - s) / n_target
    X = np.concatenate((pred, target), axis=0)
    XX = X.dot(X.T)
    x = np.diag(XX)
    prod_mat = XX - 0.5 * x - 0.5 * x[:, np.newaxis]
    ww = W.dot(W.T)
    loss = 0
    for i in range(len(sigma)):
        K = np.exp(1.0 / sigma[i] * prod_mat)
        loss += (ww * K).sum()
    return np.sqrt(loss)


def test_mmd_sqrt_is_gmmn_s_objective_with_variance_bandwidths_converted():
    from negaug.losses.mmd import MMDLoss
    g = torch.Generator().manual_seed(0)
    fake, real = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(7, 3, generator=g, dtype=torch.float64) + 1
    variances = [1.0, 4.0, 16.0]  # theirs; ours are standard deviations 1, 2, 4
    expected = ref_gmmn_sqrt_loss(fake.numpy(), real.numpy(), variances)
    loss, _ = MMDLoss(sigmas=[v ** 0.5 for v in variances], sqrt=True).generator_loss(fake, real)
    assert_close(loss.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=0)
    plain, _ = MMDLoss(sigmas=[1.0, 2.0, 4.0]).generator_loss(fake, real)
    assert_close(plain.double(), torch.tensor(expected ** 2, dtype=torch.float64), rtol=1e-6, atol=0)


# --------------------------------------------------------------------------------------------
# BigGAN's shared embedding size (ajbrock/BigGAN-PyTorch, BigGAN.py Generator: self.shared_dim =
# shared_dim if shared_dim > 0 else dim_z; CBN inputs shared_dim + z_chunk_size)


def test_biggan_shared_dim_sizes_the_embedding_and_the_cbn_inputs():
    import negaug.models as M
    kwargs = dict(image_size=128, channels=3, num_classes=10, width=1, latent_dim=120)
    G0, _ = M.build("biggan", **kwargs)
    G1, _ = M.build("biggan", **kwargs, shared_dim=128)
    assert G0.shared.weight.shape == (10, 120) and G1.shared.weight.shape == (10, 128)
    extra = M.count_parameters(G1) - M.count_parameters(G0)
    # 8 more embedding features per class, and 8 more inputs to each CBN's gain and bias maps (no bias)
    channels = sum(m.gain.out_features for m in G1.modules() if hasattr(m, "gain") and isinstance(m.gain, torch.nn.Linear))
    assert extra == 10 * 8 + 2 * 8 * channels
    # ImageNet-128 (width 96, 1000 classes): 70,307,716 -> 70,433,988 = + 1000 * 8 + 16 * 7392 CBN channels
    assert 1000 * 8 + 16 * 96 * 77 == 70_433_988 - 70_307_716
