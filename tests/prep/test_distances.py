"""Signed distance maps and tube skeletons (napari_cryolearn.prep.distances)."""

from __future__ import annotations

import edt
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage as ndi

from napari_cryolearn.prep.distances import (
    signed_distance_map,
    signed_distance_map_slabs,
    signed_distance_maps,
    tube_skeleton,
)


def scipy_signed(mask: np.ndarray, sampling=(1.0, 1.0, 1.0), black_border=True) -> np.ndarray:
    """The reference construction: pad mask and complement with one False layer, subtract."""
    if black_border:
        inside = ndi.distance_transform_edt(np.pad(mask, 1), sampling=sampling)[1:-1, 1:-1, 1:-1]
        outside = ndi.distance_transform_edt(np.pad(~mask, 1), sampling=sampling)[1:-1, 1:-1, 1:-1]
    else:
        inside = ndi.distance_transform_edt(mask, sampling=sampling)
        outside = ndi.distance_transform_edt(~mask, sampling=sampling)
    return inside - outside


label_volumes = arrays(
    np.uint8,
    st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9)),
    elements=st.integers(0, 2),
)
voxel_sizes = st.one_of(st.none(), st.tuples(*[st.sampled_from([1.0, 2.0, 3.5, 10.0])] * 3))


@given(labels=label_volumes, voxel_size=voxel_sizes)
def test_equals_scipy_construction_per_class(labels, voxel_size):
    maps = signed_distance_maps(labels, n_classes=3, voxel_size=voxel_size)
    assert maps.shape == (3, *labels.shape) and maps.dtype == np.float32
    sampling = voxel_size or (1.0, 1.0, 1.0)
    for i in range(3):
        np.testing.assert_allclose(maps[i], scipy_signed(labels == i, sampling), rtol=1e-5, atol=1e-4)


@given(labels=label_volumes)
def test_equals_cryosiam_edt_sdf(labels):
    maps = signed_distance_maps(labels, n_classes=3)
    for i in range(3):
        np.testing.assert_array_equal(maps[i], edt.sdf(labels == i, black_border=True))


def test_hand_computed_values_and_signs():
    labels = np.zeros((9, 9, 9), np.uint8)
    labels[2:7, 2:7, 2:7] = 1  # a 5^3 cube, centre at 4
    d = signed_distance_maps(labels)
    assert d.shape == (2, 9, 9, 9)
    assert d[1, 4, 4, 4] == pytest.approx(3.0)  # nearest outside voxel: 3 steps away
    assert d[1, 2, 4, 4] == pytest.approx(1.0)  # on the cube's face
    assert d[1, 1, 4, 4] == pytest.approx(-1.0)  # just outside
    assert d[1, 1, 1, 1] == pytest.approx(-np.sqrt(3.0))  # diagonal to the cube's corner (2, 2, 2)
    assert d[1, 0, 0, 0] == pytest.approx(-1.0)  # the image border counts as class 1's outside too
    assert signed_distance_maps(labels, black_border=False)[1, 0, 0, 0] == pytest.approx(-np.sqrt(12.0))
    # background channel: the image border counts as outside, so the corner voxel is at 1
    assert d[0, 0, 0, 0] == pytest.approx(1.0)
    assert d[0, 4, 4, 4] == pytest.approx(-3.0)
    assert not np.any(d == 0)
    np.testing.assert_array_equal(d[1] > 0, labels == 1)


def test_without_black_border_the_border_is_not_outside():
    labels = np.zeros((9, 9, 9), np.uint8)
    labels[4, 4, 4] = 1
    d = signed_distance_maps(labels, black_border=False)
    assert d[0, 0, 0, 0] == pytest.approx(np.sqrt(48.0))  # distance to the only class-1 voxel
    with_border = signed_distance_maps(labels, black_border=True)
    assert with_border[0, 0, 0, 0] == pytest.approx(1.0)


