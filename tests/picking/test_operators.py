"""A DiffusionNet's operators: spectrum, gradients and the on-disk cache (#19)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy import sparse

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.picking import operators as ops_mod
from napari_cryolearn.picking.operators import (
    MeshOperators,
    cached_operators,
    compute_operators,
    operators_key,
    tangent_frames,
)
from napari_cryolearn.picking.meshes import vertex_normals


@pytest.fixture(scope="module")
def sphere():
    m = trimesh.creation.icosphere(subdivisions=4)  # 2562 vertices: the sparse shift-invert path
    return np.asarray(m.vertices), np.asarray(m.faces)


def grid(n=20, h=0.5, jitter=0.0, seed=0):
    x, y = np.meshgrid(np.arange(n) * h, np.arange(n) * h, indexing="ij")
    verts = np.stack([x.ravel(), y.ravel(), np.zeros(n * n)], axis=1)
    if jitter:
        inner = (x.ravel() > 0) & (x.ravel() < x.max()) & (y.ravel() > 0) & (y.ravel() < y.max())
        verts[inner, :2] += np.random.default_rng(seed).uniform(-jitter, jitter, (inner.sum(), 2)) * h
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    return verts, np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])


@pytest.fixture(scope="module")
def sphere_ops(sphere):
    return compute_operators(*sphere, k=32)


def check_eigenpairs(ops: MeshOperators):
    L = ops.laplacian.astype(np.float64)
    M = sparse.diags(ops.mass.astype(np.float64))
    phi = ops.evecs.astype(np.float64)
    lam = ops.evals.astype(np.float64)
    assert np.all(np.diff(lam) >= -1e-6)
    assert abs(lam[0]) < 1e-4
    for i in range(len(lam)):
        r = L @ phi[:, i] - lam[i] * (M @ phi[:, i])
        assert np.linalg.norm(r) <= 1e-3 * max(1.0, np.linalg.norm(L @ phi[:, i])), i
    gram = phi.T @ (M @ phi)  # M-orthonormal
    np.testing.assert_allclose(gram, np.eye(len(lam)), atol=1e-3)


def test_shapes_and_dtypes(sphere, sphere_ops):
    n = len(sphere[0])
    o = sphere_ops
    assert o.mass.shape == (n,) and o.mass.dtype == np.float32
    assert o.evals.shape == (32,) and o.evecs.shape == (n, 32)
    assert o.evals.dtype == np.float32 and o.evecs.dtype == np.float32
    for m in (o.laplacian, o.grad_x, o.grad_y):
        assert sparse.isspmatrix_csr(m) and m.shape == (n, n) and m.dtype == np.float32
    np.testing.assert_allclose(o.mass.sum(), 4 * np.pi, rtol=5e-3)
    # positive semi-definite convention: positive diagonal, rows summing to 0
    assert (o.laplacian.diagonal() > 0).all()
    np.testing.assert_allclose(np.asarray(o.laplacian.sum(axis=1)).ravel(), 0, atol=1e-4)


def test_sphere_eigenpairs(sphere_ops):
    check_eigenpairs(sphere_ops)
    # the unit sphere's spectrum: 0, then l(l+1) = 2 three times, 6 five times
    np.testing.assert_allclose(sphere_ops.evals[1:4], 2.0, rtol=2e-2)
    np.testing.assert_allclose(sphere_ops.evals[4:9], 6.0, rtol=2e-2)


def test_grid_eigenpairs_dense_path():
    verts, faces = grid(12)  # 144 vertices: the dense solver
    o = compute_operators(verts, faces, k=20)
    check_eigenpairs(o)
    # a square of side L with free boundaries: (pi/L)^2 is the first non-zero eigenvalue (twice)
    side = 11 * 0.5
    np.testing.assert_allclose(o.evals[1:3], (np.pi / side) ** 2, rtol=3e-2)


def test_k_is_clipped():
    verts, faces = grid(3)
    o = compute_operators(verts, faces, k=128)
    assert o.evals.shape == (8,) and o.evecs.shape == (9, 8)


@pytest.mark.parametrize("jitter", [0.0, 0.3])
def test_flat_grid_gradient(jitter):
    verts, faces = grid(15, jitter=jitter)
    normals = np.tile([0.0, 0.0, 1.0], (len(verts), 1))
    o = compute_operators(verts, faces, normals=normals, k=4)
    f = 2 * verts[:, 0] + 3 * verts[:, 1]
    # the frames of a z = 0 mesh with normals (0, 0, 1) are the x and y axes
    ex, ey = tangent_frames(normals)
    np.testing.assert_allclose(ex, np.tile([1.0, 0, 0], (len(verts), 1)))
    np.testing.assert_allclose(ey, np.tile([0, 1.0, 0], (len(verts), 1)))
    np.testing.assert_allclose(o.grad_x @ f, 2.0, atol=1e-4)
    np.testing.assert_allclose(o.grad_y @ f, 3.0, atol=1e-4)
    # constants have no gradient
    np.testing.assert_allclose(o.grad_x @ np.ones(len(verts)), 0, atol=1e-5)


def test_gradient_in_rotated_frames(sphere):
    """On a sphere the gradient of z at a vertex is the tangent part of (0, 0, 1), in its frame."""
    verts, faces = sphere
    o = compute_operators(verts, faces, k=2)
    n = vertex_normals(verts, faces)
    ex, ey = tangent_frames(n)
    g = np.array([0.0, 0.0, 1.0])
    gt = g - n * (n @ g)[:, None]
    gx, gy = o.grad_x @ verts[:, 2], o.grad_y @ verts[:, 2]
    np.testing.assert_allclose(gx, (gt * ex).sum(1), atol=0.02)
    np.testing.assert_allclose(gy, (gt * ey).sum(1), atol=0.02)
    # a field given by 3D coordinates rebuilds: grad_x ex + grad_y ey is the tangent gradient
    recon = gx[:, None] * ex + gy[:, None] * ey
    assert np.median(np.linalg.norm(recon - gt, axis=1)) < 5e-3


def test_default_normals_are_area_weighted(sphere):
    verts, faces = sphere
    n = vertex_normals(verts, faces)
    np.testing.assert_allclose(np.abs((n * verts).sum(1)), 1.0, atol=1e-3)  # radial


def test_key_depends_on_everything(sphere):
    verts, faces = sphere
    k0 = operators_key(verts, faces, None, 16)
    assert k0 == operators_key(verts.copy(), faces.copy(), None, 16)
    assert len(k0) == 64
    moved = verts.copy()
    moved[0, 0] += 1e-9
    assert k0 != operators_key(moved, faces, None, 16)
    assert k0 != operators_key(verts, faces[:, [0, 2, 1]], None, 16)
    assert k0 != operators_key(verts, faces, vertex_normals(verts, faces), 16)
    assert k0 != operators_key(verts, faces, None, 17)


def test_cache_second_call_computes_nothing(tmp_path, monkeypatch):
    verts, faces = grid(25)  # 625 vertices: the sparse path
    calls = []
    real = ops_mod.compute_operators

    def counting(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(ops_mod, "compute_operators", counting)
    a = cached_operators(verts, faces, k=16, cache_dir=tmp_path / "cache")
    assert len(calls) == 1
    files = list((tmp_path / "cache").iterdir())
    assert [p.name for p in files] == [operators_key(verts, faces, None, 16) + ".npz"]
    b = cached_operators(verts, faces, k=16, cache_dir=tmp_path / "cache")
    assert len(calls) == 1  # loaded, not computed
    for name in ("mass", "evals", "evecs"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert getattr(b, name).dtype == np.float32
    for name in ("laplacian", "grad_x", "grad_y"):
        assert sparse.isspmatrix_csr(getattr(b, name))
        assert (getattr(a, name) != getattr(b, name)).nnz == 0
    check_eigenpairs(b)
    # another k is another entry
    cached_operators(verts, faces, k=8, cache_dir=tmp_path / "cache")
    assert len(calls) == 2 and len(list((tmp_path / "cache").iterdir())) == 2


def test_damaged_cache_is_recomputed(tmp_path):
    verts, faces = grid(6)
    path = tmp_path / (operators_key(verts, faces, None, 4) + ".npz")
    path.write_bytes(b"not an npz")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        o = cached_operators(verts, faces, k=4, cache_dir=tmp_path)
    assert o.evals.shape == (4,)
    cached_operators(verts, faces, k=4, cache_dir=tmp_path)  # now readable: no warning


def test_bad_input():
    verts, faces = grid(4)
    with pytest.raises(InputError):
        compute_operators(verts[:, :2], faces)
    with pytest.raises(InputError):
        compute_operators(verts, faces + 100)
    with pytest.raises(InputError):
        compute_operators(verts, faces, normals=np.zeros((3, 3)))
