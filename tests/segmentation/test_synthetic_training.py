"""End to end on the synthetic tomogram: train on one (seed 0), predict another (seed 1)."""

import numpy as np
import pytest
import torch

from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.io import read_mrc, write_mrc
from napari_cryolearn.io.patch_store import write_patch_store
from napari_cryolearn.sample import make_synthetic_tomogram
from napari_cryolearn.segmentation.config import (
    BackboneConfig,
    NetworkConfig,
    SegmentationPredictConfig,
    SegmentationTrainConfig,
    TransformsConfig,
)
from napari_cryolearn.segmentation.losses import dice_counts, dice_from_counts
from napari_cryolearn.segmentation.predict_job import predict_job
from napari_cryolearn.segmentation.train_job import train_job

NAMES = ["background", "membrane", "membrane_protein", "particle"]
SHAPE = (64, 96, 96)


@pytest.mark.slow
def test_train_then_predict_held_out_tomogram_membrane_dice(tmp_path):
    train = make_synthetic_tomogram(shape=SHAPE, voxel_size=10.0, seed=0)
    test = make_synthetic_tomogram(shape=SHAPE, voxel_size=10.0, seed=1)
    store = tmp_path / "train.zarr"
    for _ in write_patch_store(store, train.volume, train.labels, patch_size=32, overlap=0.5, voxel_size=(10,) * 3):
        pass
    net = NetworkConfig(out_channels=4, class_names=NAMES, filters=(16, 16),
                        backbone=BackboneConfig(num_filters=(8, 16, 16, 32), fpn_channels=16, dense_dim=16))
    augment = TransformsConfig(rotate=None, zoom=None, rotate90=True, low_pass_sigma_range=None,
                               high_pass_sigma_range=None, noise_sigma_range=(0.0, 0.3))
    cfg = SegmentationTrainConfig(patch_stores=[store], log_dir=tmp_path / "run", network=net, transforms=augment,
                                  batch_size=4, max_epochs=6, lr=0.01, device="cpu", validation_ratio=0.1)
    result = run_job(train_job(cfg))
    assert result.epochs == 6

    tomo = tmp_path / "test.mrc"
    write_mrc(tomo, test.volume, voxel_size=10.0)
    out = run_job(predict_job(SegmentationPredictConfig(model=result.last_checkpoint, input=tomo,
                                                        output=tmp_path / "pred.mrc", device="cpu", batch_size=4)))
    pred = read_mrc(out["output"])
    assert pred.voxel_size == (10.0, 10.0, 10.0)
    p = torch.from_numpy(np.asarray(pred.data).astype(np.int64))
    t = torch.from_numpy(test.labels.astype(np.int64))
    dice = dice_from_counts(dice_counts(p, t, 4)).tolist()
    print("per-class Dice on the held-out tomogram:", dict(zip(NAMES, np.round(dice, 3))))
    assert dice[1] >= 0.8  # membrane
    assert dice[0] >= 0.95  # background
