"""Block-wise distance maps (issue 17, item 15): the clipped job computes all classes per block of
planes and rows, the exact job streams its channels; both give exactly the whole-volume maps."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

import napari_cryolearn.prep.distance_job as distance_job
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.io.mrc import write_mrc
from napari_cryolearn.prep.distance_job import DistanceMapConfig, distance_map_job
from napari_cryolearn.prep.distances import signed_distance_maps, signed_distance_maps_blocks


def _labels(rng, shape=(29, 27, 25)) -> np.ndarray:
    """Blobs of classes 0..3 several voxels wide (so that block cuts fall inside objects), a
    large region of class 1 (distances well beyond clip) and no class 4."""
    coarse = rng.integers(0, 4, (6, 9, 13))
    labels = np.repeat(np.repeat(np.repeat(coarse, 6, 0), 5, 1), 4, 2)[: shape[0], : shape[1], : shape[2]]
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    labels[:8] = 1
    return labels


@pytest.mark.parametrize("black_border", [True, False])
@pytest.mark.parametrize("voxel_size", [None, (3.0, 1.0, 2.0), (13.48, 11.7, 9.3)])
@pytest.mark.parametrize("clip,normalize", [(5.0, False), (5.0, True), (30.0, True)])
def test_blocks_equal_the_whole_volume_exactly(rng, black_border, voxel_size, clip, normalize):
    labels = _labels(rng)
    expected = signed_distance_maps(labels, n_classes=5, voxel_size=voxel_size, black_border=black_border,
                                    clip=clip, normalize=normalize)
    for block in [(4, 5), (7, 100), (100, 3), (2, 2)]:
        got = np.full_like(expected, np.nan)
        seen = []
        for zs, ys, cls, values in signed_distance_maps_blocks(
            lambda a, b, c, d: labels[a:b, c:d], labels.shape, 5, clip, voxel_size=voxel_size,
            black_border=black_border, normalize=normalize, block=block,
        ):
            assert values.dtype == np.float32 and values.shape == (zs.stop - zs.start, ys.stop - ys.start, 25)
            got[cls, zs, ys] = values
            seen.append((zs.start, ys.start, cls))
        assert len(seen) == len(set(seen))
        assert np.array_equal(got, expected), (block, np.nanmax(np.abs(got - expected)))


def test_blocks_need_clip_and_the_promised_shape():
    labels = np.zeros((4, 5, 6), np.uint8)
    with pytest.raises(ValueError, match="clip"):
        next(signed_distance_maps_blocks(lambda a, b, c, d: labels[a:b, c:d], labels.shape, 1, None))
    with pytest.raises(ValueError, match="shape"):
        next(signed_distance_maps_blocks(lambda a, b, c, d: labels, (8, 5, 6), 1, 2.0, block=(2, 2)))


@pytest.fixture
def label_file(tmp_path, rng):
    labels = _labels(rng, (32, 40, 48))
    labels[12:20, 10:30, 10:40] = 2  # a slab of class 2 across several block cuts
    path = tmp_path / "labels.mrc"
    write_mrc(path, labels, voxel_size=(13.48, 11.7, 9.3))
    return path, labels


# Budgets (voxels per block, x whole): 3 x 4 blocks, 7 x 7, whole planes, and the default.
SLAB_BYTES = [48 * 12, 48 * 50, 48 * 40 * 9, distance_job._SLAB_BYTES]


@pytest.mark.parametrize("slab_bytes", SLAB_BYTES, ids=["tiny", "small", "planes", "default"])
def test_clipped_job_equals_the_whole_volume_exactly(tmp_path, label_file, monkeypatch, slab_bytes):
    path, labels = label_file
    monkeypatch.setattr(distance_job, "_SLAB_BYTES", slab_bytes)
    cases = itertools.product([False, True], [True, False], [False, True])
    for k, (aware, black_border, normalize) in enumerate(cases):
        clip = 30.0 if aware else 5.0
        config = DistanceMapConfig(input=path, output=tmp_path / f"d{k}.npy", voxel_size_aware=aware, clip=clip,
                                   normalize=normalize, black_border=black_border, n_classes=5)
        events = []
        maps = np.load(run_job(distance_map_job(config), events.append)["output"])
        expected = signed_distance_maps(labels, n_classes=5, voxel_size=(13.48, 11.7, 9.3) if aware else None,
                                        black_border=black_border, clip=clip, normalize=normalize)
        assert np.array_equal(maps, expected), (aware, black_border, normalize)
        assert events[-1].step == events[-1].total
        assert [e.step for e in events] == sorted(e.step for e in events)


@pytest.mark.parametrize("slab_bytes", SLAB_BYTES[:2] + SLAB_BYTES[3:], ids=["tiny", "small", "default"])
@pytest.mark.parametrize("black_border", [True, False])
def test_exact_job_equals_the_whole_volume_exactly(tmp_path, label_file, monkeypatch, slab_bytes, black_border):
    path, labels = label_file
    monkeypatch.setattr(distance_job, "_SLAB_BYTES", slab_bytes)
    config = DistanceMapConfig(input=path, output=tmp_path / "d.npy", voxel_size_aware=True, black_border=black_border,
                               n_classes=5)
    maps = np.load(run_job(distance_map_job(config))["output"])
    expected = signed_distance_maps(labels, n_classes=5, voxel_size=(13.48, 11.7, 9.3), black_border=black_border)
    assert np.array_equal(maps, expected)


def test_the_distances_module_does_not_import_scipy():
    code = "import sys, napari_cryolearn.prep.distances, napari_cryolearn.prep.distance_job; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
