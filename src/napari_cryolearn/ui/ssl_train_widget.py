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
from magicgui.widgets import ComboBox, Container, FileEdit, Label, create_widget

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.ui.forms import field_widget, form_values, note
from napari_cryolearn.ui.handoff import handoff
from napari_cryolearn.ui.job_widget import JobWidget
from napari_cryolearn.ui.training_data_folder import check_written_by, device_name
from napari_cryolearn.ui.metrics_plot import MetricsPlot, plot_training_progress

#: The job, run in a child process (training in napari's process holds its event loop).
TRAIN_JOB = "napari_cryolearn.selfsup.train_job:ssl_train_job"
#: The config fields the form shows, daily ones first (the rest keep the config's defaults).
FORM_FIELDS = ("method", "fft", "backbone", "image_size", "max_epochs", "max_time", "batch_size", "device",
               "log_dir", "pretrained_model", "freeze_backbone", "continue_training", "overwrite")
#: Shown under "Expert settings".
EXPERT_FIELDS = ("dim", "pred_dim", "projection_dim", "temperature", "validation_ratio", "pixel_size", "lr",
                 "optimizer", "weight_decay", "scheduler", "seed", "num_workers")
#: The folder of the run that holds the micrographs written from a layer, the stack, and its record.
LAYER_DATA = "training_data"
LAYER_STACK = "micrographs.mrcs"
SOURCE_FILE = "SOURCE.json"
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


class SSLTrainWidget(JobWidget):
    """Trains a self-supervised encoder on micrographs; the run folder holds the checkpoints
    (ours in ``model/``, prismpyp's in ``checkpoints/``), logs, the config, prismpyp's plots and,
    when trained on a layer, the micrographs written from it (see the module docstring).

    The form's fields are :class:`~napari_cryolearn.selfsup.config.SSLTrainConfig`'s (defaults,
    tooltips and validation from it).

    Attributes
    ----------
    result:
        The :class:`~napari_cryolearn.engine.training.TrainResult` of the last run (``None``
        before the first).
    config:
        The config of the last run.
    """

    def __init__(self, napari_viewer):
        from napari_cryolearn.selfsup.config import SSLTrainConfig

        self.fields = SSLTrainConfig.model_fields
        self._viewer = napari_viewer
        self.source = ComboBox(choices=list(SOURCES), value=SOURCES[0], label="train on")
        self.data = FileEdit(mode="d", value="", label="micrograph folder", tooltip=self.fields["data"].description)
        self.image = create_widget(annotation=napari.layers.Image, label="micrographs (Image layer)",
                                   options={"choices": self._image_choices,
                                            "tooltip": "a 2D micrograph or a 3D stack of them (one per slice); "
                                                       "its scale is the pixel size"})
        self.form = {name: field_widget(name, self.fields[name]) for name in (*FORM_FIELDS, *EXPERT_FIELDS)}
        self.form["log_dir"].mode = "d"
        self.form["log_dir"].value = str(Path.home() / "cryolearn-runs" / "ssl")
        self.loss_plot = MetricsPlot(title="loss")
        self.collapse_plot = MetricsPlot(y_range=(0.0, 1.0), title="collapse level (0 healthy, 1 collapsed)")
        self.device_label = Label(value="device: chosen when training starts")
        plot_box = Container(labels=False)
        plot_box.native.layout().addWidget(self.loss_plot)
        plot_box.native.layout().addWidget(self.collapse_plot)
        daily = [self.form[n] for n in FORM_FIELDS]
        expert = [self.form[n] for n in EXPERT_FIELDS]
        super().__init__(
            napari_viewer,
            [self.source, self.data, self.image, *daily, note("Expert settings (most runs leave these)"), *expert,
             self.device_label, plot_box],
            title="Self-supervised training", run_text="Train",
        )
        self.source.changed.connect(self._show_source)
        self._show_source()
        self.result = None
        self.config = None

    def _image_choices(self, widget=None):
        return [layer for layer in self._viewer.layers
                if isinstance(layer, napari.layers.Image) and layer.ndim in (2, 3) and not layer.rgb]

    def _show_source(self, *_):
        folder = self.source.value == SOURCES[0]
        self.data.visible = folder
        self.image.visible = not folder

    # -- building the job (GUI thread) -------------------------------------------------------------

    def make_job(self):
        from napari_cryolearn.engine.child import run_in_child
        from napari_cryolearn.selfsup.config import SSLTrainConfig

        values = form_values(self.form, self.fields)
        values["progress_every_n_batches"] = 1  # the plot shows every batch's loss
        write = None
        if self.source.value == SOURCES[0]:
            text = str(self.data.value).strip()
            if text in ("", "."):
                raise InputError("choose a folder of micrographs", field="data")
            config = SSLTrainConfig.from_dict({**values, "data": Path(text)})
        else:
            config, write = self._layer_job(values)
        self.config = config
        self.loss_plot.clear()
        self.collapse_plot.clear()
        self.device_label.value = f"device: {device_name(config.device)}"

        def job(stop):
            if write is not None:
                yield Progress(0, None, f"writing the micrographs to {config.data}", stage="ssl.train")
                write()
            return (yield from run_in_child(TRAIN_JOB, config, stop=stop))

        return job

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
        folder = Path(values["log_dir"]) / LAYER_DATA
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

    # -- progress and results (GUI thread) ---------------------------------------------------------

    def on_progress(self, event: Progress) -> None:
        metrics = event.metrics or {}
        if "device" in metrics:
            self.device_label.value = f"device: {metrics['device']}"
        plot_training_progress(metrics, self.loss_plot, self.collapse_plot, "collapse_level")

    def on_result(self, result) -> None:
        self.result = result
        if result is None:
            return
        best = result.best_checkpoint or result.last_checkpoint
        word = "stopped" if result.stopped else "done"
        if best is None:
            self.status.value = f"{word} before the first epoch: no checkpoint was written"
            return
        handoff.trained_encoder.emit(Path(best))
        self.status.value = f"{word} after {result.epochs} epochs; model: {best} (handed to Embedding explorer)"

