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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A checkpoint of a tiny 4-class segmentation network trained one epoch on the sample."""
    from napari_cryolearn.engine.jobs import run_job
    from napari_cryolearn.sample import make_synthetic_tomogram
    from napari_cryolearn.segmentation.config import (
        BackboneConfig,
        NetworkConfig,
        SegmentationTrainConfig,
        TransformsConfig,
    )
    from napari_cryolearn.segmentation.train_job import train_arrays_job

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tomo = make_synthetic_tomogram(shape=(32, 32, 32), voxel_size=10.0, seed=3)
    network = NetworkConfig(backbone=BackboneConfig(num_filters=(4, 8, 8, 8), fpn_channels=8, dense_dim=8),
                            out_channels=4, filters=(8, 8), class_names=["background", "membrane", "protein",
                                                                         "particle"])
    config = SegmentationTrainConfig(
        log_dir=tmp_path_factory.mktemp("tiny_model") / "run", network=network, max_epochs=1, batch_size=2,
        device="cpu", validation_ratio=0.25,
        transforms=TransformsConfig(flip=False, rotate=None, zoom=None, low_pass_sigma_range=None,
                                    high_pass_sigma_range=None, noise_sigma_range=None))
    result = run_job(train_arrays_job([tomo.volume.astype("float32")], [tomo.labels], config,
                                      patch_size=(16, 16, 16)))
    return result.last_checkpoint


@pytest.fixture(autouse=True)
def _no_model_handed_between_tests():
    """The Train → Segment hand-off is process-wide: each test starts without one."""
    from napari_cryolearn.ui.handoff import handoff

    handoff.last_model = None
    yield
    handoff.last_model = None
