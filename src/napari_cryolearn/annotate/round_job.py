"""One annotate → train → predict round of a project folder, and the project's creation.

:func:`init_job` (``cryolearn annotate init TOMOGRAM PROJECT --classes ...``) makes the folder
(:mod:`.project`). :func:`round_job` (``cryolearn annotate round PROJECT``) is one round:

1. read the tomogram and the annotations; refuse no annotation, fewer than two annotated classes
   or annotations of another shape before anything is written;
2. train (:func:`train_round_job`, segmentation's
   :func:`~napari_cryolearn.segmentation.train_job.train_arrays_job`): patches on a grid over
   the tomogram that hold an annotated voxel, each epoch a ``foreground_probability`` of them
   cropped around a voxel of a non-background class and the rest cropped anywhere in the patch;
   unannotated voxels are the loss's ``ignore_index`` (no loss, no gradient, no Dice). The
   network is warm-started from the previous round's ``model/last.ckpt`` (its weights only: a
   new optimiser and schedule of ``epochs``), the first round from ``pretrained_model`` (ours or
   CryoSiam's) or from scratch; the tomogram's mean and standard deviation become the model's
   intensity normalisation;
3. predict the whole tomogram with the sliding window (:func:`predict_round_job`) into
   ``prediction.mrc`` (background 0, another class its annotation value) and, when asked,
   ``probabilities.npy`` (network channel order);
4. write ``metrics.json`` (annotated voxels per class, time per phase, last loss, agreement of
   the prediction with the annotations).

The "Annotate & train" widget runs steps 2 and 3 as the same functions (training in a child
process), so a project the GUI made continues here and the other way round.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from napari_cryolearn.annotate.project import (
    IGNORE,
    PREDICTION_FILE,
    PROBABILITIES_FILE,
    ROUND_FILE,
    Project,
    create_project,
    model_of,
    open_project,
    split_names,
    write_metrics,
)
from napari_cryolearn.engine.config import EXPERT, Config
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import JobResult
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.engine.training import Device

INIT_STAGE = "annotate.init"
STAGE = "annotate.round"


# ------------------------------------------------------------------------------------------- init


class AnnotateInitConfig(Config):
    """A new annotation project folder for a tomogram."""

    tomogram: Path = Field(description="tomogram MRC to annotate")
    project: Path = Field(description="project folder to make")
    classes: list[str] = Field(["background", "membrane"], description="class names, comma-separated; annotation value k is the k-th class (0: not annotated)")
    background: str | None = Field(None, description="the background class (default: the first)")
    colors: list[str] | None = Field(None, description="one display colour per class, comma-separated (default: a palette)", json_schema_extra=EXPERT)
    annotations: Path | None = Field(None, description="labels MRC to start from (0: not annotated, k: the k-th class)")
    overwrite: bool = Field(False, description="replace the classes and annotations of an existing project (its rounds are kept)")

    @field_validator("classes", "colors", mode="before")
    @classmethod
    def _split(cls, value):
        return split_names(value) if value is not None else value


def init_job(config: AnnotateInitConfig, stop: StopFlag | None = None) -> Generator[Progress, None, JobResult]:
    """Make the project folder of ``config`` (see :func:`~.project.create_project`)."""
    annotations = None
    if config.annotations is not None:
        from napari_cryolearn.io.mrc import read_mrc_3d

        annotations = np.asarray(read_mrc_3d(config.annotations, field="annotations", what="label volume").data)
    yield Progress(0, 1, f"making the project {config.project}", INIT_STAGE)
    project = create_project(config.project, config.tomogram, config.classes, background=config.background,
                             colors=config.colors, annotations=annotations, overwrite=config.overwrite)
    counts = annotated_counts(project, project.read_annotations())
    yield Progress(1, 1, f"wrote {project.path}", INIT_STAGE)
    return JobResult({"project": project.path}, metrics={"classes": project.class_names, "annotated": counts})


# ------------------------------------------------------------------------------------------ round


class AnnotateRoundConfig(Config):
    """One annotate → train → predict round of a project (see the module docstring)."""

    project: Path = Field(description="annotation project folder (cryolearn annotate init)")
    epochs: int = Field(15, ge=1, description="training epochs of this round")
    max_time: str | None = Field(None, description="stop training after this long, e.g. 90s, 5m (default: the epochs)")
    device: Device = Field("auto", description="auto (CUDA, else MPS, else CPU), cpu, cuda or mps")
    pretrained_model: Path | None = Field(None, description="checkpoint to start the first round from (ours or CryoSiam's; default: from scratch); later rounds start from the previous round")
    from_scratch: bool = Field(False, description="start this round from pretrained_model (or random weights), not from the previous round")
    patch_size: tuple[int, int, int] = Field((32, 32, 32), description="training patch (z, y, x), a multiple of 8")
    batch_size: int = Field(4, ge=1, description="patches per batch")
    lr: float = Field(0.01, gt=0, description="learning rate (peak of the one-cycle schedule)")
    foreground_probability: float = Field(0.67, ge=0, le=1, description="fraction of patches centred on an annotated voxel of a non-background class (the rest anywhere around the annotations)")
    channels: tuple[int, ...] = Field((16, 32, 64), min_length=2, description="U-Net channels per level of a new network (warm starts keep the previous round's)", json_schema_extra=EXPERT)
    predict: bool = Field(True, description="predict the whole tomogram after training")
    probabilities: bool = Field(False, description="also write the class probabilities (probabilities.npy, C×Z×Y×X float32)")
    window: tuple[int, int, int] = Field((64, 64, 64), description="prediction window (z, y, x), a multiple of 8", json_schema_extra=EXPERT)
    overlap: float = Field(0.25, ge=0, lt=1, description="fraction of a prediction window shared with its neighbour", json_schema_extra=EXPERT)
    num_workers: int = Field(0, ge=0, description="data-loader worker processes", json_schema_extra=EXPERT)
    seed: int = Field(0, description="seed of the weights and the sampling", json_schema_extra=EXPERT)
    progress_every_n_batches: int = Field(10, ge=1, description="a progress event every this many batches", json_schema_extra=EXPERT)


def annotated_counts(project: Project, annotations: np.ndarray) -> dict[str, int]:
    """Annotated voxels per class name."""
    counts = np.bincount(np.asarray(annotations, np.uint8).ravel(), minlength=len(project.class_names) + 1)
    return {name: int(counts[i + 1]) for i, name in enumerate(project.class_names)}


def check_round_annotations(project: Project, annotations: np.ndarray, name=None) -> dict[str, int]:
    """InputError (field ``annotations``) for annotations a round cannot learn from: another
    shape, values beyond the classes, nothing annotated, fewer than two classes annotated.
    Returns the annotated voxels per class."""
    project.check_annotations(annotations, name)
    counts = annotated_counts(project, annotations)
    painted = [n for n, c in counts.items() if c]
    if not painted:
        raise InputError("nothing is annotated yet: paint a few strokes of each class (0 is 'not annotated')",
                         path=name, field="annotations")
    if len(painted) < 2:
        missing = [n for n in project.class_names if n not in painted]
        raise InputError(f"only {painted[0]!r} is annotated: paint at least one more class ({', '.join(missing)})",
                         path=name, field="annotations")
    return counts


def intensity_of(volume: np.ndarray) -> dict[str, float]:
    """Mean and standard deviation of a (memory-mapped) volume from a strided subsample."""
    step = max(1, round((volume.size / 2_000_000) ** (1 / 3)))
    sample = np.asarray(volume[::step, ::step, ::step], np.float64)
    return {"mean": float(sample.mean()), "std": float(sample.std()) or 1.0}


def warm_start(project: Project, config: AnnotateRoundConfig) -> Path | None:
    """The checkpoint a round starts from: the previous round's, else ``pretrained_model``."""
    previous = None if config.from_scratch else project.latest_model()
    return previous if previous is not None else config.pretrained_model


