"""Targets, snapping, profile windows, augmentations and partition items of the picker."""

import numpy as np
import pytest
import trimesh

from napari_cryolearn.picking import operators as operators_module
from napari_cryolearn.picking.training_data import (
    DISTANCE_UNIT,
    augment_profiles,
    mesh_targets,
    partition_items,
    profile_windows,
    snap_positions,
    standardise_profiles,
)


def _double_sheet(n=9, gap=4.0):
    yy, xx = np.mgrid[0:n, 0:n].reshape(2, -1).astype(float)
    top = np.c_[np.full(n * n, gap), yy, xx]
    bottom = np.c_[np.zeros(n * n), yy, xx]
    normals = np.r_[np.tile([1.0, 0, 0], (n * n, 1)), np.tile([-1.0, 0, 0], (n * n, 1))]
    return np.r_[top, bottom], normals


def test_targets_are_distances_to_the_snapped_position_in_15_angstrom_units():
    verts, normals = _double_sheet()
    protein = np.array([[7.0, 4.0, 4.0]])  # 3 voxels above the top sheet, over vertex (4, 4)
    t = mesh_targets(verts, normals, protein, voxel_size=10.0, clip=150.0)
    top = t[:81].reshape(9, 9)
    yy, xx = np.mgrid[0:9, 0:9]
    expected = np.minimum(np.hypot(yy - 4, xx - 4) * 10.0, 150.0) / DISTANCE_UNIT
    np.testing.assert_allclose(top, expected, rtol=1e-6)
    # the bottom sheet is the other side of the membrane: the clip value everywhere
    np.testing.assert_allclose(t[81:], 150.0 / DISTANCE_UNIT)


def test_a_position_on_the_mid_plane_marks_one_sheet_not_both():
    verts, normals = _double_sheet(gap=4.0)
    t = mesh_targets(verts, normals, np.array([[2.1, 4.0, 4.0]]), voxel_size=10.0)
    assert t[:81].min() == 0.0  # nearest sheet: the top one
    assert np.all(t[81:] == np.float32(10.0))


def test_clip_and_no_positions():
    verts, normals = _double_sheet()
    far = mesh_targets(verts, normals, np.array([[4.0, 100.0, 100.0]]), voxel_size=10.0, clip=60.0)
    assert np.all(far == np.float32(4.0))  # 60 Å / 15
    assert np.all(mesh_targets(verts, normals, None, voxel_size=10.0) == np.float32(10.0))
    assert np.all(mesh_targets(verts, normals, np.zeros((0, 3)), voxel_size=10.0) == np.float32(10.0))


def test_snap_projects_onto_the_tangent_plane():
    verts, normals = _double_sheet()
    snapped, idx = snap_positions(np.array([[6.5, 2.2, 3.1], [-3.0, 5.0, 5.0]]), verts, normals)
    np.testing.assert_allclose(snapped, [[4.0, 2.2, 3.1], [0.0, 5.0, 5.0]])
    assert idx.tolist() == [2 * 9 + 3, 81 + 5 * 9 + 5]


def test_standardise_and_windows():
    p = np.random.default_rng(0).normal(5, 3, (50, 20))
    s = standardise_profiles(p)
    assert s.dtype == np.float32 and abs(s.mean()) < 1e-5 and abs(s.std() - 1) < 1e-5
    assert standardise_profiles(np.ones((3, 4))).tolist() == np.zeros((3, 4)).tolist()
    assert profile_windows(20, 16) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="does not fit"):
        profile_windows(12, 16)


def test_augmentations_change_values_and_keep_shape():
    x = np.random.default_rng(1).normal(size=(100, 16)).astype(np.float32)
    same = augment_profiles(x, np.random.default_rng(2), p=0.0)
    np.testing.assert_array_equal(same, x)
    changed = augment_profiles(x, np.random.default_rng(2), p=1.0)
    assert changed.shape == x.shape and changed.dtype == np.float32 and np.isfinite(changed).all()
    assert not np.allclose(changed, x)
    np.testing.assert_array_equal(x, np.random.default_rng(1).normal(size=(100, 16)).astype(np.float32))  # input kept


def test_partition_items_cover_the_mesh_and_a_second_run_computes_no_operators(tmp_path, monkeypatch):
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=30.0)
    verts, faces = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    normals = np.asarray(sphere.vertex_normals)
    profiles = np.random.default_rng(0).normal(size=(len(verts), 20))
    target = np.arange(len(verts), dtype=np.float32)
    items = partition_items(3, verts, faces, normals, profiles, target, size=300, k=16, cache_dir=tmp_path)
    assert len(items) > 1 and all(it.mesh == 3 for it in items)
    covered = np.unique(np.concatenate([it.vertices for it in items]))
    assert covered.tolist() == list(range(len(verts)))
    for it in items:
        np.testing.assert_array_equal(it.target, target[it.vertices])
        assert it.operators.evecs.shape == (len(it.vertices), 16)
    calls = []
    real = operators_module.compute_operators
    monkeypatch.setattr(operators_module, "compute_operators", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = partition_items(3, verts, faces, normals, profiles, None, size=300, k=16, cache_dir=tmp_path)
    assert calls == [] and len(again) == len(items)
    np.testing.assert_array_equal(again[0].operators.evecs, items[0].operators.evecs)
    assert again[0].target is None
