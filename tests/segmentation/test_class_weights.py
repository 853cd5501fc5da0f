"""Sampling the classes that matter (#18): class weights in the cross-entropy and the Dice, and
the generalised Dice's 1/volume² weights, so that a rare class is not drowned by background."""

import pytest
import torch

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.segmentation.config import NetworkConfig
from napari_cryolearn.segmentation.losses import SegmentationLoss
from napari_cryolearn.segmentation.module import SegmentationModule


def _rare_class_batch():
    torch.manual_seed(0)
    labels = torch.zeros(2, 32, 32, 32, dtype=torch.long)
    labels[:, :, :, :8] = 1  # a quarter of the voxels
    labels[0, 10:16, 10:16, 20:26] = 2  # 216 voxels of 65536: a rare class
    labels[1, :4] = 255  # unannotated
    return torch.randn(2, 3, 32, 32, 32) * 0.1, labels


def _rare_gradient(**kw) -> float:
    logits, labels = _rare_class_batch()
    logits.requires_grad_(True)
    SegmentationLoss(3, 255, **kw)(logits, labels).total.backward()
    return float(logits.grad[:, 2][labels == 2].abs().mean())


def test_a_rare_class_pulls_harder_with_generalised_dice_and_with_class_weights():
    ce = _rare_gradient(use_dice=False)
    dice = _rare_gradient(dice_type="dice")
    generalized = _rare_gradient(dice_type="generalized")
    assert ce > 0 and dice > ce
    assert generalized > 1.5 * dice  # 1/volume² weights: the rare class is not drowned by background
    for dice_type, plain in (("generalized", generalized), ("dice", dice)):
        weighted = _rare_gradient(dice_type=dice_type, class_weights=[1.0, 1.0, 10.0])
        assert weighted > 3 * plain
        assert _rare_gradient(dice_type=dice_type, class_weights=[1.0, 1.0, 1.0]) == pytest.approx(plain, rel=1e-5)
    assert _rare_gradient(use_dice=False, class_weights=[1.0, 1.0, 10.0]) > 5 * ce


def test_class_weights_are_checked_and_reach_the_loss(tmp_path):
    net = NetworkConfig(out_channels=3, class_weights=[0.5, 1.0, 4.0])
    module = SegmentationModule({"patch_stores": ["x.zarr"], "log_dir": str(tmp_path), "network": net.to_dict()})
    assert module.loss_fn.class_weights.tolist() == [0.5, 1.0, 4.0]
    assert "loss_fn.class_weights" not in module.state_dict()  # checkpoints hold the same tensors as before
    for bad, match in (([1.0, 2.0], "2 weights"), ([1.0, -1.0, 1.0], ">= 0"), ([0.0, 0.0, 0.0], "not all 0")):
        with pytest.raises(ValueError, match=match):
            NetworkConfig(out_channels=3, class_weights=bad)
    with pytest.raises(ValueError, match="out_channels >= 2"):
        NetworkConfig(out_channels=1, class_weights=[1.0])
    with pytest.raises(InputError, match="class_weights"):
        NetworkConfig.from_dict({"out_channels": 3, "class_weights": [1.0]})
