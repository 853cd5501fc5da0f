"""Tiny data for the segmentation tests: blob volumes and patch stores written by the real
patch-store writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_cryolearn.io.patch_store import write_patch_store
from napari_cryolearn.prep.distances import signed_distance_maps
from napari_cryolearn.segmentation.config import (
    BackboneConfig,
    NetworkConfig,
    SegmentationTrainConfig,
    TransformsConfig,
)

TINY_BACKBONE = BackboneConfig(num_filters=(4, 8, 8, 8), fpn_channels=8, dense_dim=8)
NO_AUGMENT = TransformsConfig(flip=False, rotate=None, zoom=None, low_pass_sigma_range=None,
                              high_pass_sigma_range=None, noise_sigma_range=None)


def blob_volume(shape=(32, 48, 48), seed=0, n=6):
    """Dark spheres (class 1) and dark slabs (class 2) on noise; returns image, labels."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    labels = np.zeros(shape, np.uint8)
    for _ in range(n):
        c = rng.uniform(4, np.array(shape) - 4)
        r = rng.uniform(3, 6)
        labels[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < r * r] = 1
    labels[:, :, 5:8] = 2
    image = -1.5 * (labels > 0) + 0.3 * rng.standard_normal(shape)
    return image.astype(np.float32), labels


def write_store(path: Path, image, labels, patch=16, distances: bool = False, overlap=0.0) -> Path:
    dist = signed_distance_maps(labels.astype(np.int64), n_classes=3) if distances else None
    for _ in write_patch_store(path, image, labels, dist, patch_size=patch, overlap=overlap, voxel_size=(10, 10, 10)):
        pass
    return path


@pytest.fixture
def blob_store(tmp_path) -> Path:
    image, labels = blob_volume()
    return write_store(tmp_path / "blobs.zarr", image, labels)


@pytest.fixture
def blob_store_dist(tmp_path) -> Path:
    image, labels = blob_volume()
    return write_store(tmp_path / "blobs_d.zarr", image, labels, distances=True)


def tiny_config(stores, log_dir, **kw) -> SegmentationTrainConfig:
    network = kw.pop("network", {})
    network.setdefault("architecture", "cryosiam")  # the tiny network (a new run's default, unet, is larger)
    net = NetworkConfig(backbone=TINY_BACKBONE, out_channels=3, filters=(8, 8), **network)
    base = dict(patch_stores=list(stores), log_dir=log_dir, network=net, transforms=NO_AUGMENT,
                batch_size=2, max_epochs=2, lr=3e-3, device="cpu", progress_every_n_batches=2,
                validation_ratio=0.25)
    base.update(kw)
    return SegmentationTrainConfig(**base)


@pytest.fixture
def make_blobs():
    """``make_blobs(shape, seed, n) -> (image, labels)`` (see :func:`blob_volume`)."""
    return blob_volume


@pytest.fixture
def make_store():
    """``make_store(path, image, labels, patch=16, distances=False)`` → a patch store."""
    return write_store


@pytest.fixture
def make_config():
    """``make_config(stores, log_dir, **overrides)`` → a tiny CPU training config."""
    return tiny_config