def training_config(project: Project, config: AnnotateRoundConfig, round_dir: Path, intensity: dict):
    """The :class:`~napari_cryolearn.segmentation.config.SegmentationTrainConfig` of one round."""
    from napari_cryolearn.segmentation.config import SegmentationTrainConfig

    names = project.channel_names()
    return SegmentationTrainConfig.from_dict({
        "log_dir": round_dir, "pretrained_model": warm_start(project, config),
        "overwrite": round_dir.exists(),  # a round stopped before its first checkpoint is redone
        "max_epochs": config.epochs, "max_time": config.max_time, "device": config.device,
        "batch_size": config.batch_size, "lr": config.lr, "patch_size": config.patch_size,
        "foreground_probability": config.foreground_probability, "validation_ratio": 0.0,
        "num_workers": config.num_workers, "seed": config.seed, "progress_every_n_batches": config.progress_every_n_batches,
        "intensity": intensity,
        "network": {"out_channels": len(names), "class_names": names, "ignore_index": IGNORE,
                    "unet_channels": config.channels, "class_weights": "auto"},
    })


def stored_patch(config: AnnotateRoundConfig, shape: Sequence[int]) -> tuple[int, ...]:
    """The grid patches the training crops come from: 1.5 × the training patch, at most the volume."""
    return tuple(min(int(s), int(round(p * 1.5))) for p, s in zip(config.patch_size, shape))


