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

import math
import os
import re
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_cryolearn.engine.atomic import atomic_path, remove_stale_temporaries
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.io.dtypes import smallest_unsigned_dtype
from napari_cryolearn.io.mrc import read_mrc, write_mrc
from napari_cryolearn.io.patch_store import PatchStore, PatchStoreWriter, open_patch_store

__all__ = [
    "SUBFOLDERS",
    "export_cryosiam_patches",
    "import_cryosiam_patches",
    "list_cryosiam_patches",
    "parse_patch_name",
    "patch_name",
    "remove_stale_patch_temporaries",
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
    clean_stale: bool = True,
) -> list[Path]:
    """Write one patch's files into a CryoSiam patches folder; returns the paths written.

    ``image`` and ``labels`` are written as float32 MRC (as CryoSiam does) with ``voxel_size``
    (z, y, x, Å) in the header; ``distances`` (C, pz, py, px) as a compressed ``.npz`` with key
    ``data``. Each file is written atomically. ``clean_stale=False``: the caller already removed
    the temporaries of interrupted runs (:func:`remove_stale_patch_temporaries`).
    """
    folder = Path(folder)
    stem = patch_name(name, origin)
    written = []
    try:
        for key, value in (("image", image), ("labels", labels), ("distances", distances)):
            if value is None:
                continue
            sub, suffix = SUBFOLDERS[key]
            target = folder / sub / f"{stem}{suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            if key == "distances":
                with atomic_path(target, clean_stale=clean_stale) as tmp:
                    with open(tmp, "wb") as fh:
                        np.savez_compressed(fh, data=np.asarray(value, dtype=np.float32))
            else:
                write_mrc(target, np.asarray(value, dtype=np.float32), voxel_size=voxel_size, clean_stale=clean_stale)
            written.append(target)
    except BaseException:  # one patch is all its files or none of them
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


