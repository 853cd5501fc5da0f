"""Dock widget: cut training patches of an Image layer (and Labels) into a patch store."""

from __future__ import annotations

from pathlib import Path

import napari.layers
import numpy as np
from magicgui.widgets import CheckBox, FileEdit, FloatSpinBox, SpinBox, create_widget

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.ui.job_widget import JobWidget
from napari_cryolearn.ui.layers import add_layer_data, derived_kwargs, scale_of, volume_of


class PatchesWidget(JobWidget):
    """Writes ``<output>.zarr`` and shows the patch centres as a Points layer."""

    def __init__(self, napari_viewer):
        self.image = create_widget(annotation=napari.layers.Image, label="tomogram")
        self.label_layer = create_widget(annotation=napari.layers.Labels | None, label="labels (optional)")
        self.output = FileEdit(mode="w", filter="*.zarr", label="patch store (.zarr)")
        self.patch_size = SpinBox(value=64, min=8, max=1024, step=8, label="patch size (voxels)")
        self.overlap = FloatSpinBox(value=0.5, min=0.0, max=0.95, step=0.05, label="overlap (fraction)")
        self.drop_background = CheckBox(value=False, text="drop background-only patches")
        super().__init__(
            napari_viewer,
            [self.image, self.label_layer, self.output, self.patch_size, self.overlap, self.drop_background],
            title="Training patches",
        )

    def make_job(self):
        from napari_cryolearn.io.patch_store import write_patch_store

        image_layer, labels_layer = self.image.value, self.label_layer.value
        image = volume_of(image_layer, "tomogram layer")
        labels = None if labels_layer is None else volume_of(labels_layer, "labels layer")
        if labels is not None and labels.shape != image.shape:
            raise InputError(f"labels shape {labels.shape} differs from tomogram shape {image.shape}",
                             path=labels_layer.name)
        output = Path(self.output.value)
        if output.suffix != ".zarr":
            raise InputError("the patch store must end in .zarr", path=output, field="output")
        size = int(self.patch_size.value)
        if size > min(image.shape):
            raise InputError(f"patch size {size} exceeds the volume {image.shape}", path=image_layer.name)
        drop = bool(self.drop_background.value)
        if drop and labels is None:
            raise InputError("dropping background-only patches needs a labels layer", field="labels")
        overlap = float(self.overlap.value)
        voxel_size = scale_of(image_layer)

        def job(stop):
            writer = write_patch_store(output, image, labels, patch_size=size, overlap=overlap,
                                       remove_only_background=drop, voxel_size=voxel_size,
                                       attrs={"name": image_layer.name})
            try:
                while True:
                    done, total = next(writer)
                    yield Progress(done, total, f"patch {done}/{total}", stage="prep.patches")
                    if stop.is_set():
                        writer.close()
                        return None
            except StopIteration as end:
                path = end.value
            from napari_cryolearn.io.patch_store import open_patch_store

            origins = np.asarray(open_patch_store(path).origins, dtype=float)
            centres = origins + (size - 1) / 2.0
            kwargs = derived_kwargs(image_layer, f"{image_layer.name} patches", size=size / 4,
                                    face_color="orange", metadata={"patch_store": str(path)})
            return [(centres, kwargs, "points")]

        return job

    def on_result(self, result) -> None:
        if result:
            add_layer_data(self.viewer, result)
            self.status.value = f"wrote {self.output.value}"
