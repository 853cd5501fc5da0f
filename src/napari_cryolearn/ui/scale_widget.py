"""Dock widget: invert, clip at percentiles and rescale an Image layer to [0, 1]."""

from __future__ import annotations

import napari.layers
from magicgui.widgets import CheckBox, FloatSpinBox, create_widget

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.ui.job_widget import JobWidget
from napari_cryolearn.ui.layers import add_layer_data, derived_kwargs, volume_of


class ScaleWidget(JobWidget):
    """Adds ``<layer> scaled``: float32 in [0, 1], same scale as the source."""

    def __init__(self, napari_viewer):
        self.layer = create_widget(annotation=napari.layers.Image, label="tomogram")
        self.invert = CheckBox(value=False, text="invert (dense = bright)")
        self.lower = FloatSpinBox(value=0.1, min=0.0, max=100.0, step=0.1, label="lower percentile")
        self.upper = FloatSpinBox(value=99.9, min=0.0, max=100.0, step=0.1, label="upper percentile")
        super().__init__(napari_viewer, [self.layer, self.invert, self.lower, self.upper], title="Scale intensity")

    def make_job(self):
        from napari_cryolearn.prep.scaling import scale_intensity

        layer = self.layer.value
        volume = volume_of(layer, "tomogram layer")
        lower, upper, invert = float(self.lower.value), float(self.upper.value), bool(self.invert.value)
        if not lower < upper:
            raise InputError(f"lower percentile {lower} must be below upper {upper}", field="percentiles")

        def job(stop):
            yield Progress(0, 1, f"scaling {layer.name}", stage="prep.scale")
            try:
                out = scale_intensity(volume, lower=lower, upper=upper, invert=invert)
            except ValueError as err:
                raise InputError(str(err), path=layer.name) from None
            yield Progress(1, 1, "done", stage="prep.scale")
            kwargs = derived_kwargs(layer, f"{layer.name} scaled", contrast_limits=(0.0, 1.0))
            return [(out, kwargs, "image")]

        return job

    def on_result(self, result) -> None:
        add_layer_data(self.viewer, result)
