"""The label-filtering job: a label MRC in, the kept classes out (``cryolearn prep filter-labels``).

The volume streams through in slabs along z (with a halo of ``ceil(expand)`` slices when the
labels grow, so that the result equals the whole-volume operation). The output is the
smallest unsigned type that holds the output values (uint8 or uint16: MRC has no larger
unsigned type), with the input's voxel size and origin. The metadata sidecar beside the output
(``<output>.json``, see :mod:`napari_cryolearn.io.sidecar`) records the mapping ``{old: new}``
and, when the input's sidecar names its classes, the output's class names.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from napari_cryolearn.engine.config import Config
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.outputs import check_output
from napari_cryolearn.engine.jobs import JobResult, JobStopped, check_stop
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.io.dtypes import smallest_unsigned_dtype
from napari_cryolearn.io.mrc import MRC_SUFFIXES, create_mrc, read_mrc_3d
from napari_cryolearn.io.sidecar import label_names_from, read_sidecar, sidecar_path, write_sidecar
from napari_cryolearn.prep.filtering import (
    apply_label_mapping,
    check_integer_labels,
    expand_labels,
    label_mapping,
    warn_absent,
)
from napari_cryolearn.prep.scaling import default_threads, ordered_map, release_pages, slab_bounds

__all__ = [
    "FilterLabelsConfig",
    "cryosiam_configs",
    "filter_labels_job",
    "mapping_path",
    "read_label_mapping",
]

STAGE = "filter-labels"


class FilterLabelsConfig(Config):
    """Parameters of the label-filtering stage.

    Attributes
    ----------
    input:
        Label MRC (integers; float files holding whole numbers are accepted).
    output:
        MRC to write.
    keep:
        Label values to keep (one value → a 0/1 mask).
    binary:
        All kept values → 1 (``None``: only when one value is kept).
    renumber:
        Kept values → 1..n in the order of ``keep`` (the mapping is written beside the output).
    expand:
        Grow the kept labels into the background by this many voxels (CryoSiam: 1).
    chunk_mb:
        MiB of label slabs in flight.
    overwrite:
        Replace an existing output.
    """

    input: Path = Field(description="label MRC")
    output: Path = Field(description="MRC to write")
    keep: list[int] = Field(min_length=1, description="label values to keep (one value: a 0/1 mask)")
    binary: bool | None = Field(None, description="all kept values -> 1 (default: only for one value)")
    renumber: bool = Field(False, description="kept values -> 1..n in the order given")
    expand: float = Field(0, ge=0, description="grow the kept labels by this many voxels (CryoSiam: 1)")
    chunk_mb: float = Field(64, gt=0, description="MiB of slabs in flight", json_schema_extra={"expert": True})
    overwrite: bool = Field(False, description="replace an existing output")

    @field_validator("keep", mode="before")
    @classmethod
    def _one_value(cls, v: Any) -> Any:
        return [v] if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v

    @classmethod
    def from_cryosiam(
        cls, cfg: dict[str, Any], source: str | os.PathLike | None = None
    ) -> list[FilterLabelsConfig]:
        """One config per label file of a CryoSiam training YAML (as a dict).

        ``labels_folder_for_filtering/<name>`` → ``labels_folder/<name>`` keeping
        ``selected_labels``, with CryoSiam's actual behaviour: ``binary=True`` (also for a
        list) and ``expand=1``. ``file_extension``, ``train_files`` and ``val_files`` select the
        files.
        """
        selected = cfg.get("selected_labels")
        if selected is None or selected == []:
            raise InputError("missing in the CryoSiam config", path=source, field="selected_labels")
        keep = [selected] if np.isscalar(selected) else list(selected)
        return cryosiam_configs(
            cls,
            cfg,
            cfg.get("labels_folder_for_filtering"),
            cfg.get("labels_folder"),
            "labels_folder_for_filtering",
            source,
            lambda i, o: {"input": i, "output": o, "keep": keep, "binary": True, "expand": 1},
            output_field="labels_folder",
        )


def cryosiam_configs(
    cls: type[Config],
    cfg: dict[str, Any],
    inputs: str | os.PathLike | None,
    output_folder: str | os.PathLike | None,
    field: str,
    source: str | os.PathLike | None,
    make: Callable[[Path, Path], dict[str, Any]],
    output_field: str = "output_path",
) -> list:
    """Configs for the files a CryoSiam config selects: ``inputs`` (a folder, or one file) →
    ``output_folder/<same name>``; ``make(input, output)`` gives each config's fields."""
    if not inputs:
        raise InputError("missing in the CryoSiam config", path=source, field=field)
    if not output_folder:
        raise InputError("missing in the CryoSiam config", path=source, field=output_field)
    inputs = Path(inputs)
    if inputs.is_file():
        files = [inputs]
    else:
        from napari_cryolearn.prep.distance_job import cryosiam_files

        files = cryosiam_files(cfg, inputs, field, source)
    return [cls.from_dict(make(p, Path(output_folder) / p.name), source=source) for p in files]


def mapping_path(output: str | os.PathLike) -> Path:
    """``labels.mrc`` → ``labels.mrc.json``: the sidecar holding the mapping and class names."""
    return sidecar_path(output)


