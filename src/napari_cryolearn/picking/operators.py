"""A DiffusionNet's operators on a mesh: mass, Laplacian, spectrum and gradients, cached on disk.

DiffusionNet diffuses features with the spectral basis of the cotangent Laplacian
(``L φ = λ M φ`` with ``M`` the vertex areas) and takes spatial gradients in per-vertex tangent
frames. Computing the eigenpairs is the slow part (MemBrain-pick's slow first epoch), so
:func:`cached_operators` stores them under a hash of the mesh as float32 ``.npz`` files.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

from napari_cryolearn.engine.atomic import atomic_path
from napari_cryolearn.engine.errors import InputError

__all__ = ["MeshOperators", "cached_operators", "compute_operators", "operators_key", "tangent_frames"]

_DENSE_BELOW = 400  # vertices: a dense eigensolver is faster and more robust on tiny meshes


@dataclass
class MeshOperators:
    """The operators of a DiffusionNet on one mesh (or partition) of ``N`` vertices.

    Attributes
    ----------
    mass
        ``(N,)`` float32 vertex areas (the lumped mass matrix's diagonal).
    laplacian
        ``(N, N)`` float32 CSR cotangent Laplacian, positive semi-definite (positive diagonal).
    evals
        ``(k,)`` float32 eigenvalues of ``L φ = λ M φ``, ascending, the first about 0.
    evecs
        ``(N, k)`` float32 eigenvectors, orthonormal in the mass inner product.
    grad_x, grad_y
        ``(N, N)`` float32 CSR operators: ``grad_x @ f`` and ``grad_y @ f`` are the components of
        the gradient of the vertex function ``f`` along each vertex's tangent basis vectors.
    """

    mass: np.ndarray
    laplacian: sparse.csr_matrix
    evals: np.ndarray
    evecs: np.ndarray
    grad_x: sparse.csr_matrix
    grad_y: sparse.csr_matrix

    @property
    def n_vertices(self) -> int:
        """The number of vertices ``N``."""
        return int(self.mass.shape[0])


def _check(verts, faces, normals=None):
    verts = np.ascontiguousarray(verts, dtype=np.float64)
    faces = np.asarray(faces)
    if verts.ndim != 2 or verts.shape[1] != 3 or len(verts) == 0:
        raise InputError(f"expected vertices of shape (N, 3) with N > 0, got {verts.shape}", field="verts")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0 or not np.issubdtype(faces.dtype, np.integer):
        raise InputError(f"expected integer faces of shape (M, 3) with M > 0, got {faces.shape} {faces.dtype}", field="faces")
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    if faces.min() < 0 or faces.max() >= len(verts):
        raise InputError(f"face indices must lie in 0..{len(verts) - 1}", field="faces")
    if not np.isfinite(verts).all():
        raise InputError("vertices must be finite", field="verts")
    if normals is not None:
        normals = np.ascontiguousarray(normals, dtype=np.float64)
        if normals.shape != verts.shape:
            raise InputError(f"normals of shape {normals.shape} for vertices {verts.shape}", field="normals")
    return verts, faces, normals


def tangent_frames(normals) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex tangent bases ``(e_x, e_y)``, with ``e_x × e_y = n``.

    ``e_x`` is the x axis projected on the tangent plane (the y axis where the normal is near x),
    so a flat mesh in the z = 0 plane with normals (0, 0, 1) has the fixed x and y axes as frames.

    Examples
    --------
    >>> ex, ey = tangent_frames(np.array([[0.0, 0.0, 1.0]]))
    >>> ex, ey
    (array([[1., 0., 0.]]), array([[0., 1., 0.]]))
    """
    n = np.asarray(normals, dtype=np.float64)
    n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)
    ref = np.zeros_like(n)
    near_x = np.abs(n[:, 0]) > 0.9
    ref[~near_x, 0] = 1.0
    ref[near_x, 1] = 1.0
    ex = ref - (ref * n).sum(axis=1, keepdims=True) * n
    ex /= np.linalg.norm(ex, axis=1, keepdims=True)
    ey = np.cross(n, ex)
    return ex, ey


