"""Per-vertex training targets from protein positions, and positions assigned to membranes.

MemBrain-pick's ground truth (``reference/membrain_pick.md`` §2): every vertex's target is the
Euclidean distance to the nearest protein position, clipped (150 Å, i.e. 10 of its 15 Å units).
Vertices and positions are (z, y, x) voxels of the same tomogram (any order works as long as
both use it); distances are in Å. Nothing here reads or writes files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Assignment", "assign_positions", "distance_targets"]


def _points(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return a.reshape(0, 3)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"{name} must be (N, 3), got shape {a.shape}")
    return a


def _positive(value, name: str) -> float:
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def distance_targets(verts: np.ndarray, positions: np.ndarray, *, voxel_size: float, clip: float = 150.0) -> np.ndarray:
    """Each vertex's Euclidean distance (Å) to the nearest position, clipped at ``clip``.

    Parameters
    ----------
    verts : (N, 3) floats
        Vertices, voxels.
    positions : (M, 3) floats
        Protein positions, voxels, same axis order. None or empty: every target is ``clip``.
    voxel_size : float
        Å per voxel (isotropic).
    clip : float
        Å (MemBrain-pick: 150).

    Returns
    -------
    (N,) float32

    Examples
    --------
    >>> import numpy as np
    >>> verts = np.array([[0.0, 0, 0], [0, 0, 3], [0, 0, 40]])
    >>> distance_targets(verts, np.array([[0.0, 4, 0]]), voxel_size=10.0).tolist()
    [40.0, 50.0, 150.0]
    """
    from scipy.spatial import cKDTree

    verts = _points(verts, "verts")
    voxel_size, clip = _positive(voxel_size, "voxel_size"), _positive(clip, "clip")
    positions = _points(np.zeros((0, 3)) if positions is None else positions, "positions")
    if len(positions) == 0 or len(verts) == 0:
        return np.full(len(verts), clip, dtype=np.float32)
    dist, _ = cKDTree(positions).query(verts, k=1, distance_upper_bound=clip / voxel_size * 1.0001 + 1e-9)
    out = np.minimum(dist * voxel_size, clip)  # inf (nothing within the bound) → clip
    return out.astype(np.float32)


@dataclass
class Assignment:
    """Where each position of a tomogram lies.

    Attributes
    ----------
    mesh_index : (M,) int64
        Index of the mesh whose nearest vertex is the nearest of all; -1 for positions farther
        than ``max_distance`` from every mesh.
    vertex_index : (M,) int64
        That vertex, in its mesh (-1 with ``mesh_index``).
    distance : (M,) float64
        Å to that nearest vertex (inf when there are no meshes).
    far : (K,) int64
        Indices of the positions farther than ``max_distance`` from every membrane: left out of
        every mesh's targets, reported so the caller can say so.
    """

    mesh_index: np.ndarray
    vertex_index: np.ndarray
    distance: np.ndarray
    far: np.ndarray

    def positions_of(self, mesh: int) -> np.ndarray:
        """Indices of the positions assigned to mesh ``mesh``."""
        return np.flatnonzero(self.mesh_index == mesh)


def assign_positions(
    positions: np.ndarray, meshes: Sequence[np.ndarray], *, voxel_size: float, max_distance: float
) -> Assignment:
    """Assign the protein positions of a whole tomogram to the membrane meshes they lie on.

    A position goes to the mesh with the nearest vertex, when that vertex is at most
    ``max_distance`` Å away; the others are listed in :attr:`Assignment.far` (not silently
    dropped).

    Parameters
    ----------
    positions : (M, 3) floats
        Voxels.
    meshes : sequence of (N_i, 3) float arrays
        Each mesh's vertices, voxels, same axis order.
    voxel_size : float
        Å per voxel.
    max_distance : float
        Å.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[0.0, 0, 0], [0, 0, 1]]); b = np.array([[0.0, 0, 20]])
    >>> r = assign_positions(np.array([[0.0, 1, 0], [0, 0, 18], [50, 0, 0]]), [a, b],
    ...                      voxel_size=10.0, max_distance=30.0)
    >>> r.mesh_index.tolist(), r.far.tolist(), r.distance[:2].tolist()
    ([0, 1, -1], [2], [10.0, 20.0])
    """
    from scipy.spatial import cKDTree

    positions = _points(positions, "positions")
    voxel_size = _positive(voxel_size, "voxel_size")
    max_distance = float(max_distance)
    if not max_distance >= 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance!r}")
    arrays = [_points(m, f"meshes[{i}]") for i, m in enumerate(meshes)]
    m = len(positions)
    mesh_index = np.full(m, -1, dtype=np.int64)
    vertex_index = np.full(m, -1, dtype=np.int64)
    distance = np.full(m, np.inf)
    sizes = [len(a) for a in arrays]
    if m and sum(sizes):
        owner = np.repeat(np.arange(len(arrays)), sizes)
        local = np.concatenate([np.arange(n) for n in sizes])
        dist, idx = cKDTree(np.concatenate(arrays)).query(positions, k=1)
        distance = dist * voxel_size
        near = distance <= max_distance
        mesh_index[near] = owner[idx[near]]
        vertex_index[near] = local[idx[near]]
    far = np.flatnonzero(mesh_index < 0)
    return Assignment(mesh_index, vertex_index, distance, far)
