"""The picker's training job: mesh containers and protein positions in, a trained DiffusionNet out.

``config.data`` holds MemBrain-pick's layout, ``train/`` and ``val/``, each with ``<name>.h5``
mesh containers and their positions: ``<name>.star`` (MemBrain-pick's rule), else one STAR per
tomogram, ``<tomogram stem>.star``, whose positions go to the membrane they lie on. A position
farther than ``max_distance`` from every membrane is reported and left out; a membrane with an
empty STAR has no protein (every target is the clip distance). Coordinates are voxels of the
tomogram (``coordinates: angstrom`` for Å); ``position_classes`` keeps the rows of those
``rlnClassNumber`` values.

Everything is read and checked before the run folder is touched: each container (normal
profiles long enough for the network's window, a voxel size), each STAR file (coordinates,
the class column when filtering). Then every mesh is cut into partitions whose operators are
computed, or loaded from the cache (``cache_dir``, keyed by content: a second run computes
none), and the run trains on the engine's harness (run folder, ``model/model_best.ckpt``,
``model/top-epoch=*.ckpt``, ``model/last.ckpt``, resume, stop, progress).
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import check_stop
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.engine.training import RunFolder, TrainResult, check_log_dir, fit, resume_checkpoint, start_weights
from napari_cryolearn.picking.config import PickTrainConfig, default_cache_dir

STAGE = "pick.train"
#: The run folder's record of the meshes and positions it trained on.
DATA_FILE = "training_data.json"


@dataclass
class LoadedMesh:
    """A mesh container with what training needs of it (z, y, x voxels)."""

    path: Path
    verts: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    profiles: np.ndarray
    voxel_size: float
    profile_step: float | None
    tomo_file: str | None = None
    label: int | None = None
    positions: np.ndarray | None = None
    star: Path | None = None


def mesh_stem(path: Path) -> str:
    return path.name[:-3] if path.name.lower().endswith(".h5") else path.stem


def tomogram_stem(mesh: Path, tomo_file: str | None) -> list[str]:
    """Names a per-tomogram STAR of ``mesh`` may have: its tomogram's stem, and the mesh's name
    without the ``_<k>`` membrane number (``pick meshes`` names meshes ``<tomogram stem>_<k>``)."""
    names = []
    if tomo_file:
        names.append(Path(str(tomo_file).replace("\\", "/")).name.split(".")[0])
    stem = mesh_stem(mesh)
    head, _, tail = stem.rpartition("_")
    if head and tail.isdigit():
        names.append(head)
    return list(dict.fromkeys(n for n in names if n))


def load_mesh(path: Path, *, window: int, pixel_size: float | None) -> LoadedMesh:
    """Read a container for training or prediction; :class:`InputError` naming the file when it
    lacks profiles, has profiles shorter than ``window``, or records no voxel size and
    ``pixel_size`` is not given."""
    from napari_cryolearn.io.mesh_container import read_mesh_container
    from napari_cryolearn.picking.meshes import vertex_normals

    c = read_mesh_container(path)
    if c.normal_values is None:
        raise InputError("holds no normal_values (tomogram profiles): it is a prediction output, not a mesh "
                         "made by pick meshes or MemBrain-pick's convert_file", path=path)
    length = int(c.normal_values.shape[1])
    if length < window:
        raise InputError(f"its profiles have {length} samples; the picker reads {window} (a model for another "
                         f"profile length: remake the meshes with --profile-samples {window + 4}, or train one "
                         f"with --profile-window {length})", path=path, field="profile_window")
    voxel = c.voxel_size if c.voxel_size else pixel_size
    if not voxel:
        raise InputError("records no voxel size (MemBrain-pick's containers do not): give --pixel-size, Å per "
                         "voxel of its tomogram", path=path, field="pixel_size")
    verts, faces = c.verts_zyx(), c.faces_zyx()
    normals = c.normals_zyx()
    if normals is None:
        normals = vertex_normals(verts, faces)
    return LoadedMesh(Path(path), verts, faces, normals, np.asarray(c.normal_values, np.float32), float(voxel),
                      c.profile_step, c.tomo_file, c.label)


def read_positions(star: Path, *, voxel_size: float, coordinates: str, classes: list[int] | None) -> np.ndarray:
    """(M, 3) z, y, x voxels of a STAR file's positions (``classes``: keep those rlnClassNumber)."""
    from napari_cryolearn.io.star import read_star

    points = read_star(star, require_z=True)
    coords = np.asarray(points.coords, np.float64)
    if coordinates == "angstrom":
        coords = coords / voxel_size
    if classes is not None and len(coords):
        if "rlnClassNumber" not in points.features.columns:
            raise InputError("has no rlnClassNumber column to keep position_classes by", path=star,
                             field="position_classes")
        keep = np.isin(points.features["rlnClassNumber"].to_numpy(), list(classes))
        coords = coords[keep]
    return coords


