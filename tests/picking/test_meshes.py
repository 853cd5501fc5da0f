"""Meshes from membrane masks: components, vertex density, normals, normal profiles."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_cryolearn.picking.meshes import (
    mean_vertex_area,
    membrane_components,
    mesh_from_mask,
    normal_profiles,
    orient_faces,
    vertex_normals,
)
from napari_cryolearn.sample import make_synthetic_tomogram

CENTRE = np.array([32.0, 32.0, 32.0])


def _radius(shape=(64, 64, 64)):
    z, y, x = np.indices(shape, dtype=np.float64)
    return np.sqrt((z - CENTRE[0]) ** 2 + (y - CENTRE[1]) ** 2 + (x - CENTRE[2]) ** 2)


@pytest.fixture(scope="module")
def shell_labels():
    """A hollow sphere, radius 20 voxels, 4 thick, in 64³ (label 1), plus a small blob."""
    r = _radius()
    labels = np.zeros((64, 64, 64), np.uint8)
    labels[(r >= 18) & (r < 22)] = 1
    labels[2:5, 2:5, 2:5] = 1  # 27 voxels: under min_voxels
    labels[58:62, 58:62, 58:62] = 2  # another class
    return labels


@pytest.fixture(scope="module")
def ball_mesh():
    mask = _radius() < 20
    verts, faces = mesh_from_mask(mask, voxel_size=10.0, vertex_area=400.0)
    return verts, faces


@pytest.fixture(scope="module")
def synthetic():
    with warnings.catch_warnings():  # "room for only 21 of 24 membrane proteins"
        warnings.simplefilter("ignore", RuntimeWarning)
        return make_synthetic_tomogram(shape=(48, 64, 64), seed=0)


def test_components(shell_labels):
    comps = membrane_components(shell_labels, classes=(1,), min_voxels=1000)
    assert len(comps) == 1
    c = comps[0]
    assert c.label == 1 and c.voxels == int(np.sum(shell_labels == 1)) - 27
    # box one voxel wider than the shell (radius 22 → indices 10..54)
    assert [(s.start, s.stop) for s in c.box] == [(10, 55)] * 3
    assert not c.mask[0].any() and not c.mask[-1].any()
    full = np.zeros_like(shell_labels, dtype=bool)
    full[c.box] = c.mask
    np.testing.assert_array_equal(full[10:55, 10:55, 10:55], (shell_labels == 1)[10:55, 10:55, 10:55])
    both = membrane_components(shell_labels, classes=(1, 2), min_voxels=20)
    assert [c.voxels for c in both] == [c.voxels, 64, 27]


def test_components_are_26_connected():
    labels = np.zeros((6, 6, 6), np.uint8)
    labels[1, 1, 1] = labels[2, 2, 2] = 1  # corner neighbours
    assert len(membrane_components(labels, min_voxels=1)) == 1


@pytest.mark.parametrize("vertex_area,voxel_size", [(400.0, 10.0), (400.0, 14.0), (100.0, 10.0)])
def test_vertex_area_on_a_sphere(vertex_area, voxel_size):
    mask = _radius() < 20
    verts, faces = mesh_from_mask(mask, voxel_size=voxel_size, vertex_area=vertex_area)
    achieved = mean_vertex_area(verts, faces) * voxel_size**2
    assert abs(achieved / vertex_area - 1) < 0.4, achieved
    # the surface is where the sphere is (the voxelised ball r < 20 has its border at ~20)
    r = np.linalg.norm(verts - CENTRE, axis=1)
    assert abs(r.mean() - 20.0) < 0.3 and r.std() < 0.3
    # no degenerate or duplicate faces, no duplicate vertices
    assert len(np.unique(np.sort(faces, axis=1), axis=0)) == len(faces)
    assert np.all((faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2]))
    assert len(np.unique(verts.round(9), axis=0)) == len(verts)


def test_normals_point_away_from_the_centre(ball_mesh):
    verts, faces = ball_mesh
    normals = vertex_normals(verts, faces)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0)
    radial = (verts - CENTRE) / np.linalg.norm(verts - CENTRE, axis=1, keepdims=True)
    cos = np.einsum("ij,ij->i", normals, radial)
    assert cos.min() > 0.8 and np.median(cos) > 0.98
    # the same, whatever the input winding
    rng = np.random.default_rng(0)
    flip = rng.random(len(faces)) < 0.3
    scrambled = faces.copy()
    scrambled[flip] = scrambled[flip][:, ::-1]
    np.testing.assert_allclose(vertex_normals(verts, scrambled), normals, atol=1e-12)
    np.testing.assert_allclose(vertex_normals(verts, faces[:, ::-1]), normals, atol=1e-12)


def test_hollow_sphere_normals_face_away_from_the_centre(shell_labels):
    (c,) = membrane_components(shell_labels, min_voxels=1000)
    verts, faces = mesh_from_mask(c.mask, voxel_size=10.0, offset=c.offset)
    normals = vertex_normals(verts, faces)
    r = np.linalg.norm(verts - CENTRE, axis=1)
    assert 17 < r.min() and r.max() < 23  # both surfaces, in volume coordinates
    assert (r < 20).any() and (r > 20).any()
    cos = np.einsum("ij,ij->i", normals, (verts - CENTRE) / r[:, None])
    assert cos.min() > 0.8


def test_area_weighted_normals_of_an_open_sheet():
    # a roof: two triangles of area 1 (x-normal) and one of area 4 tilted; exact weighted mean
    verts = np.array([[0.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1]])
    faces = np.array([[0, 1, 2], [2, 3, 1]])  # second is wound the other way
    n = vertex_normals(verts, faces)
    np.testing.assert_allclose(np.abs(n[:, 0]), 1.0)
    assert np.all(n[:, 0] == n[0, 0])  # one side
    # a vertex between a small and a large face gets their area-weighted mean
    verts = np.array([[0.0, 0, 0], [0, 1, 0], [0, 0, 1], [2, 0, 0], [0, -2, 0]])
    faces = np.array([[0, 1, 2], [0, 2, 4], [0, 4, 3]])
    n = vertex_normals(verts, faces)
    a = np.cross(verts[1] - verts[0], verts[2] - verts[0])
    b = np.cross(verts[2] - verts[0], verts[4] - verts[0])
    c = np.cross(verts[4] - verts[0], verts[3] - verts[0])
    want = (a + b + c) / np.linalg.norm(a + b + c)
    np.testing.assert_allclose(n[0], want)


def test_orient_faces_on_an_open_sheet_is_consistent():
    # a flat grid of triangles, half of them flipped
    g = np.stack(np.meshgrid(np.arange(5.0), np.arange(5.0), indexing="ij"), -1).reshape(-1, 2)
    verts = np.column_stack([np.zeros(len(g)), g])
    faces = []
    for i in range(4):
        for j in range(4):
            a, b, c, d = i * 5 + j, i * 5 + j + 1, (i + 1) * 5 + j, (i + 1) * 5 + j + 1
            faces += [[a, b, c], [b, d, c]]
    faces = np.array(faces)
    faces[::3] = faces[::3, ::-1]
    fixed = orient_faces(verts, faces)
    tri = verts[fixed]
    nz = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])[:, 0]
    assert np.all(nz > 0) or np.all(nz < 0)
    assert np.all(nz == nz[0])


def test_profiles_of_a_linear_volume():
    # value = 2 z + 3 y - x + 5: cubic splines reproduce it exactly
    z, y, x = np.indices((40, 40, 40), dtype=np.float64)
    vol = (2 * z + 3 * y - x + 5).astype(np.float32)
    rng = np.random.default_rng(1)
    verts = rng.uniform(14, 26, size=(30, 3))
    normals = rng.normal(size=(30, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    p = normal_profiles(vol, verts, normals, samples=20, step=2.5, voxel_size=10.0)
    assert p.shape == (30, 20) and p.dtype == np.float32
    k = np.arange(-10, 10)
    pts = verts[:, None, :] + normals[:, None, :] * k[None, :, None] * 0.25
    want = 2 * pts[..., 0] + 3 * pts[..., 1] - pts[..., 2] + 5
    np.testing.assert_allclose(p, want, atol=1e-3)
    # sample 10 is the vertex itself; the step is 2.5 Å = 0.25 voxel along the normal
    np.testing.assert_allclose(p[:, 10], 2 * verts[:, 0] + 3 * verts[:, 1] - verts[:, 2] + 5, atol=1e-3)


def test_profiles_interpolate_cubically_not_linearly():
    # a quadratic along x: linear interpolation would be off between voxels, order 3 is not
    x = np.arange(64.0)
    vol = np.broadcast_to((0.1 * (x - 32) ** 2)[None, None, :], (16, 16, 64)).astype(np.float32)
    p = normal_profiles(vol, np.array([[8.0, 8.0, 32.0]]), np.array([[0.0, 0, 1]]),
                        samples=20, step=5.0, voxel_size=10.0)
    xs = 32 + 0.5 * np.arange(-10, 10)
    np.testing.assert_allclose(p[0], 0.1 * (xs - 32) ** 2, atol=2e-3)


def test_profiles_on_the_synthetic_membranes(synthetic):
    t = synthetic
    comps = membrane_components(t.labels, classes=(1,), min_voxels=1000)
    assert comps
    results = []
    for c in comps:
        verts, faces = mesh_from_mask(c.mask, voxel_size=t.voxel_size, offset=c.offset)
        normals = vertex_normals(verts, faces)
        prof = normal_profiles(t.volume, verts, normals, voxel_size=t.voxel_size)
        results.append((verts, faces, prof))
    for verts, faces, prof in results:
        area = mean_vertex_area(verts, faces) * t.voxel_size**2
        assert 240 < area < 560, area
        # the membrane is dense (dark): the sample at the vertex is darker than 25 Å outside
        assert np.mean(prof[:, 10]) < np.mean(t.volume)
        assert np.isfinite(prof).all()


def test_a_slab_through_the_volume_gives_open_sheets_facing_out_of_the_membrane():
    labels = np.zeros((32, 40, 40), np.uint8)
    labels[12:16] = 1  # crosses the whole volume: both surfaces stay open at the border
    (c,) = membrane_components(labels, min_voxels=100)
    verts, faces = mesh_from_mask(c.mask, voxel_size=10.0, offset=c.offset)
    normals = vertex_normals(verts, faces)
    inner = (verts[:, 1] > 3) & (verts[:, 1] < 36) & (verts[:, 2] > 3) & (verts[:, 2] < 36)
    top, bottom = inner & (verts[:, 0] > 14), inner & (verts[:, 0] < 14)
    assert top.sum() > 100 and bottom.sum() > 100
    assert normals[top, 0].min() > 0.95 and normals[bottom, 0].max() < -0.95
    np.testing.assert_allclose(verts[top, 0].mean(), 15.5, atol=0.3)  # level 0.5 between 15 and 16


def test_thin_membranes_survive_a_coarse_grid():
    # 4 voxels thick at 10 Å: 400 Å² per vertex means a 2.4-voxel grid; both surfaces stay,
    # 4 voxels apart, where the binary mask would be thinned or lost
    labels = np.zeros((20, 40, 40), np.uint8)
    labels[8:12, 5:35, 5:35] = 1
    (c,) = membrane_components(labels, min_voxels=100)
    verts, faces = mesh_from_mask(c.mask, voxel_size=10.0, offset=c.offset)
    inner = (np.abs(verts[:, 1] - 20) < 10) & (np.abs(verts[:, 2] - 20) < 10)
    zs = verts[inner, 0]
    np.testing.assert_allclose([zs[zs < 10].mean(), zs[zs > 10].mean()], [7.5, 11.5], atol=0.25)
    assert abs(mean_vertex_area(verts, faces) * 100 / 400 - 1) < 0.4