def train_round_job(config: AnnotateRoundConfig, stop: StopFlag | None = None) -> Generator[Progress, None, JobResult]:
    """Step 2 of a round (train, warm-started) from the project's files, in the next round's
    folder; returns the :class:`~napari_cryolearn.engine.training.TrainResult` (its ``log_dir`` is
    the round's folder) and writes the round's ``round.yaml`` and first metrics."""
    from napari_cryolearn.segmentation.train_job import train_arrays_job

    project = open_project(config.project)
    volume = project.read_tomogram().data
    annotations = project.read_annotations()
    check_round_annotations(project, annotations, project.annotations_path)
    if any(p > s for p, s in zip(config.patch_size, volume.shape)):
        raise InputError(f"patch size {config.patch_size} exceeds the tomogram {volume.shape}", field="patch_size")
    round_dir = project.next_round()
    start = warm_start(project, config)
    train_cfg = training_config(project, config, round_dir, intensity_of(volume))
    yield Progress(0, None, f"{round_dir.name}: training from {start or 'scratch'}", STAGE, {"round": round_dir.name})
    image = np.asarray(volume, np.float32)
    labels = project.training_labels(annotations)
    t0 = time.monotonic()
    result = yield from train_arrays_job([image], [labels], train_cfg, patch_size=stored_patch(config, volume.shape),
                                         overlap=0.5, stop=stop)
    config.to_yaml(round_dir / ROUND_FILE)
    counts = annotated_counts(project, annotations)
    write_metrics(round_dir, {
        "round": round_dir.name, "warm_start": str(start) if start else None, "epochs": result.epochs,
        "train_seconds": round(time.monotonic() - t0, 2), "train_loss": result.metrics.get("train_loss"),
        "annotated": counts, "annotated_fraction": sum(counts.values()) / annotations.size,
        "stopped": result.stopped})
    return result


def predict_volume(model, volume: np.ndarray, project: Project, *, window: Sequence[int], overlap: float,
                   device: str = "auto", probabilities: bool = False, stop: StopFlag | None = None,
                   ) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray | None] | None]:
    """Prediction values (background 0, another class its annotation value) and, when asked,
    the (C, Z, Y, X) probabilities of ``volume`` (all or a slab of the tomogram) with
    ``model`` (a checkpoint or a loaded model); ``None`` when stopped."""
    from napari_cryolearn.segmentation.predict_array import predict_array

    # a callable: a child process's stop is a multiprocessing Event, not a StopFlag
    got = yield from predict_array(model, np.asarray(volume, np.float32), window=window, overlap=overlap,
                                   probabilities=probabilities, device=device,
                                   stop=None if stop is None else stop.is_set)
    if got is None:
        return None
    prediction, _ = got
    return project.prediction_values(prediction.labels), prediction.probabilities


def save_prediction(project: Project, round_dir: Path, values: np.ndarray, probabilities: np.ndarray | None = None,
                    seconds: float | None = None) -> Path:
    """Write a round's ``prediction.mrc`` (and ``probabilities.npy``) atomically; add the
    agreement with the annotations and the predicted voxels per class to its metrics."""
    from napari_cryolearn.engine.atomic import atomic_path
    from napari_cryolearn.io.mrc import write_mrc

    round_dir = Path(round_dir)
    path = write_mrc(round_dir / PREDICTION_FILE, np.asarray(values, np.uint8), voxel_size=project.meta.voxel_size)
    if probabilities is not None:
        with atomic_path(round_dir / PROBABILITIES_FILE) as tmp:
            np.save(tmp, np.asarray(probabilities, np.float32))
    annotations = project.read_annotations()
    annotated = annotations > 0
    as_annotation = np.where(values == 0, project.background_value, values)
    agreement = float((as_annotation[annotated] == annotations[annotated]).mean()) if annotated.any() else None
    counts = np.bincount(np.asarray(values, np.uint8).ravel(), minlength=len(project.class_names) + 1)
    predicted = {name: int(counts[0 if i + 1 == project.background_value else i + 1])
                 for i, name in enumerate(project.class_names)}
    write_metrics(round_dir, {"predict_seconds": None if seconds is None else round(seconds, 2),
                              "agreement": agreement, "predicted": predicted})
    return path