def load_folder(folder: Path, config: PickTrainConfig, field: str) -> tuple[list[LoadedMesh], list[str]]:
    """Every container of ``folder`` with its positions; returns the meshes and notes on the
    positions left out (farther than ``max_distance`` from every membrane)."""
    from napari_cryolearn.picking.targets import assign_positions

    paths = sorted(p for p in folder.glob("*.h5") if p.is_file())
    if not paths:
        raise InputError("holds no mesh container (.h5); make them with cryolearn pick meshes", path=folder,
                         field=field)
    meshes = [load_mesh(p, window=config.network.profile_window, pixel_size=config.pixel_size) for p in paths]
    groups: dict[Path, list[LoadedMesh]] = {}
    for m in meshes:
        own = folder / f"{mesh_stem(m.path)}.star"
        if own.is_file():
            groups.setdefault(own, []).append(m)
            continue
        names = tomogram_stem(m.path, m.tomo_file)
        found = [folder / f"{n}.star" for n in names if (folder / f"{n}.star").is_file()]
        if not found:
            wanted = ", ".join(f"{n}.star" for n in [mesh_stem(m.path), *names])
            raise InputError(f"has no protein positions: expected {wanted} beside it (an empty STAR for a "
                             "membrane without proteins)", path=m.path, field=field)
        groups.setdefault(found[0], []).append(m)
    notes = []
    for star, group in groups.items():
        sizes = {round(m.voxel_size, 6) for m in group}
        if len(sizes) > 1:
            raise InputError(f"its meshes have different voxel sizes {sorted(sizes)}", path=star, field=field)
        coords = read_positions(star, voxel_size=group[0].voxel_size, coordinates=config.coordinates,
                                classes=config.position_classes)
        a = assign_positions(coords, [m.verts for m in group], voxel_size=group[0].voxel_size,
                             max_distance=config.max_distance)
        for i, m in enumerate(group):
            m.positions, m.star = coords[a.positions_of(i)], star
        if len(a.far):
            notes.append(f"{star.name}: {len(a.far)} of {len(coords)} positions lie farther than "
                         f"{config.max_distance:g} Å from every membrane and are left out")
    return meshes, notes


def _split_folders(config: PickTrainConfig) -> tuple[Path, Path | None]:
    data = Path(config.data)
    if not data.is_dir():
        raise InputError("not a folder (expected train/ and val/ of mesh containers and STAR files)", path=data,
                         field="data")
    train = data / "train"
    if train.is_dir():
        val = data / "val"
        return train, val if val.is_dir() and any(val.glob("*.h5")) else None
    return data, None


def pick_train_job(config: PickTrainConfig, stop: StopFlag | None = None) -> Generator[Progress, None, TrainResult]:
    """Train the picker (see the module docstring). Returns a :class:`TrainResult` (outputs
    ``log_dir``, ``model``, ``last``; metrics ``epochs``, ``train_loss``, ``val_loss``,
    ``val_mae_A``)."""
    import torch
    from torch.utils.data import DataLoader

    from napari_cryolearn.picking.module import PartitionDataset, PickerModule, first
    from napari_cryolearn.picking.training_data import mesh_targets, partition_items

    train_dir, val_dir = _split_folders(config)
    check_log_dir(config.log_dir, [config.data], what="data folder")
    folder = RunFolder(config, inputs=[config.data], files=(DATA_FILE,))
    folder.check()
    resume = resume_checkpoint(config)
    pretrained = start_weights(config, resume)
    yield Progress(0, None, f"reading the meshes and positions in {config.data}", STAGE)
    train, notes = load_folder(train_dir, config, "data")
    val, val_notes = load_folder(val_dir, config, "data") if val_dir is not None else ([], [])
    for note in notes + val_notes:
        yield Progress(0, None, note, STAGE)
    steps = {round(m.profile_step, 6) for m in train + val if m.profile_step}
    if len(steps) > 1:
        raise InputError(f"the meshes' profiles were sampled with different steps {sorted(steps)} Å; remake them "
                         "with one --profile-step", path=config.data, field="data")
    torch.manual_seed(config.seed)
    module = PickerModule(config.to_dict(), profile_step=steps.pop() if steps else None)
    if pretrained is not None:
        from napari_cryolearn.picking.predict_job import load_picker_state

        load_picker_state(module.net, pretrained, config.network)
    if resume is not None:
        from napari_cryolearn.picking.predict_job import check_picker_checkpoint

        check_picker_checkpoint(resume, module.net, require_training_state=True)

    cache = Path(config.cache_dir) if config.cache_dir is not None else default_cache_dir()
    items = {"train": [], "val": []}
    total = len(train) + len(val)
    for n, (split, m) in enumerate([("train", m) for m in train] + [("val", m) for m in val], start=1):
        target = mesh_targets(m.verts, m.normals, m.positions, voxel_size=m.voxel_size, clip=config.clip)
        items[split] += partition_items(n - 1, m.verts, m.faces, m.normals, m.profiles, target,
                                        size=config.network.partition_size, k=config.network.eigenpairs,
                                        cache_dir=cache)
        yield Progress(n, total, f"operators of {m.path.name} ({len(m.verts)} vertices)", STAGE)
        if check_stop(stop):
            return TrainResult(outputs={}, stopped=True)
    window = config.network.profile_window
    train_ds = PartitionDataset(items["train"], window=window, train=True, augment=config.augment, seed=config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(train_ds, batch_size=1, shuffle=True, collate_fn=first, generator=generator,
                              num_workers=config.num_workers)
    val_loader = None
    if items["val"]:
        val_loader = DataLoader(PartitionDataset(items["val"], window=window, train=False), batch_size=1,
                                collate_fn=first, num_workers=config.num_workers)
    record = {split: [{"mesh": str(m.path), "positions": str(m.star), "proteins": int(len(m.positions)),
                       "vertices": int(len(m.verts))} for m in meshes]
              for split, meshes in (("train", train), ("val", val))}
    yield Progress(0, None, f"{len(items['train'])} training and {len(items['val'])} validation partitions of "
                   f"{len(train)} and {len(val)} membranes", STAGE)
    monitor = ("val_loss", "min") if val_loader is not None else ("train_loss", "min")
    return (yield from fit(
        module, train_loader, val_loader, config, folder, stage=STAGE, monitor=monitor,
        shown=("train_loss", "val_loss", "val_mae_A"), files={DATA_FILE: json.dumps(record, indent=1)},
        resume=resume, stop=stop, keep_best=config.keep_best if val_loader is not None else 1,
        accumulate_grad_batches=config.batch_size,
    ))
