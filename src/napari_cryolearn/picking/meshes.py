"""Membrane segmentations → surface meshes, vertex normals and normal profiles.

The operations of MemBrain-pick's mesh conversion (``reference/membrain_pick.md`` §1), on
arrays; nothing here reads or writes files.

Units and axes: every array here is **(z, y, x)** in **voxels** (vertices, normals, masks,
volumes), like the rest of the project; lengths given as options (``vertex_area``, ``step``)
are in Å and ``voxel_size`` (Å per voxel) converts them. The (x, y, z) order of MemBrain-pick's
``.h5`` files is made once, in :meth:`napari_cryolearn.io.mesh_container.MeshContainer.from_zyx`.

Remeshing: pyacvd (MemBrain-pick's even remeshing) is not a dependency. Marching cubes on a
unit grid gives about one vertex per 0.69 grid cell² of surface, so the surface is found on a
grid of spacing ``sqrt(vertex_area / voxel_size² / 0.69)`` voxels (2.4 voxels for 400 Å² at
10 Å): the mask's signed distance (Euclidean, in voxels) is resampled trilinearly to that grid
(:func:`scipy.ndimage.zoom`) and marching cubes finds its zero level. Being linear across the
surface, the signed distance keeps the surface where it is on a coarse grid, and membranes
thicker than the spacing (40-50 Å against 24 Å at the default) keep their thickness; the
binary mask downsampled the same way would thin or lose them. After Taubin smoothing the
achieved mean vertex area (surface area / vertices) is measured and the spacing corrected
(area scales with its square), at most twice, to within 10 %. Single triangles are less
regular than pyacvd's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MembraneComponent",
    "mean_vertex_area",
    "membrane_components",
    "mesh_from_mask",
    "normal_profiles",
    "orient_faces",
    "vertex_normals",
]

#: Mean vertex area (voxel²) of a Taubin-smoothed marching-cubes surface at unit grid spacing,
#: measured on spheres of radius 10-40 voxels (0.68-0.70).
_MC_VERTEX_AREA = 0.69


@dataclass
class MembraneComponent:
    """One 26-connected membrane of a label volume.

    Attributes
    ----------
    label : int
        The component's id (1, 2, … by decreasing size).
    box : tuple of slices
        (z, y, x) bounding box in the label volume, one voxel wider than the component on each
        side where the volume allows (so the surface closes there).
    mask : (Z, Y, X) bool
        The component inside ``box``.
    voxels : int
        Its size.
    """

    label: int
    box: tuple[slice, slice, slice]
    mask: np.ndarray
    voxels: int

    @property
    def offset(self) -> np.ndarray:
        """The box's first voxel (z, y, x): add it to mask coordinates for volume coordinates."""
        return np.array([s.start for s in self.box], dtype=np.float64)


def membrane_components(
    labels: np.ndarray, *, classes: Sequence[int] = (1,), min_voxels: int = 10_000
) -> list[MembraneComponent]:
    """The 26-connected components of the membrane classes, largest first.

    Parameters
    ----------
    labels : (Z, Y, X) int array
        A segmentation.
    classes : ints
        The label values that are membrane (merged before the components are found).
    min_voxels : int
        Components smaller than this are left out (MemBrain-pick: 10 000).

    Returns
    -------
    list of MembraneComponent
        Numbered 1, 2, … by decreasing size.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((8, 8, 8), np.uint8)
    >>> labels[1:3, 1:3, 1:3] = 1; labels[5:8, 5:8, 5:8] = 1; labels[4, 4, 4] = 2
    >>> [(c.label, c.voxels, c.box[0]) for c in membrane_components(labels, min_voxels=5)]
    [(1, 27, slice(4, 8, None)), (2, 8, slice(0, 4, None))]
    """
    from scipy import ndimage

    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be a (Z, Y, X) volume, got shape {labels.shape}")
    membrane = np.isin(labels, np.asarray(list(classes)))
    ids, n = ndimage.label(membrane, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return []
    sizes = np.bincount(ids.ravel(), minlength=n + 1)
    boxes = ndimage.find_objects(ids)
    order = [i for i in np.argsort(-sizes[1:], kind="stable") + 1 if sizes[i] >= min_voxels]
    out = []
    for rank, i in enumerate(order, start=1):
        box = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, dim)) for s, dim in zip(boxes[i - 1], ids.shape))
        out.append(MembraneComponent(rank, box, ids[box] == i, int(sizes[i])))  # type: ignore[arg-type]
    return out


def mean_vertex_area(verts: np.ndarray, faces: np.ndarray) -> float:
    """Surface area over the number of vertices (the area units of ``verts`` squared)."""
    tri = np.asarray(verts, dtype=np.float64)[np.asarray(faces)]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
    return float(area / max(len(verts), 1))


