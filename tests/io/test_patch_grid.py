"""Patch grids, extraction, background filtering and reassembly (napari_cryolearn.io.patch_grid)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from monai.data.utils import iter_patch_slices

from napari_cryolearn.io.patch_grid import (
    cryosiam_grid,
    extract_patches,
    grid_steps,
    keep_nonbackground,
    patch_grid,
    reassemble,
)

overlaps = st.one_of(st.sampled_from([0.0, 0.25, 0.5, 0.75, 0.9]), st.integers(0, 3))


@st.composite
def shapes_and_patches(draw):
    shape = tuple(draw(st.integers(1, 40)) for _ in range(3))
    patch = tuple(draw(st.integers(1, s)) for s in shape)
    overlap = draw(overlaps)
    if isinstance(overlap, int):
        overlap = min(overlap, min(patch) - 1)
    return shape, patch, overlap


def test_known_axis_starts():
    # CryoSiam's documented example: S=250, p=128, overlap 0.5
    assert patch_grid((250, 128, 128), 128, overlap=0.5)[:, 0].tolist() == [0, 64, 122]
    assert cryosiam_grid((250, 128, 128), 128, overlap=0.5)[:, 0].tolist() == [0, 64]
    # an exact fit adds no extra patch
    assert patch_grid((192, 64, 64), 64, overlap=0.5)[:, 0].tolist() == [0, 32, 64, 96, 128]
    # overlap in voxels: step = p - overlap
    assert patch_grid((100, 20, 20), 20, overlap=5)[:, 0].tolist() == [0, 15, 30, 45, 60, 75, 80]
    assert grid_steps((128, 64, 10), overlap=0.5) == (64, 32, 5)
    assert grid_steps((2, 2, 2), overlap=0.9) == (1, 1, 1)  # round(0.2) = 0, forced to 1


def test_grid_order_is_z_then_y_then_x():
    origins = patch_grid((4, 4, 4), 2, overlap=0.0)
    assert origins.shape == (8, 3) and origins.dtype == np.int64
    assert origins.tolist() == sorted(origins.tolist())
    assert origins[1].tolist() == [0, 0, 2]


@given(shapes_and_patches())
def test_grid_covers_every_voxel_and_ends_flush(args):
    shape, patch, overlap = args
    origins = patch_grid(shape, patch, overlap=overlap)
    covered = np.zeros(shape, dtype=np.int32)
    for o in origins:
        covered[tuple(slice(a, a + p) for a, p in zip(o, patch))] += 1
    assert covered.min() >= 1
    assert np.all(origins >= 0) and np.all(origins + patch <= shape)
    for axis in range(3):
        starts = np.unique(origins[:, axis])
        assert starts[0] == 0 and starts[-1] == shape[axis] - patch[axis]
        steps = np.diff(starts)
        step = grid_steps(patch, overlap=overlap)[axis]
        if len(steps) > 1:
            assert np.all(steps[:-1] == step) and 0 < steps[-1] <= step


@given(
    shape=st.tuples(*[st.integers(1, 40)] * 3),
    patch=st.tuples(*[st.integers(1, 48)] * 3),
    overlap=st.one_of(st.sampled_from([0.0, 0.25, 0.5, 0.75]), st.integers(0, 0)),
)
def test_cryosiam_grid_matches_monai(shape, patch, overlap):
    try:
        expected = [[s.start for s in sl] for sl in iter_patch_slices(shape, patch, overlap=overlap, padded=False)]
    except ValueError:  # MONAI's step rounds to 0 (e.g. p=1, overlap 0.5): ours refuses too
        with pytest.raises(ValueError, match="no step"):
            cryosiam_grid(shape, patch, overlap=overlap)
        return
    assert cryosiam_grid(shape, patch, overlap=overlap).tolist() == expected


def test_cryosiam_grid_matches_monai_with_voxel_overlap():
    for shape, patch, overlap in [((50, 40, 33), (16, 16, 16), 4), ((64, 64, 64), (32, 20, 8), 3)]:
        expected = [[s.start for s in sl] for sl in iter_patch_slices(shape, patch, overlap=overlap, padded=False)]
        assert cryosiam_grid(shape, patch, overlap=overlap).tolist() == expected


def test_patch_larger_than_volume_names_both_sizes():
    with pytest.raises(ValueError, match=r"patch size \(64, 64, 64\).*volume \(32, 80, 80\).*along z"):
        patch_grid((32, 80, 80), 64)
    # CryoSiam shrinks the patch instead: one patch at the origin
    assert cryosiam_grid((32, 80, 80), 64, overlap=0.5).tolist() == [[0, 0, 0]]


def test_bad_overlap():
    with pytest.raises(ValueError, match="overlap"):
        patch_grid((10, 10, 10), 4, overlap=1.0)
    with pytest.raises(ValueError, match="overlap"):
        patch_grid((10, 10, 10), 4, overlap=4)


@given(shapes_and_patches(), st.sampled_from(["first", "mean"]))
def test_extract_then_reassemble_is_exact(args, mode):
    shape, patch, overlap = args
    volume = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    origins = patch_grid(shape, patch, overlap=overlap)
    patches = extract_patches(volume, origins, patch)
    assert patches.shape == (len(origins), *patch)
    np.testing.assert_array_equal(reassemble(patches, origins, shape, mode=mode), volume)


def test_extract_patch_values_and_channels(rng):
    volume = rng.normal(size=(2, 20, 21, 22)).astype(np.float32)
    origins = np.array([[0, 0, 0], [4, 5, 6]])
    patches = extract_patches(volume, origins, (8, 9, 10))
    assert patches.shape == (2, 2, 8, 9, 10)
    np.testing.assert_array_equal(patches[1], volume[:, 4:12, 5:14, 6:16])
    np.testing.assert_array_equal(reassemble(patches, origins, (20, 21, 22))[:, 4:12, 5:14, 6:16], volume[:, 4:12, 5:14, 6:16])
    with pytest.raises(ValueError, match="leave the volume"):
        extract_patches(volume, np.array([[15, 0, 0]]), (8, 9, 10))


def test_reassemble_first_and_mean_on_disagreeing_patches():
    patches = np.stack([np.full((2, 2, 2), 1.0), np.full((2, 2, 2), 3.0)])
    origins = np.array([[0, 0, 0], [0, 0, 1]])
    first = reassemble(patches, origins, (2, 2, 4), mode="first", fill=-1)
    assert first[0, 0].tolist() == [1, 1, 3, -1]
    mean = reassemble(patches, origins, (2, 2, 4), mode="mean", fill=-1)
    assert mean[0, 0].tolist() == [1, 2, 3, -1]
    assert first.dtype == np.float64 and mean.dtype == np.float64
    labels = reassemble(patches.astype(np.uint8), origins, (2, 2, 4))
    assert labels.dtype == np.uint8
    with pytest.raises(ValueError, match="mode"):
        reassemble(patches, origins, (2, 2, 4), mode="max")


def test_keep_nonbackground_drops_exactly_the_all_zero_patches(rng):
    labels = np.zeros((32, 32, 32), np.uint8)
    labels[3, 4, 5] = 1
    labels[30, 30, 30] = 2
    origins = patch_grid(labels.shape, 16, overlap=0.5)
    keep = keep_nonbackground(labels, origins, 16)
    expected = [bool(labels[o[0] : o[0] + 16, o[1] : o[1] + 16, o[2] : o[2] + 16].any()) for o in origins]
    assert keep.tolist() == expected
    assert np.flatnonzero(keep).tolist() == [0, len(origins) - 1]  # starts 0, 8, 16: each voxel in one patch


class _Counting:
    """A read-on-demand sequence of patches that counts its reads."""

    def __init__(self, patches):
        self.patches, self.reads = patches, 0

    def __len__(self):
        return len(self.patches)

    def __getitem__(self, i):
        self.reads += 1
        return self.patches[i].copy()


@pytest.mark.parametrize("mode", ["first", "mean"])
def test_reassemble_reads_a_lazy_sequence_one_patch_at_a_time(rng, mode):
    volume = rng.normal(size=(2, 20, 24, 28)).astype(np.float32)
    origins = patch_grid(volume.shape[1:], (8, 10, 12), overlap=0.5)
    patches = np.stack([volume[:, z : z + 8, y : y + 10, x : x + 12] for z, y, x in origins])
    lazy = _Counting(patches)
    out = reassemble(lazy, origins, volume.shape[1:], mode=mode)
    np.testing.assert_allclose(out, reassemble(patches, origins, volume.shape[1:], mode=mode), rtol=1e-6)
    np.testing.assert_allclose(out, volume, rtol=1e-6)
    assert lazy.reads <= len(patches) + 1
    empty = reassemble(patches[:0], origins[:0], (3, 4, 5), fill=7)
    assert empty.shape == (2, 3, 4, 5) and (empty == 7).all()
