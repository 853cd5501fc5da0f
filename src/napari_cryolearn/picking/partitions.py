"""Overlapping geodesic partitions of a mesh, and the stitching of per-partition values.

A membrane mesh has too many vertices for one DiffusionNet pass, so it is cut into patches of
``size`` vertices around seed vertices: the ``size`` geodesically nearest vertices of a seed
(heat-method distances) and the faces among them. Each vertex of a patch gets a Gaussian weight
``exp(-d² / 2σ²)`` of its distance ``d`` to the seed, with ``σ`` half the largest distance in the
patch, so that predictions near a patch's centre count more than those at its rim. Faces whose
mean weight exceeds ``overlap_weight`` leave the set of candidate seeds, and the next seed is a
vertex of the first remaining candidate, so patches overlap (MemBrain-pick's scheme).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from napari_cryolearn.engine.errors import InputError

__all__ = ["Partition", "partition_mesh", "stitch"]


@dataclass
class Partition:
    """One patch of a mesh.

    Attributes
    ----------
    vertices
        ``(n,)`` int64 indices of the patch's vertices in the whole mesh.
    faces
        ``(m, 3)`` int64 faces among those vertices, indexing ``vertices`` (0..n-1).
    weights
        ``(n,)`` float32 Gaussian weights of the vertices (1 at the seed).
    """

    vertices: np.ndarray
    faces: np.ndarray
    weights: np.ndarray

    @property
    def size(self) -> int:
        """The number of vertices."""
        return int(len(self.vertices))


def _check_mesh(verts, faces) -> tuple[np.ndarray, np.ndarray]:
    verts = np.asarray(verts, dtype=np.float64)
    faces = np.asarray(faces)
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise InputError(f"expected vertices of shape (N, 3), got {verts.shape}", field="verts")
    if faces.ndim != 2 or faces.shape[1] != 3 or (faces.size and not np.issubdtype(faces.dtype, np.integer)):
        raise InputError(f"expected integer faces of shape (M, 3), got {faces.shape} {faces.dtype}", field="faces")
    faces = faces.astype(np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= len(verts)):
        raise InputError(f"face indices must lie in 0..{len(verts) - 1}", field="faces")
    if not np.isfinite(verts).all():
        raise InputError("vertices must be finite", field="verts")
    return verts, faces


def _sub_faces(faces: np.ndarray, members: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """The faces whose three vertices are all in ``members``, reindexed; and their mask."""
    local = np.full(n_vertices, -1, dtype=np.int64)
    local[members] = np.arange(len(members))
    mapped = local[faces]
    keep = (mapped >= 0).all(axis=1)
    return mapped[keep], keep


def _partition_component(
    verts: np.ndarray, faces: np.ndarray, *, size: int, overlap_weight: float
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Partitions of one connected mesh, in its own vertex indices."""
    n = len(verts)
    if n <= size or len(faces) == 0:
        return [(np.arange(n), faces, np.ones(n, dtype=np.float32))]
    import potpourri3d as pp3d

    solver = pp3d.MeshHeatMethodDistanceSolver(verts, faces)
    candidate = np.ones(len(faces), dtype=bool)
    covered = np.zeros(n, dtype=bool)
    out = []
    seed = int(faces[0, 0])
    while True:
        d = np.asarray(solver.compute_distance(seed), dtype=np.float64)
        d = np.where(np.isfinite(d), d, np.inf)
        d[seed] = 0.0
        members = np.sort(np.argsort(d, kind="stable")[:size])
        dm = d[members]
        sigma = 0.5 * float(np.max(dm[np.isfinite(dm)], initial=0.0))
        weights = np.exp(-(dm**2) / (2 * sigma**2)) if sigma > 0 else np.ones(len(members))
        sub, keep = _sub_faces(faces, members, n)
        out.append((members, sub, weights.astype(np.float32)))
        covered[members] = True
        fw = np.zeros(len(faces))
        w_all = np.zeros(n)
        w_all[members] = weights
        fw[keep] = w_all[faces[keep]].mean(axis=1)
        before = candidate.sum()
        candidate &= ~(keep & (fw > overlap_weight))
        candidate &= ~(faces == seed).any(axis=1)  # always progress, whatever overlap_weight is
        if candidate.sum() == before and candidate.any():  # pragma: no cover - defensive
            candidate[np.flatnonzero(candidate)[0]] = False
        if candidate.any():
            seed = int(faces[np.flatnonzero(candidate)[0], 0])
        elif not covered.all():
            seed = int(np.flatnonzero(~covered)[0])
        else:
            return out


