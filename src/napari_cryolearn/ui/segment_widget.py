"""Dock widget "Segment": a trained model applied to an Image layer → Labels (+ probabilities)."""

from __future__ import annotations

import napari.layers
from magicgui.widgets import CheckBox, ComboBox, FileEdit, FloatSpinBox, SpinBox, create_widget

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.ui.devices import available_devices
from napari_cryolearn.ui.job_widget import JobWidget
from napari_cryolearn.ui.layers import add_layer_data, derived_kwargs, volume_of


class SegmentWidget(JobWidget):
    """Adds ``<layer> segmentation`` (Labels) and optionally one probability Image per class."""

    def __init__(self, napari_viewer):
        self.model = FileEdit(mode="r", filter="*.ckpt", label="model checkpoint")
        self.layer = create_widget(annotation=napari.layers.Image, label="tomogram")
        self.window = SpinBox(value=0, min=0, max=512, step=16, label="window (0: training patch)")
        self.overlap = FloatSpinBox(value=0.5, min=0.0, max=0.9, step=0.05, label="window overlap")
        self.tta = CheckBox(value=False, text="test-time flips (4× slower)")
        self.probabilities = CheckBox(value=False, text="add class probabilities")
        self.device = ComboBox(choices=available_devices(), value="auto", label="device")
        super().__init__(
            napari_viewer,
            [self.model, self.layer, self.window, self.overlap, self.tta, self.probabilities, self.device],
            title="Segment",
            run_text="Segment",
        )

    def make_job(self):
        from napari_cryolearn.segmentation.predict_array import predict_array

        model = str(self.model.value).strip()
        if model in ("", "."):
            raise InputError("choose a model checkpoint (.ckpt)", field="model")
        layer = self.layer.value
        volume = volume_of(layer, "tomogram layer")
        window = (int(self.window.value),) * 3 if self.window.value else None
        kwargs = dict(window=window, overlap=float(self.overlap.value), tta_flips=bool(self.tta.value),
                      probabilities=bool(self.probabilities.value), device=self.device.value)

        def job(stop):
            result = yield from predict_array(model, volume, stop=stop, **kwargs)
            if result is None:
                return None
            prediction, names = result
            meta = {"label_names": dict(enumerate(names)), "model": model}
            layers = [(prediction.labels, derived_kwargs(layer, f"{layer.name} segmentation", metadata=meta),
                       "labels")]
            if prediction.probabilities is not None:
                probs = derived_kwargs(layer, [f"{layer.name} p({n})" for n in names], channel_axis=0,
                                       contrast_limits=(0.0, 1.0), visible=False)
                layers.append((prediction.probabilities, probs, "image"))
            return layers

        return job

    def on_result(self, result) -> None:
        if result:
            add_layer_data(self.viewer, result)