def test_voxel_size_axis_order_is_zyx():
    labels = np.zeros((12, 6, 6), np.uint8)
    labels[3:9] = 1  # a layer 6 planes thick in z, whole in y and x
    d = signed_distance_maps(labels, voxel_size=(4.0, 1.0, 1.0), black_border=False)
    assert d[1, 3, 2, 2] == pytest.approx(4.0)  # one plane from the layer's face, 4 Å per plane
    assert d[1, 5, 2, 2] == pytest.approx(12.0)
    assert d[1, 0, 2, 2] == pytest.approx(-12.0)
    swapped = signed_distance_maps(labels, voxel_size=(1.0, 1.0, 4.0), black_border=False)
    assert swapped[1, 3, 2, 2] == pytest.approx(1.0)


def test_clip_and_normalize():
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:18, 2:18, 2:18] = 1
    raw = signed_distance_maps(labels)
    clipped = signed_distance_maps(labels, clip=5)
    np.testing.assert_array_equal(clipped, np.clip(raw, -5, 5))
    assert clipped.max() == 5 and raw.max() > 5
    normed = signed_distance_maps(labels, clip=5, normalize=True)
    np.testing.assert_allclose(normed, np.clip(raw, -5, 5) / 5, rtol=1e-6)
    assert normed.min() >= -1 and normed.max() == 1
    with pytest.raises(ValueError, match="normalize needs clip"):
        signed_distance_maps(labels, normalize=True)


def test_absent_class_is_negative_everywhere():
    labels = np.zeros((5, 6, 7), np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    d = signed_distance_maps(labels, n_classes=4)
    assert d.shape == (4, 5, 6, 7)
    assert np.all(d[3] < 0)
    np.testing.assert_array_equal(d[3], -ndi.distance_transform_edt(np.pad(np.ones((5, 6, 7), bool), 1))[1:-1, 1:-1, 1:-1])


def test_rejects_float_labels():
    with pytest.raises(ValueError, match="integers"):
        signed_distance_maps(np.zeros((4, 4, 4), np.float32))


@pytest.mark.parametrize("black_border", [True, False])
@pytest.mark.parametrize("voxel_size", [None, (3.0, 1.0, 2.0)])
@pytest.mark.parametrize("slab", [1, 5, 64])
def test_slabs_equal_whole_volume_when_clipped(rng, black_border, voxel_size, slab):
    labels = ndi.zoom(rng.integers(0, 3, (6, 7, 8)), 5, order=0)[:, :33, :37].astype(np.uint8)
    labels[:, :, :4] = 0
    labels[:10] = 1  # a large region: distances well beyond clip
    for cls in range(3):
        whole = signed_distance_map(labels == cls, voxel_size=voxel_size, black_border=black_border, clip=6.0)
        parts = list(
            signed_distance_map_slabs(lambda a, b, c=cls: labels[a:b] == c, labels.shape, 6.0, voxel_size=voxel_size,
                                      black_border=black_border, slab=slab)
        )
        assert [p[0] for p in parts] == list(range(0, labels.shape[0], slab))
        np.testing.assert_allclose(np.concatenate([p[2] for p in parts]), whole, atol=1e-5)


def _cylinder(shape, axis_yz, radius):
    z, y = np.ogrid[: shape[0], : shape[1]]
    disc = (z - axis_yz[0]) ** 2 + (y - axis_yz[1]) ** 2 <= radius**2
    return np.broadcast_to(disc[:, :, None], shape)


def test_tube_skeleton_keeps_the_core_of_each_tube():
    shape = (40, 40, 24)
    labels = np.zeros(shape, np.uint8)
    labels[_cylinder(shape, (10, 10), 6)] = 1
    labels[_cylinder(shape, (30, 30), 2)] = 1
    core = tube_skeleton(labels, 1, fraction=0.8)
    assert np.all(labels[core] == 1)  # a subset of the class
    # both tubes keep voxels on their axis, the thin one too (per-component maximum)
    assert core[10, 10].all() and core[30, 30].all()
    # and only voxels near the axis: the thick tube's core lies within 2 voxels of its axis
    zz, yy, _ = np.nonzero(core[:20, :20])
    assert np.all((zz - 10) ** 2 + (yy - 10) ** 2 <= 2**2)
    assert tube_skeleton(labels, 1, fraction=0.0).sum() == (labels == 1).sum()
    windowed = tube_skeleton(labels, 1, fraction=0.8, neighbourhood=9)
    assert np.all(labels[windowed] == 1) and windowed[30, 30].all()
    assert not tube_skeleton(labels, 2).any()