def read_label_mapping(path: str | os.PathLike) -> dict[int, int]:
    """The ``{old: new}`` mapping in a sidecar written by :func:`filter_labels_job`."""
    meta = json.loads(Path(path).read_text())
    return {int(k): int(v) for k, v in meta["label_mapping"].items()}


def _output_label_names(mapping: dict[int, int], names: dict[int, str]) -> dict[int, str]:
    """Class names of the filtered volume: each new value named after the old classes it holds."""
    if not names:
        return {}
    out: dict[int, list[str]] = {0: [names.get(0, "background")]}
    for old, new in mapping.items():
        if new:
            out.setdefault(new, []).append(names.get(old, str(old)))
    return {new: "+".join(parts) for new, parts in sorted(out.items())}


def filter_labels_job(
    config: FilterLabelsConfig, stop: StopFlag | None = None
) -> Generator[Progress, None, JobResult]:
    """Filter ``config.input`` into ``config.output``.

    Returns a :class:`JobResult`: output ``output``, metric ``found`` (voxels of each kept
    input value in the input, before any expansion); a stopped job returns ``JobResult(stopped=True)`` and leaves no file.

    Yields a :class:`Progress` per slab (stage ``"filter-labels"``). Warns (``UserWarning``,
    naming the file) when a kept value does not occur; when none occurs, the all-zero output is
    not written (:class:`InputError`).

    Raises
    ------
    InputError
        Missing/unreadable input, not 3D, labels that are not whole numbers (found while
        streaming: the partial output is removed), a bad ``keep`` list, output values beyond
        uint16, output equal to the input or existing without ``overwrite``.
    """
    cfg = config
    vol = read_mrc_3d(cfg.input, what="label volume", dtype_error="labels must be integers")
    data = vol.data
    mapping = label_mapping(cfg.keep, binary=cfg.binary, renumber=cfg.renumber)
    top = max(mapping.values())
    if top > np.iinfo(np.uint16).max:
        raise InputError(
            f"label {top} does not fit the largest MRC integer type (uint16); use renumber or binary",
            path=cfg.input,
            field="keep",
        )
    dtype = smallest_unsigned_dtype(top)
    check_output(cfg.input, cfg.output, cfg.overwrite, suffixes=MRC_SUFFIXES, what="an MRC label volume")

    halo = math.ceil(cfg.expand) if cfg.expand > 0 else 0
    binary_out = top <= 1
    per_voxel = data.dtype.itemsize + dtype.itemsize
    if halo:
        per_voxel += 8 if binary_out else 40  # edt (binary) / skimage's distances and indices
    threads = default_threads()
    plane = math.prod(data.shape[1:])
    rows = max(1, int(cfg.chunk_mb * 2**20 / threads) // (plane * per_voxel))
    bounds = slab_bounds(data.shape[0], rows)
    counts = np.zeros(len(mapping), dtype=np.int64)
    name = Path(cfg.output).name

    def work(z: tuple[int, int]) -> np.ndarray:
        z0, z1 = z
        a, b = max(0, z0 - halo), min(data.shape[0], z1 + halo)
        view = data[a:b]
        block = np.asarray(view).astype(data.dtype.newbyteorder("="), copy=False)
        release_pages(view)
        try:
            check_integer_labels(block)
        except InputError as err:
            raise InputError(str(err), path=cfg.input, field="labels") from None
        mapped = np.empty(block.shape, dtype=dtype)
        core = slice(z0 - a, z1 - a)  # the halo rows are another slab's: count only the core
        found = apply_label_mapping(block[core], mapping, mapped[core])
        for rows in (slice(0, core.start), slice(core.stop, None)):
            apply_label_mapping(block[rows], mapping, mapped[rows])
        if halo:
            expand_labels(mapped, cfg.expand)
        dst = out[z0:z1]
        dst[...] = mapped[z0 - a : z0 - a + (z1 - z0)]
        release_pages(dst)
        return found

    try:
        with create_mrc(cfg.output, data.shape, dtype, voxel_size=vol.voxel_size, origin=vol.origin) as out:
            chunks = ordered_map(work, bounds, threads)
            try:
                for i, found in enumerate(chunks):
                    counts += found
                    if check_stop(stop):
                        raise JobStopped
                    yield Progress(i + 1, len(bounds) + 1, f"writing {name}", stage=STAGE)
            finally:
                chunks.close()
            if not counts.any():  # leaving the block by an error removes the all-zero output
                raise InputError(f"none of the kept values ({', '.join(map(str, mapping))}) occurs in the "
                                 "labels; nothing written", path=cfg.input, field="keep")
    except JobStopped:
        return JobResult(stopped=True)
    names = _output_label_names(mapping, label_names_from(read_sidecar(cfg.input)))
    write_sidecar(cfg.output, {
        "label_mapping": {str(k): v for k, v in mapping.items()},
        "label_names": {str(k): v for k, v in names.items()},
        "source": str(cfg.input),
    })
    warn_absent(mapping, counts, where=str(cfg.input))
    yield Progress(len(bounds) + 1, len(bounds) + 1, f"wrote {name}", stage=STAGE)
    return JobResult({"output": Path(cfg.output)}, metrics={"found": {old: int(n) for old, n in zip(mapping, counts)}})
