"""Dock widget "Train segmentation": from patch stores or from an Image + Labels layer pair.

Shows progress per batch, a live plot of loss and Dice per epoch, and the device it runs on.
Stop finishes the current batch and writes ``model/last.ckpt``, which "continue training"
resumes.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import napari.layers
import numpy as np
from magicgui.widgets import ComboBox, Container, Label, LineEdit, PushButton, SpinBox, create_widget

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.ui.forms import field_widget, form_values, note
from napari_cryolearn.ui.job_widget import JobWidget
from napari_cryolearn.ui.layers import volume_of
from napari_cryolearn.ui.handoff import handoff
from napari_cryolearn.ui.metrics_plot import MetricsPlot, plot_training_progress



def _class_names(layer, n_classes: int) -> list[str] | None:
    """The labels layer's class names (``metadata["label_names"]``, {value: name}) when they
    name every class 0..n-1; ``None`` otherwise."""
    names = dict(layer.metadata).get("label_names") or {}
    try:
        by_value = {int(k): str(v) for k, v in dict(names).items()}
    except (TypeError, ValueError):
        return None
    return [by_value[c] for c in range(n_classes)] if set(range(n_classes)) <= set(by_value) else None


#: The jobs, run in a child process (training in napari's process holds its event loop)
TRAIN_JOB = "napari_cryolearn.segmentation.train_job:train_job"
TRAIN_ARRAYS_JOB = "napari_cryolearn.segmentation.train_job:train_arrays_job"

#: The config fields the form shows, those changed daily first (the rest keep the config's
#: defaults; a YAML config given to ``cryolearn segment train`` sets them all). A field left at
#: its default counts as unset, so the device's preset fills it.
FORM_FIELDS = ("max_time", "max_epochs", "device", "log_dir", "pretrained_model", "continue_training", "overwrite",
               "preset", "batch_size", "lr", "patch_size", "foreground_probability", "early_stopping",
               "validation_ratio")
#: The network fields the form shows.
NETWORK_FIELDS = ("architecture", "class_weights")


def _changed(values: dict, fields: dict) -> dict:
    """The form values that differ from their field's default (the rest are left to the preset)."""
    return {k: v for k, v in values.items() if fields[k].is_required() or _plain(v) != _plain(fields[k].default)}


def _plain(value):
    return list(value) if isinstance(value, (tuple, list)) else value


