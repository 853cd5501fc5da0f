"""Loading CryoSiam-layout checkpoints (created here in their layout: nothing is downloaded)."""

import pytest
import torch

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.models.checkpoints import (
    backbone_config_from_checkpoint,
    load_weights,
    read_checkpoint,
)
from napari_cryolearn.segmentation.config import BackboneConfig, NetworkConfig
from napari_cryolearn.segmentation.network import build_network
from napari_cryolearn.segmentation.predict_job import network_config_from_checkpoint

BB = BackboneConfig(block_type="bottleneck", num_filters=(4, 8, 8, 8), fpn_channels=8, dense_dim=6)
CRYOSIAM_BB = {"block_type": "bottleneck", "spatial_dims": 3, "in_channels": 1, "num_layers": [1, 1, 1, 1],
               "num_filters": [4, 8, 8, 8], "fpn_channels": 8, "no_max_pool": True, "dim": 16, "pred_dim": 4,
               "dense_dim": 6, "dense_pred_dim": 4}


def _randomised(net):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g))
    return net


def _pretraining_extras(prefix):
    # parts of DenseSimSiam that segmentation does not use
    return {f"{prefix}predictor.0.weight": torch.randn(4, 6, 1, 1, 1),
            f"{prefix}global_projector.0.weight": torch.randn(32, 32),
            f"{prefix}global_predictor.3.bias": torch.randn(16),
            f"{prefix}encoder.fc.weight": torch.randn(16, 32)}


def _cryosiam_semantic(path, src, out_channels=3, distance=True):
    state = {f"_model_backbone.{k[len('backbone.'):]}": v for k, v in src.state_dict().items()
             if k.startswith("backbone.")}
    state.update(_pretraining_extras("_model_backbone."))
    state.update({f"_model.{k[len('heads.'):]}": v for k, v in src.state_dict().items() if k.startswith("heads.")})
    hp = {"config": {"parameters": {"network": {"in_channels": 1, "spatial_dims": 3, "out_channels": out_channels,
                                                "dense_dim": 6, "filters": [8, 8], "kernel_size": 3, "padding": 1,
                                                "distance_prediction": distance},
                                    "data": {"patch_size": [16, 16, 16], "min": 0, "max": 1, "mean": 0, "std": 1}}},
          "backbone_config": {"parameters": {"network": CRYOSIAM_BB}}}
    torch.save({"state_dict": state, "hyper_parameters": hp, "epoch": 3}, path)
    return path


def _net(out_channels=3, distance=True, backbone=BB):
    return build_network(NetworkConfig(backbone=backbone, out_channels=out_channels, filters=(8, 8),
                                       distance_prediction=distance))


def test_cryosiam_semantic_checkpoint_loads_everything(tmp_path):
    src = _randomised(_net())
    path = _cryosiam_semantic(tmp_path / "semantic.ckpt", src)
    ckpt = read_checkpoint(path)
    cfg = network_config_from_checkpoint(ckpt, path)
    assert cfg.out_channels == 3 and cfg.distance_prediction and cfg.backbone == BB
    dst = build_network(cfg)
    report = load_weights(dst, path, require_heads=True)
    assert report.layout == "cryosiam_semantic" and not report.skipped
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_cryosiam_pretraining_checkpoint_initialises_backbone_only(tmp_path):
    src = _randomised(_net())
    state = {f"_model.{k[len('backbone.'):]}": v for k, v in src.state_dict().items() if k.startswith("backbone.")}
    state.update(_pretraining_extras("_model."))
    path = tmp_path / "dense_simsiam.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"config": {"parameters": {"network": CRYOSIAM_BB}}}}, path)
    ckpt = read_checkpoint(path)
    assert backbone_config_from_checkpoint(ckpt, path) == BB
    dst = _net(out_channels=5, distance=False)
    heads_before = {k: v.clone() for k, v in dst.state_dict().items() if k.startswith("heads.")}
    report = load_weights(dst, path)
    assert report.layout == "cryosiam_pretrain"
    for k, v in dst.state_dict().items():
        if k.startswith("backbone."):
            assert torch.equal(v, src.state_dict()[k]), k
        else:
            assert torch.equal(v, heads_before[k]), k


def test_other_class_count_skips_only_last_head_layer(tmp_path):
    path = _cryosiam_semantic(tmp_path / "semantic.ckpt", _randomised(_net()))
    dst = _net(out_channels=5)
    report = load_weights(dst, path)
    assert {s.split(":")[0] for s in report.skipped} == {
        "heads.semantic_head.6.weight", "heads.semantic_head.6.bias",
        "heads.distance_head.6.weight", "heads.distance_head.6.bias"}
    with pytest.raises(InputError, match="semantic_head.6.weight"):
        load_weights(_net(out_channels=5), path, require_heads=True)


def test_other_architecture_is_an_input_error_naming_file_and_keys(tmp_path):
    path = _cryosiam_semantic(tmp_path / "semantic.ckpt", _randomised(_net()))
    other = _net(backbone=BackboneConfig(block_type="bottleneck", num_filters=(4, 8, 16, 8), fpn_channels=8,
                                         dense_dim=6))
    with pytest.raises(InputError) as err:
        load_weights(other, path)
    msg = str(err.value)
    assert "semantic.ckpt" in msg and "encoder.layer3" in msg and "(16," in msg


def test_our_checkpoint_and_unknown_layouts(tmp_path):
    src = _randomised(_net(distance=False))
    ours = tmp_path / "ours.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in src.state_dict().items()}}, ours)
    dst = _net(distance=False)
    assert load_weights(dst, ours, require_heads=True).layout == "ours"
    assert all(torch.equal(dst.state_dict()[k], v) for k, v in src.state_dict().items())
    bad = tmp_path / "unet.ckpt"
    torch.save({"state_dict": {"model.0.conv.weight": torch.zeros(1)}}, bad)
    with pytest.raises(InputError, match="unet.ckpt.*unknown checkpoint layout"):
        load_weights(dst, bad)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk.ckpt"):
        read_checkpoint(junk)
    with pytest.raises(InputError, match="not found"):
        read_checkpoint(tmp_path / "missing.ckpt")
