"""The plain-torch ResNets have torchvision's state-dict keys and shapes, parameter counts and
strides, so that torchvision's ImageNet weights and SimSiam's checkpoints load."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_cryolearn.models.resnet import adapt_first_conv, resnet


def _bn(prefix: str, c: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{prefix}.weight", (c,)), (f"{prefix}.bias", (c,)), (f"{prefix}.running_mean", (c,)),
            (f"{prefix}.running_var", (c,)), (f"{prefix}.num_batches_tracked", ())]


def _basic(prefix: str, cin: int, c: int, downsample: bool) -> list[tuple[str, tuple[int, ...]]]:
    keys = [(f"{prefix}.conv1.weight", (c, cin, 3, 3)), *_bn(f"{prefix}.bn1", c),
            (f"{prefix}.conv2.weight", (c, c, 3, 3)), *_bn(f"{prefix}.bn2", c)]
    if downsample:
        keys += [(f"{prefix}.downsample.0.weight", (c, cin, 1, 1)), *_bn(f"{prefix}.downsample.1", c)]
    return keys


# torchvision.models.resnet18().state_dict(), written out from its architecture
RESNET18_KEYS = [
    ("conv1.weight", (64, 3, 7, 7)), *_bn("bn1", 64),
    *_basic("layer1.0", 64, 64, False), *_basic("layer1.1", 64, 64, False),
    *_basic("layer2.0", 64, 128, True), *_basic("layer2.1", 128, 128, False),
    *_basic("layer3.0", 128, 256, True), *_basic("layer3.1", 256, 256, False),
    *_basic("layer4.0", 256, 512, True), *_basic("layer4.1", 512, 512, False),
    ("fc.weight", (1000, 512)), ("fc.bias", (1000,)),
]

# a sample of torchvision.models.resnet50().state_dict() (320 entries)
RESNET50_SAMPLE = {
    "conv1.weight": (64, 3, 7, 7),
    "layer1.0.conv1.weight": (64, 64, 1, 1),
    "layer1.0.conv3.weight": (256, 64, 1, 1),
    "layer1.0.downsample.0.weight": (256, 64, 1, 1),
    "layer1.0.downsample.1.running_var": (256,),
    "layer1.2.conv1.weight": (64, 256, 1, 1),
    "layer2.0.conv2.weight": (128, 128, 3, 3),
    "layer2.0.downsample.0.weight": (512, 256, 1, 1),
    "layer3.5.conv3.weight": (1024, 256, 1, 1),
    "layer4.0.downsample.0.weight": (2048, 1024, 1, 1),
    "layer4.2.bn3.running_mean": (2048,),
    "layer4.2.bn3.num_batches_tracked": (),
    "fc.weight": (1000, 2048),
    "fc.bias": (1000,),
}


def _shapes(net: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in net.state_dict().items()]


def test_resnet18_keys_are_torchvisions():
    got = _shapes(resnet("resnet18", in_channels=3, num_classes=1000))
    assert len(RESNET18_KEYS) == 122
    assert got == RESNET18_KEYS


def test_resnet50_keys_are_torchvisions():
    state = dict(_shapes(resnet("resnet50", in_channels=3, num_classes=1000)))
    assert len(state) == 320
    for key, shape in RESNET50_SAMPLE.items():
        assert state[key] == shape, key
    # no layer3.6, exactly 3-4-6-3 blocks
    blocks = {k.rsplit(".", 2)[0].split(".conv")[0] for k in state if k.startswith("layer") and ".conv1." in k}
    assert sorted(blocks) == sorted([f"layer1.{i}" for i in range(3)] + [f"layer2.{i}" for i in range(4)]
                                    + [f"layer3.{i}" for i in range(6)] + [f"layer4.{i}" for i in range(3)])


@pytest.mark.parametrize("name, with_fc, without_fc", [
    ("resnet18", 11_689_512, 11_176_512),
    ("resnet34", 21_797_672, 21_284_672),
    ("resnet50", 25_557_032, 23_508_032),
])
def test_parameter_counts(name, with_fc, without_fc):
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(resnet(name, in_channels=3, num_classes=1000)) == with_fc
    assert count(resnet(name, in_channels=3)) == without_fc
    # one input channel: conv1 loses 64·2·7·7 weights
    assert count(resnet(name, in_channels=1)) == without_fc - 64 * 2 * 49


def test_strides_are_torchvision_v1_5():
    net = resnet("resnet50")
    assert net.conv1.stride == (2, 2)
    assert net.layer2[0].conv1.stride == (1, 1) and net.layer2[0].conv2.stride == (2, 2)
    assert net.layer2[0].downsample[0].stride == (2, 2)


@pytest.mark.parametrize("name, dim", [("resnet18", 512), ("resnet50", 2048)])
def test_forward_shapes(name, dim):
    net = resnet(name, in_channels=1).eval()
    assert net.feature_dim == dim
    x = torch.randn(2, 1, 64, 96)
    assert net.forward_features(x).shape == (2, dim)
    assert net(x).shape == (2, dim)  # no fc: forward gives the features
    with_fc = resnet(name, in_channels=1, num_classes=7).eval()
    assert with_fc(x).shape == (2, 7)


def test_features_are_the_pooled_layer4():
    net = resnet("resnet18", in_channels=1).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        h = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        h = net.layer4(net.layer3(net.layer2(net.layer1(h))))
        assert h.shape == (1, 512, 2, 2)
        torch.testing.assert_close(net.forward_features(x), h.mean(dim=(2, 3)))


@torch.no_grad()
def test_zero_init_residual_makes_blocks_start_at_zero_gamma():
    net = resnet("resnet50", zero_init_residual=True)
    assert float(net.layer1[0].bn3.weight.abs().sum()) == 0.0
    assert float(net.layer1[0].bn2.weight.sum()) == 64.0
    assert float(resnet("resnet18", zero_init_residual=True).layer4[1].bn2.weight.abs().sum()) == 0.0


def test_adapt_first_conv_sums_rgb_into_grey_exactly():
    torch.manual_seed(0)
    rgb = resnet("resnet18", in_channels=3).eval()
    grey = resnet("resnet18", in_channels=1).eval()
    grey.load_state_dict(adapt_first_conv(rgb.state_dict(), 1))
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(grey.forward_features(x), rgb.forward_features(x.repeat(1, 3, 1, 1)),
                                   rtol=1e-4, atol=1e-5)
    w = rgb.conv1.weight.detach()
    torch.testing.assert_close(grey.conv1.weight.detach(), w.sum(1, keepdim=True))


def test_adapt_first_conv_other_directions():
    w = torch.ones(2, 1, 3, 3)
    out = adapt_first_conv({"conv1.weight": w, "bn1.weight": torch.ones(2)}, 3)
    assert out["conv1.weight"].shape == (2, 3, 3, 3)
    assert float(out["conv1.weight"][0, 0, 0, 0]) == pytest.approx(1 / 3)
    # the grey image replicated on three channels gives the 1-channel convolution back
    x = torch.randn(1, 1, 8, 8)
    torch.testing.assert_close(F.conv2d(x.repeat(1, 3, 1, 1), out["conv1.weight"]), F.conv2d(x, w))
    same = {"conv1.weight": torch.ones(2, 3, 3, 3)}
    assert adapt_first_conv(same, 3)["conv1.weight"] is same["conv1.weight"]
    with pytest.raises(ValueError, match="3 input channels; cannot adapt it to 2"):
        adapt_first_conv(same, 2)


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown ResNet 'resnet101'"):
        resnet("resnet101")
