"""Dock widget: generate a synthetic tomogram (volume, labels, picks) of a chosen size and seed."""

from __future__ import annotations

from magicgui.widgets import FloatSpinBox, SpinBox

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.ui.job_widget import JobWidget
from napari_cryolearn.ui.layers import add_layer_data


def _sample_job(shape, voxel_size, seed, stop):
    from napari_cryolearn.ui.sample_data import tomogram_layers

    yield Progress(0, 1, f"generating {shape[0]}×{shape[1]}×{shape[2]} voxels", stage="sample")
    layers = tomogram_layers(shape=shape, voxel_size=voxel_size, seed=seed)
    yield Progress(1, 1, "done", stage="sample")
    return layers


class SyntheticTomogramWidget(JobWidget):
    """Generates the synthetic sample tomogram and adds it as Image, Labels and Points layers."""

    def __init__(self, napari_viewer):
        self.size_z = SpinBox(value=96, min=32, max=512, step=16, label="size z (voxels)")
        self.size_y = SpinBox(value=128, min=32, max=1024, step=16, label="size y (voxels)")
        self.size_x = SpinBox(value=128, min=32, max=1024, step=16, label="size x (voxels)")
        self.voxel_size = FloatSpinBox(value=10.0, min=0.1, max=100.0, step=0.5, label="voxel size (Å)")
        self.seed = SpinBox(value=0, min=0, max=2**31 - 1, label="seed")
        super().__init__(
            napari_viewer,
            [self.size_z, self.size_y, self.size_x, self.voxel_size, self.seed],
            title="Synthetic tomogram",
            run_text="Generate",
        )

    def make_job(self):
        shape = (self.size_z.value, self.size_y.value, self.size_x.value)
        if min(shape) < 32:
            raise InputError(f"each size must be at least 32 voxels, got {shape}", field="size")
        voxel_size, seed = float(self.voxel_size.value), int(self.seed.value)
        return lambda stop: _sample_job(shape, voxel_size, seed, stop)

    def on_result(self, result) -> None:
        if result:
            add_layer_data(self.viewer, result)
