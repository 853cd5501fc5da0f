"""Turning arrays with a voxel size into napari layer data, and adding them to a viewer."""

from __future__ import annotations

from typing import Any

import numpy as np


def scale_of(layer) -> tuple[float, ...]:
    """A layer's scale (Angstrom per voxel for our layers) as a tuple of floats."""
    return tuple(float(s) for s in layer.scale)


def add_layer_data(viewer, layer_data: list[tuple[Any, dict, str]]) -> list:
    """Add napari LayerDataTuples ``(data, kwargs, layer_type)``; returns the new layers."""
    added = []
    for data, kwargs, layer_type in layer_data:
        add = getattr(viewer, f"add_{layer_type}")
        added.append(add(data, **kwargs))
    return added


def points_kwargs(name: str, scale, features=None, size: float = 6.0) -> dict:
    """Keyword arguments for a Points layer of particle picks (size in voxels)."""
    kwargs: dict[str, Any] = {"name": name, "scale": tuple(scale), "size": size, "face_color": "yellow"}
    if features is not None and len(features.columns):
        kwargs["features"] = features
    return kwargs


def as_array(data) -> np.ndarray:
    """napari layer data (possibly multiscale or dask) as an in-memory-or-memmap ndarray."""
    if isinstance(data, (list, tuple)):
        data = data[0]
    return np.asarray(data)
