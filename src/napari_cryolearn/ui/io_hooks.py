"""napari reader and writer hooks for MRC, STAR and mesh container files (declared in napari.yaml).

MRC volumes open memory-mapped with the voxel size (Angstrom) as the layer's ``scale``; integer
volumes whose name or sidecar marks them as labels open as Labels. STAR coordinates open as a
Points layer in napari's (z, y, x) order, in pixels of the tomogram, scaled by the pixel size
when the file gives one; the other columns become the points' ``features``. A mesh container
(``.h5`` holding ``points`` and ``faces``: MemBrain-pick's layout) opens as a Surface layer at its
voxel size (:mod:`napari_cryolearn.ui.mesh_layers`). A 4D-STEM scan (a 4D ``.npy``, or an HDF5
file with a 4D dataset: :func:`~napari_cryolearn.io.stem4d.read_stem4d`) opens as a 4D Image
layer, memory-mapped: the scan axes (scaled by the step in nm when the file gives it) and the
detector axes (pixels), so the viewer shows one diffraction pattern per scan position; other
``.npy`` and HDF5 files are left to other readers. Writers take the voxel size back from the
layer's scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_cryolearn.io import MRC_SUFFIXES, read_mrc, read_star, write_mrc, write_star
from napari_cryolearn.io.sidecar import label_names_from, read_sidecar, write_sidecar
from napari_cryolearn.ui.layers import as_array, points_kwargs, units_of

_STAR_SUFFIXES = (".star",)
_STORE_SUFFIXES = (".zarr",)
_MESH_SUFFIXES = (".h5",)
_SCAN_SUFFIXES = (".npy", ".h5", ".hdf5")


def _suffix(path: str) -> str:
    return Path(path).suffix.lower()


def get_reader(path: str | list[str]):
    """Return a reader for MRC, STAR, patch-store or mesh-container paths, or None for anything else."""
    paths = [path] if isinstance(path, str) else list(path)
    if paths and all(_suffix(p) in MRC_SUFFIXES + _STAR_SUFFIXES or _is_our_store(p) or _is_mesh_container(p)
                     or _is_scan4d(p) for p in paths):
        return read_layers
    return None


def _is_our_store(path: str) -> bool:
    """A ``.zarr`` folder written as our patch store (other zarr data is left to other readers)."""
    from napari_cryolearn.io.patch_store import FORMAT

    meta = Path(path) / "zarr.json"
    try:
        return _suffix(path) in _STORE_SUFFIXES and FORMAT in meta.read_text()
    except OSError:
        return False


def _is_mesh_container(path: str) -> bool:
    """An ``.h5`` file with ``points`` and ``faces`` at its root (a mesh container); other HDF5
    files, and files that are not HDF5, are left to other readers."""
    if _suffix(path) not in _MESH_SUFFIXES or not Path(path).is_file():
        return False
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "points" in f and "faces" in f
    except (OSError, ValueError):
        return False


def _is_scan4d(path: str) -> bool:
    """A 4D ``.npy`` array, or an HDF5 file (not a mesh container) holding a 4D dataset."""
    if _suffix(path) not in _SCAN_SUFFIXES or not Path(path).is_file() or _is_mesh_container(path):
        return False
    from napari_cryolearn.engine.errors import InputError
    from napari_cryolearn.io.stem4d import read_stem4d

    try:
        return read_stem4d(path, check_finite=False).is_4d
    except (InputError, OSError, ValueError):
        return False


def _scan4d_layer_data(path: str | Path) -> tuple[Any, dict, str]:
    """A 4D-STEM scan as a 4D Image layer (scan y, scan x, detector y, detector x)."""
    from napari_cryolearn.io.stem4d import read_stem4d

    scan = read_stem4d(path, check_finite=False)
    step = float(scan.step) if scan.step else 1.0
    scale = (step, step, 1.0, 1.0)
    units = ("nm", "nm", "pixel", "pixel") if scan.step else ("pixel",) * 4
    meta = {"scan4d": str(path), "step_nm": scan.step, "source_path": str(path)}
    return scan.data, {"name": Path(path).stem, "scale": scale, "units": units, "metadata": meta,
                       "axis_labels": ("scan y", "scan x", "k y", "k x")}, "image"


def read_layers(path: str | list[str]) -> list[tuple[Any, dict, str]]:
    """Layer data for each path (MRC → Image/Labels, STAR → Points, mesh container → Surface)."""
    paths = [path] if isinstance(path, str) else list(path)
    layers = []
    for p in paths:
        if _suffix(p) in _STAR_SUFFIXES:
            layers.append(_star_layer_data(p))
        elif _suffix(p) in _STORE_SUFFIXES:
            layers.extend(_patch_store_layer_data(p))
        elif _is_scan4d(p):
            layers.append(_scan4d_layer_data(p))
        elif _suffix(p) in _MESH_SUFFIXES:
            layers.append(_mesh_layer_data(p))
        else:
            layers.append(_mrc_layer_data(p))
    return layers


def _mrc_layer_data(path: str | Path) -> tuple[Any, dict, str]:
    """An MRC file as ``(data, kwargs, "image" | "labels")``, memory-mapped, scale in Angstrom."""
    volume = read_mrc(path, mmap=True)
    meta = read_sidecar(path)
    label_names = label_names_from(meta)
    is_labels = volume.is_labels or (bool(label_names) and np.issubdtype(volume.data.dtype, np.integer))
    scale = tuple(volume.voxel_size)[-volume.data.ndim :]
    metadata = {
        "voxel_size": tuple(volume.voxel_size),
        "origin": tuple(volume.origin),
        "source_path": str(path),
    }
    if label_names:
        metadata["label_names"] = label_names
    kwargs = {"name": Path(path).stem, "scale": tuple(scale), "metadata": metadata,
              "units": units_of(volume.voxel_size)[-volume.data.ndim:]}
    if is_labels and label_names:
        kwargs["features"] = class_features(label_names)
    return volume.data, kwargs, ("labels" if is_labels else "image")


def _mesh_layer_data(path: str | Path) -> tuple[Any, dict, str]:
    """A mesh container as a Surface layer (in memory), at its voxel size."""
    from napari_cryolearn.io.mesh_container import read_mesh_container
    from napari_cryolearn.ui.mesh_layers import surface_layer_data

    return surface_layer_data(read_mesh_container(path), name=Path(path).stem, path=path)


def class_features(label_names: dict[int, str]) -> dict[str, list]:
    """A Labels layer's ``features`` naming each value's class, which napari shows on hover
    (``class: membrane``)."""
    values = sorted(label_names)
    return {"index": values, "class": [label_names[v] for v in values]}


def _star_layer_data(path: str | Path) -> tuple[Any, dict, str]:
    """A STAR file's coordinates as a Points layer in pixels (z, y, x), with its columns as features."""
    points = read_star(path)
    scale = (points.pixel_size,) * 3 if points.pixel_size else (1.0, 1.0, 1.0)
    kwargs = points_kwargs(Path(path).stem, scale, features=points.features.reset_index(drop=True))
    kwargs["metadata"] = {"pixel_size": points.pixel_size, "source_path": str(path), "star_table": points.table}
    return points.coords, kwargs, "points"


