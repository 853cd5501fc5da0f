"""Mesh containers (MemBrain-pick's ``.h5``) as napari Surface layer data.

A container's vertices are voxels of its tomogram, (z, y, x) once read
(:meth:`~napari_cryolearn.io.mesh_container.MeshContainer.verts_zyx`); the layer's ``scale``
is the voxel size (Å), so the surface lies on the tomogram opened at its voxel size. A
container with per-vertex ``scores`` (a picker's predicted distance to the nearest protein,
Å) gets them as the surface's vertex values, coloured so that low distances, the proteins,
stand out (dark red on pale yellow).

Nothing here imports napari; the tuples are what a reader hook returns and what
:func:`napari_cryolearn.ui.layers.add_layer_data` adds.

Examples
--------
>>> import numpy as np
>>> from napari_cryolearn.io.mesh_container import MeshContainer
>>> c = MeshContainer.from_zyx(np.array([[0.0, 1, 2], [0, 1, 3], [0, 2, 2]]), np.array([[0, 1, 2]]),
...                            None, None, voxel_size=10.0, scores=np.array([0.0, 5.0, 10.0]))
>>> data, kwargs, kind = surface_layer_data(c, name="m")
>>> kind, len(data), kwargs["scale"], kwargs["contrast_limits"]
('surface', 3, (10.0, 10.0, 10.0), (0.0, 10.0))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_cryolearn.io.mesh_container import MeshContainer
from napari_cryolearn.ui.layers import units_of

__all__ = ["SCORES_COLORMAP", "surface_layer_data"]

#: Colormap of a surface with scores: dark red at low predicted distance (near a protein), pale
#: yellow far from one (a name vispy knows without matplotlib).
SCORES_COLORMAP = "YlOrRd_r"


def surface_layer_data(container: MeshContainer, *, name: str,
                       path: str | os.PathLike | None = None) -> tuple[Any, dict, str]:
    """``((verts, faces[, scores]), kwargs, "surface")`` for one mesh container.

    Parameters
    ----------
    container
        The mesh, points in voxels (as :func:`~napari_cryolearn.io.mesh_container.read_mesh_container`
        gives them).
    name
        The layer's name.
    path
        The file it was read from, kept as ``metadata["source_path"]``.

    Returns
    -------
    tuple
        Vertices (z, y, x voxels, float64) and faces (int64, the (z, y, x) frame's winding),
        with the scores (float32) as vertex values when the container has them; ``scale`` is
        ``voxel_size`` on every axis (1 when the container gives none); ``metadata`` holds
        ``tomo_file``, ``voxel_size``, ``label``, ``cluster_centers`` (Å, x, y, z, or None)
        and ``source_path``. With scores, ``colormap`` is :data:`SCORES_COLORMAP` and
        ``contrast_limits`` their range.
    """
    verts = container.verts_zyx()
    faces = container.faces_zyx()
    vs = float(container.voxel_size) if container.voxel_size else 1.0
    scale = (vs, vs, vs)
    metadata: dict[str, Any] = {
        "tomo_file": container.tomo_file,
        "voxel_size": container.voxel_size,
        "label": container.label,
        "cluster_centers": container.cluster_centers,
    }
    if path is not None:
        metadata["source_path"] = str(Path(path))
    kwargs: dict[str, Any] = {"name": name, "scale": scale, "units": units_of(scale), "metadata": metadata}
    if container.scores is None:
        return (verts, faces), kwargs, "surface"
    scores = np.asarray(container.scores, dtype=np.float32)
    low, high = (float(scores.min()), float(scores.max())) if scores.size else (0.0, 1.0)
    kwargs.update(colormap=SCORES_COLORMAP, contrast_limits=(low, high if high > low else low + 1.0))
    return (verts, faces, scores), kwargs, "surface"
