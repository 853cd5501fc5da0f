"""Dock widget: filter a Labels layer (binary mask, kept classes, or renumbered classes)."""

from __future__ import annotations

import napari.layers
from magicgui.widgets import ComboBox, FloatSpinBox, LineEdit, create_widget

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.ui.job_widget import JobWidget
from napari_cryolearn.ui.layers import add_layer_data, derived_kwargs, volume_of

MODES = {"binary mask": (True, False), "keep classes": (False, False), "renumber 1..n": (False, True)}


def parse_values(text: str) -> list[int]:
    """``"1, 3 4"`` → ``[1, 3, 4]``; InputError on anything else."""
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise InputError(f"label values must be integers, got {text!r}", field="keep") from None
    if not values:
        raise InputError("give at least one label value to keep", field="keep")
    return values


class FilterLabelsWidget(JobWidget):
    """Keeps some values of a Labels layer and adds the result as a new Labels layer."""

    def __init__(self, napari_viewer):
        self.layer = create_widget(annotation=napari.layers.Labels, label="labels")
        self.keep = LineEdit(value="1", label="keep values")
        self.mode = ComboBox(choices=list(MODES), value="binary mask", label="output")
        self.expand = FloatSpinBox(value=0.0, min=0.0, max=20.0, step=1.0, label="grow by (voxels)")
        super().__init__(napari_viewer, [self.layer, self.keep, self.mode, self.expand], title="Filter labels")

    def make_job(self):
        from napari_cryolearn.prep.filtering import filter_labels

        layer = self.layer.value
        labels = volume_of(layer, "labels layer")
        keep = parse_values(self.keep.value)
        binary, renumber = MODES[self.mode.value]
        expand = float(self.expand.value)

        def job(stop):
            yield Progress(0, 1, f"filtering {layer.name}", stage="prep.filter")
            out, mapping = filter_labels(labels, keep, binary=binary, renumber=renumber, expand=expand)
            yield Progress(1, 1, "done", stage="prep.filter")
            kwargs = derived_kwargs(layer, f"{layer.name} filtered", metadata={"label_mapping": mapping})
            return [(out, kwargs, "labels")]

        return job

    def on_result(self, result) -> None:
        add_layer_data(self.viewer, result)
