"""Dock widget "Self-supervised training": an image encoder trained without labels on micrographs
(SimSiam as prismpyp, or SimCLR), in real space or on their power spectra.

It runs ``ssl.train`` (:func:`~napari_cryolearn.selfsup.train_job.ssl_train_job`) in a child
process, as "Train segmentation" and "Train picker" do, and shows progress per batch, the device,
and live plots per epoch of the training and validation losses and of SimSiam's collapse level
(the std of the normalised embeddings against its value for random directions: 0 healthy, 1
collapsed). Stop ends training after the current batch and keeps ``model/last.ckpt``, which
"continue training" resumes. The checkpoint it finished (the best, else the last) is handed to
"Embedding explorer" (:mod:`.handoff`).

Training on an Image layer: a 2D micrograph, or a 3D stack of them (one micrograph per slice, as
the "Synthetic micrographs" sample). The widget writes it as an MRC stack,
``<run folder>/training_data/micrographs.mrcs``, with the layer's scale (its last axis) as the
pixel size, and ``training_data/SOURCE.json`` naming the layer; the run trains on that file, so
its ``config.yaml`` points at data that stays with the run.
"""

from __future__ import annotations

import json
from pathlib import Path

import napari.layers
import numpy as np
from magicgui.widgets import FileEdit, create_widget

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.ui.training_data_folder import SOURCE_FILE, TRAINING_DATA, check_written_by
from napari_cryolearn.ui.training_widget import TrainingWidget

#: The job, run in a child process (training in napari's process holds its event loop).
TRAIN_JOB = "napari_cryolearn.selfsup.train_job:ssl_train_job"
#: The config fields the form shows, daily ones first (the rest keep the config's defaults).
FORM_FIELDS = ("method", "fft", "backbone", "image_size", "max_epochs", "max_time", "batch_size", "device",
               "log_dir", "pretrained_model", "freeze_backbone", "continue_training", "overwrite")
#: Shown under "Expert settings".
EXPERT_FIELDS = ("dim", "pred_dim", "projection_dim", "temperature", "validation_ratio", "pixel_size", "lr",
                 "optimizer", "weight_decay", "scheduler", "seed", "num_workers")
#: The stack written from a layer into the run's training_data folder.
LAYER_STACK = "micrographs.mrcs"
WRITTEN_BY = "Self-supervised training"
SOURCES = ("data folder", "Image layer")


def layer_micrographs(layer) -> tuple[np.ndarray, float]:
    """``(stack (N, H, W), pixel size)`` of an Image layer of micrographs: a 2D image is a stack
    of one; the pixel size is the layer's scale along its last axis. :class:`InputError` naming
    the layer for RGB, 4D or tiny images."""
    from napari_cryolearn.ui.layers import as_array

    if layer is None:
        raise InputError("choose an Image layer of micrographs", field="data")
    if getattr(layer, "rgb", False):
        raise InputError("is an RGB image; micrographs are greyscale", path=layer.name, field="data")
    data = as_array(layer.data)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise InputError(f"expected a 2D micrograph or a 3D stack of them, got shape {data.shape}",
                         path=layer.name, field="data")
    if min(data.shape[1:]) < 2:
        raise InputError(f"micrographs too small: shape {data.shape}", path=layer.name, field="data")
    return data, float(layer.scale[-1])


def write_layer_stack(folder: Path, stack: np.ndarray, pixel_size: float, record: dict) -> Path:
    """Write ``folder/micrographs.mrcs`` (float32, voxel size ``(1, pixel_size, pixel_size)``) and
    ``folder/SOURCE.json``, each atomically; returns the stack's path."""
    from napari_cryolearn.engine.atomic import atomic_path
    from napari_cryolearn.io import write_mrc

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / LAYER_STACK
    with atomic_path(target, overwrite=True) as tmp:
        write_mrc(tmp, np.asarray(stack, dtype=np.float32), voxel_size=(1.0, pixel_size, pixel_size))
    with atomic_path(folder / SOURCE_FILE, overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps({**record, "written_by": WRITTEN_BY}, indent=1))
    return target


