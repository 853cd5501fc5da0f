"""Mask jobs (``cryolearn prep masks``): labels from STAR coordinates, or from a thresholded map.

``masks_from_coordinates_job``: a ball of each particle's class around each coordinate of a
STAR file, in a volume shaped like a reference tomogram (whose voxel size and origin the output
keeps). ``mask_from_threshold_job``: the voxels of a density or probability map above (or
below) a threshold, without the connected pieces smaller than ``min_size`` voxels; it streams
in slabs along z, joining pieces across slab borders, so memory stays at a few slabs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from napari_cryolearn.engine.config import Config
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import JobResult, JobStopped, check_stop
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.io.sidecar import write_sidecar
from napari_cryolearn.io.mrc import MRC_SUFFIXES, create_mrc, read_mrc, read_mrc_3d
from napari_cryolearn.io.star import check_in_bounds, read_star
from napari_cryolearn.engine.outputs import check_output
from napari_cryolearn.prep.filter_job import cryosiam_configs
from napari_cryolearn.prep.masks import check_mask_params, radius_in_voxels, spheres_mask
from napari_cryolearn.prep.scaling import SlabReader, release_pages

__all__ = [
    "MaskFromThresholdConfig",
    "MasksFromCoordinatesConfig",
    "mask_from_threshold_job",
    "masks_from_coordinates_job",
]

STAGE = "masks"
_DEFAULT_CLASS_COLUMN = "rlnClassNumber"
_BATCH = 256


class MasksFromCoordinatesConfig(Config):
    """Parameters of the coordinates → spheres stage.

    Attributes
    ----------
    coordinates:
        STAR file with ``rlnCoordinateX/Y/Z`` (pixels) or RELION 5 centred Å coordinates.
    reference:
        MRC whose shape, voxel size and origin the output takes (the tomogram).
    output:
        MRC to write (uint8, or uint16 for classes above 255).
    radius:
        Ball radius, in voxels or Å (``radius_unit``).
    radius_unit:
        ``"voxel"`` or ``"angstrom"`` (per-axis voxel size: an ellipsoid in voxels when the
        voxels are not cubes).
    class_column:
        STAR column giving each ball's value. The default, ``rlnClassNumber``, is used when the
        file has it (else ``value``); any other name must exist in the file. ``None``: always
        ``value``.
    value:
        Value of every ball when no class column is used.
    tomo_name:
        Keep only this tomogram's rows (``rlnTomoName`` / ``rlnMicrographName``).
    overwrite:
        Replace an existing output.
    """

    coordinates: Path = Field(description="STAR file of coordinates")
    reference: Path = Field(description="MRC giving the shape, voxel size and origin")
    output: Path = Field(description="label MRC to write")
    radius: float = Field(gt=0, description="sphere radius (voxels or Angstrom, see --radius-unit)")
    radius_unit: Literal["voxel", "angstrom"] = Field("voxel", description="unit of --radius")
    class_column: str | None = Field(
        _DEFAULT_CLASS_COLUMN, description="STAR column with each sphere's class (used when present)"
    )
    value: int = Field(1, ge=1, le=65535, description="sphere value without a class column")
    tomo_name: str | None = Field(None, description="keep only this tomogram's rows")
    overwrite: bool = Field(False, description="replace an existing output")

    @classmethod
    def from_cryosiam(
        cls,
        cfg: dict[str, Any],
        coordinates: str | os.PathLike,
        radius: float,
        radius_unit: Literal["voxel", "angstrom"] = "voxel",
        source: str | os.PathLike | None = None,
    ) -> list[MasksFromCoordinatesConfig]:
        """One config per tomogram of a CryoSiam training YAML (as a dict), for projects without
        labels: ``data_folder/<name>`` is the reference, ``labels_folder/<name>`` the output.

        ``coordinates`` is a folder holding ``<stem>.star`` per tomogram, or one STAR file for
        all (rows chosen by ``tomo_name`` = the tomogram's stem). ``file_extension``,
        ``train_files`` and ``val_files`` select the tomograms.
        """
        coords = Path(coordinates)

        def make(ref: Path, out: Path) -> dict[str, Any]:
            stem = ref.name[: -len(cfg["file_extension"])] if cfg.get("file_extension") else ref.stem
            star = coords / f"{stem}.star" if coords.is_dir() else coords
            return {
                "coordinates": star,
                "reference": ref,
                "output": out,
                "radius": radius,
                "radius_unit": radius_unit,
                "tomo_name": None if coords.is_dir() else stem,
            }

        return cryosiam_configs(
            cls, cfg, cfg.get("data_folder"), cfg.get("labels_folder"), "data_folder", source, make,
            output_field="labels_folder",
        )


class MaskFromThresholdConfig(Config):
    """Parameters of the threshold stage.

    Attributes
    ----------
    input:
        Density or probability map (MRC).
    output:
        MRC to write (uint8 unless ``label_value`` > 255).
    threshold:
        In the map's units.
    above:
        Keep ``map > threshold`` (True) or ``map < threshold`` (False). NaN voxels are never kept.
    min_size:
        Drop face-connected pieces with fewer voxels (0: keep all).
    label_value:
        Value of the mask voxels.
    chunk_mb:
        MiB of map slabs in flight.
    overwrite:
        Replace an existing output.
    """

    input: Path = Field(description="density or probability map (MRC)")
    output: Path = Field(description="mask MRC to write")
    threshold: float = Field(description="threshold in the map's units")
    above: bool = Field(True, description="keep map > threshold (--no-above: map < threshold)")
    min_size: int = Field(0, ge=0, description="drop connected pieces with fewer voxels")
    label_value: int = Field(1, ge=1, le=65535, description="value of the mask voxels")
    chunk_mb: float = Field(64, gt=0, description="MiB of slabs in flight", json_schema_extra={"expert": True})
    overwrite: bool = Field(False, description="replace an existing output")

    @classmethod
    def from_cryosiam(
        cls,
        cfg: dict[str, Any],
        threshold: float,
        input: str | os.PathLike | None = None,
        above: bool = True,
        min_size: int = 0,
        source: str | os.PathLike | None = None,
    ) -> list[MaskFromThresholdConfig]:
        """One config per map: ``input`` (a folder or file; default the YAML's ``data_folder``)
        ``/<name>`` → ``labels_folder/<name>``; ``file_extension``, ``train_files`` and
        ``val_files`` select the files."""
        return cryosiam_configs(
            cls,
            cfg,
            input or cfg.get("data_folder"),
            cfg.get("labels_folder"),
            "data_folder",
            source,
            lambda i, o: {"input": i, "output": o, "threshold": threshold, "above": above, "min_size": min_size},
            output_field="labels_folder",
        )


def _class_values(points, cfg: MasksFromCoordinatesConfig) -> np.ndarray | int:
    col = cfg.class_column
    if col is None or (col == _DEFAULT_CLASS_COLUMN and col not in points.features.columns):
        return cfg.value
    if col not in points.features.columns:
        cols = ", ".join(map(str, points.features.columns)) or "none"
        raise InputError(f"column {col!r} not found (columns: {cols})", path=cfg.coordinates, field="class_column")
    values = np.asarray(points.features[col].to_numpy(), dtype=np.float64)
    if values.size and (
        not np.all(np.isfinite(values)) or np.any(values != np.round(values)) or values.min() < 0 or values.max() > 65535
    ):
        raise InputError(f"classes in {col} must be whole numbers in 0..65535", path=cfg.coordinates, field=col)
    return values.astype(np.int64)


def masks_from_coordinates_job(
    config: MasksFromCoordinatesConfig, stop: StopFlag | None = None
) -> Generator[Progress, None, JobResult]:
    """Draw a ball per STAR coordinate into a volume shaped like ``config.reference``.

    Returns a :class:`JobResult`: output ``output``, metric ``balls`` (``JobResult(stopped=True)``
    and no file when stopped). Where balls overlap, the later row of the table
    wins. The STAR file is read with the reference's voxel size as pixel size (unless the
    reference's header has none, i.e. 1 Å), which matters only for Å coordinates and shifts.

    Raises
    ------
    InputError
        Unreadable files, coordinates outside the reference volume (listed), a requested class
        column that is missing or holds bad values, output equal to an input or existing
        without ``overwrite``.
    """
    cfg = config
    ref = read_mrc(cfg.reference, mmap=True)
    if ref.data.ndim != 3:
        raise InputError(f"expected a 3D reference volume, got shape {ref.data.shape}", path=cfg.reference)
    shape = tuple(int(s) for s in ref.data.shape)
    pixel_size = None if tuple(ref.voxel_size) == (1.0, 1.0, 1.0) else float(ref.voxel_size[2])
    points = read_star(cfg.coordinates, pixel_size=pixel_size, tomo_name=cfg.tomo_name, volume_shape=shape,
                       require_z=True, require_rows=True)
    coords = points.coords
    check_in_bounds(coords, shape, path=cfg.coordinates)
    classes = _class_values(points, cfg)
    top = int(np.max(classes)) if np.size(classes) else 1
    dtype = np.dtype(np.uint8 if top <= 255 else np.uint16)
    try:
        radius_in_voxels(cfg.radius, voxel_size=ref.voxel_size, radius_unit=cfg.radius_unit)
    except InputError as err:
        raise InputError(str(err), path=cfg.reference, field="radius") from None
    check_output([cfg.reference, cfg.coordinates], cfg.output, cfg.overwrite, suffixes=MRC_SUFFIXES,
                 what="an MRC label volume")

    n = len(coords)
    total = max(1, math.ceil(n / _BATCH)) + 1
    values = np.broadcast_to(np.asarray(classes), (n,))
    name = Path(cfg.output).name
    try:
        with create_mrc(cfg.output, shape, dtype, voxel_size=ref.voxel_size, origin=ref.origin) as out:
            for b, start in enumerate(range(0, n, _BATCH)):
                stop_at = min(n, start + _BATCH)
                spheres_mask(
                    shape, coords[start:stop_at], cfg.radius, classes=values[start:stop_at],
                    voxel_size=ref.voxel_size, radius_unit=cfg.radius_unit, dtype=dtype, out=out,
                )
                if check_stop(stop):
                    raise JobStopped
                yield Progress(b + 1, total, f"drawing {stop_at}/{n} balls into {name}", stage=STAGE)
    except JobStopped:
        return JobResult(stopped=True)
    _write_class_names(cfg.output, np.unique(values), source=cfg.coordinates)
    yield Progress(total, total, f"wrote {name}", stage=STAGE)
    return JobResult({"output": Path(cfg.output)}, metrics={"balls": n})


def _write_class_names(output: Path, values, *, source: Path, name: str = "class") -> None:
    """The output's sidecar: it holds labels (napari opens a Labels layer), their names
    ``class_<value>`` (``name`` alone for a single value) and the source file."""
    values = sorted(int(v) for v in values if v)
    names = {0: "background", **{v: name if len(values) == 1 and name != "class" else f"{name}_{v}" for v in values}}
    write_sidecar(output, {"label_names": {str(k): v for k, v in names.items()}, "source": str(source)})


def _read_mask(reader: SlabReader, i: int, threshold: float, above: bool, path) -> np.ndarray:
    block = reader.read(i)
    if block.dtype.kind == "f" and not np.isfinite(block).all():
        z0, z1 = reader.bounds[i]
        raise InputError(f"NaN or infinite values in slices {z0}..{z1 - 1}", path=path, field="input")
    return block > threshold if above else block < threshold


def mask_from_threshold_job(
    config: MaskFromThresholdConfig, stop: StopFlag | None = None
) -> Generator[Progress, None, JobResult]:
    """Threshold ``config.input`` into a mask; returns a :class:`JobResult` with output
    ``output`` (``JobResult(stopped=True)`` and no file when stopped).

    Equal to :func:`napari_cryolearn.prep.masks.threshold_mask` on the whole volume. With
    ``min_size`` > 1 a first pass labels the pieces of each slab and joins those that touch
    across slab borders (a graph of the touching pairs, solved with
    ``scipy.sparse.csgraph.connected_components``); the second pass labels each slab again and
    writes the voxels of the pieces that are large enough.

    Raises
    ------
    InputError
        Unreadable input, not 3D or not real-valued, NaN or infinite values (found slab by slab;
        the partial output is removed), a non-finite threshold, output equal to the input or
        existing without ``overwrite``.
    """
    from scipy import ndimage as ndi  # here, not at import: the spheres stage shares this module

    cfg = config
    vol = read_mrc_3d(cfg.input, what="map")
    data = vol.data
    try:
        check_mask_params(cfg.threshold, cfg.min_size, cfg.label_value)
    except InputError as err:
        raise InputError(str(err).split(": ", 1)[-1], path=cfg.input, field=err.field) from None
    check_output(cfg.input, cfg.output, cfg.overwrite, suffixes=MRC_SUFFIXES, what="an MRC mask")
    dtype = np.dtype(np.uint8 if cfg.label_value <= 255 else np.uint16)
    per_voxel = data.dtype.itemsize + 1 + 4 + dtype.itemsize  # block, mask, piece labels, output
    plane = math.prod(data.shape[1:])
    rows = max(1, int(cfg.chunk_mb * 2**20) // (plane * per_voxel))
    reader = SlabReader(data, chunk_bytes=rows * plane * data.dtype.itemsize)
    k = len(reader)
    use_pieces = cfg.min_size > 1
    total = (2 * k if use_pieces else k) + 1
    step = 0
    name = Path(cfg.output).name

    keep_piece = None
    offsets = np.zeros(k, dtype=np.int64)
    if use_pieces:
        sizes: list[np.ndarray] = []
        pairs: list[np.ndarray] = []
        n_pieces = 0
        last_plane = None
        for i in range(k):
            pieces, count = ndi.label(_read_mask(reader, i, cfg.threshold, cfg.above, cfg.input))
            offsets[i] = n_pieces
            sizes.append(np.bincount(pieces.ravel(), minlength=count + 1)[1:])
            first = np.where(pieces[0] > 0, pieces[0] + n_pieces, 0)
            if last_plane is not None:
                touch = (last_plane > 0) & (first > 0)
                if touch.any():
                    pairs.append(np.unique(np.stack([last_plane[touch], first[touch]], axis=1), axis=0))
            last_plane = np.where(pieces[-1] > 0, pieces[-1] + n_pieces, 0)
            n_pieces += count
            del pieces
            step += 1
            if check_stop(stop):
                return JobResult(stopped=True)
            yield Progress(step, total, f"finding connected pieces in {Path(cfg.input).name}", stage=STAGE)
        keep_piece = _large_pieces(np.concatenate(sizes) if sizes else np.zeros(0, np.int64), pairs, cfg.min_size)

    try:
        with create_mrc(cfg.output, data.shape, dtype, voxel_size=vol.voxel_size, origin=vol.origin) as out:
            for i in range(k):
                z0, z1 = reader.bounds[i]
                mask = _read_mask(reader, i, cfg.threshold, cfg.above, cfg.input)
                if keep_piece is not None:
                    pieces, _ = ndi.label(mask)
                    mask = np.zeros(pieces.shape, dtype=bool)
                    hit = pieces > 0
                    mask[hit] = keep_piece[pieces[hit] - 1 + offsets[i]]
                    del pieces, hit
                dst = out[z0:z1]
                dst[...] = mask
                if cfg.label_value != 1:
                    dst *= dtype.type(cfg.label_value)
                release_pages(dst)
                step += 1
                if check_stop(stop):
                    raise JobStopped
                yield Progress(step, total, f"writing {name}", stage=STAGE)
    except JobStopped:
        return JobResult(stopped=True)
    _write_class_names(cfg.output, [cfg.label_value], source=cfg.input, name="mask")
    yield Progress(total, total, f"wrote {name}", stage=STAGE)
    return JobResult({"output": Path(cfg.output)})


def _large_pieces(sizes: np.ndarray, pairs: list[np.ndarray], min_size: int) -> np.ndarray:
    """Per slab piece (global index): True when the whole piece it belongs to has ≥ min_size voxels."""
    n = sizes.size
    if n == 0:
        return np.zeros(0, dtype=bool)
    if pairs:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        edges = np.concatenate(pairs) - 1
        graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
        _, root = connected_components(graph, directed=False)
    else:
        root = np.arange(n)
    total = np.bincount(root, weights=sizes)
    return total[root] >= min_size