def _clean(verts: np.ndarray, faces: np.ndarray, smoothing_iterations: int):
    """Duplicate vertices merged, degenerate and duplicate faces and unused vertices removed,
    then Taubin smoothing; the face winding is kept."""
    import trimesh

    mesh = trimesh.Trimesh(verts, faces, process=True)  # merges duplicate vertices
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.update_faces(mesh.unique_faces())
    mesh.remove_unreferenced_vertices()
    if smoothing_iterations > 0 and len(mesh.faces):
        trimesh.smoothing.filter_taubin(mesh, iterations=int(smoothing_iterations))
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """Voxels from the mask's border, positive inside, zero half-way between an inside and an
    outside voxel (where marching cubes on the binary mask at 0.5 puts the surface)."""
    import edt

    inside = edt.edt(mask, black_border=False)
    outside = edt.edt(~mask, black_border=False)
    return np.where(mask, inside - 0.5, 0.5 - outside).astype(np.float32)


def _surface(mask: np.ndarray, factor: float, smoothing_iterations: int):
    """Marching cubes at level 0 on the mask's signed distance resampled by ``factor``
    (trilinear), in mask voxels.

    The signed distance, unlike the binary mask, is linear across the membrane's surface, so a
    coarser grid still finds the surface where it is, and a membrane thicker than the grid
    spacing keeps its thickness. The mask is first padded by repeating its faces, so the
    distance keeps growing beyond a tight box and the resampled grid still covers a thin one;
    a membrane that reaches the array's border runs on into the padding, and the faces beyond
    the border (centroid more than half a voxel out) are cut, so it stays open there.
    """
    from scipy import ndimage
    from skimage.measure import marching_cubes

    pad = int(math.ceil(1.0 / factor)) + 1
    field = _signed_distance(np.pad(mask, pad, mode="edge"))
    if abs(factor - 1.0) > 1e-6:
        shape = [max(int(round(n * factor)), 2) for n in field.shape]
        field = ndimage.zoom(field, [m / n for m, n in zip(shape, field.shape)], order=1, grid_mode=False)
    if field.max() <= 0 or field.min() >= 0:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    verts, faces, _, _ = marching_cubes(field, level=0.0)
    faces = faces[:, ::-1]  # scikit-image winds towards higher values; ours face out of the mask
    # zoom (grid_mode False) maps output index o to input index o * (n_in - 1) / (n_out - 1)
    padded = np.array(mask.shape) + 2 * pad
    verts = verts * ((padded - 1) / (np.array(field.shape) - 1)) - pad
    centroids = verts[faces].mean(axis=1)
    keep = np.all((centroids >= -0.5) & (centroids <= np.array(mask.shape) - 0.5), axis=1)
    faces = faces[keep]
    return _clean(verts, faces, smoothing_iterations)


