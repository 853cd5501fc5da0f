"""CryoSiam's patch folders: export a patch store to one, import one into patch stores.

CryoSiam's layout (``create_patches.py``)::

    patches_folder/image/<name>_z{z}_y{y}_x{x}.mrc       float32 MRC
    patches_folder/labels/<name>_z{z}_y{y}_x{x}.mrc      float32 MRC
    patches_folder/distances/<name>_z{z}_y{y}_x{x}.npz   key "data", (C, pz, py, px) float32, compressed

where ``z, y, x`` is the patch's first voxel (plain integers) and ``<name>`` the tomogram's file
name without extension. One folder holds the patches of many tomograms. CryoSiam writes a voxel
size of 1 Å; we write the tomogram's voxel size (z, y, x, Å) into the MRC headers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_cryolearn.engine.atomic import atomic_path
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.io.mrc import read_mrc, write_mrc
from napari_cryolearn.io.patch_store import PatchStore, PatchStoreWriter, labels_dtype_for, open_patch_store

__all__ = [
    "SUBFOLDERS",
    "export_cryosiam_patches",
    "import_cryosiam_patches",
    "list_cryosiam_patches",
    "parse_patch_name",
    "patch_name",
    "write_cryosiam_patch",
]

#: Sub-folder and file suffix per array.
SUBFOLDERS = {"image": ("image", ".mrc"), "labels": ("labels", ".mrc"), "distances": ("distances", ".npz")}

_NAME = re.compile(r"^(?P<name>.+)_z(?P<z>\d+)_y(?P<y>\d+)_x(?P<x>\d+)$")


def patch_name(name: str, origin: Sequence[int]) -> str:
    """``("TS_01", (0, 64, 128))`` → ``"TS_01_z0_y64_x128"`` (no suffix)."""
    z, y, x = (int(v) for v in origin)
    return f"{name}_z{z}_y{y}_x{x}"


def parse_patch_name(stem: str) -> tuple[str, tuple[int, int, int]] | None:
    """``"TS_01_z0_y64_x128"`` → ``("TS_01", (0, 64, 128))``; ``None`` for other names."""
    match = _NAME.match(stem)
    if match is None:
        return None
    return match["name"], (int(match["z"]), int(match["y"]), int(match["x"]))


def write_cryosiam_patch(
    folder: str | os.PathLike,
    name: str,
    origin: Sequence[int],
    image: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    distances: np.ndarray | None = None,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
) -> list[Path]:
    """Write one patch's files into a CryoSiam patches folder; returns the paths written.

    ``image`` and ``labels`` are written as float32 MRC (as CryoSiam does) with ``voxel_size``
    (z, y, x, Å) in the header; ``distances`` (C, pz, py, px) as a compressed ``.npz`` with key
    ``data``. Each file is written atomically.
    """
    folder = Path(folder)
    stem = patch_name(name, origin)
    written = []
    for key, value in (("image", image), ("labels", labels), ("distances", distances)):
        if value is None:
            continue
        sub, suffix = SUBFOLDERS[key]
        target = folder / sub / f"{stem}{suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        if key == "distances":
            with atomic_path(target) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez_compressed(fh, data=np.asarray(value, dtype=np.float32))
        else:
            write_mrc(target, np.asarray(value, dtype=np.float32), voxel_size=voxel_size)
        written.append(target)
    return written


def export_cryosiam_patches(
    store: PatchStore | str | os.PathLike,
    folder: str | os.PathLike,
    name: str | None = None,
) -> list[Path]:
    """Write every patch of a store into CryoSiam's layout under ``folder``.

    Parameters
    ----------
    store:
        A :class:`PatchStore` or its path.
    folder:
        The patches folder (``image/``, ``labels/``, ``distances/`` are made inside).
    name:
        Tomogram name used in the file names; default: the store's ``name`` attribute, else
        its folder name without ``.zarr``.

    Returns
    -------
    The files written. If writing fails, the files written so far are removed.
    """
    if not isinstance(store, PatchStore):
        store = open_patch_store(store)
    if name is None:
        name = str(store.attrs.get("name") or store.path.name.removesuffix(".zarr"))
    written: list[Path] = []
    try:
        for i in range(len(store)):
            item = store[i]
            written += write_cryosiam_patch(
                folder,
                name,
                item["origin"],
                image=item.get("image"),
                labels=item.get("labels"),
                distances=item.get("distances"),
                voxel_size=store.voxel_size,
            )
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


def list_cryosiam_patches(folder: str | os.PathLike) -> dict[str, list[tuple[tuple[int, int, int], str]]]:
    """The patches in a CryoSiam folder, by tomogram name: ``{name: [(origin, stem), ...]}``.

    Names come from the files in ``image/`` (else ``labels/``, else ``distances/``); files whose
    names do not end in ``_z{z}_y{y}_x{x}`` are ignored. Lists are sorted by origin.
    """
    folder = Path(folder)
    for key in ("image", "labels", "distances"):
        sub, suffix = SUBFOLDERS[key]
        if (folder / sub).is_dir():
            break
    else:
        raise InputError("not a CryoSiam patches folder (no image/, labels/ or distances/ inside)", path=folder)
    found: dict[str, list[tuple[tuple[int, int, int], str]]] = {}
    for path in sorted((folder / sub).iterdir()):
        if path.suffix != suffix:
            continue
        parsed = parse_patch_name(path.stem)
        if parsed is not None:
            found.setdefault(parsed[0], []).append((parsed[1], path.stem))
    return {k: sorted(v) for k, v in sorted(found.items())}


def _integer_labels(arr: np.ndarray, path: Path) -> np.ndarray:
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise InputError("labels must hold whole numbers", path=path, field="labels")
    if arr.size and arr.min() < 0:
        raise InputError(f"labels must be ≥ 0, found {arr.min()}", path=path, field="labels")
    return arr.astype(np.int64)


def import_cryosiam_patches(
    folder: str | os.PathLike,
    output: str | os.PathLike,
    names: Sequence[str] | None = None,
    volume_shape: Sequence[int] | None = None,
    voxel_size: Sequence[float] | None = None,
    overwrite: bool = True,
) -> dict[str, Path]:
    """Read a CryoSiam patches folder into one patch store per tomogram.

    Parameters
    ----------
    folder:
        The patches folder (with ``image/`` and optionally ``labels/``, ``distances/``).
    output:
        Folder receiving ``<name>.zarr`` for each tomogram.
    names:
        Only these tomograms (default: all found).
    volume_shape:
        (Z, Y, X) of the tomograms; default: the largest origin + patch size per axis (the real
        volume may be larger: CryoSiam's grid leaves out the far remainder).
    voxel_size:
        (z, y, x) Å; default: from the first image patch's MRC header (CryoSiam's own files say 1).

    Returns
    -------
    ``{name: store path}``.

    Raises
    ------
    InputError
        A patch of another size than the first, labels that are not whole numbers, a requested
        name that is absent.
    """
    folder = Path(folder)
    output = Path(output)
    found = list_cryosiam_patches(folder)
    if names is not None:
        missing = [n for n in names if n not in found]
        if missing:
            raise InputError(f"no patches named {missing} (found {sorted(found)})", path=folder)
        found = {n: found[n] for n in names}
    result: dict[str, Path] = {}
    for name, entries in found.items():
        stems = [stem for _, stem in entries]
        origins = np.array([o for o, _ in entries], dtype=np.int64).reshape(-1, 3)
        present = {
            key: [folder / sub / f"{stem}{suffix}" for stem in stems]
            for key, (sub, suffix) in SUBFOLDERS.items()
            if (folder / sub / f"{stems[0]}{suffix}").is_file()
        }

        def load(key: str, path: Path) -> np.ndarray:
            if not path.is_file():
                raise InputError(f"missing: the patch has an image but no {key} file", path=path, field=key)
            if key == "distances":
                with np.load(path) as npz:
                    if "data" not in npz:
                        raise InputError("expected an array named 'data'", path=path, field="data")
                    return np.asarray(npz["data"], dtype=np.float32)
            return np.asarray(read_mrc(path, mmap=False).data)

        first = {key: load(key, paths[0]) for key, paths in present.items()}
        sizes = next(iter(first.values())).shape[-3:]
        vs = voxel_size
        if vs is None:
            key0 = "image" if "image" in present else "labels" if "labels" in present else None
            vs = read_mrc(present[key0][0], mmap=True).voxel_size if key0 else (1.0, 1.0, 1.0)
        shape = volume_shape
        if shape is None:
            shape = tuple(int(v) for v in origins.max(axis=0) + np.array(sizes))
        max_label = 0
        if "labels" in present:
            for path in present["labels"]:
                lab = _integer_labels(np.asarray(read_mrc(path, mmap=False).data), path)
                max_label = max(max_label, int(lab.max()) if lab.size else 0)
        target = output / f"{name}.zarr"
        with PatchStoreWriter(
            target,
            origins,
            sizes,
            voxel_size=vs,
            volume_shape=shape,
            image="image" in present,
            labels_dtype=labels_dtype_for(max_label) if "labels" in present else None,
            distance_channels=first["distances"].shape[0] if "distances" in present else None,
            attrs={"name": name, "grid": "imported", "sources": {"cryosiam_patches": str(folder)}},
            overwrite=overwrite,
        ) as writer:
            for i in range(len(stems)):
                arrays = {}
                for key, paths in present.items():
                    arr = load(key, paths[i])
                    if arr.shape[-3:] != tuple(sizes):
                        raise InputError(
                            f"patch shape {arr.shape[-3:]} differs from the first patch's {tuple(sizes)}",
                            path=paths[i],
                            field=key,
                        )
                    arrays[key] = _integer_labels(arr, paths[i]) if key == "labels" else arr
                writer.write(i, **arrays)
        result[name] = target
    return result
