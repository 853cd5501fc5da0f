"""Prediction of an in-memory volume (a napari layer's data), as a job generator.

The file-level :func:`~napari_cryolearn.segmentation.predict_job.predict_job` reads and writes
MRC files; :func:`predict_array` takes an array and returns the
:class:`~napari_cryolearn.models.sliding_window.Prediction` and the class names, so the
"Segment" widget and the annotate → train loop run exactly the same sliding-window inference.
:func:`predict_array_job` is the same as a job: its :class:`JobResult` holds the arrays'
summary (classes, voxels per class); its outputs are empty, as nothing is written.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence

import numpy as np

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import JobResult
from napari_cryolearn.engine.lightning import torch_device
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.models.sliding_window import Prediction, iter_sliding_window
from napari_cryolearn.segmentation.predict_job import STAGE, LoadedModel, load_model, window_for


def predict_array(
    model: str | os.PathLike | LoadedModel,
    volume: np.ndarray,
    *,
    window: Sequence[int] | None = None,
    overlap: float = 0.5,
    tta_flips: bool = False,
    probabilities: bool = False,
    batch_size: int = 2,
    device: str = "auto",
    stop: StopFlag | None = None,
) -> Generator[Progress, None, tuple[Prediction, list[str]] | None]:
    """Segment a (Z, Y, X) ``volume`` with a checkpoint (path) or a loaded model.

    ``window`` defaults to the model's training patch (else 64³) and must be a multiple of the
    network's stride; one larger than the volume is clamped to it (a progress message says so).
    Yields progress per batch of windows; returns ``(prediction, class names)``, or ``None``
    when stopped.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise InputError(f"expected a 3D volume, got shape {volume.shape}", field="volume")
    dev = torch_device(device)
    loaded = model if isinstance(model, LoadedModel) else load_model(model, dev)
    if isinstance(model, LoadedModel):
        loaded.net.to(dev)
    window, note = window_for(window, loaded, volume.shape)
    if note is not None:
        yield Progress(0, None, note, STAGE, {"window": list(window)})
    yield Progress(0, None, f"predicting {volume.shape} on {dev.type}, window {window}", STAGE,
                   {"window": list(window)})
    prediction = yield from iter_sliding_window(
        loaded.net, volume, window, num_classes=loaded.network.out_channels, overlap=overlap,
        batch_size=batch_size, tta_flips=tta_flips, device=dev, preprocess=loaded.intensity.apply,
        probabilities_out=True if probabilities else None, stop=stop, stage=STAGE,
    )
    return None if prediction is None else (prediction, list(loaded.network.names()))


def predict_array_job(
    model: str | os.PathLike | LoadedModel,
    volume: np.ndarray,
    *,
    stop: StopFlag | None = None,
    **kwargs,
) -> Generator[Progress, None, JobResult]:
    """:func:`predict_array` as a job (same arguments): a :class:`JobResult` with no outputs
    (nothing is written), ``metrics`` ``classes`` (their names) and ``voxels`` (per class), and
    ``stopped``. Use :func:`predict_array` for the arrays."""
    got = yield from predict_array(model, volume, stop=stop, **kwargs)
    if got is None:
        return JobResult(stopped=True)
    prediction, names = got
    counts = np.bincount(prediction.labels.ravel(), minlength=len(names))
    return JobResult(metrics={"classes": names, "voxels": {n: int(c) for n, c in zip(names, counts)}})