def mesh_from_mask(
    mask: np.ndarray,
    *,
    voxel_size: float,
    vertex_area: float = 400.0,
    smoothing_iterations: int = 10,
    offset: Sequence[float] = (0.0, 0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """A triangle mesh of a membrane mask, about one vertex per ``vertex_area`` Å².

    Marching cubes (scikit-image) at the mask's 0.5 level (the zero of its signed distance),
    on a grid chosen for the target vertex density (see the module docstring), duplicate
    vertices merged, degenerate and duplicate faces removed, Taubin smoothing
    (``trimesh.smoothing.filter_taubin``), faces wound consistently (outward for closed
    surfaces and out of the membrane for open ones, see :func:`orient_faces`).

    Parameters
    ----------
    mask : (Z, Y, X) bool
        One membrane (e.g. :attr:`MembraneComponent.mask`). Where it touches the array's border
        the surface stays open there.
    voxel_size : float
        Å per voxel.
    vertex_area : float
        Target mean area per vertex, Å² (MemBrain-pick: 400).
    smoothing_iterations : int
        Taubin iterations (0: none).
    offset : (z, y, x) floats
        Added to the vertices (a component's :attr:`~MembraneComponent.offset`).

    Returns
    -------
    verts : (N, 3) float64
        Voxels, (z, y, x).
    faces : (F, 3) int64

    Examples
    --------
    >>> import numpy as np
    >>> z, y, x = np.mgrid[:40, :40, :40]
    >>> ball = (z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 < 12 ** 2
    >>> verts, faces = mesh_from_mask(ball, voxel_size=10.0, vertex_area=400.0)
    >>> 280 < mean_vertex_area(verts, faces) * 10.0**2 < 520
    True
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"mask must be (Z, Y, X), got shape {mask.shape}")
    voxel_size, vertex_area = float(voxel_size), float(vertex_area)
    if not (voxel_size > 0 and vertex_area > 0 and math.isfinite(voxel_size * vertex_area)):
        raise ValueError(f"voxel_size and vertex_area must be > 0, got {voxel_size}, {vertex_area}")
    target = vertex_area / voxel_size**2  # voxel²
    factor = math.sqrt(_MC_VERTEX_AREA / target)
    verts, faces = _surface(mask, factor, smoothing_iterations)
    for _ in range(2):  # correct the grid: the mean vertex area scales as 1 / factor²
        if not len(faces):
            break
        achieved = mean_vertex_area(verts, faces)
        if abs(achieved / target - 1) <= 0.1:
            break
        factor *= math.sqrt(achieved / target)
        verts, faces = _surface(mask, factor, smoothing_iterations)
    faces = orient_faces(verts, faces)
    return verts + np.asarray(offset, dtype=np.float64), faces


def orient_faces(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces wound consistently within each connected piece of the mesh.

    Closed (watertight) pieces are wound so that the right-hand normal points outward
    (positive enclosed volume); open pieces keep the orientation most of their input faces
    had, made consistent across the piece. A hollow sphere's two surfaces therefore both face
    away from the centre.
    """
    import trimesh

    faces = np.asarray(faces, dtype=np.int64)
    if len(faces) == 0:
        return faces.copy()
    verts = np.asarray(verts, dtype=np.float64)
    out = faces.copy()
    mesh = trimesh.Trimesh(verts, faces, process=False)
    pieces = trimesh.graph.connected_components(mesh.face_adjacency, nodes=np.arange(len(faces)), min_len=1)
    for idx in pieces:
        idx = np.sort(np.asarray(idx))
        piece = trimesh.Trimesh(verts, faces[idx], process=False)
        before = piece.face_normals.copy()
        trimesh.repair.fix_winding(piece)
        new = np.asarray(piece.faces)
        if piece.is_watertight:
            if piece.volume < 0:
                new = new[:, ::-1]
        else:
            after = piece.face_normals
            if np.sum(np.einsum("ij,ij->i", before, after)) < 0:
                new = new[:, ::-1]
        out[idx] = new
    return out


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit vertex normals: area-weighted face normals averaged onto the vertices.

    The faces are first wound consistently (:func:`orient_faces`): normals of closed surfaces
    point outward, those of an open sheet all to one side. A vertex on no face (or whose faces
    cancel) gets a zero normal.

    Examples
    --------
    >>> import numpy as np
    >>> verts = np.array([[0.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1]])
    >>> vertex_normals(verts, np.array([[0, 1, 2], [1, 3, 2]])).round(3).tolist()[0]
    [1.0, 0.0, 0.0]
    """
    verts = np.asarray(verts, dtype=np.float64)
    faces = orient_faces(verts, faces)
    normals = np.zeros_like(verts)
    if len(faces):
        tri = verts[faces]
        cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 × area
        for k in range(3):
            np.add.at(normals, faces[:, k], cross)
    norm = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.divide(normals, norm, out=np.zeros_like(normals), where=norm > 0)


def normal_profiles(
    volume: np.ndarray,
    verts: np.ndarray,
    normals: np.ndarray,
    *,
    samples: int = 20,
    step: float = 2.5,
    voxel_size: float | Sequence[float],
) -> np.ndarray:
    """The tomogram sampled along each vertex normal (MemBrain-pick's features).

    Sample ``k`` of vertex ``i`` is ``volume`` at ``verts[i] + normals[i] * k * step /
    voxel_size`` for ``k = -samples // 2 … samples - samples // 2 - 1`` (−10 … 9 for 20), by
    cubic spline interpolation (``scipy.ndimage.map_coordinates``, order 3, mode "nearest").
    Only the part of ``volume`` the samples reach (plus an 8-voxel margin for the spline) is
    read and prefiltered, so a memory-mapped tomogram is not loaded whole; near that margin
    the values can differ from a whole-volume interpolation by ~1e-4 of the contrast.

    Parameters
    ----------
    volume : (Z, Y, X) array
    verts, normals : (N, 3) floats
        Voxels, (z, y, x); unit normals.
    samples : int
    step : float
        Å between samples.
    voxel_size : float or (z, y, x) floats
        Å per voxel.

    Returns
    -------
    (N, samples) float32

    Examples
    --------
    >>> import numpy as np
    >>> vol = np.broadcast_to(np.arange(32.0)[None, None, :], (32, 32, 32))  # value = x
    >>> p = normal_profiles(vol, np.array([[16.0, 16, 16]]), np.array([[0.0, 0, 1]]),
    ...                     samples=4, step=5.0, voxel_size=10.0)
    >>> p.round(3).tolist()
    [[15.0, 15.5, 16.0, 16.5]]
    """
    from scipy import ndimage

    verts = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
    normals = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    if len(verts) != len(normals):
        raise ValueError(f"{len(verts)} vertices but {len(normals)} normals")
    samples = int(samples)
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    vs = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,))
    if not np.all(vs > 0):
        raise ValueError(f"voxel_size must be > 0, got {voxel_size!r}")
    if len(verts) == 0:
        return np.zeros((0, samples), dtype=np.float32)
    k = np.arange(samples) - samples // 2
    coords = verts[:, None, :] + normals[:, None, :] * (k[None, :, None] * float(step) / vs)  # (N, S, 3)
    coords = coords.reshape(-1, 3)
    shape = np.array(volume.shape[:3])
    lo = np.clip(np.floor(coords.min(0)).astype(int) - 8, 0, shape - 1)
    hi = np.clip(np.ceil(coords.max(0)).astype(int) + 9, lo + 1, shape)
    crop = np.asarray(volume[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=np.float64)
    # the crop reaches the volume's border wherever samples come within 8 voxels of it, so
    # "nearest" beyond the crop is "nearest" beyond the volume
    local = coords - lo
    values = ndimage.map_coordinates(crop, local.T, order=3, mode="nearest")
    return values.reshape(len(verts), samples).astype(np.float32)