def _patch_store_layer_data(path: str | Path) -> list[tuple[Any, dict, str]]:
    """A patch store reassembled: its tomogram (Image), labels (Labels) and patch origins (Points).

    The volume is rebuilt in memory from the patches, at the store's voxel size; a preview of
    what training will see, for stores of volumes that fit in memory.
    """
    from napari_cryolearn.io.patch_store import open_patch_store

    store = open_patch_store(path)
    name = Path(path).stem
    scale = store.voxel_size
    meta = {"voxel_size": scale, "source_path": str(path), "patch_size": store.patch_size, "patches": len(store)}
    layers: list[tuple[Any, dict, str]] = []
    if "image" in store.keys:  # a store may hold labels or distances only
        layers.append((store.reassemble("image"), {"name": f"{name} image", "scale": scale, "units": units_of(scale),
                                                  "metadata": meta}, "image"))
    if "labels" in store.keys:
        names = label_names_from(store.attrs)
        labels_meta = {**meta, "label_names": names} if names else meta
        layers.append((store.reassemble("labels"), {"name": f"{name} labels", "scale": scale,
                                                    "units": units_of(scale), "metadata": labels_meta, "opacity": 0.5}, "labels"))
    centres = store.origins + (np.asarray(store.patch_size) - 1) / 2.0
    layers.append((centres, {**points_kwargs(f"{name} patches", scale, size=4.0), "face_color": "orange"},
                   "points"))
    return layers


def _voxel_size(attributes: dict, ndim: int) -> tuple[float, float, float]:
    scale = [float(s) for s in (attributes.get("scale") or [1.0] * ndim)][-3:]
    while len(scale) < 3:
        scale.insert(0, 1.0)
    return tuple(scale)


def _check_suffix(path: str, allowed: tuple[str, ...], what: str) -> None:
    if _suffix(path) not in allowed:
        raise ValueError(f"{path}: {what} are written as {', '.join(allowed)}")


def write_image(path: str, data: Any, attributes: dict) -> list[str]:
    """Write an Image layer to MRC with its scale as the voxel size."""
    _check_suffix(path, MRC_SUFFIXES, "images")
    array = as_array(data)
    origin = tuple((attributes.get("metadata") or {}).get("origin", (0.0, 0.0, 0.0)))
    write_mrc(path, array, voxel_size=_voxel_size(attributes, array.ndim), origin=origin)
    return [path]


def write_labels(path: str, data: Any, attributes: dict) -> list[str]:
    """Write a Labels layer to MRC with its scale as the voxel size; class names go to a sidecar."""
    written = write_image(path, data, attributes)
    names = (attributes.get("metadata") or {}).get("label_names")
    if names:
        write_sidecar(path, {"label_names": {str(k): v for k, v in dict(names).items()}})
    return written


def write_points(path: str, data: Any, attributes: dict) -> list[str]:
    """Write a Points layer to STAR: coordinates in pixels, the layer's features as columns."""
    _check_suffix(path, _STAR_SUFFIXES, "points")
    coords = np.asarray(data, dtype=float)
    if coords.ndim != 2 or coords.shape[1] not in (2, 3):
        raise ValueError(f"{path}: points must be (N, 2) or (N, 3), got {coords.shape}")
    if coords.shape[1] == 2:
        coords = np.column_stack([np.zeros(len(coords)), coords])
    features = attributes.get("features")
    features = pd.DataFrame(features) if features is not None and len(features) == len(coords) else None
    meta = attributes.get("metadata") or {}
    scale = _voxel_size(attributes, 3)
    pixel_size = meta.get("pixel_size") or (scale[-1] if scale[-1] != 1.0 else None)
    write_star(path, coords, features=features, pixel_size=pixel_size)
    return [path]
