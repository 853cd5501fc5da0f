"""Partitions of meshes into overlapping geodesic patches, and stitching (#19)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.picking.partitions import Partition, partition_mesh, stitch


@pytest.fixture
def sphere():
    m = trimesh.creation.icosphere(subdivisions=4)  # 2562 vertices
    return np.asarray(m.vertices), np.asarray(m.faces)


def grid(n=30, offset=0.0):
    x, y = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float), indexing="ij")
    verts = np.stack([x.ravel() + offset, y.ravel(), np.zeros(n * n)], axis=1)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return verts, faces


def test_every_vertex_covered_and_sizes_bounded(sphere):
    verts, faces = sphere
    parts = partition_mesh(verts, faces, size=500)
    assert len(parts) > 1
    assert all(p.size <= 500 for p in parts)
    covered = np.zeros(len(verts), bool)
    for p in parts:
        covered[p.vertices] = True
        assert p.faces.min() >= 0 and p.faces.max() < p.size
        assert p.weights.dtype == np.float32 and p.weights.shape == (p.size,)
        assert 0 < p.weights.min() and p.weights.max() == pytest.approx(1.0)
        # faces are exactly the mesh faces among the partition's vertices
        inside = np.isin(faces, p.vertices).all(axis=1)
        assert len(p.faces) == inside.sum()
        assert {tuple(sorted(f)) for f in p.vertices[p.faces]} == {tuple(sorted(f)) for f in faces[inside]}
    assert covered.all()


def test_weights_are_gaussian_of_geodesic_distance(sphere):
    import potpourri3d as pp3d

    verts, faces = sphere
    p = partition_mesh(verts, faces, size=600)[0]
    seed = p.vertices[np.argmax(p.weights)]
    d = pp3d.MeshHeatMethodDistanceSolver(verts, faces).compute_distance(seed)[p.vertices]
    sigma = d.max() / 2
    np.testing.assert_allclose(p.weights, np.exp(-(d**2) / (2 * sigma**2)), atol=1e-5)
    # the partition is the 600 nearest vertices
    assert d.max() <= np.sort(pp3d.MeshHeatMethodDistanceSolver(verts, faces).compute_distance(seed))[599] + 1e-12


def test_small_mesh_is_one_partition_with_unit_weights(sphere):
    verts, faces = sphere
    (p,) = partition_mesh(verts, faces, size=len(verts))
    np.testing.assert_array_equal(p.vertices, np.arange(len(verts)))
    np.testing.assert_array_equal(p.faces, faces)
    np.testing.assert_array_equal(p.weights, 1)


def test_higher_overlap_weight_gives_more_partitions(sphere):
    verts, faces = sphere
    few = partition_mesh(verts, faces, size=500, overlap_weight=0.2)
    many = partition_mesh(verts, faces, size=500, overlap_weight=0.9)
    assert len(many) > len(few)


def test_several_components():
    v1, f1 = grid(20)
    v2, f2 = grid(30, offset=100.0)
    verts = np.concatenate([v1, v2])
    faces = np.concatenate([f1, f2 + len(v1)])
    parts = partition_mesh(verts, faces, size=500)
    covered = np.zeros(len(verts), bool)
    for p in parts:
        covered[p.vertices] = True
        # no partition spans both components
        assert (p.vertices < len(v1)).all() or (p.vertices >= len(v1)).all()
        assert p.size <= 500
    assert covered.all()
    small = [p for p in parts if (p.vertices < len(v1)).all()]
    assert len(small) == 1 and small[0].size == 400
    np.testing.assert_array_equal(small[0].weights, 1)


def test_stitch_constant_field_is_constant(sphere):
    verts, faces = sphere
    parts = partition_mesh(verts, faces, size=500)
    out = stitch(len(verts), parts, [np.full(p.size, 7.25) for p in parts])
    np.testing.assert_allclose(out, 7.25)
    # a field that is a function of the vertex stitches to itself
    f = verts[:, 0] * 3 - verts[:, 2]
    np.testing.assert_allclose(stitch(len(verts), parts, [f[p.vertices] for p in parts]), f, atol=1e-12)
    # several channels
    out2 = stitch(len(verts), parts, [np.stack([f[p.vertices], -f[p.vertices]], 1) for p in parts])
    np.testing.assert_allclose(out2, np.stack([f, -f], 1), atol=1e-12)


def test_stitch_averages_overlaps_by_weight(sphere):
    verts, faces = sphere
    parts = partition_mesh(verts, faces, size=500)
    vals = [np.full(p.size, float(i)) for i, p in enumerate(parts)]
    out = stitch(len(verts), parts, vals)
    num = np.zeros(len(verts))
    den = np.zeros(len(verts))
    for i, p in enumerate(parts):
        num[p.vertices] += p.weights * i
        den[p.vertices] += p.weights
    np.testing.assert_allclose(out, num / den, rtol=1e-6)
    count = np.zeros(len(verts), int)
    for p in parts:
        count[p.vertices] += 1
    assert (count > 1).any()  # partitions overlap
    # a vertex in one partition gets its value exactly
    once = np.flatnonzero(count == 1)
    if len(once):
        owner = {int(v): i for i, p in enumerate(parts) for v in p.vertices}
        assert all(out[v] == float(owner[int(v)]) for v in once)


def test_stitch_exact_single_and_uncovered():
    p = Partition(np.array([0, 2]), np.zeros((0, 3), int), np.array([0.3, 0.7], np.float32))
    out = stitch(4, [p], [np.array([0.1, 1 / 3])])
    assert out[0] == 0.1 and out[2] == 1 / 3
    assert np.isnan(out[1]) and np.isnan(out[3])


def test_bad_input():
    with pytest.raises(InputError):
        partition_mesh(np.zeros((4, 2)), np.zeros((1, 3), int))
    with pytest.raises(InputError):
        partition_mesh(np.zeros((4, 3)), np.array([[0, 1, 9]]))
    p = Partition(np.array([0, 1]), np.zeros((0, 3), int), np.ones(2, np.float32))
    with pytest.raises(InputError):
        stitch(2, [p], [np.zeros(3)])