def tensorboard_command(log_dir: Path, port: int) -> list[str]:
    """The command that serves a run folder's TensorBoard logs (``log_dir/lightning_logs``) on ``port``."""
    return [sys.executable, "-m", "tensorboard.main", "--logdir", str(Path(log_dir) / "lightning_logs"),
            "--port", str(port), "--host", "localhost"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


class TrainSegmentationWidget(JobWidget):
    """Trains a segmentation network; the run folder holds checkpoints, logs and the config.

    The form's fields are :class:`~napari_cryolearn.segmentation.config.SegmentationTrainConfig`'s
    (defaults, tooltips and validation from it); training on layers cuts them into patches of
    ``patch_size`` (empty: 64 voxels) in memory.
    """

    def __init__(self, napari_viewer):
        from napari_cryolearn.segmentation.config import DEFAULT_IGNORE_INDEX, NetworkConfig, SegmentationTrainConfig

        self.fields = SegmentationTrainConfig.model_fields
        self.source = ComboBox(choices=["layers", "patch stores"], value="layers", label="train on")
        self.image = create_widget(annotation=napari.layers.Image, label="tomogram")
        self.label_layer = create_widget(annotation=napari.layers.Labels, label="labels")
        self.stores = LineEdit(value="", label="patch stores (.zarr, comma-separated)",
                               tooltip=self.fields["patch_stores"].description)
        self.classes = SpinBox(value=0, min=0, max=255, label="classes (0: max label + 1)")
        self.convention = note(f"labels: 0 background, 1, 2, … classes, {DEFAULT_IGNORE_INDEX} not annotated (no loss)")
        self.network_fields = NetworkConfig.model_fields
        self.form = {name: field_widget(name, self.fields[name]) for name in FORM_FIELDS}
        self.network_form = {name: field_widget(name, self.network_fields[name]) for name in NETWORK_FIELDS}
        self.form["log_dir"].mode = "d"
        self.form["log_dir"].value = str(Path.home() / "cryolearn-runs" / "segmentation")
        self.loss_plot = MetricsPlot(title="loss")
        self.dice_plot = MetricsPlot(y_range=(0.0, 1.0), title="Dice")
        self.device_label = Label(value="device: chosen when training starts")
        self.tensorboard_button = PushButton(text="Open TensorBoard")
        self.tensorboard_button.changed.connect(self.open_tensorboard)
        self._tensorboard = None
        plot_box = Container(labels=False)
        plot_box.native.layout().addWidget(self.loss_plot)
        plot_box.native.layout().addWidget(self.dice_plot)
        super().__init__(
            napari_viewer,
            [self.source, self.image, self.label_layer, self.convention, self.stores, self.classes, *self.form.values(),
             *self.network_form.values(), self.device_label, plot_box, self.tensorboard_button],
            title="Train segmentation",
            run_text="Train",
        )
        self.source.changed.connect(self._show_source)
        self._show_source()
        self.result = None

    def open_tensorboard(self, *_) -> str:
        """Start TensorBoard on the run folder's logs (once) and open it in the browser; its URL."""
        import atexit
        import webbrowser

        if self._tensorboard is None or self._tensorboard[0].poll() is not None:
            port = _free_port()
            process = subprocess.Popen(tensorboard_command(Path(str(self.form["log_dir"].value)), port),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            atexit.register(process.terminate)  # the server goes with napari
            self._tensorboard = (process, f"http://localhost:{port}/")
        url = self._tensorboard[1]
        webbrowser.open(url)
        self.status.value = f"TensorBoard: {url}"
        return url

    def _show_source(self, *_):
        layers = self.source.value == "layers"
        for w in (self.image, self.label_layer):
            w.visible = layers
        self.stores.visible = not layers

    def _config(self, n_classes: int, class_names: list[str] | None = None):
        from napari_cryolearn.segmentation.config import NetworkConfig, SegmentationTrainConfig

        stores = [Path(p.strip()) for p in self.stores.value.split(",") if p.strip()]
        values = _changed(form_values(self.form, self.fields), self.fields)
        chosen = _changed(form_values(self.network_form, self.network_fields), self.network_fields)
        network = {**chosen, "out_channels": max(n_classes, 2), "class_names": class_names}
        return SegmentationTrainConfig.from_dict({
            **values,
            "patch_stores": stores if self.source.value == "patch stores" else [],
            "network": network,
            "progress_every_n_batches": 1,  # the plot shows every batch's loss
        })

    def make_job(self):
        from napari_cryolearn.engine.child import run_in_child
        from napari_cryolearn.segmentation.config import DEFAULT_IGNORE_INDEX

        n_classes = int(self.classes.value)
        if self.source.value == "patch stores":
            if not self.stores.value.strip():
                raise InputError("give at least one patch store", field="patch_stores")
            config = self._config(n_classes or 2)
            factory = lambda stop: run_in_child(TRAIN_JOB, config, stop=stop)  # noqa: E731
        else:
            image = volume_of(self.image.value, "tomogram layer")
            labels = volume_of(self.label_layer.value, "labels layer")
            if image.shape != labels.shape:
                raise InputError(f"labels shape {labels.shape} differs from tomogram shape {image.shape}",
                                 path=self.label_layer.value.name)
            if not n_classes:  # the unannotated value is no class
                n_classes = int(np.max(np.where(np.asarray(labels) == DEFAULT_IGNORE_INDEX, 0, labels))) + 1
            config = self._config(n_classes, _class_names(self.label_layer.value, n_classes))
            size = tuple(config.patch_size or (64, 64, 64))
            if any(s > n for s, n in zip(size, image.shape)):
                raise InputError(f"patch size {size} exceeds the volume {image.shape}", field="patch_size")
            image, labels = np.asarray(image, np.float32), np.asarray(labels)
            factory = lambda stop: run_in_child(  # noqa: E731
                TRAIN_ARRAYS_JOB, [image], [labels], config, patch_size=size, stop=stop)
        self.loss_plot.clear()
        self.dice_plot.clear()
        return factory

    def on_progress(self, event: Progress) -> None:
        metrics = event.metrics or {}
        if "device" in metrics:
            self.device_label.value = f"device: {metrics['device']}"
        if "preset" in metrics:
            self.device_label.value = f"{self.device_label.value}, {metrics['preset']} preset"
            self.device_label.tooltip = event.message
        plot_training_progress(metrics, self.loss_plot, self.dice_plot, "val_dice")

    def on_result(self, result) -> None:
        self.result = result
        if result is not None:
            best = result.best_checkpoint or result.last_checkpoint
            if best is not None:
                handoff.trained_model.emit(Path(best))
            self.status.value = (f"{'stopped' if result.stopped else 'done'} after {result.epochs} epochs; "
                                 f"model: {best}")
