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


@pytest.fixture(scope="session")
def tiny_picker(tmp_path_factory):
    """``(checkpoint, mesh containers, operator cache)``: the picker of the job tests' tiny
    network trained one epoch on the synthetic picking data."""
    from napari_cryolearn.engine.jobs import run_job
    from napari_cryolearn.picking.config import PickTrainConfig
    from napari_cryolearn.picking.sample_data import write_picking_dataset
    from napari_cryolearn.picking.train_job import pick_train_job

    root = tmp_path_factory.mktemp("tiny_picker")
    meshes = write_picking_dataset(root, {"train": [0]}, shape=(48, 64, 64), n_particles=0, min_voxels=1000)
    config = PickTrainConfig(data=root / "DATA", log_dir=root / "run", max_epochs=1, cache_dir=root / "cache",
                             device="cpu", network=dict(partition_size=400, eigenpairs=32))
    result = run_job(pick_train_job(config))
    return result.last_checkpoint, meshes["train"], root / "cache"


@pytest.fixture(autouse=True)
def _no_model_handed_between_tests():
    """The Train → Segment hand-off is process-wide: each test starts without one."""
    from napari_cryolearn.ui.handoff import handoff

    handoff.last_model = handoff.last_picker = None
    yield
    handoff.last_model = handoff.last_picker = None
