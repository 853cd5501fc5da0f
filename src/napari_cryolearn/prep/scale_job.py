"""The scaling job: a tomogram MRC in, an inverted (optionally), clipped, [0, 1] float32 MRC out.

The volume streams through in slabs along z: read from a memory map one slab at a time (the
pages read are released after each slab), scaled in float32, written into the output file
created by :func:`napari_cryolearn.io.create_mrc`. Percentiles take two reading passes (see
:mod:`napari_cryolearn.prep.scaling`), the scaling one more. Memory stays at a few slabs:
with ``chunk_mb`` of slabs in flight, about ``2 × chunk_mb`` plus the interpreter (measured:
~290 MiB for a 1 GiB tomogram with the default 64). Whatever ``create_mrc`` needs to finish
the file (it computes the header statistics from the written data) comes on top.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from napari_cryolearn.engine.config import Config
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import JobResult, JobStopped, check_stop, relay
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.io.mrc import MRC_SUFFIXES, create_mrc, read_mrc_3d
from napari_cryolearn.engine.outputs import check_output
from napari_cryolearn.prep.filter_job import cryosiam_configs
from napari_cryolearn.prep.scaling import (
    SlabReader,
    check_range,
    default_threads,
    ordered_map,
    percentiles,
    release_pages,
    scale_chunk,
    streamed_percentiles,
)

__all__ = ["ScaleConfig", "scale_job"]

STAGE = "scale"


class ScaleConfig(Config):
    """Parameters of the scaling stage (``cryolearn prep scale``).

    Attributes
    ----------
    input:
        Tomogram MRC (float or integer).
    output:
        MRC to write (float32, the input's voxel size and origin).
    invert:
        Multiply by −1 first (dense = bright), as CryoSiam's ``--invert``.
    lower_percentile, upper_percentile:
        Percentiles (0..100) mapped to 0 and 1, computed after inversion. ``None`` for both
        (or 0 and ``None``/100) gives a plain min/max rescale.
    clip:
        Clip to [0, 1]; False keeps values beyond the percentiles beyond [0, 1].
    method:
        How percentiles are found: ``auto`` (exact in memory for ≤ 2^20 voxels, streamed exact
        above), ``exact`` (the whole volume in memory once), ``histogram`` (streamed exact,
        bounded memory), ``sample`` (one pass, approximate).
    chunk_mb:
        MiB of input slabs in flight (shared among the threads; at least one z-slice each).
    overwrite:
        Replace an existing output.
    """

    input: Path = Field(description="tomogram MRC")
    output: Path = Field(description="scaled MRC to write (float32)")
    invert: bool = Field(False, description="multiply by -1 first (dense = bright)")
    lower_percentile: float | None = Field(0.1, ge=0, le=100, description="percentile mapped to 0")
    upper_percentile: float | None = Field(99.9, ge=0, le=100, description="percentile mapped to 1")
    clip: bool = Field(True, description="clip the result to [0, 1]")
    method: Literal["auto", "exact", "histogram", "sample"] = Field(
        "auto", description="how percentiles are found (histogram: streamed exact; sample: approximate)", json_schema_extra={"expert": True}
    )
    chunk_mb: float = Field(64, gt=0, description="MiB of slabs in flight", json_schema_extra={"expert": True})
    overwrite: bool = Field(False, description="replace an existing output")

    @model_validator(mode="after")
    def _check(self) -> ScaleConfig:
        lo = 0.0 if self.lower_percentile is None else self.lower_percentile
        hi = 100.0 if self.upper_percentile is None else self.upper_percentile
        if lo >= hi:
            raise ValueError(f"lower_percentile ({lo}) must be below upper_percentile ({hi})")
        return self

    @classmethod
    def from_cryosiam(
        cls,
        cfg: dict[str, Any],
        input: str | os.PathLike | None = None,
        output: str | os.PathLike | None = None,
        invert: bool | None = None,
        lower_percentile: float | None = None,
        upper_percentile: float | None = None,
        source: str | os.PathLike | None = None,
    ) -> list[ScaleConfig]:
        """One config per tomogram, from CryoSiam's settings (a dict).

        CryoSiam scales with ``invert_and_scale_intensity.py`` and its flags, not with the
        training YAML; both are read. The script's keys, when present: ``input_path`` (a file
        or a folder), ``output_path``, ``invert``, ``lower_end_percentage``,
        ``upper_end_percentage``. The arguments, when given, take precedence (``input`` a file
        or folder of raw tomograms, ``output`` a folder). Without an output folder the training
        YAML's ``data_folder`` is used (the folder its later steps read). ``file_extension``,
        ``train_files`` and ``val_files`` select the files.

        Percentiles: CryoSiam skips scaling entirely when ``lower_end_percentage`` is 0 or
        missing while the script's keys are given; this returns an empty list then. When no
        percentile is given anywhere, CryoSiam's recommended 0.1 and 99.9 are used. A missing
        upper percentage means the maximum.
        """
        script_keys = {"input_path", "output_path", "lower_end_percentage", "upper_end_percentage"}
        lower = lower_percentile if lower_percentile is not None else cfg.get("lower_end_percentage")
        upper = upper_percentile if upper_percentile is not None else cfg.get("upper_end_percentage")
        if lower is None and not (script_keys & set(cfg)):
            lower, upper = 0.1, 99.9 if upper is None else upper
        if not lower:
            return []
        inv = bool(cfg.get("invert", False)) if invert is None else bool(invert)
        return cryosiam_configs(
            cls,
            cfg,
            input or cfg.get("input_path"),
            output or cfg.get("output_path") or cfg.get("data_folder"),
            "input_path",
            source,
            lambda i, o: {
                "input": i,
                "output": o,
                "invert": inv,
                "lower_percentile": float(lower),
                "upper_percentile": None if upper is None else float(upper),
            },
        )


def scale_job(config: ScaleConfig, stop: StopFlag | None = None) -> Generator[Progress, None, JobResult]:
    """Scale ``config.input`` into ``config.output``.

    Returns a :class:`JobResult`: output ``output``, metrics ``lower`` and ``upper`` (the
    intensities mapped to 0 and 1, of the inverted volume when ``invert``); a stopped job
    returns ``JobResult(stopped=True)`` and leaves no file.

    Yields a :class:`Progress` per slab and pass (stage ``"scale"``). Everything is checked
    (file, dtype, NaN/inf values, a constant volume) before the output is created; a stop
    request or an error leaves no output.

    Raises
    ------
    InputError
        Missing or unreadable input, not 3D, not real-valued, NaN or infinite values (the
        message names the file), a volume constant between the percentiles, output equal to the
        input or existing without ``overwrite``.
    """
    cfg = config
    vol = read_mrc_3d(cfg.input)
    data = vol.data
    check_output(cfg.input, cfg.output, cfg.overwrite, suffixes=MRC_SUFFIXES, what="an MRC volume")

    threads = default_threads()
    slab_bytes = int(cfg.chunk_mb * 2**20 / threads)
    reader = SlabReader(data, chunk_bytes=slab_bytes)
    k = len(reader)
    method = cfg.method
    if method == "auto":
        method = "exact" if data.size <= 2**20 else "histogram"
    total = 3 * k
    step = 0
    name = Path(cfg.input).name

    try:
        if method == "exact":
            p_lo, p_hi = percentiles(data, cfg.lower_percentile, cfg.upper_percentile, method="exact", invert=cfg.invert)
            total = k
        else:
            last = Progress(0)

            def event(e: Progress) -> Progress:
                nonlocal last
                last = e
                return Progress(e.step, e.total + k, f"{e.message}: reading {name} for percentiles", stage=STAGE)

            steps = streamed_percentiles(reader, cfg.lower_percentile, cfg.upper_percentile, invert=cfg.invert,
                                         method=method, threads=threads)
            p_lo, p_hi = yield from relay(steps, stop=stop, event=event)
            step = last.step
        check_range(p_lo, p_hi)
    except JobStopped:
        return JobResult(stopped=True)
    except ValueError as err:
        if isinstance(err, InputError):
            raise
        raise InputError(str(err), path=cfg.input, field="data") from None
    total = step + k

    def work(i: int) -> None:
        z0, z1 = reader.bounds[i]
        dst = out[z0:z1]
        scale_chunk(reader.read(i), dst, p_lo, p_hi, cfg.invert, cfg.clip)
        release_pages(dst)

    metrics = {"p_lo": p_lo, "p_hi": p_hi}
    try:
        with create_mrc(
            cfg.output, data.shape, np.float32, voxel_size=vol.voxel_size, origin=vol.origin, overwrite=True
        ) as out:
            chunks = ordered_map(work, range(k), threads)
            try:
                for _ in chunks:
                    step += 1
                    if check_stop(stop):
                        raise JobStopped
                    yield Progress(step, total, f"writing {Path(cfg.output).name}", stage=STAGE, metrics=metrics)
            finally:
                chunks.close()  # no thread may write into the file once it is closed
    except JobStopped:
        return JobResult(stopped=True)
    yield Progress(total, total, f"wrote {Path(cfg.output).name}", stage=STAGE, metrics=metrics)
    return JobResult({"output": Path(cfg.output)}, metrics={"lower": p_lo, "upper": p_hi})
