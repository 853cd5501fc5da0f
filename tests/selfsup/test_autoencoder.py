"""The 4D-STEM autoencoder: shapes for any detector, the loss terms' defining cases, gradients,
and PSNR/SSIM against scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from napari_cryolearn.selfsup.autoencoder import (
    StemAutoencoder,
    activity_loss,
    ae_loss,
    divergence_loss,
    pool_factors,
    psnr,
    similarity_loss,
    ssim,
    upsample_sizes,
)


@pytest.mark.parametrize("shape", [(16, 16), (24, 20), (32, 32), (7, 9)])
def test_shapes_for_small_and_odd_detectors(shape):
    torch.manual_seed(0)
    model = StemAutoencoder(latent=6, detector_shape=shape, width=8)
    x = torch.rand(3, 1, *shape)
    recon, z = model(x)
    assert recon.shape == x.shape and z.shape == (3, 6) and (z >= 0).all()
    assert model.encode(x).shape == (3, 6) and model.decode(z).shape == x.shape


def test_pooling_adapts_and_matches_the_reference_for_256():
    assert pool_factors((256, 256)) == [(4, 4)] * 3
    assert upsample_sizes((256, 256)) == [(16, 16), (64, 64), (256, 256)]
    for shape in [(16, 16), (24, 20), (8, 8), (5, 64)]:
        sides = list(shape)
        for f in pool_factors(shape):
            sides = [s // k for s, k in zip(sides, f)]
            assert min(sides) >= min(4, min(shape))  # never pooled to nothing
    assert upsample_sizes((24, 20))[-1] == (24, 20)


def test_reference_width_layers():
    model = StemAutoencoder(latent=32, detector_shape=(64, 64))
    assert model.enc_fc.in_features == 16 and model.enc_fc.out_features == 32
    assert model.dec_fc.out_features == 2048 and model.enc_in[2].out_channels == 128


def test_activity_loss():
    assert float(activity_loss(torch.zeros(4, 3))) == 0.0
    z = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
    assert float(activity_loss(z)) == pytest.approx(3.0)


def test_similarity_loss_zero_for_orthogonal_positive_for_identical():
    assert float(similarity_loss(torch.eye(4))) == pytest.approx(0.0, abs=1e-7)
    same = torch.tensor([[1.0, 2.0, 0.0]]).repeat(5, 1)
    assert float(similarity_loss(same)) == pytest.approx(5 * 4 / (2 * 5))
    # zero rows are left out of the sum (but B counts the whole batch)
    with_zero = torch.cat([same, torch.zeros(1, 3)])
    assert float(similarity_loss(with_zero)) == pytest.approx(5 * 4 / (2 * 6))
    assert float(similarity_loss(torch.zeros(3, 4))) == 0.0


def test_divergence_loss_zero_for_constant_channels():
    assert float(divergence_loss(torch.full((3, 5), 2.0))) == pytest.approx(0.0)
    z = torch.tensor([[1.0, 3.0, 0.0], [2.0, 2.0, 0.0]])  # channel 3 is zero everywhere: left out
    assert float(divergence_loss(z)) == pytest.approx((2.0 + 0.0) / 2)
    z2 = torch.tensor([[1.0, 3.0, 5.0]])
    assert float(divergence_loss(z2)) == pytest.approx(2 + 4 + 2)


def test_ae_loss_terms_and_gradients_flow():
    torch.manual_seed(1)
    model = StemAutoencoder(latent=4, detector_shape=(16, 16), width=8)
    x = torch.rand(6, 1, 16, 16)
    recon, z = model(x)
    out = ae_loss(x, recon, z, lambda_act=0.1, lambda_sim=0.2, lambda_div=0.3)
    assert set(out) == {"mse", "act", "sim", "div", "total"}
    expected = out["mse"] + 0.1 * out["act"] + 0.2 * out["sim"] - 0.3 * out["div"]
    assert float(out["total"].detach()) == pytest.approx(float(expected.detach()))
    assert float(out["mse"].detach()) == pytest.approx(float(((recon - x) ** 2).mean().detach()))
    out["total"].backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.enc_in[0].weight.grad.abs().sum() > 0  # through the latent to the encoder
    # each regulariser on its own reaches the encoder
    for term in (activity_loss, similarity_loss, divergence_loss):
        model.zero_grad()
        z = model.encode(torch.rand(6, 1, 16, 16))
        if (z != 0).sum() == 0:
            continue
        term(z).backward()
        assert model.enc_fc.weight.grad.abs().sum() > 0


def test_psnr_and_ssim_agree_with_skimage(rng):
    x = rng.random((4, 1, 20, 24))
    y = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)
    y[2] = x[2] * 0.7 + 0.1  # a contrast change, not only noise
    ref_psnr = np.mean([peak_signal_noise_ratio(a[0], b[0], data_range=1.0) for a, b in zip(x, y)])
    ref_ssim = np.mean([structural_similarity(a[0], b[0], data_range=1.0) for a, b in zip(x, y)])
    tx, ty = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    assert float(psnr(tx, ty)) == pytest.approx(ref_psnr, abs=1e-3)
    assert float(ssim(tx, ty)) == pytest.approx(ref_ssim, abs=1e-4)
    assert float(ssim(tx, tx)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="7"):
        ssim(torch.rand(2, 1, 6, 6), torch.rand(2, 1, 6, 6))


def test_strict_loading_names_missing_and_mismatched_tensors(tmp_path):
    from napari_cryolearn.engine.errors import InputError
    from napari_cryolearn.selfsup.ae_module import load_state_strict

    model = StemAutoencoder(latent=4, detector_shape=(16, 16), width=8)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    load_state_strict(model, state, tmp_path / "a.ckpt")  # a Lightning module's prefix is fine
    del state["model.enc_fc.weight"]
    with pytest.raises(InputError, match="missing.*enc_fc.weight") as err:
        load_state_strict(model, state, tmp_path / "a.ckpt")
    assert "a.ckpt" in str(err.value)
    other = StemAutoencoder(latent=6, detector_shape=(16, 16), width=8).state_dict()
    with pytest.raises(InputError, match="another shape"):
        load_state_strict(model, other, tmp_path / "b.ckpt")
