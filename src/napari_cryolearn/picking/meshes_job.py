"""The membrane-mesh job: a membrane segmentation and its tomogram in, one mesh container per
membrane out.

Every 26-connected membrane (label values ``classes``) of at least ``min_voxels`` voxels becomes
a surface mesh (marching cubes, smoothing, about one vertex per ``vertex_area`` Å²) with
consistently oriented vertex normals, and the tomogram is sampled along each normal
(``profile_samples`` values ``profile_step`` Å apart, cubic interpolation): the per-vertex
features of the picker. Each membrane is written to ``output_dir/<tomogram stem>_<k>.h5``
(k = 1, 2, ... by size, largest first) in MemBrain-pick's layout
(:mod:`napari_cryolearn.io.mesh_container`), so their tools read ours and ours theirs. Given
``positions`` (a STAR file of the tomogram's proteins), they are also written as
``output_dir/<tomogram stem>.star``, which makes the folder training data for ``pick train``. The voxel
size comes from the tomogram's MRC header. Everything is checked, and every mesh made, before
the first file is written; each file is written atomically.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import numpy as np
from pydantic import Field

from napari_cryolearn.engine.config import EXPERT, Config
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import JobResult, check_stop
from napari_cryolearn.engine.progress import Progress

STAGE = "pick.meshes"
#: Fewest faces a membrane's mesh must have to be written.
_MIN_FACES = 4


class MeshesConfig(Config):
    """Meshes of the membranes of a segmentation (see the module docstring)."""

    segmentation: Path = Field(description="label MRC of the membranes (e.g. what segment predict writes)")
    tomogram: Path = Field(description="the tomogram MRC the segmentation belongs to (sampled along the normals)")
    output_dir: Path = Field(description="folder for the mesh containers, <tomogram stem>_<k>.h5")
    classes: list[int] = Field([1], min_length=1, description="label values that are membrane")
    min_voxels: int = Field(10_000, ge=1, description="smallest membrane meshed, in voxels")
    vertex_area: float = Field(400.0, gt=0, description="surface per mesh vertex, Å²")
    profile_samples: int = Field(20, ge=2, description="tomogram values sampled along each vertex normal", json_schema_extra=EXPERT)
    profile_step: float = Field(2.5, gt=0, description="distance between the samples along the normal, Å", json_schema_extra=EXPERT)
    positions: Path | None = Field(None, description="STAR file of the tomogram's protein positions (voxels): "
                                   "also written to output_dir/<tomogram stem>.star, so the folder is training data "
                                   "for pick train")
    obj: bool = Field(False, description="also write each mesh as <name>.obj (vertices in voxels) for other viewers, "
                      "as MemBrain-pick does", json_schema_extra=EXPERT)
    overwrite: bool = Field(False, description="replace existing containers of this tomogram in output_dir")


def mesh_paths(config: MeshesConfig, count: int) -> list[Path]:
    """The containers of ``count`` membranes: ``output_dir/<tomogram stem>_<k>.h5``."""
    stem = Path(config.tomogram).name.split(".")[0]
    return [Path(config.output_dir) / f"{stem}_{k}.h5" for k in range(1, count + 1)]


def positions_path(config: MeshesConfig) -> Path:
    """Where ``positions`` are written: ``output_dir/<tomogram stem>.star``."""
    return Path(config.output_dir) / f"{Path(config.tomogram).name.split('.')[0]}.star"


def _validate(config: MeshesConfig):
    from napari_cryolearn.io.mrc import read_mrc

    seg = read_mrc(config.segmentation, mmap=True)
    tomo = read_mrc(config.tomogram, mmap=True)
    if seg.data.ndim != 3 or tomo.data.ndim != 3:
        raise InputError(f"expected 3D volumes, got segmentation {seg.data.shape} and tomogram {tomo.data.shape}",
                         path=config.segmentation, field="segmentation")
    if seg.data.shape != tomo.data.shape:
        raise InputError(f"segmentation shape {seg.data.shape} differs from the tomogram's {tomo.data.shape}",
                         path=config.segmentation, field="segmentation")
    if Path(config.output_dir).exists() and not Path(config.output_dir).is_dir():
        raise InputError("is a file; expected a folder", path=config.output_dir, field="output_dir")
    return seg, tomo


def meshes_job(config: MeshesConfig, stop=None) -> Generator[Progress, None, JobResult]:
    """Mesh every membrane of ``config.segmentation`` and write one container each (see the module
    docstring). Returns a :class:`JobResult` with outputs ``mesh_1``, ``mesh_2``, ... and metrics
    ``membranes`` and ``vertices`` (per mesh)."""
    from napari_cryolearn.io.mesh_container import MeshContainer, write_mesh_container, write_mesh_obj
    from napari_cryolearn.picking.meshes import membrane_components, mesh_from_mask, normal_profiles, vertex_normals

    seg, tomo = _validate(config)
    voxel_size = float(tomo.voxel_size[0])
    labels = np.asarray(seg.data)
    membrane = np.isin(labels, list(config.classes))
    if not membrane.any():
        raise InputError(f"holds no voxel of the membrane classes {list(config.classes)}",
                         path=config.segmentation, field="classes")
    yield Progress(0, None, f"finding membranes in {Path(config.segmentation).name}", STAGE)
    components = membrane_components(labels, classes=tuple(config.classes), min_voxels=config.min_voxels)
    if not components:
        raise InputError(f"no membrane of at least {config.min_voxels} voxels (the membrane classes hold "
                         f"{int(membrane.sum())} voxels in all); lower min_voxels", path=config.segmentation,
                         field="min_voxels")
    paths = mesh_paths(config, len(components))
    points = None
    if config.positions is not None:
        from napari_cryolearn.engine.outputs import check_output
        from napari_cryolearn.io.star import read_star

        points = read_star(config.positions, require_z=True)
        check_output([config.positions, config.segmentation, config.tomogram], positions_path(config),
                     config.overwrite, field="positions")
    if not config.overwrite:
        taken = [p for p in paths if p.exists() or (config.obj and p.with_suffix(".obj").exists())]
        if taken:
            raise InputError(f"exists ({len(taken)} of the {len(paths)} containers); pass --overwrite to replace",
                             path=taken[0], field="output_dir")
    containers, skipped = [], []
    for k, component in enumerate(components, start=1):
        verts, faces = mesh_from_mask(component.mask, voxel_size=voxel_size, vertex_area=config.vertex_area,
                                      offset=component.offset)
        if len(faces) < _MIN_FACES:  # a membrane thinner than the mesh's grid: nothing to sample
            skipped.append(component.voxels)
            yield Progress(k, len(components), f"membrane {k}/{len(components)} ({component.voxels} voxels) is too "
                           "thin to mesh at this vertex area: skipped", STAGE)
            continue
        normals = vertex_normals(verts, faces)
        profiles = normal_profiles(tomo.data, verts, normals, samples=config.profile_samples,
                                   step=config.profile_step, voxel_size=voxel_size)
        containers.append(MeshContainer.from_zyx(
            verts, faces, normals, profiles, tomo_file=str(Path(config.tomogram).resolve()),
            voxel_size=voxel_size, profile_step=config.profile_step, label=component.label))
        if check_stop(stop):
            return JobResult(stopped=True)
        yield Progress(k, len(components), f"membrane {k}/{len(components)}: {len(verts)} vertices", STAGE)
    if not containers:
        raise InputError(f"its {len(components)} membranes of at least {config.min_voxels} voxels are too thin to "
                         f"mesh at {config.vertex_area:g} Å² per vertex; lower vertex_area", path=config.segmentation,
                         field="vertex_area")
    paths = paths[:len(containers)]
    Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    for path, container in zip(paths, containers):
        write_mesh_container(path, container, overwrite=config.overwrite)
        if config.obj:
            write_mesh_obj(path.with_suffix(".obj"), container, overwrite=config.overwrite)
    outputs = {f"mesh_{k}": p for k, p in enumerate(paths, start=1)}
    if points is not None:
        from napari_cryolearn.io.star import write_star

        keep = [c for c in points.features.columns if c == "rlnClassNumber"]
        outputs["positions"] = write_star(positions_path(config), points.coords, points.features[keep],
                                          pixel_size=voxel_size, overwrite=config.overwrite)
    metrics = {"membranes": len(paths), "vertices": [len(c.points) for c in containers]}
    if skipped:
        metrics["skipped (too thin)"] = len(skipped)
    return JobResult(outputs, metrics=metrics)

