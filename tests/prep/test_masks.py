"""Masks without labels: spheres at coordinates, thresholded maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.prep.masks import radius_in_voxels, spheres_mask, threshold_mask


def test_sphere_volume_centre_and_edge():
    r = 6
    out = spheres_mask((40, 40, 40), [[20, 20, 20]], r)
    assert out.dtype == np.uint8
    assert out[20, 20, 20] == 1
    assert out[20, 20, 20 + r] == 1 and out[20 + r, 20, 20] == 1  # on the radius: inside
    assert out[20, 20, 20 + r + 1] == 0 and out[20, 20 - r - 1, 20] == 0
    assert out[20 + 4, 20 + 4, 20 + 4] == 0  # |d| = 6.93 > 6
    expected = 4 / 3 * math.pi * r**3
    assert abs(int(out.sum()) - expected) / expected < 0.03
    zz, yy, xx = np.nonzero(out)
    assert (zz.mean(), yy.mean(), xx.mean()) == (20, 20, 20)


def test_fractional_centre_is_kept():
    out = spheres_mask((20, 20, 20), [[10, 10, 10.5]], 2)
    assert out[10, 10, 8] == 0 and out[10, 10, 9] == 1 and out[10, 10, 12] == 1 and out[10, 10, 13] == 0


def test_classes_per_coordinate_and_later_wins():
    coords = [[10, 10, 10], [10, 10, 14], [30, 30, 30]]
    out = spheres_mask((40, 40, 40), coords, 3, classes=[2, 5, 7])
    assert out[10, 10, 9] == 2
    assert out[10, 10, 12] == 5  # overlap: the later coordinate wins
    assert out[30, 30, 30] == 7
    assert set(np.unique(out)) == {0, 2, 5, 7}
    out = spheres_mask((40, 40, 40), coords[::-1], 3, classes=[7, 5, 2])
    assert out[10, 10, 12] == 2


def test_angstrom_radius_gives_an_ellipsoid_in_voxels():
    """40 Å with voxels of 20 Å in z and 10 Å in y, x: semi-axes 2, 4, 4 voxels."""
    assert radius_in_voxels(40, voxel_size=(20, 10, 10), radius_unit="angstrom") == (2.0, 4.0, 4.0)
    out = spheres_mask((30, 30, 30), [[15, 15, 15]], 40, voxel_size=(20, 10, 10), radius_unit="angstrom")
    assert out[17, 15, 15] == 1 and out[18, 15, 15] == 0
    assert out[15, 19, 15] == 1 and out[15, 20, 15] == 0
    assert out[15, 15, 19] == 1 and out[15, 15, 20] == 0
    expected = 4 / 3 * math.pi * 2 * 4 * 4
    assert abs(int(out.sum()) - expected) / expected < 0.1


def test_ball_cut_at_the_border():
    out = spheres_mask((10, 10, 10), [[0, 0, 0]], 3)
    full = spheres_mask((10, 10, 10), [[5, 5, 5]], 3)
    # an octant plus its three faces and three edges and the centre
    assert 0 < out.sum() < full.sum()
    assert out[0, 0, 3] == 1 and out[0, 0, 4] == 0


def test_out_of_bounds_coordinates_are_listed():
    with pytest.raises(InputError, match=r"2 of 3 points.*#1.*#2") as info:
        spheres_mask((10, 10, 10), [[1, 1, 1], [1, 10, 1], [-0.6, 1, 1]], 2)
    assert info.value.field == "coordinates"


def test_bad_radius_and_classes():
    with pytest.raises(InputError, match="radius"):
        spheres_mask((10, 10, 10), [[5, 5, 5]], 0)
    with pytest.raises(InputError, match="classes"):
        spheres_mask((10, 10, 10), [[5, 5, 5]], 2, classes=[300])
    with pytest.raises(InputError, match="classes"):
        spheres_mask((10, 10, 10), [[5, 5, 5]], 2, classes=[1.5])


def test_no_coordinates_gives_an_empty_mask():
    out = spheres_mask((5, 6, 7), np.zeros((0, 3)), 2)
    assert out.shape == (5, 6, 7) and not out.any()


def test_uint16_classes():
    out = spheres_mask((10, 10, 10), [[5, 5, 5]], 1, classes=[1000], dtype=np.uint16)
    assert out[5, 5, 5] == 1000 and out.dtype == np.uint16


def test_threshold_above_and_below(rng):
    d = rng.random((10, 12, 14)).astype(np.float32)
    np.testing.assert_array_equal(threshold_mask(d, 0.7), (d > 0.7).astype(np.uint8))
    np.testing.assert_array_equal(threshold_mask(d, 0.2, above=False), (d < 0.2).astype(np.uint8))
    out = threshold_mask(d, 0.7, label_value=300)
    assert out.dtype == np.uint16 and set(np.unique(out)) == {0, 300}


def test_threshold_min_size_drops_small_pieces():
    d = np.zeros((20, 20, 20), np.float32)
    d[2:5, 2:5, 2:5] = 1  # 27 voxels
    d[10:12, 10:12, 10:12] = 1  # 8 voxels
    d[15, 15, 15] = 1  # 1 voxel
    d[16, 16, 16] = 1  # touches the last one only diagonally: a separate piece
    out = threshold_mask(d, 0.5, min_size=8)
    assert out.sum() == 27 + 8
    assert out[3, 3, 3] == 1 and out[11, 11, 11] == 1 and out[15, 15, 15] == 0
    out = threshold_mask(d, 0.5, min_size=9)
    assert out.sum() == 27


def test_threshold_min_size_matches_a_reference(rng):
    d = ndi.gaussian_filter(rng.standard_normal((24, 24, 24)), 1.5)
    t = float(np.percentile(d, 80))
    mask = d > t
    comp, _ = ndi.label(mask)
    sizes = np.bincount(comp.ravel())
    expected = mask & (sizes[comp] >= 20)
    np.testing.assert_array_equal(threshold_mask(d, t, min_size=20), expected.astype(np.uint8))


def test_threshold_errors():
    with pytest.raises(InputError, match="threshold"):
        threshold_mask(np.zeros((2, 2, 2)), float("nan"))
    with pytest.raises(InputError, match="min_size"):
        threshold_mask(np.zeros((2, 2, 2)), 0.5, min_size=-1)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(4, 14), st.integers(4, 14), st.integers(4, 14)),
    centres=st.lists(st.tuples(*(st.floats(-2, 15, allow_nan=False),) * 3), min_size=1, max_size=4),
    radius=st.floats(0.5, 5),
    voxel=st.tuples(*(st.sampled_from([1.0, 2.0, 3.5]),) * 3),
    unit=st.sampled_from(["voxel", "angstrom"]),
)
def test_spheres_match_a_brute_force_reference(shape, centres, radius, voxel, unit):
    centres = [c for c in centres if all(0 <= v <= s - 1 for v, s in zip(c, shape))]
    classes = list(range(1, len(centres) + 1))
    out = spheres_mask(shape, np.array(centres).reshape(-1, 3), radius, classes=classes, voxel_size=voxel,
                       radius_unit=unit)
    r = radius_in_voxels(radius, voxel_size=voxel, radius_unit=unit)
    grid = np.indices(shape, dtype=float)
    expected = np.zeros(shape, np.uint8)
    for value, c in zip(classes, centres):  # later coordinates win
        inside = sum(((grid[a] - c[a]) / r[a]) ** 2 for a in range(3)) <= 1
        expected[inside] = value
    np.testing.assert_array_equal(out, expected)
