"""The sample-data job: write the synthetic tomogram, its labels, coordinates and micrographs."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from napari_cryolearn.engine.atomic import atomic_path
from napari_cryolearn.engine.config import EXPERT, Config
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import JobResult, check_stop
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.io import write_mrc, write_star
from napari_cryolearn.io.sidecar import write_sidecar

#: File names inside the output folder, by role.
SAMPLE_FILES = {
    "tomogram": "tomogram.mrc",
    "labels": "labels.mrc",
    "proteins": "proteins.star",
    "particles": "particles.star",
    "micrographs": "micrographs.mrcs",
    "micrograph_kinds": "micrographs.csv",
    "scan4d": "scan4d.npy",
    "scan4d_phases": "scan4d_phases.npy",
}


class SampleConfig(Config):
    """What ``cryolearn sample`` writes.

    ``shape`` is (Z, Y, X) in voxels, ``voxel_size`` in Angstrom; ``n_micrographs`` 2D images of
    ``micrograph_size``² pixels; a ``scan_size``² 4D-STEM scan (``scan4d.npy``, counts, with its
    phase map ``scan4d_phases.npy``: 0 vacuum, 1 amorphous, 2… crystal phases). Set
    ``n_micrographs`` or ``scan_size`` to 0 to skip them.
    """

    output: Path = Field(description="folder that receives the sample files")
    shape: tuple[int, int, int] = Field((96, 128, 128), description="(Z, Y, X) voxels of the tomogram")
    voxel_size: float = Field(10.0, gt=0, description="Angstrom per voxel")
    seed: int = Field(0, description="random seed: the same seed gives the same data", json_schema_extra=EXPERT)
    n_micrographs: int = Field(32, ge=0, description="number of 2D micrographs (0: none)")
    micrograph_size: int = Field(64, ge=16, le=4096, description="micrograph side, pixels", json_schema_extra=EXPERT)
    scan_size: int = Field(32, ge=0, le=512, description="scan positions per side of a 4D-STEM scan of crystal "
                           "grains (32 × 32 pixel diffraction patterns; 0: none)", json_schema_extra=EXPERT)
    overwrite: bool = Field(False, description="replace sample files already in the folder")

    @field_validator("shape")
    @classmethod
    def _shape(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(value) < 8:
            raise ValueError(f"every side must be at least 8 voxels, got {value}")
        return value


#: Bytes of memory the generator needs per voxel (float32 volume, labels, work arrays).
_BYTES_PER_VOXEL = 24


def _check(config: SampleConfig) -> None:
    """Refuse, before generating anything: an output that is a file, sample files already there
    (without overwrite), a volume that needs more memory than is available."""
    out = Path(config.output)
    if out.exists() and not out.is_dir():
        raise InputError("is a file; expected a folder for the sample data", path=out, field="output")
    names = list(SAMPLE_FILES.values()) + [f"{SAMPLE_FILES['labels']}.json"]
    present = [n for n in names if (out / n).exists()]
    if present and not config.overwrite:
        raise InputError(f"already holds sample files ({', '.join(present)}); set overwrite to replace them"
                         " or choose another folder", path=out, field="output")
    voxels = int(np.prod(config.shape, dtype=np.int64))
    need = voxels * _BYTES_PER_VOXEL
    have = _available_memory()
    if need > have:
        raise InputError(f"a {'×'.join(map(str, config.shape))} volume needs about {need / 2**30:.1f} GiB of memory"
                         f" to generate; {have / 2**30:.1f} GiB are available: choose a smaller shape", field="shape")


def _available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def sample_job(config: SampleConfig, stop: StopFlag | None = None) -> Generator[Progress, None, JobResult]:
    """Generate the sample data and write it into ``config.output``.

    Yields progress per file; returns a :class:`JobResult` whose outputs are the files written
    by role (see :data:`SAMPLE_FILES`). Every file is written atomically; a stop between files
    leaves the files already complete, listed in a result marked ``stopped``.
    """
    import pandas as pd  # here, not at the top: `cryolearn sample --help` needs only SampleConfig

    from napari_cryolearn.sample import make_micrographs, make_synthetic_tomogram

    _check(config)
    out = Path(config.output)
    total = 4 + bool(config.n_micrographs) + bool(config.scan_size)
    yield Progress(0, total, "generating the synthetic tomogram", stage="sample")
    tomo = make_synthetic_tomogram(shape=tuple(config.shape), voxel_size=config.voxel_size, seed=config.seed)
    vs = (config.voxel_size,) * 3
    written: dict[str, Path] = {}

    written["tomogram"] = write_mrc(out / SAMPLE_FILES["tomogram"], tomo.volume, voxel_size=vs)
    yield Progress(1, total, f"wrote {written['tomogram']}", stage="sample")
    if check_stop(stop):
        return JobResult(written, stopped=True)

    written["labels"] = write_mrc(out / SAMPLE_FILES["labels"], tomo.labels, voxel_size=vs)
    write_sidecar(
        written["labels"],
        {"label_names": tomo.label_names, "source": "napari-cryolearn synthetic sample", "seed": config.seed},
    )
    yield Progress(2, total, f"wrote {written['labels']}", stage="sample")
    if check_stop(stop):
        return JobResult(written, stopped=True)

    normals = np.asarray(tomo.protein_normals, dtype=float).reshape(-1, 3)
    proteins = pd.DataFrame(
        {
            "rlnClassNumber": np.full(len(tomo.protein_coords), 2, dtype=int),
            "cryolearnNormalZ": normals[:, 0],
            "cryolearnNormalY": normals[:, 1],
            "cryolearnNormalX": normals[:, 2],
        }
    )
    written["proteins"] = write_star(
        out / SAMPLE_FILES["proteins"], tomo.protein_coords, features=proteins, pixel_size=config.voxel_size
    )
    particles = pd.DataFrame({"rlnClassNumber": np.full(len(tomo.particle_coords), 3, dtype=int)})
    written["particles"] = write_star(
        out / SAMPLE_FILES["particles"], tomo.particle_coords, features=particles, pixel_size=config.voxel_size
    )
    yield Progress(3, total, f"wrote {written['proteins']} and {written['particles']}", stage="sample")
    if check_stop(stop):
        return JobResult(written, stopped=True)

    if config.n_micrographs:
        stack = make_micrographs(
            n=config.n_micrographs, size=config.micrograph_size, pixel_size=config.voxel_size, seed=config.seed
        )
        written["micrographs"] = write_mrc(
            out / SAMPLE_FILES["micrographs"], stack.images, voxel_size=(1.0, stack.pixel_size, stack.pixel_size)
        )
        kinds = pd.DataFrame({"index": np.arange(len(stack.kinds)), "kind": [stack.kind_names[k] for k in stack.kinds]})
        with atomic_path(out / SAMPLE_FILES["micrograph_kinds"]) as tmp:
            kinds.to_csv(tmp, index=False)
        written["micrograph_kinds"] = out / SAMPLE_FILES["micrograph_kinds"]
        yield Progress(4, total, f"wrote {written['micrographs']}", stage="sample")
    if config.scan_size:
        if check_stop(stop):
            return JobResult(written, stopped=True)
        from napari_cryolearn.sample.stem4d import make_4dstem_scan

        scan = make_4dstem_scan((config.scan_size, config.scan_size), (32, 32), seed=config.seed)
        for role, array in (("scan4d", scan.data), ("scan4d_phases", scan.phase.astype(np.int32))):
            with atomic_path(out / SAMPLE_FILES[role]) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, array)
            written[role] = out / SAMPLE_FILES[role]
        yield Progress(total - 1, total, f"wrote {written['scan4d']}", stage="sample")

    yield Progress(total, total, f"sample data in {out}", stage="sample")
    return JobResult(written, metrics={"membrane proteins": len(tomo.protein_coords),
                                       "particles": len(tomo.particle_coords)})

