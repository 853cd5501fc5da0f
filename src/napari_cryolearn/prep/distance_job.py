"""The distance-map job: a label MRC in, per-class signed distance maps out.

Outputs
-------
``format="npy"`` (ours): one float32 ``.npy`` file of shape (C, Z, Y, X), written channel by
channel through a memory map, plus a JSON sidecar ``<output>.json`` with the voxel size, the
unit and the parameters. ``format="cryosiam-npz"``: CryoSiam's ``<name>.npz`` with key ``data``
(C, Z, Y, X) float32, compressed (made from a temporary ``.npy`` beside it, streamed into the
archive).

Memory: an exact Euclidean distance transform needs the whole volume, so the exact path (no
``clip``) holds one multi-label transform (the inside part of all classes) and then, per class,
one boolean mask and one float32 volume: about one class volume of float32 plus the label volume
once, whatever the number of classes; the label memory map's and the output's pages are released
slab by slab. With ``clip`` the distances are computed in blocks of planes and rows with a halo
of ``clip`` (exact, see :func:`napari_cryolearn.prep.distances.signed_distance_maps_blocks`),
each block of labels read once for all classes, which bounds memory by the block size instead.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any, Literal

import edt
import numpy as np
from pydantic import Field, model_validator

from napari_cryolearn.engine.atomic import atomic_path
from napari_cryolearn.engine.config import Config
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.outputs import check_output
from napari_cryolearn.engine.jobs import JobResult, JobStopped, check_stop
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.io.mrc import MRC_SUFFIXES, read_mrc
from napari_cryolearn.io.npy import create_npy
from napari_cryolearn.io.pages import release_pages
from napari_cryolearn.io.dtypes import smallest_unsigned_dtype
from napari_cryolearn.io.sidecar import write_sidecar
from napari_cryolearn.prep.distances import signed_distance_maps_blocks

__all__ = ["DistanceMapConfig", "cryosiam_files", "distance_map_job", "read_distance_maps", "scan_labels"]

#: More classes than this are refused unless ``n_classes`` is set: a label volume with label
#: values in the thousands holds instances, and one distance map each would fill a disk.
_MAX_INFERRED_CLASSES = 256

STAGE = "distance-maps"
_SLAB_BYTES = 16 * 2**20


class DistanceMapConfig(Config):
    """Parameters of the distance-map stage.
    """

    input: Path = Field(description='Label MRC (integer classes 0..n_classes-1, 0 = background).')
    output: Path = Field(description='``.npy`` (format ``npy``) or ``.npz`` (format ``cryosiam-npz``).')
    n_classes: int | None = Field(None, description='Channels; ``None`` → the largest label + 1.')
    voxel_size_aware: bool = Field(False, description="Measure distances in Å with the file's (z, y, x) voxel size (else in voxels, as CryoSiam).")
    black_border: bool = Field(True, description='The image border counts as outside (CryoSiam: yes).', json_schema_extra={"expert": True})
    clip: float | None = Field(None, description='Clip distances to [-clip, clip] (voxels, or Å when ``voxel_size_aware``).')
    normalize: bool = Field(False, description='Divide by ``clip`` after clipping (values in [-1, 1]); needs ``clip``.')
    format: Literal["npy", "cryosiam-npz"] = Field("npy", description='``"npy"`` or ``"cryosiam-npz"``.', json_schema_extra={"expert": True})
    skeleton: Path | None = Field(None, description='Optional MRC for the "tube skeleton" target of thin structures (as CryoSiam offers): the voxels of each class in ``skeleton_classes`` whose distance to the class border is at least ``skeleton_fraction`` of the local maximum, labelled with their class (uint8).')
    skeleton_classes: list[int] = Field([], description='Classes for the skeleton; empty → every class but background.', json_schema_extra={"expert": True})
    skeleton_fraction: float = Field(0.5, description='Fraction of the local maximum distance (0 < fraction ≤ 1).', json_schema_extra={"expert": True})
    overwrite: bool = Field(False, description='Replace an existing output.')

    @model_validator(mode="after")
    def _check(self) -> DistanceMapConfig:
        if self.n_classes is not None and self.n_classes < 1:
            raise ValueError("n_classes must be at least 1")
        if self.clip is not None and not self.clip > 0:
            raise ValueError("clip must be positive")
        if self.normalize and self.clip is None:
            raise ValueError("normalize needs clip (the maps are divided by clip)")
        if not 0 < self.skeleton_fraction <= 1:
            raise ValueError("skeleton_fraction must be in (0, 1]")
        return self

    @classmethod
    def from_cryosiam(cls, cfg: dict[str, Any], source: str | os.PathLike | None = None) -> list[DistanceMapConfig]:
        """One config per label file of a CryoSiam training YAML (as a dict).

        ``labels_folder`` files ending in ``file_extension`` (only those named in ``train_files``
        or ``val_files`` when given) → ``temp_dir/distances/<name>.npz``, ``n_classes =
        parameters.network.out_channels``, format ``cryosiam-npz`` (voxel units, no clipping,
        black border: CryoSiam's targets).
        """
        labels_folder = _require(cfg, "labels_folder", source)
        temp_dir = _require(cfg, "temp_dir", source)
        out_channels = ((cfg.get("parameters") or {}).get("network") or {}).get("out_channels")
        configs = []
        for path in cryosiam_files(cfg, labels_folder, "labels_folder", source):
            name = _strip_extension(path.name, cfg.get("file_extension"))
            configs.append(
                cls(
                    input=path,
                    output=Path(temp_dir) / "distances" / f"{name}.npz",
                    n_classes=None if out_channels is None else int(out_channels),
                    format="cryosiam-npz",
                )
            )
        return configs


def _require(cfg: dict[str, Any], key: str, source) -> str:
    value = cfg.get(key)
    if not value:
        raise InputError("missing in the CryoSiam config", path=source, field=key)
    return str(value)


def _strip_extension(filename: str, extension: str | None) -> str:
    if extension and filename.endswith(extension):
        return filename[: -len(extension)]
    return Path(filename).stem


def cryosiam_files(
    cfg: dict[str, Any], folder: str | os.PathLike, field: str, source: str | os.PathLike | None = None
) -> list[Path]:
    """Files of ``folder`` that a CryoSiam config selects, sorted by name.

    Those ending in ``file_extension`` (all files when unset); when ``train_files`` or
    ``val_files`` are given, only files whose name (with or without extension) is listed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("folder not found", path=folder, field=field)
    ext = cfg.get("file_extension") or ""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(ext) and not p.name.startswith("."))
    listed = [str(n) for n in (cfg.get("train_files") or []) + (cfg.get("val_files") or [])]
    if listed:
        wanted = set(listed)
        files = [p for p in files if p.name in wanted or _strip_extension(p.name, ext) in wanted]
    if not files:
        raise InputError(f"no files ending in {ext!r} selected in {folder}", path=source, field=field)
    return files


