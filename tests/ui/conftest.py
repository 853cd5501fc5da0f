import warnings

import pytest

from napari_cryolearn.ui.layers import add_layer_data
from napari_cryolearn.ui.sample_data import tomogram_layers


@pytest.fixture
def sample_viewer(make_napari_viewer):
    """``sample_viewer(shape)``: a viewer holding the synthetic sample (seed 3, 10 Å voxels)."""

    def make(shape):
        viewer = make_napari_viewer()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # small volumes hold fewer objects
            add_layer_data(viewer, tomogram_layers(shape=shape, voxel_size=10.0, seed=3))
        return viewer

    return make
