"""SimSiam: prismpyp's architecture sized to the backbone, the loss and its stop-gradient, the
bias-corrected collapse level, and the frozen backbone."""

from __future__ import annotations

import math

import pytest
import torch

from napari_cryolearn.selfsup.simsiam import (
    CollapseMonitor,
    SimSiam,
    collapse_level,
    output_std,
    set_trainable,
    simsiam_loss,
)


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_heads_follow_prismpyp_layout_resnet50():
    model = SimSiam("resnet50", dim=512, pred_dim=256)
    s = _shapes(model)
    # reducer 2048 → 1024 → 512 → 512 (prismpyp's sizes for ResNet-50)
    assert s["reducer.0.weight"] == (1024, 2048) and s["reducer.0.bias"] == (1024,)
    assert s["reducer.1.weight"] == (1024,)
    assert s["reducer.3.weight"] == (512, 1024)
    assert s["reducer.6.weight"] == (512, 512) and s["reducer.7.running_var"] == (512,)
    # projector without biases, last BatchNorm without affine parameters
    assert s["projector.0.weight"] == (512, 512) and "projector.0.bias" not in s
    assert s["projector.6.weight"] == (512, 512)
    assert "projector.7.weight" not in s and s["projector.7.running_mean"] == (512,)
    # predictor 512 → 256 → 512
    assert s["predictor.0.weight"] == (256, 512) and "predictor.0.bias" not in s
    assert s["predictor.3.weight"] == (512, 256) and s["predictor.3.bias"] == (512,)
    assert s["encoder.conv1.weight"] == (64, 1, 7, 7)
    assert not any(k.startswith("encoder.fc.") for k in s)


def test_reducer_follows_the_backbone_width():
    s = _shapes(SimSiam("resnet18", dim=128, pred_dim=32))
    assert s["reducer.0.weight"] == (256, 512)
    assert s["reducer.3.weight"] == (128, 256)
    assert s["predictor.0.weight"] == (32, 128)


def test_parameter_counts():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    model = SimSiam("resnet18", dim=512, pred_dim=256)
    reducer = (512 * 256 + 256) + 2 * 256 + (256 * 512 + 512) + 2 * 512 + (512 * 512 + 512) + 2 * 512
    projector = 3 * 512 * 512 + 2 * 2 * 512
    predictor = 512 * 256 + 2 * 256 + 256 * 512 + 512
    assert count(model.reducer) == reducer == 528_128
    assert count(model.projector) == projector == 788_480
    assert count(model.predictor) == predictor == 263_168
    assert count(model) == 11_170_240 + reducer + projector + predictor


