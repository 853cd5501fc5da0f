"""What the picker trains and predicts on: targets on a mesh, partitions with their operators,
and the profile windows and augmentations the network sees.

MemBrain-pick's rules (``reference/membrain_pick.md`` §2–4), with two of its defects avoided:

- Targets are in MemBrain-pick's distance unit, :data:`DISTANCE_UNIT` = 15 Å, clipped at 10
  (150 Å), so its checkpoints' outputs and ours mean the same and the mean-shift weights
  ``10 − score`` apply unchanged.
- A protein position is snapped onto the mesh (projected onto the tangent plane of its nearest
  vertex) before distances are measured. A vertex whose normal points against the normal under
  its nearest protein lies on the other sheet of the membrane (the inner leaflet under an outer
  protein) and gets the clip value: MemBrain-pick decides the side from the unsnapped position,
  which marks both sheets wrong for a position picked on the membrane's mid-plane; the normal
  under the snapped position is the same for any position on one side of the bilayer.
- Profiles are standardised per mesh (its ``normal_values`` to zero mean, unit deviation), so a
  model trained on one tomogram's grey values applies to another's.

Everything here is arrays in, arrays out, except :func:`partition_items`, which reads and writes
the operator cache it is given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DISTANCE_UNIT",
    "PartitionItem",
    "augment_profiles",
    "mesh_targets",
    "partition_items",
    "profile_windows",
    "snap_positions",
    "standardise_profiles",
]

#: MemBrain-pick's unit of predicted distance, Å (its targets are distances / 15 Å, clipped at 10).
DISTANCE_UNIT = 15.0


def snap_positions(positions: np.ndarray, verts: np.ndarray, normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project each position onto the tangent plane of its nearest vertex.

    Returns the snapped positions (M, 3) and the index of that vertex (M,).

    Examples
    --------
    >>> v = np.array([[0.0, 0, 0], [0, 0, 10]]); n = np.array([[1.0, 0, 0], [1.0, 0, 0]])
    >>> p, i = snap_positions(np.array([[4.0, 1, 2]]), v, n)
    >>> p.tolist(), i.tolist()
    ([[0.0, 1.0, 2.0]], [0])
    """
    from scipy.spatial import cKDTree

    positions = np.asarray(positions, np.float64).reshape(-1, 3)
    if not len(positions) or not len(verts):
        return positions.copy(), np.zeros(len(positions), np.int64)
    _, idx = cKDTree(verts).query(positions, k=1)
    n = np.asarray(normals, np.float64)[idx]
    height = np.einsum("ij,ij->i", positions - verts[idx], n)
    return positions - height[:, None] * n, idx.astype(np.int64)


def mesh_targets(
    verts: np.ndarray, normals: np.ndarray, positions: np.ndarray | None, *, voxel_size: float, clip: float = 150.0
) -> np.ndarray:
    """Each vertex's training target: distance to the nearest snapped protein position, in
    :data:`DISTANCE_UNIT` (15 Å), clipped at ``clip`` Å; vertices on the other sheet of the
    membrane (normal against the normal under that position) get the clip value.

    Parameters
    ----------
    verts, normals : (N, 3)
        Vertices (voxels) and unit normals, the same axis order as ``positions``.
    positions : (M, 3) or None
        Protein positions, voxels. None or empty: every target is the clip value.
    voxel_size : float
        Å per voxel.
    clip : float
        Å (MemBrain-pick: 150).

    Returns
    -------
    (N,) float32, in [0, clip / 15].

    Examples
    --------
    A flat double sheet (two planes 3 voxels apart, normals pointing away from each other) and
    a protein above the upper sheet:

    >>> yy, xx = np.mgrid[0:5, 0:5].reshape(2, -1).astype(float)
    >>> top = np.c_[np.full(25, 3.0), yy, xx]; bottom = np.c_[np.zeros(25), yy, xx]
    >>> verts = np.r_[top, bottom]
    >>> normals = np.r_[np.tile([1.0, 0, 0], (25, 1)), np.tile([-1.0, 0, 0], (25, 1))]
    >>> t = mesh_targets(verts, normals, np.array([[6.0, 2, 2]]), voxel_size=10.0)
    >>> [round(float(v), 3) for v in (t[12], t[13], t[25 + 12])]   # under it, one voxel over, other sheet
    [0.0, 0.667, 10.0]
    """
    from scipy.spatial import cKDTree

    voxel_size, clip = float(voxel_size), float(clip)
    verts = np.asarray(verts, np.float64)
    normals = np.asarray(normals, np.float64)
    top = np.float32(clip / DISTANCE_UNIT)
    if positions is None or not len(positions) or not len(verts):
        return np.full(len(verts), top, np.float32)
    snapped, under = snap_positions(positions, verts, normals)
    dist, j = cKDTree(snapped).query(verts, k=1)
    out = np.minimum(dist * voxel_size, clip) / DISTANCE_UNIT
    wrong = np.einsum("ij,ij->i", normals, normals[under[j]]) < 0
    out[wrong] = top
    return out.astype(np.float32)


