"""The patches job: a tomogram (with labels and distance maps) in, training patches out.

Outputs: a patch store ``<name>.zarr`` (``format="zarr"``, see
:mod:`napari_cryolearn.io.patch_store`) or CryoSiam's patch folder layout (``format="cryosiam"``,
see :mod:`napari_cryolearn.io.cryosiam_patches`). Volumes are read memory-mapped, one patch at a
time, and the mapped pages are dropped as the job goes, so memory stays bounded by a few patches
whatever the tomogram's size (CryoSiam ``.npz`` distance maps are the exception: they are
loaded whole).
"""

from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from napari_cryolearn.engine.config import Config
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.atomic import check_space
from napari_cryolearn.engine.jobs import JobResult, JobStopped, check_stop, relay
from napari_cryolearn.engine.locks import output_lock
from napari_cryolearn.engine.outputs import check_writable_parent
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.io.cryosiam_patches import (
    SUBFOLDERS,
    patch_name,
    remove_stale_patch_temporaries,
    write_cryosiam_patch,
)
from napari_cryolearn.io.dtypes import smallest_unsigned_dtype
from napari_cryolearn.io.mrc import read_mrc, read_mrc_3d
from napari_cryolearn.io.patch_store import (
    PatchReader,
    foreground_patches,
    is_patch_store,
    read_patches,
    write_patch_store,
)
from napari_cryolearn.io.sidecar import label_names_from, read_sidecar
from napari_cryolearn.prep.distance_job import _require, _strip_extension, cryosiam_files, read_distance_maps, scan_labels
from napari_cryolearn.io.patch_grid import as_patch_size, cryosiam_grid, grid_steps, patch_grid

__all__ = ["PatchesConfig", "patches_job"]

STAGE = "patches"


class PatchesConfig(Config):
    """Parameters of the patches stage.
    """

    image: Path = Field(description='Tomogram MRC.')
    labels: Path | None = Field(None, description='Label MRC of the same shape (integers; float files holding whole numbers are accepted).')
    distances: Path | None = Field(None, description="Distance maps (C, Z, Y, X): our ``.npy`` or CryoSiam's ``.npz``.")
    output: Path = Field(description='``format="zarr"``: the store folder (``<name>.zarr``). ``format="cryosiam"``: the patches folder that receives ``image/``, ``labels/``, ``distances/``.')
    patch_size: tuple[int, int, int] = Field((128, 128, 128), description='(pz, py, px) voxels, or one int.')
    overlap: int | float = Field(0.5, description='Fraction of a patch shared with its neighbour (float in [0, 1)) or voxels (int).')
    remove_only_background: bool = Field(False, description='Leave out patches whose labels are all 0 (needs ``labels``).')
    grid: Literal["cover", "cryosiam"] = Field("cover", description='``"cover"``: every voxel in some patch (last patch flush with the far edge); ``"cryosiam"``: CryoSiam\'s grid (the far remainder is not patched).', json_schema_extra={"expert": True})
    format: Literal["zarr", "cryosiam"] = Field("zarr", description='``"zarr"`` or ``"cryosiam"``.', json_schema_extra={"expert": True})
    name: str | None = Field(None, description="Tomogram name in CryoSiam file names and the store's attributes; default: the image's file name without extension.")
    overwrite: bool = Field(False, description='Replace existing outputs: with ``format="zarr"``, a patch store this project wrote (any other existing folder is refused, never replaced); with ``format="cryosiam"``, the patch files of this tomogram (the folder\'s other files are left alone).')

    @field_validator("patch_size", mode="before")
    @classmethod
    def _patch_size(cls, value: Any) -> Any:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return (int(value),) * 3
        return value

    @model_validator(mode="after")
    def _check(self) -> PatchesConfig:
        if any(p < 1 for p in self.patch_size):
            raise ValueError("patch_size must be positive")
        grid_steps(self.patch_size, overlap=self.overlap)
        if self.remove_only_background and self.labels is None:
            raise ValueError("remove_only_background needs labels")
        return self

    @classmethod
    def from_cryosiam(
        cls,
        cfg: dict[str, Any],
        source: str | os.PathLike | None = None,
        format: Literal["zarr", "cryosiam"] = "cryosiam",
        with_distances: bool | None = None,
    ) -> list[PatchesConfig]:
        """One config per tomogram of a CryoSiam training YAML (as a dict).

        ``data_folder`` files ending in ``file_extension`` (only those in ``train_files`` ∪
        ``val_files`` when given); labels ``labels_folder/<same file name>``; distances
        ``temp_dir/distances/<name>.npz`` when ``with_distances`` is True, or when it is None and
        ``temp_dir`` is set; ``parameters.data.{patch_size, patch_overlap,
        remove_only_background}``; ``grid="cryosiam"``; output ``patches_folder`` (format
        ``cryosiam``) or ``patches_folder/<name>.zarr`` (format ``zarr``).
        """
        data_folder = _require(cfg, "data_folder", source)
        patches_folder = Path(_require(cfg, "patches_folder", source))
        labels_folder = cfg.get("labels_folder")
        temp_dir = cfg.get("temp_dir")
        distances = bool(temp_dir) if with_distances is None else with_distances
        if distances and not temp_dir:
            raise InputError("distances need temp_dir", path=source, field="temp_dir")
        data = (cfg.get("parameters") or {}).get("data") or {}
        extra: dict[str, Any] = {}
        if data.get("patch_size") is not None:
            extra["patch_size"] = data["patch_size"]
        if data.get("patch_overlap") is not None:
            extra["patch_overlap"] = data["patch_overlap"]
        configs = []
        for path in cryosiam_files(cfg, data_folder, "data_folder", source):
            name = _strip_extension(path.name, cfg.get("file_extension"))
            fields: dict[str, Any] = {
                "image": path,
                "labels": Path(labels_folder) / path.name if labels_folder else None,
                "distances": Path(temp_dir) / "distances" / f"{name}.npz" if distances else None,
                "output": patches_folder if format == "cryosiam" else patches_folder / f"{name}.zarr",
                "remove_only_background": bool(data.get("remove_only_background", False)) and bool(labels_folder),
                "grid": "cryosiam",
                "format": format,
                "name": name,
            }
            if "patch_size" in extra:
                fields["patch_size"] = extra["patch_size"]
            if "patch_overlap" in extra:
                fields["overlap"] = extra["patch_overlap"]
            configs.append(cls.from_dict(fields, source=source))
        return configs


