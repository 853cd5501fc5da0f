"""Turning arrays with a voxel size into napari layer data, and reading layers back."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_cryolearn.engine.errors import InputError


def add_layer_data(viewer, layer_data: list[tuple[Any, dict, str]]) -> list:
    """Add napari LayerDataTuples ``(data, kwargs, layer_type)``; returns the new layers."""
    added = []
    for data, kwargs, layer_type in layer_data:
        add = getattr(viewer, f"add_{layer_type}")
        layer = add(data, **kwargs)
        added.extend(layer if isinstance(layer, list) else [layer])
    return added


def units_of(voxel_size) -> tuple[str, ...]:
    """The layer ``units`` for a voxel size in Å: ``"angstrom"`` per axis, or ``"pixel"``
    when the header gives none (1 Å on every axis is MRC's "unknown")."""
    known = any(float(v) != 1.0 for v in voxel_size)
    return tuple("angstrom" if known else "pixel" for _ in voxel_size)


def points_kwargs(name: str, scale, features=None, size: float = 6.0) -> dict:
    """Keyword arguments for a Points layer of particle picks (size in voxels)."""
    kwargs: dict[str, Any] = {"name": name, "scale": tuple(scale), "units": units_of(scale), "size": size,
                              "face_color": "yellow"}
    if features is not None and len(features.columns):
        kwargs["features"] = features
    return kwargs


def as_array(data) -> np.ndarray:
    """napari layer data (possibly multiscale or dask) as an in-memory-or-memmap ndarray."""
    if isinstance(data, (list, tuple)):
        data = data[0]
    return np.asarray(data)


def volume_of(layer, what: str = "layer") -> np.ndarray:
    """A layer's data as a 3D array; InputError naming the layer when it is missing or not 3D."""
    if layer is None:
        raise InputError(f"choose a {what}")
    data = as_array(layer.data)
    if data.ndim != 3:
        raise InputError(f"expected a 3D volume, got shape {data.shape}", path=layer.name)
    return data


