"""Dock widget: per-class signed distance maps of a Labels layer, one Image layer per class."""

from __future__ import annotations

import napari.layers
from magicgui.widgets import CheckBox, FloatSpinBox, SpinBox, create_widget

from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.ui.job_widget import JobWidget
from napari_cryolearn.ui.layers import add_layer_data, derived_kwargs, scale_of, volume_of


class DistanceMapsWidget(JobWidget):
    """Adds ``<layer> distance <class>`` images: positive inside the class, negative outside."""

    def __init__(self, napari_viewer):
        self.layer = create_widget(annotation=napari.layers.Labels, label="labels")
        self.n_classes = SpinBox(value=0, min=0, max=255, label="classes (0: max label + 1)")
        self.physical = CheckBox(value=False, text="distances in Å (anisotropic voxels)")
        self.clip = FloatSpinBox(value=0.0, min=0.0, max=1e6, step=1.0, label="clip at (0: no clipping)")
        self.normalize = CheckBox(value=False, text="divide by the clip value")
        super().__init__(napari_viewer, [self.layer, self.n_classes, self.physical, self.clip, self.normalize],
                         title="Distance maps")

    def make_job(self):
        from napari_cryolearn.prep.distances import signed_distance_maps

        layer = self.layer.value
        labels = volume_of(layer, "labels layer")
        n_classes = int(self.n_classes.value) or None
        voxel_size = scale_of(layer) if self.physical.value else None
        clip = float(self.clip.value) or None
        normalize = bool(self.normalize.value) and clip is not None

        def job(stop):
            yield Progress(0, 1, f"distance maps of {layer.name}", stage="prep.distances")
            maps = signed_distance_maps(labels, n_classes=n_classes, voxel_size=voxel_size, clip=clip,
                                        normalize=normalize)
            yield Progress(1, 1, "done", stage="prep.distances")
            names = [f"{layer.name} distance {c}" for c in range(maps.shape[0])]
            kwargs = derived_kwargs(layer, names, channel_axis=0, colormap="twilight_shifted")
            return [(maps, kwargs, "image")]

        return job

    def on_result(self, result) -> None:
        add_layer_data(self.viewer, result)
