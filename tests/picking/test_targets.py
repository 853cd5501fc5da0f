"""Distance targets and the assignment of protein positions to membranes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_cryolearn.picking.meshes import membrane_components, mesh_from_mask
from napari_cryolearn.picking.targets import assign_positions, distance_targets
from napari_cryolearn.sample import make_synthetic_tomogram


@pytest.fixture(scope="module")
def synthetic():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return make_synthetic_tomogram(shape=(48, 64, 64), seed=0)


def test_targets_are_brute_force_distances_in_angstrom():
    rng = np.random.default_rng(0)
    verts = rng.uniform(0, 50, size=(300, 3))
    pos = rng.uniform(0, 50, size=(5, 3))
    got = distance_targets(verts, pos, voxel_size=7.0, clip=150.0)
    brute = np.linalg.norm(verts[:, None] - pos[None], axis=2).min(1) * 7.0
    np.testing.assert_allclose(got, np.minimum(brute, 150.0), rtol=1e-6)
    assert got.dtype == np.float32
    assert (got == 150.0).any() and (got < 150.0).any()
    assert got.max() == 150.0


def test_no_positions_all_clip():
    verts = np.zeros((4, 3))
    for empty in (None, np.zeros((0, 3)), []):
        np.testing.assert_array_equal(distance_targets(verts, empty, voxel_size=10.0, clip=90.0), [90.0] * 4)


def test_assignment_reports_far_positions():
    a = np.array([[0.0, 0, 0], [0, 0, 10]])
    b = np.array([[30.0, 0, 0], [30, 0, 10]])
    pos = np.array([[1.0, 0, 9], [28, 0, 0], [15, 0, 5], [0, 0, 5.5]])
    r = assign_positions(pos, [a, b], voxel_size=10.0, max_distance=60.0)
    assert r.mesh_index.tolist() == [0, 1, -1, 0]
    assert r.vertex_index.tolist() == [1, 0, -1, 1]
    assert r.far.tolist() == [2]
    np.testing.assert_allclose(r.distance, [np.sqrt(2) * 10, 20, np.sqrt(15**2 + 5**2) * 10, 45])
    assert r.positions_of(0).tolist() == [0, 3]
    none = assign_positions(pos, [], voxel_size=10.0, max_distance=60.0)
    assert none.far.tolist() == [0, 1, 2, 3] and np.isinf(none.distance).all()


def test_synthetic_proteins_lie_on_their_membranes(synthetic):
    t = synthetic
    comps = membrane_components(t.labels, classes=(1,), min_voxels=1000)
    meshes = [mesh_from_mask(c.mask, voxel_size=t.voxel_size, offset=c.offset)[0] for c in comps]
    pos = t.protein_coords  # z, y, x voxels, like the mesh vertices
    r = assign_positions(pos, meshes, voxel_size=t.voxel_size, max_distance=80.0)
    assert len(r.far) == 0  # every protein sits on a membrane
    assert r.distance.max() < 45.0  # centres 23-36 Å off the membrane's surface
    assert len(set(r.mesh_index.tolist())) == len(meshes)  # proteins on every membrane
    # a point in the empty corner is reported, not dropped
    r2 = assign_positions(np.vstack([pos, [[0.0, 0.0, 0.0]]]), meshes, voxel_size=t.voxel_size, max_distance=80.0)
    assert r2.distance[-1] > 80.0 and r2.far.tolist() == [len(pos)]
    np.testing.assert_array_equal(r2.mesh_index[:-1], r.mesh_index)
    # targets on each mesh: zero-ish next to its proteins, clipped far away
    for i, verts in enumerate(meshes):
        mine = pos[r.positions_of(i)]
        d = distance_targets(verts, mine, voxel_size=t.voxel_size)
        if len(mine):
            assert d.min() < 60.0
        assert d.max() <= 150.0