def _gradients(verts, faces, normals) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """Least-squares gradient operators in tangent frames, from each vertex's one ring."""
    n = len(verts)
    ex, ey = tangent_frames(normals)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.unique(np.concatenate([e, e[:, ::-1]]), axis=0)  # directed edges i -> j, both ways
    i, j = e[:, 0], e[:, 1]
    d = verts[j] - verts[i]
    a = (d * ex[i]).sum(axis=1)  # edge in the tangent frame of i
    b = (d * ey[i]).sum(axis=1)
    saa = np.bincount(i, a * a, minlength=n)
    sab = np.bincount(i, a * b, minlength=n)
    sbb = np.bincount(i, b * b, minlength=n)
    reg = 1e-8 * np.maximum(saa + sbb, 1e-300)  # keeps rank-deficient rings solvable
    saa, sbb = saa + reg, sbb + reg
    det = saa * sbb - sab * sab
    # (A^T A)^{-1} [a, b]^T for every edge of i: the weight of f_j - f_i in the gradient at i
    cx = (sbb[i] * a - sab[i] * b) / det[i]
    cy = (-sab[i] * a + saa[i] * b) / det[i]
    rows = np.concatenate([i, np.arange(n)])
    cols = np.concatenate([j, np.arange(n)])
    gx = sparse.csr_matrix((np.concatenate([cx, -np.bincount(i, cx, minlength=n)]), (rows, cols)), shape=(n, n))
    gy = sparse.csr_matrix((np.concatenate([cy, -np.bincount(i, cy, minlength=n)]), (rows, cols)), shape=(n, n))
    return gx, gy


