"""Segmentation training jobs: from patch stores (:func:`train_job`) or arrays (:func:`train_arrays_job`).

Both are generators of :class:`Progress` events (stage ``"segment.train"``) that return a
:class:`~napari_cryolearn.engine.training.TrainResult` (a :class:`JobResult`: outputs
``log_dir``, ``model`` (the best checkpoint), ``last``; metrics ``epochs`` and the last logged
metrics). They run on the engine's training harness (:mod:`napari_cryolearn.engine.training`:
run folder, resume, fit). Everything the user can get wrong is checked before anything is
written: stores (NaN or ±inf in any array included), labels against ``out_channels``,
distances, the pretrained checkpoint, the device, the run folder (one that holds a run
needs ``continue_training`` or ``overwrite``) and ``last.ckpt`` when continuing. A run
folder holds ``config.yaml``, ``train_val_split.json``, ``model/model_best.ckpt``,
``model/last.ckpt`` and the CSV and TensorBoard logs; one job at a time writes it (a lock,
held by global rank zero for the whole run). Setting the stop flag (or closing the
generator) finishes the current batch, writes ``model/last.ckpt`` and returns; continuing
from it resumes at the next batch, and ends where an uninterrupted run ends. A non-finite
loss stops training with :class:`~napari_cryolearn.engine.lightning.DivergedError`, keeping
the checkpoints written before it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.lightning import describe_device, resolve_accelerator
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.engine.training import (
    RunFolder,
    TrainResult,
    check_log_dir,
    fit,
    loader_position,
    resume_checkpoint,
    start_weights,
)
from napari_cryolearn.models.augment import build_eval_transform, build_train_transform
from napari_cryolearn.models.checkpoints import (
    backbone_config_from_checkpoint,
    check_resumable,
    detect_layout,
    load_weights,
    read_checkpoint,
)
from napari_cryolearn.segmentation.config import SegmentationTrainConfig, preset_words
from napari_cryolearn.segmentation.network import architecture_of, build_network
from napari_cryolearn.segmentation.data import (
    ArrayPatchSource,
    EpochSampler,
    ResumableLoader,
    SegmentationDataset,
    check_sources,
    collate,
    open_stores,
    split_items,
)
from napari_cryolearn.segmentation.module import SegmentationModule
from napari_cryolearn.segmentation.sources import is_cryosiam_folder, resolve_patch_stores

STAGE = "segment.train"


def train_job(config: SegmentationTrainConfig, stop: StopFlag | None = None) -> Generator[Progress, None, TrainResult]:
    """Train on the patch stores of ``config`` (see module docstring)."""
    if not config.patch_stores:
        raise InputError("no patch store given", field="patch_stores")
    check_log_dir(config.log_dir, [*config.patch_stores, *(config.val_stores or [])], what="patch store")
    folder = _run_folder(config)
    folder.check()
    try:
        yield Progress(0, None, "checking patch stores", STAGE)
        if any(is_cryosiam_folder(p) for p in config.patch_stores):
            folder.claim()  # the import writes into log_dir/patch_stores
            yield Progress(0, None, "importing CryoSiam patch folders", STAGE)
        train_paths, val_paths = resolve_patch_stores(config.patch_stores, config.val_stores, config.log_dir)
        train_sources = open_stores(train_paths, "patch_stores")
        val_sources = open_stores(val_paths, "val_stores") if val_paths else []
        sources = train_sources + val_sources
        folder.in_use = [*train_paths, *(val_paths or [])]
        if config.network.class_names is None:
            config = _with_store_class_names(config, sources)
        names = [str(p) for p in train_paths] + [str(p) for p in (val_paths or [])]
        train_items, val_items = split_items(
            [len(s) for s in train_sources],
            [len(s) for s in val_sources] if val_paths else None,
            config.validation_ratio,
            config.seed,
        )
        split = {"train": sorted({names[s] for s, _ in train_items}),
                 "val": sorted({names[s] for s, _ in val_items}),
                 "train_items": train_items, "val_items": val_items}
        return (yield from _train(config, sources, names, train_items, val_items, split, stop, folder,
                                  need_foreground=True))
    finally:
        folder.release()


#: The run folder's file of segmentation: the training and validation patches.
SPLIT_FILE = "train_val_split.json"
#: Stores imported from CryoSiam patch folders (in the run folder).
IMPORTED_STORES = "patch_stores"


def _with_store_class_names(config: SegmentationTrainConfig, stores: Sequence[Any]) -> SegmentationTrainConfig:
    """``config`` with the class names the patch stores carry (their labels' names), so that
    the model and its predictions name the classes; unchanged when no store names a class
    or two stores name one differently."""
    from napari_cryolearn.io.sidecar import label_names_from

    named: dict[int, str] = {}
    for store in stores:
        for value, name in label_names_from(dict(getattr(store, "attrs", {}) or {})).items():
            if named.setdefault(value, name) != name:
                return config
    n = config.network.out_channels
    if not any(0 < v < n for v in named):
        return config
    names = [named.get(i, "background" if i == 0 else f"class_{i}") for i in range(n)]
    return config.model_copy(update={"network": config.network.model_copy(update={"class_names": names})})


def _run_folder(config: SegmentationTrainConfig) -> RunFolder:
    inputs = [*(config.patch_stores or []), *(config.val_stores or [])]
    return RunFolder(config, inputs=inputs, files=(SPLIT_FILE,), clear_more=_clear_imported_stores)


def _clear_imported_stores(folder: RunFolder) -> list[Path]:
    """``overwrite``: remove the stores in ``patch_stores/`` this run does not use."""
    from napari_cryolearn.io.patch_store import is_patch_store

    removed = []
    stores = folder.path / IMPORTED_STORES
    if stores.is_dir() and not stores.is_symlink():
        used = {Path(p).resolve() for p in folder.in_use}
        for p in sorted(stores.iterdir()):
            if p.resolve() not in used and is_patch_store(p):
                shutil.rmtree(p)
                removed.append(p)
        if not any(stores.iterdir()):
            stores.rmdir()
    return removed


def train_arrays_job(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    config: SegmentationTrainConfig,
    *,
    distances: Sequence[np.ndarray] | None = None,
    val_images: Sequence[np.ndarray] | None = None,
    val_labels: Sequence[np.ndarray] | None = None,
    patch_size: Sequence[int] = (64, 64, 64),
    overlap: float = 0.5,
    stop: StopFlag | None = None,
) -> Generator[Progress, None, TrainResult]:
    """Train on in-memory volumes (the viewer's annotate → train loop).

    ``images``/``labels``: (Z, Y, X) volumes; unannotated voxels hold
    ``config.network.ignore_index``. Patches of ``patch_size`` (overlap fraction ``overlap``)
    with at least one annotated voxel are used; validation on ``val_images``/``val_labels``
    when given, else a ``validation_ratio`` of the patches. ``config.patch_stores`` is
    ignored.
    """
    ignore = config.network.ignore_index
    if all(not np.any(lab) for lab in labels):
        raise InputError(f"hold 0 (background) everywhere: paint the classes to learn (1, 2, ...) and leave "
                         f"what is not annotated at {ignore}", field="labels")
    src = ArrayPatchSource(images, labels, patch_size, overlap, distances, ignore)
    if len(src) == 0:
        raise InputError("no patch has any annotated voxel", field="labels")
    sources: list[Any] = [src]
    names = ["images"]
    if val_images is not None and val_labels is not None:
        sources.append(ArrayPatchSource(val_images, val_labels, patch_size, overlap, None, ignore))
        names.append("val_images")
        train_items, val_items = split_items([len(src)], [len(sources[1])], 0, config.seed)
    else:
        train_items, val_items = split_items([len(src)], None, config.validation_ratio, config.seed)
    split = {"train": names[:1], "val": names[1:], "train_items": train_items, "val_items": val_items}
    check_log_dir(config.log_dir)
    folder = _run_folder(config)
    folder.check()
    try:
        return (yield from _train(config, sources, names, train_items, val_items, split, stop, folder))
    finally:
        folder.release()


#: The NetworkConfig fields only the CryoSiam network has: given, ``architecture: auto`` takes it.
CRYOSIAM_FIELDS = frozenset({"backbone", "filters", "kernel_size", "padding"})

#: The fields of NetworkConfig that choose the network class and its layers, beside the backbone.
_ARCHITECTURE_FIELDS = ("architecture", "unet_channels", "unet_res_units")


def _architecture_from_checkpoint(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """``architecture`` and the U-Net fields of a checkpoint of ours (a checkpoint written before
    the field existed: ``cryosiam``); ``None`` for another layout (CryoSiam's)."""
    from napari_cryolearn.segmentation.config import NetworkConfig

    if detect_layout(ckpt["state_dict"]) != "ours":
        return None
    hp = ckpt.get("hyper_parameters") or {}
    net = ((hp.get("config") or {}).get("network") or {}) if isinstance(hp, dict) else {}
    net = net if isinstance(net, dict) else {}
    defaults = NetworkConfig.model_fields
    out = {k: net.get(k, defaults[k].default) for k in _ARCHITECTURE_FIELDS}
    out["unet_channels"] = tuple(out["unet_channels"])
    if out["architecture"] not in ("cryosiam", "unet"):  # no config, or one written before the field
        out["architecture"] = architecture_of(ckpt["state_dict"])
    return out


def _patch_shape(sources: Sequence[Any], items: Sequence[tuple[int, int]]) -> tuple[int, int, int]:
    s, i = items[0]
    return tuple(int(v) for v in np.asarray(sources[s][i]["image"]).shape)  # type: ignore[return-value]


def _train(
    config: SegmentationTrainConfig,
    sources: list[Any],
    names: list[str],
    train_items: list,
    val_items: list,
    split: dict,
    stop: StopFlag | None,
    folder: RunFolder,
    need_foreground: bool = False,
) -> Generator[Progress, None, TrainResult]:
    net_cfg = config.network
    accelerator = resolve_accelerator(config.device)
    check_log_dir(config.log_dir)
    if not train_items:
        raise InputError("no training patches after the validation split", field="validation_ratio")
    resume = resume_checkpoint(config)
    resume_ckpt = read_checkpoint(resume) if resume is not None else None
    pretrained = start_weights(config, resume)

    # the backbone architecture travels with a pretrained model, and with the run being continued
    pre_ckpt = read_checkpoint(pretrained) if pretrained is not None else None
    described = resume_ckpt if resume_ckpt is not None else pre_ckpt
    if described is not None:
        bb = backbone_config_from_checkpoint(described, resume or pretrained)
        if bb is not None and bb != net_cfg.backbone:
            config = config.model_copy(update={"network": net_cfg.model_copy(update={"backbone": bb})})
            net_cfg = config.network
        arch = _architecture_from_checkpoint(described)
        if arch is not None and arch != {k: getattr(net_cfg, k) for k in arch}:
            config = config.model_copy(update={"network": net_cfg.model_copy(update=arch)})
            net_cfg = config.network
        elif arch is None and net_cfg.architecture == "unet":
            raise InputError(f"a {detect_layout(described['state_dict'])} checkpoint fits architecture 'cryosiam' "
                             f"only, not {net_cfg.architecture!r}", path=resume or pretrained,
                             field="network.architecture")
        elif arch is None:
            net_cfg = net_cfg.model_copy(update={"architecture": "cryosiam"})
            config = config.model_copy(update={"network": net_cfg})
    if net_cfg.architecture == "auto":  # a new run: the fast network, unless the CryoSiam one's fields are given
        cryosiam = bool(net_cfg.model_fields_set & CRYOSIAM_FIELDS)
        net_cfg = net_cfg.model_copy(update={"architecture": "cryosiam" if cryosiam else "unet"})
        config = config.model_copy(update={"network": net_cfg})
    if config.pretrained_model is not None and net_cfg.architecture == "unet" and not net_cfg.unfreeze_backbone:
        raise InputError("architecture 'unet' trains as a whole: unfreeze_backbone must be true",
                         field="network.unfreeze_backbone")

    # patch stores of background only are a wrong file; a correction round in the viewer may paint only 0
    counts = np.zeros(net_cfg.out_channels, np.int64)
    present = check_sources(sources, names, net_cfg.out_channels, net_cfg.ignore_index,
                            net_cfg.distance_prediction, net_cfg.backbone.in_channels,
                            need_foreground=need_foreground, counts=counts)
    stored = _patch_shape(sources, train_items)
    config, preset = config.with_preset(accelerator, stored, multiple=build_network(config.network).size_divisor)
    if config.network.class_weights == "auto":  # the training labels' voxels (validation's too: a small bias)
        weights = config.network.resolved_class_weights(counts)
        config = config.model_copy(update={"network": config.network.model_copy(update={"class_weights": weights})})
        preset = {**preset, "network.class_weights": [round(w, 2) for w in weights]} if preset else preset
    net_cfg = config.network
    patch_shape = tuple(config.patch_size) if config.patch_size else stored
    torch.manual_seed(config.seed)  # same initial weights for the same config
    module = SegmentationModule(config.to_dict(), pretrained=config.pretrained_model is not None,
                                patch_shape=patch_shape)
    divisor = module.net.size_divisor
    if any(s % divisor for s in patch_shape):
        raise InputError(f"patch shape {patch_shape} must be a multiple of {divisor} along every axis "
                         "(set patch_size)", field="patch_size")
    loaded = None
    if pre_ckpt is not None:
        loaded = load_weights(module.net, pretrained, ckpt=pre_ckpt)
    if resume_ckpt is not None:
        check_resumable(resume_ckpt, module, resume, config.to_dict())
    device = describe_device(accelerator)
    yield Progress(0, None, f"{len(train_items)} training and {len(val_items)} validation patches, on "
                   f"{device}", STAGE,
                   {"train_patches": len(train_items), "val_patches": len(val_items), "device": device})
    if preset:
        yield Progress(0, None, f"{config.preset} preset: {preset_words(preset)} (set a field to choose it)",
                       STAGE, {"preset": config.preset})
    if loaded is not None:
        yield Progress(0, None, f"pretrained model {Path(pretrained).name} ({loaded.layout} layout): loaded "
                       f"{len(loaded.loaded)} tensors, skipped {len(loaded.skipped)}", STAGE,
                       {"pretrained_loaded": len(loaded.loaded), "pretrained_skipped": len(loaded.skipped)})
    if loaded is not None and loaded.skipped:
        yield Progress(0, None, f"pretrained model {Path(pretrained).name}: {len(loaded.skipped)} "
                       f"head tensors of another shape start untrained ({loaded.skipped[0]})", STAGE)

    dist = net_cfg.distance_prediction
    train_ds = SegmentationDataset(
        sources, train_items,
        build_train_transform(config.transforms, net_cfg.ignore_index, dist, config.patch_size),
        config.intensity, config.seed, dist)
    train_loader = ResumableLoader(
        train_ds, batch_size=config.batch_size, sampler=EpochSampler(
            len(train_ds), True, config.seed, foreground=np.array([present[s][i] for s, i in train_items]),
            foreground_probability=config.foreground_probability),
        num_workers=config.num_workers, collate_fn=collate, drop_last=len(train_ds) > config.batch_size,
        persistent_workers=config.num_workers > 0,
    )
    position = loader_position(resume_ckpt)
    if position is not None:
        train_loader.load_state_dict(position)
    val_loader = None
    if val_items:
        val_ds = SegmentationDataset(
            sources, val_items, build_eval_transform(net_cfg.ignore_index, dist, config.patch_size),
            config.intensity, config.seed, dist)
        val_loader = DataLoader(val_ds, batch_size=config.batch_size, sampler=EpochSampler(len(val_ds), False),
                                num_workers=config.num_workers, collate_fn=collate)

    monitor = ("val_dice", "max") if val_loader is not None else ("train_loss", "min")
    return (yield from fit(
        module, train_loader, val_loader, config, folder, stage=STAGE, monitor=monitor,
        shown=("train_loss", "val_loss", "val_dice", *(f"val_dice_{n}" for n in net_cfg.names()[1:])),
        files={SPLIT_FILE: json.dumps(split, indent=1)},
        resume=resume, stop=stop, use_distributed_sampler=False, deterministic=False,
    ))
