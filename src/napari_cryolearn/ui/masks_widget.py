"""Dock widgets: label masks from Points (spheres) and from a density map (threshold)."""

from __future__ import annotations

import napari.layers
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, SpinBox, create_widget

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.ui.job_widget import JobWidget
from napari_cryolearn.ui.layers import add_layer_data, derived_kwargs, scale_of, volume_of


class SpheresMaskWidget(JobWidget):
    """Spheres at a Points layer's coordinates, on the grid of a reference Image layer."""

    def __init__(self, napari_viewer):
        self.points = create_widget(annotation=napari.layers.Points, label="points")
        self.reference = create_widget(annotation=napari.layers.Image, label="reference volume")
        self.radius = FloatSpinBox(value=50.0, min=0.1, max=10000.0, step=1.0, label="radius")
        self.unit = ComboBox(choices=["angstrom", "voxel"], value="angstrom", label="radius unit")
        self.class_column = LineEdit(value="rlnClassNumber", label="class feature (optional)")
        self.value = SpinBox(value=1, min=1, max=65535, label="class when no feature")
        super().__init__(
            napari_viewer,
            [self.points, self.reference, self.radius, self.unit, self.class_column, self.value],
            title="Masks from points",
        )

    def make_job(self):
        from napari_cryolearn.prep.masks import spheres_mask

        points, reference = self.points.value, self.reference.value
        if points is None:
            raise InputError("choose a points layer")
        shape = volume_of(reference, "reference volume").shape
        coords = np.asarray(points.data, dtype=float)
        if coords.ndim != 2 or coords.shape[1] != 3:
            raise InputError(f"expected 3D points, got shape {coords.shape}", path=points.name)
        column = self.class_column.value.strip()
        classes = None
        if column and column in points.features:
            classes = np.asarray(points.features[column], dtype=int)
        radius, unit, value = float(self.radius.value), self.unit.value, int(self.value.value)
        voxel_size = scale_of(reference)

        def job(stop):
            yield Progress(0, 1, f"drawing {len(coords)} spheres", stage="prep.masks")
            try:
                mask = spheres_mask(shape, coords, radius, classes=classes if classes is not None else value,
                                    voxel_size=voxel_size, radius_unit=unit)
            except ValueError as err:
                raise InputError(str(err), path=points.name) from None
            yield Progress(1, 1, "done", stage="prep.masks")
            return [(mask, derived_kwargs(reference, f"{points.name} spheres"), "labels")]

        return job

    def on_result(self, result) -> None:
        add_layer_data(self.viewer, result)


class ThresholdMaskWidget(JobWidget):
    """A Labels layer where an Image layer is above (or below) a threshold, small pieces dropped."""

    def __init__(self, napari_viewer):
        self.layer = create_widget(annotation=napari.layers.Image, label="density or probability")
        self.threshold = FloatSpinBox(value=0.5, min=-1e9, max=1e9, step=0.05, label="threshold")
        self.above = CheckBox(value=True, text="keep values above the threshold")
        self.min_size = SpinBox(value=0, min=0, max=10**9, label="smallest piece (voxels)")
        super().__init__(napari_viewer, [self.layer, self.threshold, self.above, self.min_size],
                         title="Mask from threshold")

    def make_job(self):
        from napari_cryolearn.prep.masks import threshold_mask

        layer = self.layer.value
        volume = volume_of(layer, "image layer")
        threshold, above, min_size = float(self.threshold.value), bool(self.above.value), int(self.min_size.value)

        def job(stop):
            yield Progress(0, 1, f"thresholding {layer.name}", stage="prep.threshold")
            mask = threshold_mask(volume, threshold, min_size=min_size, above=above)
            yield Progress(1, 1, "done", stage="prep.threshold")
            return [(mask, derived_kwargs(layer, f"{layer.name} mask"), "labels")]

        return job

    def on_result(self, result) -> None:
        add_layer_data(self.viewer, result)