def _check_output_path(config: PatchesConfig) -> None:
    """The output is a folder. Refuse a path that is one of the inputs, holds one of them, or
    is an existing file; with ``format="zarr"`` refuse an existing folder that is not a patch
    store we wrote (it is never replaced, ``overwrite`` or not) and an existing store without
    ``overwrite``."""
    out = Path(config.output).resolve()
    for field, given in (("image", config.image), ("labels", config.labels), ("distances", config.distances)):
        if given is None:
            continue
        inp = Path(given).resolve()
        if out == inp:
            raise InputError(f"the output would replace the {field} input; choose another name",
                             path=config.output, field="output")
        if config.format == "zarr" and out in inp.parents:
            raise InputError(f"the {field} input {given} is inside this folder, which the store would replace;"
                             " choose a new folder name", path=config.output, field="output")
    if out.exists() and not out.is_dir():
        raise InputError("is a file; expected a folder name (the patch store or patches folder)",
                         path=config.output, field="output")
    # the store is made beside the output; CryoSiam's patch files go into it
    check_writable_parent(config.output if config.format == "zarr" else config.output / "image", "output")
    if config.format == "zarr" and out.exists():
        if not is_patch_store(out):
            raise InputError("is an existing folder that is not a patch store written by napari-cryolearn;"
                             " it is never replaced: choose a new name (e.g. <name>.zarr)",
                             path=config.output, field="output")
        if not config.overwrite:
            raise InputError("a patch store exists here (set overwrite to replace it)",
                             path=config.output, field="output")


def _validate(config: PatchesConfig) -> dict[str, Any]:
    image = read_mrc_3d(config.image, field="image", what="tomogram")
    _check_output_path(config)
    shape = tuple(int(s) for s in image.data.shape)
    if any(p > s for p, s in zip(config.patch_size, shape)):
        raise InputError(
            f"patch size {config.patch_size} is larger than the volume {shape}", path=config.image, field="patch_size"
        )
    labels = None
    max_label = 0
    label_names: dict[int, str] = {}
    if config.labels is not None:
        lab = read_mrc(config.labels, mmap=True)
        if tuple(lab.data.shape) != shape:
            raise InputError(
                f"shape {tuple(lab.data.shape)} differs from the tomogram {config.image} {shape}",
                path=config.labels,
                field="labels",
            )
        max_label = scan_labels(lab.data, config.labels, field="labels")
        labels = lab.data
        label_names = label_names_from(read_sidecar(config.labels))
    distances = None
    if config.distances is not None:
        distances = read_distance_maps(config.distances)
        if tuple(distances.shape[1:]) != shape:
            raise InputError(
                f"shape {tuple(distances.shape)} does not match the tomogram {config.image} {shape}"
                f" (expected (C, {shape[0]}, {shape[1]}, {shape[2]}))",
                path=config.distances,
                field="distances",
            )
    origins = (patch_grid if config.grid == "cover" else cryosiam_grid)(shape, config.patch_size, overlap=config.overlap)
    if config.remove_only_background:
        assert labels is not None
        with PatchReader(labels) as reader:
            keep = foreground_patches(reader, origins, config.patch_size)
        if not keep.any():
            raise InputError(
                "every patch is background (all labels 0): nothing to write",
                path=config.labels,
                field="remove_only_background",
            )
        origins = origins[keep]
    name = config.name or _strip_extension(Path(config.image).name, None)
    # the image patches are stored uncompressed: at least that much space is needed
    check_space(config.output, len(origins) * int(np.prod(config.patch_size)) * 4)
    if config.format == "cryosiam" and not config.overwrite:
        for origin in origins:
            for key, given in (("image", True), ("labels", labels is not None), ("distances", distances is not None)):
                sub, suffix = SUBFOLDERS[key]
                target = config.output / sub / f"{patch_name(name, origin)}{suffix}"
                if given and target.exists():
                    raise InputError("exists (set overwrite to replace it)", path=target, field="output")
    return {
        "image": image,
        "labels": labels,
        "max_label": max_label,
        "label_names": label_names,
        "distances": distances,
        "origins": origins,
        "name": name,
        "shape": shape,
    }


