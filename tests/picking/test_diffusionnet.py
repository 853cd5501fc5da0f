"""DiffusionNet picker on a small icosphere, with operators built here (potpourri3d, scipy)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import potpourri3d as pp3d
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import eigsh

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.picking.diffusionnet import (
    DiffusionNetBlock,
    DiffusionNetPicker,
    LearnedTimeDiffusion,
    SpatialGradientFeatures,
    operators_to_torch,
    weighted_mse,
)


def icosphere(subdivisions: int = 2) -> tuple[np.ndarray, np.ndarray]:
    t = (1 + 5**0.5) / 2
    v = [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
         [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]]
    f = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
         [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
         [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]]
    verts = [np.array(p, float) / np.linalg.norm(p) for p in v]
    faces = f
    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}

        def mid(a, b):
            key = (min(a, b), max(a, b))
            if key not in cache:
                p = verts[a] + verts[b]
                verts.append(p / np.linalg.norm(p))
                cache[key] = len(verts) - 1
            return cache[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        faces = new
    return np.array(verts), np.array(faces, dtype=np.int64)


def gradient_operators(verts, faces, normals):
    """Least-squares gradients in tangent frames (each vertex's edges to its neighbours)."""
    n = len(verts)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.unique(np.sort(np.concatenate([edges, edges[:, ::-1]]), axis=1), axis=0)
    edges = np.concatenate([edges, edges[:, ::-1]])
    ref = np.where(np.abs(normals[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    u = np.cross(normals, ref)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    w = np.cross(normals, u)
    rows, cols, gx, gy = [], [], [], []
    for i in range(n):
        nb = edges[edges[:, 0] == i, 1]
        e = verts[nb] - verts[i]
        a = np.c_[e @ u[i], e @ w[i]]  # (m, 2)
        pinv = np.linalg.pinv(a)  # (2, m): gradient = pinv @ (f_nb - f_i)
        rows += [i] * (len(nb) + 1)
        cols += [*nb, i]
        gx += [*pinv[0], -pinv[0].sum()]
        gy += [*pinv[1], -pinv[1].sum()]
    shape = (n, n)
    return sp.csr_matrix((gx, (rows, cols)), shape), sp.csr_matrix((gy, (rows, cols)), shape)


@pytest.fixture(scope="module")
def sphere():
    verts, faces = icosphere(2)  # 162 vertices
    lap = pp3d.cotan_laplacian(verts, faces, denom_eps=1e-10)
    mass = pp3d.vertex_areas(verts, faces)
    k = 32
    eps = 1e-8
    evals, evecs = eigsh(lap + eps * sp.eye(len(verts)), k=k, M=sp.diags(mass), sigma=eps)
    order = np.argsort(evals)
    evals, evecs = np.clip(evals[order], 0, None), evecs[:, order]
    gx, gy = gradient_operators(verts, faces, verts)
    ops = SimpleNamespace(mass=mass, laplacian=lap, evals=evals, evecs=evecs, grad_x=gx, grad_y=gy)
    return verts, faces, ops


def test_operators_to_torch(sphere):
    _, _, ops = sphere
    m, lam, vec, gx, gy = operators_to_torch(ops)
    assert m.dtype == torch.float32 and gx.layout == torch.sparse_coo
    assert vec.shape == (162, 32) and lam.shape == (32,)
    m2, *_ = operators_to_torch(ops.mass, ops.evals, ops.evecs, ops.grad_x.toarray(), ops.grad_y)
    assert torch.equal(m, m2)
    with pytest.raises(InputError):
        operators_to_torch(ops.mass[:-1], ops.evals, ops.evecs, ops.grad_x, ops.grad_y)
    with pytest.raises(InputError):
        operators_to_torch(object())


def test_diffusion_identity_and_mean(sphere):
    _, _, ops = sphere
    m, lam, vec, _, _ = operators_to_torch(ops, dtype=torch.float64)
    torch.manual_seed(0)
    coeffs = torch.randn(32, 3, dtype=torch.float64)
    x = vec @ coeffs  # in the span of the eigenvectors
    d = LearnedTimeDiffusion(3).double()
    assert torch.allclose(d(x, m, lam, vec), x, atol=1e-8)
    y = torch.randn(162, 3, dtype=torch.float64)
    with torch.no_grad():
        d.diffusion_time.fill_(1e3)  # λ1·t = 2000; λ0 ≈ 1e-7 (the ε shift) costs 1e-4
    out = d(y, m, lam, vec)
    mean = (m[:, None] * y).sum(0) / m.sum()
    assert torch.allclose(out, mean.expand_as(out), atol=1e-4)
    # times stay >= 0
    with torch.no_grad():
        d.diffusion_time.fill_(-1.0)
    assert torch.allclose(d(x, m, lam, vec), x, atol=1e-8)
    assert float(d.diffusion_time.detach().min()) == 0.0


def test_gradient_operators_are_gradients(sphere):
    verts, _, ops = sphere
    f = verts[:, 2]  # height: tangent gradient at the equator is large, at the poles zero
    g = np.hypot(ops.grad_x @ f, ops.grad_y @ f)
    expected = np.sqrt(1 - verts[:, 2] ** 2)
    assert np.corrcoef(g, expected)[0, 1] > 0.95


def test_gradient_features_rotation_invariant():
    torch.manual_seed(0)
    f = SpatialGradientFeatures(4)
    gx, gy = torch.randn(10, 4), torch.randn(10, 4)
    a = torch.rand(10, 1) * 6.28  # rotate every vertex's tangent frame by its own angle
    rx, ry = torch.cos(a) * gx - torch.sin(a) * gy, torch.sin(a) * gx + torch.cos(a) * gy
    assert torch.allclose(f(gx, gy), f(rx, ry), atol=1e-5)


def _inputs(sphere, seed=0):
    verts, _, ops = sphere
    ops_t = operators_to_torch(ops)
    rng = np.random.default_rng(seed)
    target = np.minimum(np.arccos(np.clip(verts @ np.array([0.0, 0.0, 1.0]), -1, 1)) * 4.0, 10.0)
    # profiles encode the target: a bump whose height falls with the distance, plus noise
    prof = np.exp(-((np.arange(16) - 7.5) ** 2) / 8.0)[None] * np.exp(-target / 3.0)[:, None]
    prof = prof + rng.normal(0, 0.05, prof.shape)
    return torch.tensor(prof, dtype=torch.float32), torch.tensor(target, dtype=torch.float32), ops_t


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_forward_shape_finite(sphere):
    prof, _, ops_t = _inputs(sphere)
    torch.manual_seed(0)
    net = DiffusionNetPicker()
    out = net(prof, *ops_t)
    assert out.shape == (162,) and torch.isfinite(out).all()
    pos = DiffusionNetPicker(positive=True)(prof, *ops_t)
    assert (pos >= 0).all()
    dense = [t.to_dense() if t.layout != torch.strided else t for t in ops_t]
    assert torch.allclose(net(prof, *dense), out, atol=1e-5)
    zero = torch.zeros(162, 162).to_sparse_csr()
    assert torch.isfinite(net(prof, *ops_t[:3], zero, zero)).all()
    with pytest.raises(InputError, match="profiles"):
        net(prof[:, :10], *ops_t)
    with pytest.raises(InputError, match="operators"):
        net(prof[:-1], *ops_t)


def test_gradients_reach_diffusion_times(sphere):
    prof, target, ops_t = _inputs(sphere)
    torch.manual_seed(0)
    net = DiffusionNetPicker(n_blocks=2)
    weighted_mse(net(prof, *ops_t), target, torch.ones_like(target)).backward()
    for block in net.blocks:
        g = block.diffusion.diffusion_time.grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_weighted_mse():
    p, t, w = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.5])
    assert weighted_mse(p, t, w).item() == pytest.approx((1 + 1) / 1.5)
    assert weighted_mse(p, t, torch.zeros(2) + 2).item() == pytest.approx((4 + 16) / 4)


def _train(sphere, steps, seed=0, n_blocks=4):
    prof, target, ops_t = _inputs(sphere)
    ops_t = [t.to_dense() if t.layout != torch.strided else t for t in ops_t]  # faster at 162 vertices
    torch.manual_seed(seed)
    net = DiffusionNetPicker(n_blocks=n_blocks)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    w = torch.ones_like(target)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = weighted_mse(net(prof, *ops_t), target, w)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return net, losses


def test_tiny_training_learns_smooth_target(sphere):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 162 vertices: threads only contend on a shared 2-core machine
    try:
        t0 = time.perf_counter()
        _, losses = _train(sphere, 100)
        elapsed = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.4f} ({losses[0] / losses[-1]:.0f}x) in {elapsed:.2f} s")
    assert losses[0] / min(losses[-5:]) >= 5.0
    assert all(np.isfinite(losses))


def test_deterministic_with_seed(sphere):
    prof, _, ops_t = _inputs(sphere)
    torch.manual_seed(3)
    a = DiffusionNetPicker(dropout=0.1).eval()(prof, *ops_t)
    torch.manual_seed(3)
    b = DiffusionNetPicker(dropout=0.1).eval()(prof, *ops_t)
    assert torch.equal(a, b)
    _, la = _train(sphere, 5, seed=1)
    _, lb = _train(sphere, 5, seed=1)
    assert la == lb


def test_block_residual_zero_mlp_is_identity(sphere):
    _, _, ops_t = _inputs(sphere)
    b = DiffusionNetBlock(4)
    with torch.no_grad():
        for p in b.mlp[-1].parameters():
            p.zero_()
    x = torch.randn(162, 4)
    assert torch.equal(b(x, *ops_t), x)
