"""Loading pretrained weights strictly: each published layout, built in tmp_path from a model's
own state dict renamed, loads tensor for tensor; a checkpoint that does not fit names the file
and the keys."""

from __future__ import annotations

import pytest
import torch

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.models.resnet import resnet
from napari_cryolearn.selfsup.checkpoints import detect_layout, load_encoder_weights, read_state_dict
from napari_cryolearn.selfsup.simclr import SimCLR
from napari_cryolearn.selfsup.simsiam import SimSiam


def _randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every float tensor (BatchNorm statistics too) new values of a sensible scale."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if t.ndim > 1:
                t.copy_(torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5)
            elif name.endswith(("running_var", ".weight")):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
    return model


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys=None):
    for k in keys if keys is not None else a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def _save(obj, path):
    torch.save(obj, path)
    return path


def test_ours_with_ddp_prefix(tmp_path):
    source = _randomised(SimSiam("resnet18", dim=64, pred_dim=16), 1)
    ckpt = {"epoch": 3, "state_dict": {"module." + k: v for k, v in source.state_dict().items()}}
    path = _save(ckpt, tmp_path / "model_last.pth.tar")
    target = SimSiam("resnet18", dim=64, pred_dim=16)
    report = load_encoder_weights(target, path)
    assert report.layout == "ours"
    assert sorted(report.loaded) == sorted(target.state_dict())
    assert report.skipped == [] and report.untouched == [] and report.notes == []
    _assert_same(source.state_dict(), target.state_dict())
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(source.eval().embed(x), target.eval().embed(x))


def test_ours_into_a_plain_resnet_skips_the_heads(tmp_path):
    source = _randomised(SimCLR("resnet18"), 2)
    path = _save({"state_dict": source.state_dict()}, tmp_path / "simclr.ckpt")
    net = resnet("resnet18", in_channels=1)
    report = load_encoder_weights(net, path)
    assert report.layout == "ours"
    assert len(report.loaded) == 120
    assert report.skipped == [f"projection_head.projection.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")]
    _assert_same({k: v for k, v in source.encoder.state_dict().items()}, net.state_dict())


def _official_simsiam(encoder_state: dict[str, torch.Tensor]) -> dict:
    state = {"module.encoder." + k: v for k, v in encoder_state.items()}
    f = 512
    projector = {"fc.0.weight": (f, f), "fc.1.weight": (f,), "fc.1.bias": (f,), "fc.1.running_mean": (f,),
                 "fc.3.weight": (f, f), "fc.6.weight": (f, f), "fc.7.running_var": (f,)}
    state.update({"module.encoder." + k: torch.rand(s) for k, s in projector.items()})
    state.update({"module.predictor.0.weight": torch.rand(128, f), "module.predictor.3.weight": torch.rand(f, 128),
                  "module.predictor.3.bias": torch.rand(f)})
    return {"epoch": 100, "arch": "resnet18", "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}


def test_official_simsiam_into_a_grey_simsiam(tmp_path):
    rgb = _randomised(resnet("resnet18", in_channels=3), 3)
    path = _save(_official_simsiam(rgb.state_dict()), tmp_path / "checkpoint_0099.pth.tar")
    model = SimSiam("resnet18", in_channels=1, dim=64, pred_dim=16)
    heads_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    report = load_encoder_weights(model, path)
    assert report.layout == "simsiam_official"
    assert report.notes == ["encoder.conv1.weight: 3 input channels summed into 1"]
    assert len(report.loaded) == 120 and all(k.startswith("encoder.") for k in report.loaded)
    assert sorted(report.skipped) == sorted(
        ["module.encoder." + k for k in ("fc.0.weight", "fc.1.weight", "fc.1.bias", "fc.1.running_mean",
                                         "fc.3.weight", "fc.6.weight", "fc.7.running_var")]
        + ["module.predictor.0.weight", "module.predictor.3.weight", "module.predictor.3.bias"])
    assert sorted(report.untouched) == sorted(heads_before)
    got = model.encoder.state_dict()
    want = rgb.state_dict()
    torch.testing.assert_close(got["conv1.weight"], want["conv1.weight"].sum(1, keepdim=True))
    _assert_same(want, got, [k for k in want if k != "conv1.weight"])
    _assert_same(heads_before, model.state_dict(), list(heads_before))


def test_official_simsiam_into_an_rgb_resnet_is_exact(tmp_path):
    rgb = _randomised(resnet("resnet18", in_channels=3), 4)
    path = _save(_official_simsiam(rgb.state_dict()), tmp_path / "checkpoint_0099.pth.tar")
    net = resnet("resnet18", in_channels=3)
    report = load_encoder_weights(net, path)
    assert report.notes == []
    _assert_same(rgb.state_dict(), net.state_dict())


def test_torchvision_weights(tmp_path):
    imagenet = _randomised(resnet("resnet50", in_channels=3, num_classes=1000), 5)
    path = _save(imagenet.state_dict(), tmp_path / "resnet50-11ad3fa6.pth")
    # into a grey SimCLR: fc dropped, projection head untouched
    model = SimCLR("resnet50")
    report = load_encoder_weights(model, path)
    assert report.layout == "torchvision"
    assert report.skipped == ["fc.weight", "fc.bias"]
    assert len(report.loaded) == 318
    assert report.untouched == [f"projection_head.projection.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")]
    want = imagenet.state_dict()
    got = model.encoder.state_dict()
    _assert_same(want, got, [k for k in got if k != "conv1.weight"])
    # into an RGB ResNet with its classifier: everything, fc included
    clf = resnet("resnet50", in_channels=3, num_classes=1000)
    report = load_encoder_weights(clf, path)
    assert len(report.loaded) == 320 and report.skipped == []
    _assert_same(want, clf.state_dict())
    # a classifier for other classes is skipped, not an error
    ten = resnet("resnet50", in_channels=3, num_classes=10)
    report = load_encoder_weights(ten, path)
    assert report.skipped == ["fc.weight", "fc.bias"] and report.untouched == ["fc.weight", "fc.bias"]