def test_forward_and_embed_shapes():
    torch.manual_seed(0)
    model = SimSiam("resnet18", dim=64, pred_dim=16)
    x1, x2 = torch.randn(4, 1, 64, 64), torch.randn(4, 1, 64, 64)
    p1, p2, z1, z2 = model(x1, x2)
    assert p1.shape == p2.shape == z1.shape == z2.shape == (4, 64)
    assert p1.requires_grad and not z1.requires_grad and not z2.requires_grad
    model.eval()
    with torch.no_grad():
        e = model.embed(x1)
        reduced = model.reducer(model.encoder.forward_features(x1))
    torch.testing.assert_close(e.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(e, reduced / reduced.norm(dim=1, keepdim=True))


def test_loss_values():
    p = torch.tensor([[1.0, 0.0, 0.0], [0.0, 3.0, 4.0]])
    assert float(simsiam_loss(p, p, p, p)) == pytest.approx(-1.0)
    assert float(simsiam_loss(p, p, -p, -p)) == pytest.approx(1.0)
    # orthogonal: cos 0; one pair aligned, one orthogonal: −½(½(1 + 0) + ½(1 + 0)) = −½
    q = torch.tensor([[0.0, 1.0, 0.0], [0.0, -4.0, 3.0]])
    assert float(simsiam_loss(p, p, q, q)) == pytest.approx(0.0, abs=1e-7)
    z = torch.tensor([[2.0, 0.0, 0.0], [0.0, -4.0, 3.0]])
    assert float(simsiam_loss(p, p, z, z)) == pytest.approx(-0.5)


def test_loss_gradient_does_not_flow_into_z():
    p1 = torch.randn(5, 8, requires_grad=True)
    p2 = torch.randn(5, 8, requires_grad=True)
    z1 = torch.randn(5, 8, requires_grad=True)
    z2 = torch.randn(5, 8, requires_grad=True)
    simsiam_loss(p1, p2, z1, z2).backward()
    assert z1.grad is None and z2.grad is None
    assert p1.grad is not None and float(p1.grad.abs().sum()) > 0


def test_model_gradient_reaches_the_network_only_through_p():
    torch.manual_seed(1)
    model = SimSiam("resnet18", dim=32, pred_dim=8)
    p1, p2, z1, z2 = model(torch.randn(3, 1, 32, 32), torch.randn(3, 1, 32, 32))
    assert z1.grad_fn is None and z2.grad_fn is None  # z comes out detached
    simsiam_loss(p1, p2, z1, z2).backward()
    assert model.predictor[3].weight.grad is not None
    assert model.encoder.conv1.weight.grad is not None  # through p = predictor(z) with z attached


def test_output_std_and_level_identical_outputs_is_collapsed():
    p = torch.tensor([[1.0, 2.0, 2.0]]).repeat(6, 1)
    assert output_std(p) == 0.0
    assert collapse_level(output_std(p), 3) == 1.0
    monitor = CollapseMonitor(dim=3)
    assert monitor.update(p * torch.arange(1.0, 7.0)[:, None]) == 1.0  # scale does not matter


def test_random_normal_outputs_are_healthy():
    torch.manual_seed(0)
    p = torch.randn(1024, 256)
    s = output_std(p)
    # each coordinate of a normalised Gaussian has std 1/√d (up to sampling)
    assert s * math.sqrt(256) == pytest.approx(1.0, abs=0.02)
    assert collapse_level(s, 256) < 0.02
    assert CollapseMonitor(256).update(p) == pytest.approx(collapse_level(s, 256))


def test_collapse_level_hand_computed_half():
    # two samples ±(1, 0) in 2D: std over the batch of column 0 is √2 (unbiased), column 1 is 0
    p = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert output_std(p) == pytest.approx(math.sqrt(2) / 2)
    assert collapse_level(output_std(p), 2) == pytest.approx(0.0, abs=1e-6)  # 1 − √2·(√2/2) = 0
    assert collapse_level(0.25, 4) == pytest.approx(0.5)
    assert collapse_level(1.0, 4) == 0.0  # clipped at 0


def test_bias_correction_two_batches():
    torch.manual_seed(0)
    p = torch.randn(64, 16)
    s = output_std(p)
    monitor = CollapseMonitor(16)
    monitor.update(p)
    level = monitor.update(p)
    # two equal batches: the corrected average is s itself
    assert level == pytest.approx(collapse_level(s, 16))
    # prismpyp's uncorrected average would be 0.1·0.9·s + 0.1·s = 0.19·s: reads near collapsed
    assert collapse_level(0.19 * s, 16) > 0.75
    # across epochs the same: one epoch, corrected level = that epoch's level
    assert monitor.end_epoch() == pytest.approx(collapse_level(s, 16))


def test_bias_corrected_average_of_unequal_batches():
    identical = torch.ones(4, 4)               # s₁ = 0
    spread = torch.eye(4)                      # s₂: columns (1, 0, 0, 0) → std ½
    s2 = output_std(spread)
    assert s2 == pytest.approx(0.5)
    monitor = CollapseMonitor(4)
    monitor.update(identical)
    # (0.9·s₁ + s₂)/1.9 = 0.5/1.9; level 1 − 2·0.5/1.9
    assert monitor.update(spread) == pytest.approx(1 - 2 * 0.5 / 1.9)
    epoch1 = monitor.end_epoch()
    assert epoch1 == pytest.approx(1 - 2 * 0.5 / 1.9)
    assert monitor.epoch_level is None
    monitor.update(spread)
    # across epochs: (0.9·(0.5/1.9) + 0.5)/1.9
    assert monitor.end_epoch() == pytest.approx(1 - 2 * (0.9 * 0.5 / 1.9 + 0.5) / 1.9)


def test_monitor_refuses_bad_input():
    monitor = CollapseMonitor(8)
    assert monitor.level is None and monitor.epoch_level is None
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        monitor.update(torch.ones(4, 7))
    with pytest.raises(ValueError, match="N >= 2"):
        monitor.update(torch.ones(1, 8))
    with pytest.raises(ValueError, match="before any batch"):
        monitor.end_epoch()


def test_set_trainable_freezes_only_the_encoder():
    model = SimSiam("resnet18", dim=64, pred_dim=16)
    heads = sum(p.numel() for m in (model.reducer, model.projector, model.predictor) for p in m.parameters())
    assert set_trainable(model, True) == heads
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.reducer.parameters())
    assert set_trainable(model, False) == sum(p.numel() for p in model.parameters())