class SSLTrainWidget(TrainingWidget):
    """Trains a self-supervised encoder on micrographs; the run folder holds the checkpoints
    (ours in ``model/``, prismpyp's in ``checkpoints/``), logs, the config, prismpyp's plots and,
    when trained on a layer, the micrographs written from it (see the module docstring).

    The form's fields are :class:`~napari_cryolearn.selfsup.config.SSLTrainConfig`'s (defaults,
    tooltips and validation from it); the rest is :class:`~.training_widget.TrainingWidget`'s.
    """

    def __init__(self, napari_viewer):
        from napari_cryolearn.selfsup.config import SSLTrainConfig

        fields = SSLTrainConfig.model_fields
        self._viewer = napari_viewer
        self.data = FileEdit(mode="d", value="", label="micrograph folder", tooltip=fields["data"].description)
        self.image = create_widget(annotation=napari.layers.Image, label="micrographs (Image layer)",
                                   options={"choices": self._image_choices,
                                            "tooltip": "a 2D micrograph or a 3D stack of them (one per slice); "
                                                       "its scale is the pixel size"})
        super().__init__(
            napari_viewer, config_class=SSLTrainConfig, job=TRAIN_JOB, stage="ssl.train",
            title="Self-supervised training", sources={SOURCES[0]: [self.data], SOURCES[1]: [self.image]},
            form_fields=FORM_FIELDS, expert_fields=EXPERT_FIELDS, run_folder="ssl",
            metric=("collapse_level", "collapse level (0 healthy, 1 collapsed)", (0.0, 1.0)),
            handoff_signal="trained_encoder", handoff_to="Embedding explorer",
        )

    def _image_choices(self, widget=None):
        return [layer for layer in self._viewer.layers
                if isinstance(layer, napari.layers.Image) and layer.ndim in (2, 3) and not layer.rgb]

    # -- building the job (GUI thread) -------------------------------------------------------------

    def build(self, values: dict):
        from napari_cryolearn.selfsup.config import SSLTrainConfig

        if self.source.value == SOURCES[0]:
            text = str(self.data.value).strip()
            if text in ("", "."):
                raise InputError("choose a folder of micrographs", field="data")
            return SSLTrainConfig.from_dict({**values, "data": Path(text)}), None
        return self._layer_job(values)

    def _layer_job(self, values: dict):
        """The config of a run on the chosen layer, and the function writing its stack; every
        check is made here, before anything is written."""
        from napari_cryolearn.engine.training import RunFolder, check_log_dir
        from napari_cryolearn.selfsup.config import SSLTrainConfig
        from napari_cryolearn.selfsup.train_job import PRISMPYP_FILES, split_refs

        layer = self.image.value
        stack, pixel_size = layer_micrographs(layer)
        if "log_dir" not in values:
            raise InputError("choose a run folder", field="log_dir")
        folder = Path(values["log_dir"]) / TRAINING_DATA
        config = SSLTrainConfig.from_dict({**values, "data": folder / LAYER_STACK})
        check_log_dir(config.log_dir, [config.data], what="micrographs")
        RunFolder(config, inputs=[config.data], files=PRISMPYP_FILES).check()
        check_written_by(folder, WRITTEN_BY)
        n_train = len(split_refs(len(stack), config.validation_ratio, config.seed)[0])
        if n_train < config.batch_size:
            raise InputError(f"layer {layer.name!r} holds {len(stack)} micrographs, {n_train} to train on: fewer "
                             f"than a batch of {config.batch_size}; lower the batch size or use a larger stack",
                             field="batch_size")
        record = {"image_layer": layer.name, "micrographs": int(len(stack)), "shape": list(stack.shape[1:]),
                  "pixel_size": pixel_size}

        def write():
            write_layer_stack(folder, stack, pixel_size, record)

        return config, write