def test_old_torchvision_weights_without_batch_counters(tmp_path):
    state = {k: v for k, v in _randomised(resnet("resnet18", num_classes=1000), 6).state_dict().items()
             if not k.endswith("num_batches_tracked")}
    assert len(state) == 102
    net = resnet("resnet18", in_channels=3)
    report = load_encoder_weights(net, _save(state, tmp_path / "resnet18-5c106cde.pth"))
    assert len(report.untouched) == 20 and all(k.endswith("num_batches_tracked") for k in report.untouched)
    assert len(report.loaded) == 100


def _prismpyp_key(k: str) -> str:
    names = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
    if k.startswith("encoder."):
        head, _, rest = k[len("encoder."):].partition(".")
        return f"module.backbone.{names[head]}.{rest}"
    return "module." + k


def test_prismpyp_checkpoint(tmp_path):
    source = _randomised(SimSiam("resnet50", in_channels=3, dim=512, pred_dim=256), 7)
    state = {_prismpyp_key(k): v for k, v in source.state_dict().items()}
    assert "module.backbone.6.5.conv3.weight" in state and "module.reducer.0.weight" in state
    path = _save({"epoch": 99, "arch": "resnet50", "state_dict": state, "optimizer": {}},
                 tmp_path / "model_lowest_collapse.pth.tar")
    model = SimSiam("resnet50", in_channels=3, dim=512, pred_dim=256)
    report = load_encoder_weights(model, path)
    assert report.layout == "prismpyp"
    assert sorted(report.loaded) == sorted(model.state_dict()) and report.skipped == []
    _assert_same(source.state_dict(), model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(source.eval().embed(x), model.eval().embed(x))


def test_prismpyp_rgb_into_grey(tmp_path):
    source = _randomised(SimSiam("resnet18", in_channels=3, dim=64, pred_dim=16), 8)
    state = {_prismpyp_key(k): v for k, v in source.state_dict().items()}
    model = SimSiam("resnet18", in_channels=1, dim=64, pred_dim=16).eval()
    report = load_encoder_weights(model, _save({"state_dict": state}, tmp_path / "model_best.pth.tar"))
    assert report.notes == ["encoder.conv1.weight: 3 input channels summed into 1"]
    grey = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.embed(grey), source.eval().embed(grey.repeat(1, 3, 1, 1)),
                                   rtol=1e-4, atol=1e-5)


def test_simclr_trainer_checkpoint(tmp_path):
    source = _randomised(SimCLR("resnet18", in_channels=3, hidden=2048), 9)
    ckpt = {"epoch": 4, "model_state_dict": source.state_dict(), "optimizer_state_dict": {}, "loss": 1.5,
            "best_loss": 1.5, "train_losses": [2.0, 1.5], "val_losses": [], "lr_history": [3e-4], "global_step": 7}
    path = _save(ckpt, tmp_path / "best_model.pt")
    model = SimCLR("resnet18", in_channels=3, hidden=2048)
    report = load_encoder_weights(model, path)
    assert report.layout == "simclr"
    assert sorted(report.loaded) == sorted(model.state_dict())
    _assert_same(source.state_dict(), model.state_dict())
    # the trainer's ResNet-18 head is 2048 wide: our default width (512) does not fit, loudly
    with pytest.raises(InputError, match=r"best_model\.pt.*projection_head\.projection\.0\.weight: checkpoint "
                                         r"projection_head\.projection\.0\.weight \(2048, 512\) vs model \(512, 512\)"):
        load_encoder_weights(SimCLR("resnet18", in_channels=3), path)


