"""SimCLR: the trainer's state-dict keys, embeddings from the encoder, and NT-Xent against a
direct computation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from napari_cryolearn.selfsup.simclr import SimCLR, nt_xent


def _reference_nt_xent(z1, z2, t):
    """The definition, one row at a time."""
    z = [F.normalize(v, dim=0) for v in torch.cat([z1, z2])]
    n2 = len(z)
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        pos = (i + n) % n2
        denominator = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n2) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[pos]) / t) / denominator)
    return total / n2


def test_state_dict_keys_are_the_trainers():
    model = SimCLR("resnet50", in_channels=3)
    s = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    head = {k: v for k, v in s.items() if k.startswith("projection_head.")}
    assert head == {
        "projection_head.projection.0.weight": (2048, 2048),
        "projection_head.projection.0.bias": (2048,),
        "projection_head.projection.2.weight": (128, 2048),
        "projection_head.projection.2.bias": (128,),
    }
    encoder = [k for k in s if k.startswith("encoder.")]
    assert len(encoder) == 318  # torchvision's 320 without fc.weight, fc.bias
    assert s["encoder.conv1.weight"] == (64, 3, 7, 7)
    assert s["encoder.layer4.2.conv3.weight"] == (2048, 512, 1, 1)
    assert len(s) == 322


def test_hidden_width():
    s = SimCLR("resnet18", out_dim=64).state_dict()
    assert tuple(s["projection_head.projection.0.weight"].shape) == (512, 512)
    assert tuple(s["projection_head.projection.2.weight"].shape) == (64, 512)
    s = SimCLR("resnet18", hidden=2048).state_dict()  # the trainer's ResNet-18 head
    assert tuple(s["projection_head.projection.0.weight"].shape) == (2048, 512)
    assert tuple(s["projection_head.projection.2.weight"].shape) == (128, 2048)


def test_embed_is_the_encoder_features():
    torch.manual_seed(0)
    model = SimCLR("resnet18").eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        features = model.embed(x)
        torch.testing.assert_close(features, model.encoder.forward_features(x))
        torch.testing.assert_close(model(x), model.projection_head(features))
    assert features.shape == (2, 512) and model(x).shape == (2, 128)


@pytest.mark.parametrize("t", [0.5, 0.1, 1.0])
def test_nt_xent_matches_the_double_loop(t):
    torch.manual_seed(0)
    z1, z2 = torch.randn(3, 4), torch.randn(3, 4)
    assert float(nt_xent(z1, z2, temperature=t)) == pytest.approx(_reference_nt_xent(z1, z2, t), rel=1e-5)


def test_nt_xent_any_batch_size():
    torch.manual_seed(1)
    for n in (2, 5, 7):
        z1, z2 = torch.randn(n, 6), torch.randn(n, 6)
        assert float(nt_xent(z1, z2)) == pytest.approx(_reference_nt_xent(z1, z2, 0.5), rel=1e-5)


def test_nt_xent_aligned_distinct_pairs():
    z = torch.eye(4)[:3] * torch.tensor([[1.0], [2.0], [5.0]])  # scale does not matter
    # positives cos 1, the 2N − 2 = 4 negatives cos 0: log(1 + 4·e^(−1/T)) per row
    assert float(nt_xent(z, z, 0.5)) == pytest.approx(math.log(1 + 4 * math.exp(-2)))
    assert float(nt_xent(z, z, 0.1)) == pytest.approx(math.log(1 + 4 * math.exp(-10)), rel=1e-3)  # float32
    assert float(nt_xent(z, z, 0.1)) < 2e-4
    torch.manual_seed(0)
    assert float(nt_xent(z, torch.randn(3, 4))) > float(nt_xent(z, z))


def test_nt_xent_batch_of_one():
    z1 = torch.tensor([[1.0, 2.0]], requires_grad=True)
    z2 = torch.tensor([[-3.0, 0.5]])
    loss = nt_xent(z1, z2)
    assert float(loss.detach()) == 0.0  # the positive is the only candidate
    loss.backward()
    assert torch.isfinite(z1.grad).all()


def test_nt_xent_gradient_is_finite():
    z1 = torch.randn(4, 8, requires_grad=True)
    nt_xent(z1, torch.randn(4, 8)).backward()
    assert torch.isfinite(z1.grad).all() and float(z1.grad.abs().sum()) > 0


def test_nt_xent_refuses_mismatched_batches():
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(2, 4\)"):
        nt_xent(torch.ones(3, 4), torch.ones(2, 4))
