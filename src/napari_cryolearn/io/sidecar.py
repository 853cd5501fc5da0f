"""Metadata sidecars: a small JSON file beside an output (``labels.mrc`` → ``labels.mrc.json``).

MRC headers hold the voxel size but not class names or how a file was made; the sidecar keeps
them so our own outputs reopen with their metadata (class names, the config that made them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from napari_cryolearn.engine.atomic import atomic_path
from napari_cryolearn.engine.outputs import SIDECAR_SUFFIX


def sidecar_path(path: str | os.PathLike) -> Path:
    """``data.mrc`` → ``data.mrc.json``."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_sidecar(path: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write ``meta`` as JSON beside ``path`` (atomically); returns the sidecar's path."""
    target = sidecar_path(path)
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    return target


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """The sidecar's content, or ``{}`` when there is none or it is unreadable."""
    target = sidecar_path(path)
    try:
        data = json.loads(target.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def label_names_from(meta: dict[str, Any]) -> dict[int, str]:
    """``{"label_names": {"1": "membrane"}}`` → ``{1: "membrane"}`` (JSON keys are strings)."""
    names = meta.get("label_names") or {}
    try:
        return {int(k): str(v) for k, v in names.items()}
    except (AttributeError, ValueError):
        return {}