def scan_labels(data: np.ndarray, path: str | os.PathLike, field: str = "labels") -> int:
    """Check a label volume slab by slab and return its largest label.

    Integer (and bool) dtypes are accepted; float volumes (CryoSiam writes float32 label MRCs)
    when every value is a whole number. Negative labels are refused.

    Raises
    ------
    InputError
        Not 3D, not whole numbers, or negative; naming ``path`` and ``field``.
    """
    if data.ndim != 3:
        raise InputError(f"expected a 3D label volume, got shape {data.shape}", path=path, field=field)
    kind = data.dtype.kind
    if kind not in "iubf":
        raise InputError(f"labels must be integers, got dtype {data.dtype}", path=path, field=field)
    plane = max(1, int(np.prod(data.shape[1:])) * data.dtype.itemsize)
    step = max(1, _SLAB_BYTES // plane)
    hi = 0
    for z0 in range(0, data.shape[0], step):
        view = data[z0 : z0 + step]
        block = np.array(view)
        release_pages(view)
        if kind == "f" and not (np.all(np.isfinite(block)) and np.array_equal(block, np.floor(block))):
            raise InputError(
                f"labels must be integers; dtype {data.dtype} holds values that are not whole numbers",
                path=path,
                field=field,
            )
        if block.size:
            lo = block.min()
            if lo < 0:
                raise InputError(f"labels must be ≥ 0, found {lo}", path=path, field=field)
            hi = max(hi, int(block.max()))
    release_pages(data)
    return hi


def read_distance_maps(path: str | os.PathLike, mmap: bool = True) -> np.ndarray:
    """Distance maps (C, Z, Y, X) float32 from ``.npy`` (memory-mapped when ``mmap``) or
    CryoSiam's ``.npz`` (key ``data``; loaded whole: npz members cannot be memory-mapped)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("distance maps not found", path=path)
    try:
        if path.suffix == ".npz":
            with np.load(path) as npz:
                if "data" not in npz:
                    raise InputError(f"expected an array named 'data', found {list(npz.keys())}", path=path, field="data")
                arr = np.asarray(npz["data"])
        else:
            arr = np.load(path, mmap_mode="r" if mmap else None)
    except InputError:
        raise
    except (OSError, ValueError) as err:
        raise InputError(f"not a .npy/.npz array file ({err})", path=path) from None
    if arr.ndim != 4:
        raise InputError(f"expected (C, Z, Y, X) distance maps, got shape {arr.shape}", path=path, field="distances")
    return arr


def _as_integer_labels(data: np.ndarray, max_label: int) -> np.ndarray:
    out = np.empty(data.shape, dtype=smallest_unsigned_dtype(max_label, largest=np.uint32))
    step = max(1, _SLAB_BYTES // max(int(np.prod(data.shape[1:])) * data.dtype.itemsize, 1))
    for z0 in range(0, data.shape[0], step):
        out[z0 : z0 + step] = data[z0 : z0 + step]
        release_pages(data[z0 : z0 + step])
    return out


def _validate(config: DistanceMapConfig):
    vol = read_mrc(config.input, mmap=True)
    max_label = scan_labels(vol.data, config.input, field="input")
    n_classes = config.n_classes if config.n_classes is not None else max_label + 1
    if config.n_classes is None and n_classes > _MAX_INFERRED_CLASSES:
        size = n_classes * int(np.prod(vol.data.shape)) * 4
        raise InputError(
            f"labels go up to {max_label}: that is {n_classes} distance maps ({size / 2**30:.1f} GiB). These look like"
            f" instance labels; renumber or keep the classes you want first (prep filter --renumber / --keep), or"
            f" set n_classes explicitly",
            path=config.input,
            field="n_classes",
        )
    if max_label >= n_classes:
        raise InputError(
            f"labels go up to {max_label} but n_classes is {n_classes} (classes 0..{n_classes - 1})",
            path=config.input,
            field="n_classes",
        )
    suffix = ".npy" if config.format == "npy" else ".npz"
    check_output(config.input, config.output, config.overwrite, suffixes=(suffix,),
                 what=f"distance maps in format {config.format!r}")
    if config.skeleton is not None:
        if config.skeleton.resolve() == config.output.resolve():
            raise InputError("skeleton would replace the distance maps", path=config.skeleton, field="skeleton")
        check_output(config.input, config.skeleton, config.overwrite, field="skeleton", others=[config.output],
                     suffixes=MRC_SUFFIXES, what="an MRC label volume")
        wrong = [c for c in config.skeleton_classes if not 0 <= c < n_classes]
        if wrong:
            raise InputError(f"skeleton classes {wrong} are not among the classes 0..{n_classes - 1}",
                             path=config.input, field="skeleton_classes")
    return vol, n_classes


def _clip_blocks(shape: Sequence[int]) -> tuple[int, int]:
    """Planes and rows per block of the clipped path: about ``_SLAB_BYTES`` voxels per block (a
    float32 block of 4 x ``_SLAB_BYTES``), as square as the volume allows in (z, y)."""
    nz, ny, nx = (int(s) for s in shape)
    budget = max(1, _SLAB_BYTES // max(nx, 1))  # planes x rows
    side = max(1, int(np.sqrt(budget)))
    bz = min(nz, side)
    by = min(ny, max(1, budget // max(bz, 1)))
    if by == ny:  # whole planes: as many as fit
        bz = min(nz, max(1, budget // max(ny, 1)))
    return bz, by


def _fill_clipped(
    out: np.ndarray,
    labels: np.ndarray,
    config: DistanceMapConfig,
    voxel_size: Sequence[float] | None,
    stop: StopFlag | None,
) -> Generator[str, None, None]:
    """Write all channels of the clipped maps into ``out`` (C, Z, Y, X), block by block: each
    block of labels is read once, and every written block's pages are released at once."""

    def source(z0: int, z1: int, y0: int, y1: int) -> np.ndarray:
        view = labels[z0:z1, y0:y1]
        block = np.array(view)
        release_pages(view)
        return block

    blocks = signed_distance_maps_blocks(
        source,
        labels.shape,
        out.shape[0],
        config.clip,
        voxel_size=voxel_size,
        black_border=config.black_border,
        normalize=config.normalize,
        block=_clip_blocks(labels.shape),
    )
    for zs, ys, cls, values in blocks:
        # A few MiB at a time, each released at once: the dirty pages of a whole block would
        # count as much as the block itself.
        step = max(1, (_SLAB_BYTES // 4) // max(values[0].nbytes, 1))
        for k in range(0, values.shape[0], step):
            target = out[cls, zs.start + k : min(zs.stop, zs.start + k + step), ys]
            target[...] = values[k : k + step]
            release_pages(target)
        del values, target  # before the next transform
        if check_stop(stop):
            raise JobStopped
        yield f"class {cls}: planes {zs.start}-{zs.stop - 1}, rows {ys.start}-{ys.stop - 1}"


def _slab(labels: np.ndarray, itemsize: int = 4) -> int:
    return max(1, _SLAB_BYTES // max(int(np.prod(labels.shape[1:])) * itemsize, 1))


def _fill_inside(out: np.ndarray, labels: np.ndarray, voxel_size: Sequence[float] | None, config: DistanceMapConfig) -> None:
    """Write every voxel's distance to the border of its own class into its class's channel
    (one multi-label transform for all classes); other voxels are left unwritten (0).

    Holds the shifted labels and one float32 volume (the transform), not the label memory map's
    pages nor the output's."""
    aniso = tuple(voxel_size) if voxel_size is not None else (1.0, 1.0, 1.0)
    nz, slab = labels.shape[0], _slab(labels, 1)
    # Labels + 1, so that no label is edt's background (0): as own_class_distance.
    shifted = np.empty(labels.shape, dtype=smallest_unsigned_dtype(out.shape[0], largest=np.uint64))
    for z0 in range(0, nz, slab):
        view = labels[z0 : z0 + slab]
        np.add(view, 1, out=shifted[z0 : z0 + slab], casting="unsafe")
        release_pages(view)
    inside = edt.edt(shifted, anisotropy=aniso, black_border=config.black_border, parallel=-1)
    del shifted
    inside = inside.astype(np.float32, copy=False)
    slab = _slab(labels)
    for z0 in range(0, nz, slab):
        sl = slice(z0, z0 + slab)
        view = labels[sl]
        lab = np.array(view)
        release_pages(view)
        for cls in range(out.shape[0]):
            target = out[cls, sl]
            np.copyto(target, inside[sl], where=lab == cls)
            release_pages(target)
    del inside


def _fill_outside(
    out: np.ndarray,
    labels: np.ndarray,
    cls: int,
    config: DistanceMapConfig,
    voxel_size: Sequence[float] | None,
    stop: StopFlag | None,
) -> Generator[str, None, None]:
    """Write minus the distance to class ``cls`` into the voxels of ``out`` (Z, Y, X) outside it
    (the exact path: one boolean mask and one float32 volume at a time)."""
    nz, slab = labels.shape[0], _slab(labels)
    aniso = tuple(voxel_size) if voxel_size is not None else (1.0, 1.0, 1.0)
    mask = np.empty(labels.shape, dtype=bool)
    for z0 in range(0, nz, slab):
        view = labels[z0 : z0 + slab]
        np.not_equal(view, cls, out=mask[z0 : z0 + slab])
        release_pages(view)
    negative = edt.edt(mask, anisotropy=aniso, black_border=config.black_border, parallel=-1)
    for z0 in range(0, nz, slab):
        sl = slice(z0, z0 + slab)
        target = out[sl]
        np.negative(negative[sl], out=target, where=mask[sl])
        release_pages(target)
    del negative, mask
    if check_stop(stop):
        raise JobStopped
    yield f"class {cls}: outside"


def distance_map_job(
    config: DistanceMapConfig, stop: StopFlag | None = None
) -> Generator[Progress, None, JobResult]:
    """Compute per-class signed distance maps of ``config.input`` and write ``config.output``.

    Yields :class:`Progress` (stage ``"distance-maps"``) per class piece; returns a
    :class:`JobResult` with outputs ``output`` (and ``skeleton`` when asked for) and metric
    ``classes``, or ``JobResult(stopped=True)`` when stopped (nothing is left behind). Inputs are validated before
    anything is written (:class:`InputError` naming the file and field).
    """
    vol, n_classes = _validate(config)
    labels = vol.data
    if labels.dtype.kind == "f":  # whole numbers (checked): hold them as the smallest unsigned type
        labels = _as_integer_labels(labels, n_classes - 1)
    voxel_size = vol.voxel_size if config.voxel_size_aware else None
    shape = (n_classes, *labels.shape)
    if config.clip is not None:
        bz, by = _clip_blocks(labels.shape)
        total = n_classes * -(-labels.shape[0] // bz) * -(-labels.shape[1] // by) + 1
    else:
        total = n_classes + 2
    step = 0
    yield Progress(step, total, f"distance maps of {Path(config.input).name}", stage=STAGE)
    meta = {
        "kind": "signed distance maps",
        "source": str(config.input),
        "shape": list(shape),
        "axes": "czyx",
        "voxel_size": list(vol.voxel_size),
        "origin": list(vol.origin),
        "unit": "angstrom" if config.voxel_size_aware else "voxel",
        "n_classes": n_classes,
        "black_border": config.black_border,
        "clip": config.clip,
        "normalize": config.normalize,
    }
    npy_target = config.output if config.format == "npy" else config.output.with_name(f".{config.output.name}.npy")
    try:
        with atomic_path(npy_target) as tmp:
            out = create_npy(tmp, shape, np.float32, target=config.output)
            try:
                if config.clip is not None:
                    pieces = _fill_clipped(out, labels, config, voxel_size, stop)
                else:
                    _fill_inside(out, labels, voxel_size, config)
                    step += 1
                    yield Progress(step, total, "inside distances of all classes", stage=STAGE)
                    if check_stop(stop):
                        raise JobStopped
                    pieces = (m for cls in range(n_classes) for m in _fill_outside(out[cls], labels, cls, config, voxel_size, stop))
                for message in pieces:
                    step += 1
                    yield Progress(step, total, message, stage=STAGE)
                out.flush()
            finally:
                release_pages(out)
                del out
            if config.format == "cryosiam-npz":
                data = np.load(tmp, mmap_mode="r")
                try:
                    with atomic_path(config.output) as npz_tmp:
                        with open(npz_tmp, "wb") as fh:
                            np.savez_compressed(fh, data=data)
                finally:
                    del data
                raise _Converted
    except _Converted:
        pass
    except JobStopped:
        return JobResult(stopped=True)
    if config.format == "npy":
        write_sidecar(config.output, meta)
    if config.skeleton is not None:
        yield Progress(total - 1, total, f"tube skeleton into {config.skeleton.name}", stage=STAGE)
        _write_skeleton(config, labels, n_classes, vol, voxel_size)
    yield Progress(total, total, f"wrote {config.output.name}", stage=STAGE)
    outputs = {"output": config.output, **({"skeleton": config.skeleton} if config.skeleton is not None else {})}
    return JobResult(outputs, metrics={"classes": n_classes})


def _write_skeleton(config: DistanceMapConfig, labels: np.ndarray, n_classes: int, vol, voxel_size) -> None:
    from napari_cryolearn.io.mrc import write_mrc
    from napari_cryolearn.prep.distances import tube_skeleton

    classes = config.skeleton_classes or list(range(1, n_classes))
    skeleton = np.zeros(labels.shape, dtype=np.uint8)
    for cls in classes:
        skeleton[tube_skeleton(labels, cls, fraction=config.skeleton_fraction, voxel_size=voxel_size)] = cls
    write_mrc(config.skeleton, skeleton, voxel_size=vol.voxel_size, origin=vol.origin, overwrite=config.overwrite)


class _Converted(Exception):
    """The temporary .npy was converted to .npz: discard it (leave atomic_path by exception)."""