def _eigenpairs(L: sparse.csr_matrix, mass: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = L.shape[0]
    if k == 0:
        return np.zeros(0), np.zeros((n, 0))
    if n < _DENSE_BELOW:
        import scipy.linalg

        w, v = scipy.linalg.eigh(L.toarray(), np.diag(mass), subset_by_index=[0, k - 1])
        return w, v
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, eigsh

    M = sparse.diags(mass).tocsc()
    eye = sparse.identity(n, format="csc")
    eps = 1e-8
    last = None
    for _ in range(6):
        try:
            w, v = eigsh((L + eps * eye).tocsc(), k=k, M=M, sigma=eps, which="LM")
            if np.isfinite(w).all() and np.isfinite(v).all():
                return w, v
        except (ArpackError, ArpackNoConvergence, RuntimeError, ValueError) as exc:
            last = exc
        eps *= 10
        warnings.warn(f"eigsh failed; retrying with eps={eps:g}", RuntimeWarning, stacklevel=3)
    raise RuntimeError(f"the Laplacian's eigenpairs could not be computed: {last}")


def compute_operators(verts, faces, *, normals=None, k: int = 128) -> MeshOperators:
    """Compute a DiffusionNet's operators on a mesh.

    Parameters
    ----------
    verts
        ``(N, 3)`` vertex coordinates.
    faces
        ``(M, 3)`` integer triangles.
    normals
        ``(N, 3)`` vertex normals for the tangent frames (e.g. the stored mesh normals);
        area-weighted vertex normals when None.
    k
        The number of eigenpairs, clipped to ``N - 1``.

    Returns
    -------
    MeshOperators

    Examples
    --------
    >>> import trimesh
    >>> m = trimesh.creation.icosphere(subdivisions=2)
    >>> ops = compute_operators(m.vertices, m.faces, k=16)
    >>> ops.evecs.shape, bool(abs(ops.evals[0]) < 1e-5), bool(np.all(np.diff(ops.evals) >= 0))
    ((162, 16), True, True)
    """
    import potpourri3d as pp3d

    verts, faces, normals = _check(verts, faces, normals)
    n = len(verts)
    k = int(k)
    if k < 0:
        raise InputError(f"k must be at least 0, got {k}", field="k")
    k = min(k, n - 1)
    L = sparse.csr_matrix(pp3d.cotan_laplacian(verts, faces), dtype=np.float64)
    mass = np.asarray(pp3d.vertex_areas(verts, faces), dtype=np.float64)
    mass = mass + 1e-8 * max(float(mass.mean()), 1e-300)  # no zero masses (isolated vertices)
    evals, evecs = _eigenpairs(L, mass, k)
    order = np.argsort(evals)
    evals, evecs = np.clip(evals[order], 0.0, None), evecs[:, order]
    if normals is None:
        from napari_cryolearn.picking.meshes import vertex_normals  # the meshes' own normals

        normals = vertex_normals(verts, faces)
    gx, gy = _gradients(verts, faces, normals)
    return MeshOperators(
        mass=mass.astype(np.float32),
        laplacian=L.astype(np.float32),
        evals=evals.astype(np.float32),
        evecs=np.ascontiguousarray(evecs, dtype=np.float32),
        grad_x=gx.astype(np.float32),
        grad_y=gy.astype(np.float32),
    )


def operators_key(verts, faces, normals=None, k: int = 128) -> str:
    """The cache key of a mesh's operators: the sha256 of its arrays' bytes and ``k``.

    Vertices and normals are hashed as float64, faces as int64, so the same mesh in another
    dtype has the same key.

    Examples
    --------
    >>> v = np.eye(3)
    >>> f = np.array([[0, 1, 2]])
    >>> operators_key(v, f, k=4) == operators_key(v.astype(np.float32), f.astype(np.int32), k=4)
    True
    >>> operators_key(v, f, k=4) == operators_key(v, f, k=8)
    False
    """
    h = hashlib.sha256()
    for name, arr, dtype in (("verts", verts, np.float64), ("faces", faces, np.int64), ("normals", normals, np.float64)):
        h.update(name.encode())
        if arr is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(arr, dtype=dtype)
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    h.update(f"k={int(k)}".encode())
    return h.hexdigest()


_SPARSE = ("laplacian", "grad_x", "grad_y")


def _save(path: Path, ops: MeshOperators) -> None:
    arrays = {"mass": ops.mass, "evals": ops.evals, "evecs": ops.evecs}
    for name in _SPARSE:
        m = sparse.csr_matrix(getattr(ops, name))
        arrays[f"{name}_data"] = m.data.astype(np.float32)
        arrays[f"{name}_indices"] = m.indices
        arrays[f"{name}_indptr"] = m.indptr
        arrays[f"{name}_shape"] = np.asarray(m.shape, dtype=np.int64)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def _load(path: Path) -> MeshOperators:
    with np.load(path) as z:
        kw = {name: z[name].astype(np.float32) for name in ("mass", "evals", "evecs")}
        for name in _SPARSE:
            kw[name] = sparse.csr_matrix(
                (z[f"{name}_data"].astype(np.float32), z[f"{name}_indices"], z[f"{name}_indptr"]),
                shape=tuple(int(s) for s in z[f"{name}_shape"]),
            )
    return MeshOperators(**kw)


def cached_operators(verts, faces, *, normals=None, k: int = 128, cache_dir: str | os.PathLike) -> MeshOperators:
    """:func:`compute_operators`, loaded from ``cache_dir/<key>.npz`` when computed before.

    The key is :func:`operators_key`; a new result is written atomically (float32), and an
    unreadable cache file is recomputed and replaced.

    Examples
    --------
    >>> import tempfile, trimesh
    >>> m = trimesh.creation.icosphere(subdivisions=1)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     a = cached_operators(m.vertices, m.faces, k=8, cache_dir=d)
    ...     b = cached_operators(m.vertices, m.faces, k=8, cache_dir=d)  # loaded
    ...     bool(np.array_equal(a.evecs, b.evecs)), len(os.listdir(d))
    (True, 1)
    """
    path = Path(cache_dir) / f"{operators_key(verts, faces, normals, k)}.npz"
    if path.is_file():
        try:
            return _load(path)
        except Exception as exc:  # a damaged file: compute again
            warnings.warn(f"{path}: unreadable operator cache ({exc}); recomputing", RuntimeWarning, stacklevel=2)
    ops = compute_operators(verts, faces, normals=normals, k=k)
    _save(path, ops)
    return ops
