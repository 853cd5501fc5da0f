"""Where training patches come from: our patch stores, or CryoSiam patch folders.

A CryoSiam ``semantic_train`` YAML names a ``patches_folder`` of MRC/npz patches
(``image/``, ``labels/``, ``distances/``) and picks validation tomograms by file name
(``val_files``). Such a folder is imported once into one patch store per tomogram under
``log_dir/patch_stores/`` (MRC patches read again at every epoch would be slow), and the
``val_files`` names choose which of those stores validate.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from napari_cryolearn.engine.errors import InputError


def is_cryosiam_folder(path: str | os.PathLike) -> bool:
    """True for a folder holding CryoSiam's ``image/`` patches (and not a zarr store)."""
    path = Path(path)
    return path.is_dir() and (path / "image").is_dir() and not (path / "zarr.json").exists()


def _stem(name: str | os.PathLike) -> str:
    name = Path(name).name
    for suffix in (".mrc", ".rec", ".map", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def resolve_patch_stores(
    patch_stores: Sequence[str | os.PathLike],
    val_stores: Sequence[str | os.PathLike] | None,
    log_dir: str | os.PathLike,
) -> tuple[list[Path], list[Path] | None]:
    """Turn CryoSiam patch folders into stores; returns (training stores, validation stores).

    ``val_stores`` entries that are not paths of existing stores are taken as tomogram names
    (CryoSiam's ``val_files``, e.g. ``tomo_b.mrc``) and select imported stores by name.
    """
    from napari_cryolearn.io.cryosiam_patches import import_cryosiam_patches

    imported: dict[str, Path] = {}
    train: list[Path] = []
    for p in patch_stores:
        if is_cryosiam_folder(p):
            stores = import_cryosiam_patches(p, Path(log_dir) / "patch_stores")
            imported.update(stores)
            train.extend(stores.values())
        else:
            train.append(Path(p))
    if not val_stores:
        return train, None
    val: list[Path] = []
    for v in val_stores:
        if Path(v).exists() and not is_cryosiam_folder(v):
            val.append(Path(v))
            continue
        name = _stem(v)
        if name not in imported:
            raise InputError(f"no patch store and no imported tomogram named {name!r} "
                             f"(imported: {sorted(imported)})", path=v, field="val_stores")
        val.append(imported[name])
    val_set = set(val)
    return [t for t in train if t not in val_set], val