def standardise_profiles(profiles: np.ndarray) -> np.ndarray:
    """A mesh's normal profiles to zero mean and unit standard deviation (float32).

    >>> standardise_profiles(np.array([[1.0, 3.0], [5.0, 7.0]])).astype(float).round(3).tolist()
    [[-1.342, -0.447], [0.447, 1.342]]
    """
    p = np.asarray(profiles, np.float32)
    sd = float(p.std())
    return ((p - float(p.mean())) / (sd if sd > 0 else 1.0)).astype(np.float32)


def profile_windows(length: int, window: int) -> list[int]:
    """The first sample of every contiguous ``window`` of a profile of ``length`` samples.

    >>> profile_windows(20, 16)
    [0, 1, 2, 3, 4]
    """
    if window > length:
        raise ValueError(f"a window of {window} samples does not fit profiles of {length}")
    return list(range(length - window + 1))


def augment_profiles(profiles: np.ndarray, rng: np.random.Generator, *, p: float = 0.3) -> np.ndarray:
    """Random intensity augmentations of one partition's (standardised) profiles, each applied
    with probability ``p``: Gaussian noise, contrast scale and brightness shift, smoothing along
    the profile, a brightness gradient across the partition, and erased (zeroed) vertices.

    >>> rng = np.random.default_rng(0)
    >>> augment_profiles(np.ones((5, 16), np.float32), rng, p=0).tolist() == np.ones((5, 16)).tolist()
    True
    """
    x = np.array(profiles, np.float32, copy=True)
    n = len(x)
    if rng.random() < p:
        x += rng.normal(0, rng.uniform(0.05, 0.3), x.shape).astype(np.float32)
    if rng.random() < p:
        x = x * np.float32(rng.uniform(0.7, 1.3)) + np.float32(rng.uniform(-0.3, 0.3))
    if rng.random() < p:
        from scipy.ndimage import gaussian_filter1d

        x = gaussian_filter1d(x, sigma=rng.uniform(0.3, 1.0), axis=1, mode="nearest").astype(np.float32)
    if rng.random() < p and n > 1:
        ramp = np.linspace(-1, 1, n, dtype=np.float32)[rng.permutation(n)] * np.float32(rng.uniform(0, 0.3))
        x += ramp[:, None]
    if rng.random() < p:
        erased = rng.random(n) < rng.uniform(0.01, 0.1)
        x[erased] = 0.0
    return x


@dataclass
class PartitionItem:
    """One partition of one mesh, ready for the network.

    Attributes
    ----------
    mesh : int
        Index of the mesh among those given.
    vertices : (n,) int64
        The partition's vertices in its mesh.
    weights : (n,) float32
        Gaussian stitching weights (1 at the partition's seed).
    profiles : (n, S) float32
        Standardised normal profiles.
    target : (n,) float32 or None
        Distance targets (:func:`mesh_targets`), or None for prediction.
    operators : MeshOperators
    """

    mesh: int
    vertices: np.ndarray
    weights: np.ndarray
    profiles: np.ndarray
    target: np.ndarray | None
    operators: object


def partition_items(
    mesh: int,
    verts: np.ndarray,
    faces: np.ndarray,
    normals: np.ndarray,
    profiles: np.ndarray,
    target: np.ndarray | None,
    *,
    size: int = 2000,
    k: int = 128,
    cache_dir: str | os.PathLike | None = None,
) -> list[PartitionItem]:
    """Cut a mesh into partitions of about ``size`` vertices and compute (or load from
    ``cache_dir``) each one's operators with ``k`` eigenpairs; ``profiles`` are standardised
    here. Vertices are centred per partition before the operators are computed (MemBrain-pick
    centres them too; the operators do not depend on it)."""
    from napari_cryolearn.picking.operators import cached_operators, compute_operators
    from napari_cryolearn.picking.partitions import partition_mesh

    verts = np.asarray(verts, np.float64)
    normals = np.asarray(normals, np.float64)
    prof = standardise_profiles(profiles)
    items = []
    for part in partition_mesh(verts, faces, size=size):
        v = verts[part.vertices]
        kk = min(int(k), max(1, part.size - 2))
        args = dict(normals=normals[part.vertices], k=kk)
        ops = (cached_operators(v, part.faces, cache_dir=cache_dir, **args) if cache_dir is not None
               else compute_operators(v, part.faces, **args))
        items.append(PartitionItem(mesh, part.vertices, part.weights.astype(np.float32), prof[part.vertices],
                                   None if target is None else np.asarray(target, np.float32)[part.vertices], ops))
    return items


def windows_of(profiles: np.ndarray, window: int, starts: Sequence[int]) -> list[np.ndarray]:
    """The ``window``-sample slices of ``profiles`` beginning at each of ``starts``."""
    return [np.ascontiguousarray(profiles[:, s:s + window]) for s in starts]