def patches_job(config: PatchesConfig, stop: StopFlag | None = None) -> Generator[Progress, None, JobResult]:
    """Cut ``config.image`` (and labels, distances) into patches and write them.

    Yields :class:`Progress` (stage ``"patches"``) after each patch; returns a
    :class:`JobResult` with output ``output`` (store folder or patches folder) and metric
    ``patches``, or ``JobResult(stopped=True)`` when stopped (nothing written is left).
    Inputs are validated before anything is written (:class:`InputError` naming the file and
    field).
    """
    v = _validate(config)
    origins = v["origins"]
    total = len(origins)
    yield Progress(0, total, f"{total} patches of {v['name']}", stage=STAGE)
    sources = {
        "image": str(config.image),
        "labels": None if config.labels is None else str(config.labels),
        "distances": None if config.distances is None else str(config.distances),
    }
    if config.format == "zarr":
        writer = write_patch_store(
            config.output,
            v["image"].data,
            v["labels"],
            v["distances"],
            patch_size=config.patch_size,
            overlap=config.overlap,
            voxel_size=v["image"].voxel_size,
            grid=config.grid,
            origins=origins,
            labels_dtype=(smallest_unsigned_dtype(v["max_label"], largest=np.uint32)
                          if v["labels"] is not None else None),
            attrs={
                "name": v["name"],
                "sources": sources,
                "remove_only_background": config.remove_only_background,
                "label_names": {str(k): n for k, n in v["label_names"].items()},
                "origin": list(v["image"].origin),
            },
            overwrite=config.overwrite,
        )
        try:
            yield from relay(writer, stop=stop, event=lambda e: replace(e, stage=STAGE))
        except JobStopped:
            return JobResult(stopped=True)
        except ValueError as err:  # NaN found in a patch: the partial store is already removed
            raise InputError(str(err), path=config.image, field="image") from None
    elif not (yield from _write_cryosiam(config, v, stop)):
        return JobResult(stopped=True)
    return JobResult({"output": config.output}, metrics={"patches": total})


def _write_cryosiam(config: PatchesConfig, v: dict[str, Any], stop: StopFlag | None):
    """The CryoSiam patch folders; True when every patch was written (False: stopped)."""
    folders = [config.output, *(config.output / sub for sub, _ in SUBFOLDERS.values())]
    new_folders = [f for f in folders if not f.exists()]
    config.output.mkdir(parents=True, exist_ok=True)
    done = False
    try:
        with output_lock(config.output / f"{v['name']}_patches"):  # one writer of this tomogram's patches
            remove_stale_patch_temporaries(config.output, v["name"])
            done = yield from _write_cryosiam_patches(config, v, stop)
    finally:
        if not done:
            for folder in reversed(new_folders):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
    return done


def _write_cryosiam_patches(config: PatchesConfig, v: dict[str, Any], stop: StopFlag | None):
    """Write every patch's files; True when all were written (else the files written are removed)."""
    sizes = as_patch_size(config.patch_size)
    arrays = {"image": v["image"].data, "labels": v["labels"], "distances": v["distances"]}
    readers = {k: PatchReader(a) for k, a in arrays.items() if a is not None}
    written: list[Path] = []
    done = False
    n = len(v["origins"])
    patches = read_patches(readers, v["origins"], sizes)
    try:
        for i, (origin, patch) in enumerate(zip(v["origins"], patches)):
            written += write_cryosiam_patch(config.output, v["name"], origin, voxel_size=v["image"].voxel_size,
                                            clean_stale=False, **patch)
            if check_stop(stop):
                return False
            yield Progress(i + 1, n, f"patch {i + 1}/{n}", stage=STAGE)
        done = True
    except ValueError as err:  # NaN found in a patch
        raise InputError(str(err), path=config.image, field="image") from None
    finally:
        patches.close()
        for r in readers.values():
            r.close()
        if not done:
            for path in written:
                path.unlink(missing_ok=True)
    return True