def remove_stale_patch_temporaries(folder: str | os.PathLike, name: str) -> list[Path]:
    """Remove the temporaries that interrupted writes of tomogram ``name``'s patches left in
    ``folder``'s sub-folders (one scan per sub-folder); returns them."""
    folder = Path(folder)
    return [p for sub, _ in SUBFOLDERS.values() for p in remove_stale_temporaries(folder / sub, f"{name}_z")]


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
    names do not end in ``_z{z}_y{y}_x{x}``, and folders, are ignored. Lists are sorted by origin.
    :class:`InputError` for a folder with none of these sub-folders, or one that cannot be listed.
    """
    folder = Path(folder)
    for key in ("image", "labels", "distances"):
        sub, suffix = SUBFOLDERS[key]
        if (folder / sub).is_dir():
            break
    else:
        raise InputError("not a CryoSiam patches folder (no image/, labels/ or distances/ inside)", path=folder)
    try:
        entries = sorted((folder / sub).iterdir())
    except OSError as err:
        raise InputError(f"cannot list this folder ({err.strerror or err})", path=folder / sub) from None
    found: dict[str, list[tuple[tuple[int, int, int], str]]] = {}
    for path in entries:
        if path.suffix != suffix or not path.is_file():
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
    if arr.size and arr.max() > np.iinfo(np.uint32).max:
        raise InputError(f"labels must be ≤ {np.iinfo(np.uint32).max}, found {arr.max()}", path=path, field="labels")
    return arr.astype(np.int64)


def _no_patches(folder: Path) -> InputError:
    """The error for a folder with CryoSiam's sub-folders but no patch files in them; one that
    looks like a patch store whose ``zarr.json`` is gone is named as such."""
    if folder.suffix == ".zarr" or any((folder / key / "zarr.json").is_file() for key in (*SUBFOLDERS, "origins")):
        return InputError("missing: a patch store without its group metadata (or a CryoSiam patches folder "
                          "without patches); the store is incomplete or damaged; re-create it with "
                          "`cryolearn prep patches`", path=folder / "zarr.json")
    return InputError("no CryoSiam patches in this folder (expected files named <name>_z{z}_y{y}_x{x}.mrc "
                      "in image/)", path=folder)


def _load_patch(key: str, path: Path) -> np.ndarray:
    """One patch file: a 3D real MRC (image, labels) or an ``.npz`` holding a 4D real ``data``
    (distances); :class:`InputError` naming the file for a missing or unusable one."""
    if not path.is_file():
        raise InputError(f"missing: other patches of this tomogram have a {key} file", path=path, field=key)
    if key != "distances":
        arr = np.asarray(read_mrc(path, mmap=False).data)
        ndim = 3
    else:
        try:
            with np.load(path, allow_pickle=False) as npz:
                if not isinstance(npz, np.lib.npyio.NpzFile) or "data" not in npz.files:
                    raise InputError("expected an .npz archive with an array named 'data'", path=path, field="data")
                arr = np.asarray(npz["data"])
        except InputError:
            raise
        except (OSError, ValueError, EOFError, KeyError, AttributeError, TypeError, zipfile.BadZipFile,
                zlib.error) as err:
            raise InputError(f"not a readable .npz file ({type(err).__name__}: {err})", path=path,
                             field="data") from None
        ndim = 4
    if arr.ndim != ndim or arr.dtype.kind not in "biuf" or 0 in arr.shape:
        want = "(pz, py, px)" if ndim == 3 else "(C, pz, py, px)"
        raise InputError(f"expected a {want} array of real values, got shape {arr.shape} {arr.dtype}",
                         path=path, field=key)
    return arr.astype(np.float32) if key == "distances" else arr


def _triple(value: Sequence[Any], field: str, where: Path, kind: type) -> tuple[Any, Any, Any]:
    """A (z, y, x) triple of ``kind`` values in (0, 2**31); :class:`InputError` naming ``field``."""
    try:
        vals = tuple(kind(v) for v in value)
        ok = len(vals) == 3 and all(math.isfinite(v) and 0 < v < 2**31 for v in vals)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise InputError(f"expected 3 positive numbers (z, y, x) below 2**31, got {value!r}", path=where,
                         field=field)
    return vals  # type: ignore[return-value]


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
        Naming the file (or argument): a folder without patches, a patch file that is missing
        (where other patches of its tomogram have one) or unreadable, a patch that is not 3D
        ((C, pz, py, px) for distances) or of another shape than the first, labels that are not
        whole numbers in 0 .. 2**32 - 1, a ``volume_shape`` some patch reaches beyond, a
        ``voxel_size`` that is not 3 positive numbers, a requested name that is absent. Each
        store is written only once all its patches were read; a failure leaves no partial store.
    """
    folder = Path(folder)
    output = Path(output)
    found = list_cryosiam_patches(folder)
    if not found:
        raise _no_patches(folder)
    if names is not None:
        missing = [n for n in names if n not in found]
        if missing:
            raise InputError(f"no patches named {missing} (found {sorted(found)})", path=folder)
        found = {n: found[n] for n in names}
    vs_given = None if voxel_size is None else _triple(voxel_size, "voxel_size", folder, float)
    shape_given = None if volume_shape is None else _triple(volume_shape, "volume_shape", folder, int)
    result: dict[str, Path] = {}
    for name, entries in found.items():
        stems = [stem for _, stem in entries]
        if max(max(o) for o, _ in entries) >= 2**31:
            big = next(stem for o, stem in entries if max(o) >= 2**31)
            raise InputError(f"patch {big}: origin beyond any volume (≥ 2**31)", path=folder, field="origin")
        origins = np.array([o for o, _ in entries], dtype=np.int64).reshape(-1, 3)
        present = {
            key: [folder / sub / f"{stem}{suffix}" for stem in stems]
            for key, (sub, suffix) in SUBFOLDERS.items()
            if any((folder / sub / f"{stem}{suffix}").is_file() for stem in stems)
        }
        first = {key: _load_patch(key, paths[0]) for key, paths in present.items()}
        sizes = tuple(next(iter(first.values())).shape[-3:])
        expected = {key: (*first["distances"].shape[:1], *sizes) if key == "distances" else sizes for key in present}

        def load(key: str, path: Path) -> np.ndarray:
            arr = _load_patch(key, path)
            if arr.shape != expected[key]:
                raise InputError(f"patch shape {arr.shape} differs from the first patch's {expected[key]}",
                                 path=path, field=key)
            return arr

        vs = vs_given
        if vs is None:
            key0 = "image" if "image" in present else "labels" if "labels" in present else None
            vs = read_mrc(present[key0][0], mmap=True).voxel_size if key0 else (1.0, 1.0, 1.0)
        shape = shape_given or tuple(int(v) for v in origins.max(axis=0) + np.array(sizes))
        beyond = np.flatnonzero((origins + np.array(sizes) > np.array(shape)).any(axis=1))
        if beyond.size:
            raise InputError(f"this patch of size {sizes} reaches beyond volume_shape {tuple(shape)}",
                             path=present[next(iter(present))][int(beyond[0])], field="volume_shape")
        max_label = 0
        if "labels" in present:
            for path in present["labels"]:
                lab = _integer_labels(load("labels", path), path)
                max_label = max(max_label, int(lab.max()) if lab.size else 0)
        target = output / f"{name}.zarr"
        with PatchStoreWriter(
            target,
            origins,
            sizes,
            voxel_size=vs,
            volume_shape=shape,
            image="image" in present,
            labels_dtype=smallest_unsigned_dtype(max_label, largest=np.uint32) if "labels" in present else None,
            distance_channels=first["distances"].shape[0] if "distances" in present else None,
            attrs={"name": name, "grid": "imported", "sources": {"cryosiam_patches": str(folder)}},
            overwrite=overwrite,
        ) as writer:
            for i in range(len(stems)):
                arrays = {}
                for key, paths in present.items():
                    arr = load(key, paths[i])
                    arrays[key] = _integer_labels(arr, paths[i]) if key == "labels" else arr
                writer.write(i, **arrays)
        result[name] = target
    return result