def predict_round_job(config: AnnotateRoundConfig, round_dir: Path | None = None, stop: StopFlag | None = None,
                      slab_at: int | None = None) -> Generator[Progress, None, Path | None]:
    """Step 3 of a round: the whole tomogram with the round's model (default: the last
    round's) into its ``prediction.mrc``; returns its path (``None`` when stopped).

    ``slab_at`` (the slice in view, for the widget): first the slab of one window's depth
    around that slice; each finished part is yielded as a progress event whose metrics hold
    ``prediction``: ``(values, probabilities or None, first slice)``.
    """
    project = open_project(config.project)
    round_dir = Path(round_dir) if round_dir is not None else (project.rounds() or [None])[-1]
    model = model_of(round_dir) if round_dir is not None else None
    if model is None:
        raise InputError("no trained round to predict with: train a round first", path=project.path, field="project")
    from napari_cryolearn.engine.lightning import torch_device
    from napari_cryolearn.segmentation.predict_job import load_model

    volume = project.read_tomogram().data
    loaded = load_model(model, torch_device(config.device))
    kwargs = {"window": config.window, "overlap": config.overlap, "device": config.device, "stop": stop}
    t0 = time.monotonic()
    if slab_at is not None:
        z0, z1 = view_slab(int(slab_at), config.window[0], volume.shape[0])
        got = yield from predict_volume(loaded, volume[z0:z1], project, **kwargs)
        if got is None:
            return None
        yield Progress(0, None, f"slices {z0}-{z1 - 1} predicted; predicting the whole tomogram", STAGE,
                       {"prediction": (got[0], None, z0)})
    got = yield from predict_volume(loaded, volume, project, probabilities=config.probabilities, **kwargs)
    if got is None:
        return None
    if slab_at is not None:
        yield Progress(0, None, "whole tomogram predicted", STAGE, {"prediction": (got[0], got[1], 0)})
    yield Progress(0, None, f"writing {round_dir.name}/{PREDICTION_FILE}", STAGE)
    return save_prediction(project, round_dir, *got, seconds=time.monotonic() - t0)


def view_slab(z: int, depth: int, n: int) -> tuple[int, int]:
    """The slab of ``depth`` slices (at most ``n``) centred on slice ``z``.

    >>> view_slab(0, 32, 100), view_slab(50, 32, 100), view_slab(99, 32, 100), view_slab(5, 32, 20)
    ((0, 32), (34, 66), (68, 100), (0, 20))
    """
    depth = min(depth, n)
    z0 = min(max(z - depth // 2, 0), n - depth)
    return z0, z0 + depth


def round_job(config: AnnotateRoundConfig, stop: StopFlag | None = None, slab_at: int | None = None
              ) -> Generator[Progress, None, JobResult]:
    """One round (see the module docstring): outputs ``project``, ``round`` (its folder),
    ``model`` and ``prediction``; metrics those of ``metrics.json``. ``slab_at``: see
    :func:`predict_round_job`."""
    from napari_cryolearn.annotate.project import read_metrics

    result = yield from train_round_job(config, stop)
    round_dir = Path(result.log_dir)
    outputs = {"project": Path(config.project), "round": round_dir}
    model = model_of(round_dir)
    if model is not None:
        outputs["model"] = model
    if result.stopped or model is None or not config.predict:
        return JobResult(outputs, metrics=_shown(read_metrics(round_dir)), stopped=result.stopped)
    yield Progress(0, None, "trained: predicting" + (" the slab in view" if slab_at is not None else ""), STAGE)
    prediction = yield from predict_round_job(config, round_dir, stop, slab_at=slab_at)
    if prediction is not None:
        outputs["prediction"] = prediction
    return JobResult(outputs, metrics=_shown(read_metrics(round_dir)), stopped=prediction is None)


def _shown(metrics: dict) -> dict:
    keys = ("epochs", "train_loss", "train_seconds", "predict_seconds", "annotated_fraction", "agreement")
    return {k: metrics[k] for k in keys if metrics.get(k) is not None}

