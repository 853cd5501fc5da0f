"""Dock widget "Train autoencoder": the regularised 4D-STEM autoencoder trained on a scan file or
on a 4D Image layer.

It runs ``ae.train`` (:func:`~napari_cryolearn.selfsup.ae_train_job.ae_train_job`) in a child
process, as the other training widgets do (:class:`~.training_widget.TrainingWidget`), and
plots per epoch the total loss, the reconstruction error and the three regularisers (activity,
similarity, divergence, each as logged before its weight), and, with "realtime metrics" (on
by default here), the validation PSNR and SSIM. Stop keeps ``model/last.ckpt``; the finished
checkpoint is handed to "Latent maps".

Training on a layer: a 4D Image layer (scan y, scan x, detector y, detector x), as the 4D-STEM
reader opens a scan, or a 3D stack of patterns. The widget writes it to
``<run folder>/training_data/scan4d.npy`` (and ``SOURCE.json`` naming the layer) and trains on
that file, so the run's ``config.yaml`` points at data that stays with the run.
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

TRAIN_JOB = "napari_cryolearn.selfsup.ae_train_job:ae_train_job"
FORM_FIELDS = ("latent", "max_epochs", "max_time", "batch_size", "lr", "binning", "realtime_metrics", "device",
               "log_dir", "pretrained_model", "continue_training", "overwrite")
EXPERT_FIELDS = ("width", "lambda_act", "lambda_sim", "lambda_div", "divergence", "crop", "dataset", "scan_shape",
                 "validation_ratio", "optimizer", "weight_decay", "scheduler", "seed", "num_workers")
LAYER_SCAN = "scan4d.npy"
WRITTEN_BY = "Train autoencoder"
SOURCES = ("scan file", "Image layer")


def layer_scan(layer) -> tuple[np.ndarray, float | None]:
    """``(patterns, step in nm or None)`` of an Image layer holding a 4D scan or a 3D stack of
    patterns; :class:`InputError` naming the layer otherwise."""
    from napari_cryolearn.ui.layers import as_array

    if layer is None:
        raise InputError("choose an Image layer of the 4D-STEM scan", field="data")
    if getattr(layer, "rgb", False) or layer.ndim not in (3, 4):
        raise InputError(f"expected a 4D scan (scan y, scan x, detector y, detector x) or a 3D stack of patterns, "
                         f"got {layer.ndim} dimensions", path=layer.name, field="data")
    step = dict(layer.metadata).get("step_nm")
    return as_array(layer.data), (float(step) if step else None)


def write_layer_scan(folder: Path, patterns: np.ndarray, record: dict) -> Path:
    """Write ``folder/scan4d.npy`` and ``folder/SOURCE.json`` atomically; returns the scan's path."""
    from napari_cryolearn.engine.atomic import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / LAYER_SCAN
    with atomic_path(target, overwrite=True) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(patterns))
    with atomic_path(folder / SOURCE_FILE, overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps({**record, "written_by": WRITTEN_BY}, indent=1))
    return target


class AETrainWidget(TrainingWidget):
    """Trains the 4D-STEM autoencoder (see the module docstring); the form's fields are
    :class:`~napari_cryolearn.selfsup.ae_config.AETrainConfig`'s."""

    def __init__(self, napari_viewer):
        from napari_cryolearn.selfsup.ae_config import AETrainConfig

        fields = AETrainConfig.model_fields
        self._viewer = napari_viewer
        self.data = FileEdit(mode="r", value="", label="scan file", filter="*.npy *.h5 *.hdf5 *.mrc *.mrcs *.pt",
                             tooltip=fields["data"].description)
        self.image = create_widget(annotation=napari.layers.Image, label="scan (Image layer)",
                                   options={"choices": self._image_choices,
                                            "tooltip": "a 4D scan (scan y, scan x, detector y, detector x) or a "
                                                       "3D stack of patterns"})
        super().__init__(
            napari_viewer, config_class=AETrainConfig, job=TRAIN_JOB, stage="ae.train", title="Train autoencoder",
            sources={SOURCES[0]: [self.data], SOURCES[1]: [self.image]}, form_fields=FORM_FIELDS,
            expert_fields=EXPERT_FIELDS, run_folder="autoencoder",
            metric=(("train_act", "train_sim", "train_div"), "regularisers (before their weights)", None),
            extra_plots=[("val_psnr", "validation PSNR (dB)", None), ("val_ssim", "validation SSIM", (0.0, 1.0))],
            handoff_signal="trained_autoencoder", handoff_to="Latent maps",
        )
        self.form["realtime_metrics"].value = True

    def _image_choices(self, widget=None):
        return [layer for layer in self._viewer.layers
                if isinstance(layer, napari.layers.Image) and layer.ndim in (3, 4) and not layer.rgb]

    def build(self, values: dict):
        from napari_cryolearn.selfsup.ae_config import AETrainConfig

        if self.source.value == SOURCES[0]:
            text = str(self.data.value).strip()
            if text in ("", "."):
                raise InputError("choose the 4D-STEM scan file", field="data")
            return AETrainConfig.from_dict({**values, "data": Path(text)}), None
        return self._layer_job(values)

    def _layer_job(self, values: dict):
        from napari_cryolearn.engine.training import RunFolder, check_log_dir
        from napari_cryolearn.selfsup.ae_config import AETrainConfig

        layer = self.image.value
        patterns, step = layer_scan(layer)
        if "log_dir" not in values:
            raise InputError("choose a run folder", field="log_dir")
        if not np.issubdtype(patterns.dtype, np.number):
            raise InputError(f"expected numbers, got dtype {patterns.dtype}", path=layer.name, field="data")
        folder = Path(values["log_dir"]) / TRAINING_DATA
        config = AETrainConfig.from_dict({**values, "data": folder / LAYER_SCAN})
        check_log_dir(config.log_dir, [config.data], what="scan")
        RunFolder(config, inputs=[config.data]).check()
        check_written_by(folder, WRITTEN_BY)
        record = {"image_layer": layer.name, "shape": list(patterns.shape), "step_nm": step}

        def write():
            write_layer_scan(folder, patterns, record)

        return config, write
