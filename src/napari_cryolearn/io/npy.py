"""``.npy`` arrays written through a memory map, with their disk space reserved first."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_cryolearn.engine.atomic import reserve_space

__all__ = ["create_npy"]


def create_npy(path: str | os.PathLike, shape: Sequence[int], dtype=np.float32, *,
               target: str | os.PathLike | None = None) -> np.memmap:
    """A writable ``.npy`` memory map at ``path`` (usually an atomic temporary) whose blocks are
    allocated on disk before it is returned, so that writing into it cannot meet a full disk.

    ``target`` names the final output in the "not enough space" message
    (:class:`~napari_cryolearn.engine.errors.OutputError`), raised before any data is written.
    """
    path = Path(path)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=tuple(int(s) for s in shape))
    try:
        reserve_space(path, path.stat().st_size, target=target or path)
    except BaseException:
        del out
        raise
    return out
