"""Dock widget "Pretrain (3D, no labels)": dense 3D SimSiam pretraining of the segmentation backbone
on tomogram files or on an Image layer, without labels.

It runs ``ssl.pretrain3d`` (:func:`~napari_cryolearn.selfsup.pretrain3d_job.pretrain3d_job`) in a
child process, as the other training widgets do (:class:`~.training_widget.TrainingWidget`), and
plots per batch the loss and per epoch the collapse level (0 healthy, 1 collapsed). Stop keeps
``model/last.ckpt``, which "continue training" resumes. The finished checkpoint is handed to
"Embedding volume"; "Train segmentation" takes it as its pretrained model.

Training on a layer: a 3D Image layer is written to ``<run folder>/training_data/tomogram.mrc``
(voxel size from the layer's scale, ``SOURCE.json`` naming the layer), so the run's
``config.yaml`` points at data that stays with the run.
"""

from __future__ import annotations

import json
from pathlib import Path

import napari.layers
import numpy as np
from magicgui.widgets import FileEdit, create_widget

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.ui.forms import field_widget, form_values
from napari_cryolearn.ui.training_data_folder import SOURCE_FILE, TRAINING_DATA, check_written_by
from napari_cryolearn.ui.training_widget import TrainingWidget

TRAIN_JOB = "napari_cryolearn.selfsup.pretrain3d_job:pretrain3d_job"
FORM_FIELDS = ("max_epochs", "max_time", "samples_per_epoch", "patch_size", "view_size", "batch_size", "lr", "device",
               "log_dir", "pretrained_model", "continue_training", "overwrite")
EXPERT_FIELDS = ("dim", "pred_dim", "dense_pred_dim", "include_global_loss", "weight_dense_loss",
                 "include_levels_loss", "view_overlap", "view_min_shift", "dropout_prob", "dropout", "optimizer",
                 "weight_decay", "scheduler", "seed", "num_workers")
BACKBONE_FIELDS = ("num_filters", "fpn_channels", "dense_dim", "block_type", "num_layers")
LAYER_FILE = "tomogram.mrc"
WRITTEN_BY = "Pretrain (3D, no labels)"
SOURCES = ("tomogram files", "Image layer")


class Pretrain3DWidget(TrainingWidget):
    """Pretrains a DenseSimSiam (see the module docstring); the form's fields are
    :class:`~napari_cryolearn.selfsup.pretrain3d_config.Pretrain3DConfig`'s, with the backbone's."""

    def __init__(self, napari_viewer):
        from napari_cryolearn.models.config import BackboneConfig
        from napari_cryolearn.selfsup.pretrain3d_config import Pretrain3DConfig

        fields = Pretrain3DConfig.model_fields
        self._viewer = napari_viewer
        self.files = FileEdit(mode="rm", value=(), label="tomograms", filter="*.mrc *.rec *.map *.zarr",
                              tooltip=fields["data"].description)
        self.image = create_widget(annotation=napari.layers.Image, label="tomogram (Image layer)",
                                   options={"choices": self._image_choices})
        self.backbone_fields = BackboneConfig.model_fields
        self.backbone_form = {n: field_widget(n, self.backbone_fields[n]) for n in BACKBONE_FIELDS}
        super().__init__(
            napari_viewer, config_class=Pretrain3DConfig, job=TRAIN_JOB, stage="ssl.pretrain3d",
            title="Pretrain (3D, no labels)", sources={SOURCES[0]: [self.files], SOURCES[1]: [self.image]},
            form_fields=FORM_FIELDS, expert_fields=EXPERT_FIELDS, expert_widgets=list(self.backbone_form.values()),
            run_folder="pretrain3d", metric=("collapse_level", "collapse level (0 healthy, 1 collapsed)", (0.0, 1.0)),
            handoff_signal="trained_dense", handoff_to="Embedding volume",
        )

    def _image_choices(self, widget=None):
        return [layer for layer in self._viewer.layers
                if isinstance(layer, napari.layers.Image) and layer.ndim == 3 and not layer.rgb]

    def build(self, values: dict):
        from napari_cryolearn.selfsup.pretrain3d_config import Pretrain3DConfig

        values = {**values, "backbone": form_values(self.backbone_form, self.backbone_fields)}
        if self.source.value == SOURCES[0]:
            files = [Path(str(p)) for p in (self.files.value or ()) if str(p).strip() not in ("", ".")]
            if not files:
                raise InputError("choose one or more tomograms (MRC) or patch stores", field="data")
            return Pretrain3DConfig.from_dict({**values, "data": files}), None
        return self._layer_job(values)

    def _layer_job(self, values: dict):
        from napari_cryolearn.engine.training import RunFolder, check_log_dir
        from napari_cryolearn.selfsup.pretrain3d_config import Pretrain3DConfig
        from napari_cryolearn.ui.layers import as_array

        layer = self.image.value
        if layer is None:
            raise InputError("choose a 3D Image layer of a tomogram", field="data")
        if "log_dir" not in values:
            raise InputError("choose a run folder", field="log_dir")
        volume = as_array(layer.data)
        if volume.ndim != 3 or not np.issubdtype(volume.dtype, np.number):
            raise InputError(f"expected a 3D volume of numbers, got shape {volume.shape}, dtype {volume.dtype}",
                             path=layer.name, field="data")
        folder = Path(values["log_dir"]) / TRAINING_DATA
        config = Pretrain3DConfig.from_dict({**values, "data": [folder / LAYER_FILE]})
        check_log_dir(config.log_dir, config.data, what="tomogram")
        RunFolder(config, inputs=config.data).check()
        check_written_by(folder, WRITTEN_BY)
        if any(p > s for p, s in zip(config.patch_size, volume.shape)):
            raise InputError(f"patch_size {tuple(config.patch_size)} is larger than the layer ({volume.shape})",
                             path=layer.name, field="patch_size")
        scale = tuple(float(s) for s in layer.scale[-3:])
        record = {"image_layer": layer.name, "shape": list(volume.shape), "scale": list(scale),
                  "written_by": WRITTEN_BY}

        def write():
            from napari_cryolearn.engine.atomic import atomic_path
            from napari_cryolearn.io.mrc import write_mrc

            folder.mkdir(parents=True, exist_ok=True)
            write_mrc(folder / LAYER_FILE, np.asarray(volume, np.float32), voxel_size=scale)
            with atomic_path(folder / SOURCE_FILE, overwrite=True) as tmp:
                Path(tmp).write_text(json.dumps(record, indent=1))

        return config, write