def test_in_memory_state_dict():
    source = _randomised(resnet("resnet18"), 10)
    net = resnet("resnet18")
    assert load_encoder_weights(net, source.state_dict()).layout == "torchvision"
    _assert_same(source.state_dict(), net.state_dict())
    assert load_encoder_weights(net, {"state_dict": source.state_dict()}, layout="torchvision").layout == "torchvision"


def test_truncated_file(tmp_path):
    path = _save({"state_dict": resnet("resnet18").state_dict()}, tmp_path / "good.pth")
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(InputError, match=r"truncated\.pth: not a readable PyTorch checkpoint"):
        load_encoder_weights(resnet("resnet18"), bad)
    with pytest.raises(InputError, match=r"missing\.pth: checkpoint not found"):
        load_encoder_weights(resnet("resnet18"), tmp_path / "missing.pth")


def test_missing_backbone_keys_name_the_file_and_keys(tmp_path):
    state = {k: v for k, v in SimSiam("resnet18").state_dict().items() if not k.startswith("encoder.layer4.")}
    path = _save({"state_dict": state}, tmp_path / "partial.pth.tar")
    with pytest.raises(InputError) as err:
        load_encoder_weights(SimSiam("resnet18"), path)
    text = str(err.value)
    assert text.startswith(str(path))
    assert "missing encoder.layer4.0.conv1.weight (512, 256, 3, 3)" in text
    assert "(and " in text  # more than five problems, counted


def test_other_backbone_does_not_fit(tmp_path):
    path = _save(resnet("resnet50", num_classes=1000).state_dict(), tmp_path / "resnet50.pth")
    with pytest.raises(InputError, match=r"resnet50\.pth: checkpoint \(torchvision layout\) does not fit this "
                                         r"ResNet \(resnet18, 1 channel\(s\)\): layer1\.0\.conv1\.weight: checkpoint "
                                         r"layer1\.0\.conv1\.weight \(64, 64, 1, 1\) vs model \(64, 64, 3, 3\)"):
        load_encoder_weights(resnet("resnet18", in_channels=1), path)
    # a deeper network of the same block type: its extra blocks are reported
    path34 = _save(resnet("resnet34").state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(InputError, match=r"unexpected layer1\.2\.conv1\.weight \(64, 64, 3, 3\)"):
        load_encoder_weights(resnet("resnet18", in_channels=3), path34)


def test_head_of_another_width_does_not_fit(tmp_path):
    path = _save({"state_dict": SimSiam("resnet18", dim=256).state_dict()}, tmp_path / "dim256.pth")
    with pytest.raises(InputError, match=r"reducer\.3\.weight: checkpoint reducer\.3\.weight \(256, 256\) vs model "
                                         r"\(512, 256\)"):
        load_encoder_weights(SimSiam("resnet18", dim=512), path)


def test_foreign_checkpoints(tmp_path):
    foreign = _save({"state_dict": {"unet.down.0.weight": torch.ones(2), "unet.up.0.weight": torch.ones(2)}},
                    tmp_path / "unet.ckpt")
    with pytest.raises(InputError, match=r"unet\.ckpt: unknown checkpoint layout \(first keys: unet\.down\.0\.weight, "
                                         r"unet\.up\.0\.weight\)"):
        load_encoder_weights(resnet("resnet18"), foreign)
    nothing = _save({"epoch": 3, "loss": 0.5}, tmp_path / "stats.pt")
    with pytest.raises(InputError, match=r"stats\.pt: no state dict of tensors in the checkpoint \(it holds a dict "
                                         r"with keys epoch, loss\)"):
        load_encoder_weights(resnet("resnet18"), nothing)
    state = resnet("resnet18").state_dict()
    state["layer2.0.bn1.running_var"][3] = float("nan")
    nan = _save(state, tmp_path / "diverged.pth")
    with pytest.raises(InputError, match=r"diverged\.pth: tensor layer2\.0\.bn1\.running_var holds NaN"):
        load_encoder_weights(resnet("resnet18"), nan)


def test_layout_argument_and_model_type():
    with pytest.raises(ValueError, match="unknown layout 'cryosiam'"):
        load_encoder_weights(resnet("resnet18"), {}, layout="cryosiam")
    with pytest.raises(TypeError, match="Linear is not a ResNet"):
        load_encoder_weights(torch.nn.Linear(2, 2), {})


def test_read_state_dict_and_detect_layout():
    state, container = read_state_dict({"model_state_dict": {"encoder.conv1.weight": torch.ones(1)}})
    assert container == "model_state_dict" and list(state) == ["encoder.conv1.weight"]
    assert detect_layout(list(state), container) == "simclr"
    assert detect_layout(["encoder.conv1.weight", "reducer.0.weight"]) == "ours"
    assert detect_layout(["layer.weight"]) == "unknown"
