"""Dock widget "Train segmentation": from patch stores or from an Image + Labels layer pair.

Shows progress per batch, a live plot of loss and Dice per epoch, and the device it runs on.
Stop finishes the current batch and writes ``model/last.ckpt``, which "continue training"
resumes.
"""

from __future__ import annotations

from pathlib import Path

import napari.layers
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, LineEdit, SpinBox, create_widget

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.ui.devices import available_devices
from napari_cryolearn.ui.job_widget import JobWidget
from napari_cryolearn.ui.layers import volume_of
from napari_cryolearn.ui.metrics_plot import MetricsPlot

PLOTTED = ("train_loss", "val_loss", "val_dice")


class TrainSegmentationWidget(JobWidget):
    """Trains a segmentation network; the run folder holds checkpoints, logs and the config."""

    def __init__(self, napari_viewer):
        self.source = ComboBox(choices=["layers", "patch stores"], value="layers", label="train on")
        self.image = create_widget(annotation=napari.layers.Image, label="tomogram")
        self.label_layer = create_widget(annotation=napari.layers.Labels, label="labels")
        self.stores = LineEdit(value="", label="patch stores (.zarr, comma-separated)")
        self.patch_size = SpinBox(value=48, min=16, max=256, step=16, label="patch size (voxels)")
        self.classes = SpinBox(value=0, min=0, max=255, label="classes (0: max label + 1)")
        self.epochs = SpinBox(value=10, min=1, max=100000, label="epochs")
        self.batch_size = SpinBox(value=2, min=1, max=256, label="batch size")
        self.lr = FloatSpinBox(value=0.001, min=1e-6, max=1.0, step=0.0005, label="learning rate")
        self.log_dir = FileEdit(mode="d", value=str(Path.home() / "cryolearn-runs" / "segmentation"),
                                label="run folder")
        self.pretrained = FileEdit(mode="r", filter="*.ckpt", value="", label="pretrained model (optional)")
        self.resume = CheckBox(value=False, text="continue training from the run folder")
        self.overwrite = CheckBox(value=False, text="start afresh (replace the run in this folder)")
        self.device = ComboBox(choices=available_devices(), value="auto", label="device")
        self.plot = MetricsPlot()
        plot_box = Container(labels=False)
        plot_box.native.layout().addWidget(self.plot)
        super().__init__(
            napari_viewer,
            [self.source, self.image, self.label_layer, self.stores, self.patch_size, self.classes, self.epochs,
             self.batch_size, self.lr, self.log_dir, self.pretrained, self.resume, self.overwrite, self.device,
             plot_box],
            title="Train segmentation",
            run_text="Train",
        )
        self.source.changed.connect(self._show_source)
        self._show_source()
        self.result = None

    def _show_source(self, *_):
        layers = self.source.value == "layers"
        for w in (self.image, self.label_layer, self.patch_size):
            w.visible = layers
        self.stores.visible = not layers

    def _config(self, n_classes: int):
        from napari_cryolearn.segmentation.config import NetworkConfig, SegmentationTrainConfig

        pretrained = str(self.pretrained.value).strip()
        stores = [Path(p.strip()) for p in self.stores.value.split(",") if p.strip()]
        return SegmentationTrainConfig.from_dict({
            "patch_stores": stores if self.source.value == "patch stores" else [],
            "log_dir": Path(self.log_dir.value),
            "network": NetworkConfig(out_channels=max(n_classes, 2)).to_dict(),
            "max_epochs": int(self.epochs.value),
            "batch_size": int(self.batch_size.value),
            "lr": float(self.lr.value),
            "device": self.device.value,
            "pretrained_model": Path(pretrained) if pretrained not in ("", ".") else None,
            "continue_training": bool(self.resume.value),
            "overwrite": bool(self.overwrite.value),
        })

    def make_job(self):
        from napari_cryolearn.segmentation.train_job import train_arrays_job, train_job

        n_classes = int(self.classes.value)
        if self.source.value == "patch stores":
            if not self.stores.value.strip():
                raise InputError("give at least one patch store", field="patch stores")
            config = self._config(n_classes or 2)
            factory = lambda stop: train_job(config, stop=stop)  # noqa: E731
        else:
            image = volume_of(self.image.value, "tomogram layer")
            labels = volume_of(self.label_layer.value, "labels layer")
            if image.shape != labels.shape:
                raise InputError(f"labels shape {labels.shape} differs from tomogram shape {image.shape}",
                                 path=self.label_layer.value.name)
            if not n_classes:
                n_classes = int(np.max(labels)) + 1
            size = int(self.patch_size.value)
            if size > min(image.shape):
                raise InputError(f"patch size {size} exceeds the volume {image.shape}", field="patch size")
            config = self._config(n_classes)
            image, labels = np.asarray(image, np.float32), np.asarray(labels)
            factory = lambda stop: train_arrays_job(  # noqa: E731
                [image], [labels], config, patch_size=(size,) * 3, stop=stop)
        self.plot.clear()
        return factory

    def on_progress(self, event: Progress) -> None:
        metrics = event.metrics or {}
        if "epoch" in metrics and "batch" not in metrics:
            for name in PLOTTED:
                if name in metrics:
                    self.plot.add(name, metrics["epoch"], metrics[name])

    def on_result(self, result) -> None:
        self.result = result
        if result is not None:
            best = result.best_checkpoint or result.last_checkpoint
            self.status.value = (f"{'stopped' if result.stopped else 'done'} after {result.epochs} epochs; "
                                 f"model: {best}")