def partition_mesh(verts, faces, *, size: int = 2000, overlap_weight: float = 0.35) -> list[Partition]:
    """Cut a mesh into overlapping geodesic patches of at most ``size`` vertices.

    Parameters
    ----------
    verts
        ``(N, 3)`` vertex coordinates.
    faces
        ``(M, 3)`` integer triangles.
    size
        The number of vertices of a patch (the seed's ``size`` geodesically nearest). A
        connected component with at most ``size`` vertices is one patch with weights 1.
    overlap_weight
        Faces of a patch whose mean vertex weight exceeds this are no longer candidate seeds;
        higher values remove fewer faces per patch, so give more patches that overlap more.

    Returns
    -------
    list of Partition
        Every vertex lies in at least one; vertices in no face are one-vertex patches.

    Examples
    --------
    >>> import trimesh
    >>> m = trimesh.creation.icosphere(subdivisions=3)
    >>> parts = partition_mesh(m.vertices, m.faces, size=300)
    >>> max(p.size for p in parts) <= 300
    True
    >>> np.unique(np.concatenate([p.vertices for p in parts])).size == len(m.vertices)
    True
    """
    verts, faces = _check_mesh(verts, faces)
    if int(size) < 1:
        raise InputError(f"size must be at least 1, got {size}", field="size")
    if not 0.0 <= float(overlap_weight) <= 1.0:
        raise InputError(f"overlap_weight must lie in [0, 1], got {overlap_weight}", field="overlap_weight")
    n = len(verts)
    if n == 0:
        return []
    rows = faces[:, [0, 1, 2]].ravel()
    cols = faces[:, [1, 2, 0]].ravel()
    adj = sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()
    n_comp, labels = connected_components(adj, directed=False)
    face_label = labels[faces[:, 0]] if len(faces) else np.zeros(0, dtype=np.int64)
    parts: list[Partition] = []
    for c in range(n_comp):
        members = np.flatnonzero(labels == c)
        sub, _ = _sub_faces(faces[face_label == c], members, n)
        for local_v, local_f, w in _partition_component(
            verts[members], sub, size=int(size), overlap_weight=float(overlap_weight)
        ):
            parts.append(Partition(vertices=members[local_v].astype(np.int64), faces=local_f.astype(np.int64), weights=w))
    return parts


def stitch(n_vertices: int, partitions: Sequence[Partition], values: Sequence[np.ndarray]) -> np.ndarray:
    """Merge per-partition per-vertex values into one value per mesh vertex.

    Each vertex gets the weighted mean of its values over the partitions that hold it, by the
    partitions' weights; a vertex in one partition gets its value exactly, one in none NaN.

    Parameters
    ----------
    n_vertices
        The number of vertices of the whole mesh.
    partitions
        The partitions, e.g. from :func:`partition_mesh`.
    values
        One ``(n_i,)`` or ``(n_i, C)`` array per partition, in its vertex order.

    Returns
    -------
    numpy.ndarray
        ``(n_vertices,)`` or ``(n_vertices, C)`` float64.

    Examples
    --------
    >>> a = Partition(np.array([0, 1]), np.zeros((0, 3), int), np.array([1.0, 1.0], np.float32))
    >>> b = Partition(np.array([1, 2]), np.zeros((0, 3), int), np.array([3.0, 1.0], np.float32))
    >>> stitch(3, [a, b], [np.array([0.0, 0.0]), np.array([4.0, 5.0])])
    array([0., 3., 5.])
    """
    if len(partitions) != len(values):
        raise InputError(f"{len(partitions)} partitions but {len(values)} value arrays", field="values")
    vals = [np.asarray(v, dtype=np.float64) for v in values]
    for i, (p, v) in enumerate(zip(partitions, vals)):
        if v.shape[0] != len(p.vertices):
            raise InputError(f"partition {i}: {len(p.vertices)} vertices but {v.shape[0]} values", field="values")
    tail = vals[0].shape[1:] if vals else ()
    acc = np.zeros((int(n_vertices), *tail))
    wsum = np.zeros(int(n_vertices))
    count = np.zeros(int(n_vertices), dtype=np.int64)
    single = np.full((int(n_vertices), *tail), np.nan)
    for p, v in zip(partitions, vals):
        w = np.asarray(p.weights, dtype=np.float64)
        wv = w.reshape(-1, *([1] * len(tail))) * v
        np.add.at(acc, p.vertices, wv)
        np.add.at(wsum, p.vertices, w)
        np.add.at(count, p.vertices, 1)
        single[p.vertices] = v
    with np.errstate(invalid="ignore", divide="ignore"):
        out = acc / wsum.reshape(-1, *([1] * len(tail)))
    out[count == 0] = np.nan
    out[count == 1] = single[count == 1]
    return out
