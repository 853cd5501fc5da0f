"""Each preparation widget on the sample data in a real viewer: press the button, check the layer."""

import numpy as np
import pytest
from scipy import ndimage

from napari_cryolearn.io.patch_store import open_patch_store

PLUGIN = "napari-cryolearn"


@pytest.fixture
def viewer_with_sample(sample_viewer):
    return sample_viewer((48, 64, 64))


def _run(viewer, qtbot, name, **values):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    widget.reset_choices()
    for key, value in values.items():
        getattr(widget, key).value = value
    running = widget.run()
    assert running is not None, widget.status.value
    qtbot.waitUntil(lambda: running.done, timeout=60000)
    assert running.error is None, running.error
    return widget


def test_filter_labels_widget(viewer_with_sample, qtbot):
    viewer = viewer_with_sample
    labels = viewer.layers["synthetic labels"]
    _run(viewer, qtbot, "Filter labels", layer=labels, keep="1, 2", mode="binary mask")
    out = viewer.layers["synthetic labels filtered"]
    np.testing.assert_array_equal(out.data, np.isin(labels.data, [1, 2]).astype(out.data.dtype))
    assert tuple(out.scale) == tuple(labels.scale)
    _run(viewer, qtbot, "Filter labels", layer=labels, keep="3 2", mode="renumber 1..n")
    renumbered = viewer.layers["synthetic labels filtered [1]"]
    assert set(np.unique(renumbered.data)) == {0, 1, 2}
    np.testing.assert_array_equal(renumbered.data == 1, labels.data == 3)


def test_filter_widget_rejects_bad_values(viewer_with_sample):
    viewer = viewer_with_sample
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Filter labels")
    widget.reset_choices()
    widget.layer.value = viewer.layers["synthetic labels"]
    widget.keep.value = "membrane"
    assert widget.run() is None
    assert "integers" in widget.status.value


def test_scale_widget(viewer_with_sample, qtbot):
    viewer = viewer_with_sample
    image = viewer.layers["synthetic tomogram"]
    _run(viewer, qtbot, "Scale intensity", layer=image, invert=True, lower=1.0, upper=99.0)
    out = viewer.layers["synthetic tomogram scaled"].data
    x = -np.asarray(image.data, dtype=np.float64)
    lo, hi = np.percentile(x, [1.0, 99.0])
    np.testing.assert_allclose(out, np.clip((x - lo) / (hi - lo), 0, 1), atol=1e-5)
    assert out.dtype == np.float32


def test_masks_widgets(viewer_with_sample, qtbot):
    viewer = viewer_with_sample
    image, particles = viewer.layers["synthetic tomogram"], viewer.layers["particles"]
    _run(viewer, qtbot, "Masks from points", points=particles, reference=image, radius=3.0, unit="voxel",
         class_column="", value=5)
    spheres = viewer.layers["particles spheres"].data
    assert spheres.shape == image.data.shape and set(np.unique(spheres)) == {0, 5}
    centre = np.round(particles.data[0]).astype(int)
    assert spheres[tuple(centre)] == 5
    _run(viewer, qtbot, "Mask from threshold", layer=image, threshold=-1.0, above=False, min_size=10)
    mask = viewer.layers["synthetic tomogram mask"].data
    sizes = np.bincount(ndimage.label(mask > 0)[0].ravel())[1:]
    assert mask.any() and sizes.min() >= 10


def test_distance_widget(viewer_with_sample, qtbot):
    viewer = viewer_with_sample
    labels = viewer.layers["synthetic labels"]
    _run(viewer, qtbot, "Distance maps", layer=labels, n_classes=4)
    maps = [viewer.layers[f"synthetic labels distance {c}"].data for c in range(4)]
    for c, m in enumerate(maps):
        assert m.shape == labels.data.shape
        assert np.all((m > 0) == (labels.data == c))


def test_patches_widget(viewer_with_sample, qtbot, tmp_path):
    viewer = viewer_with_sample
    image, labels = viewer.layers["synthetic tomogram"], viewer.layers["synthetic labels"]
    store_path = tmp_path / "tomo.zarr"
    _run(viewer, qtbot, "Training patches", image=image, label_layer=labels, output=str(store_path),
         patch_size=32, overlap=0.5)
    store = open_patch_store(store_path)
    assert len(store) == len(viewer.layers["synthetic tomogram patches"].data)
    np.testing.assert_array_equal(store.reassemble("labels"), labels.data)
    assert store.voxel_size == pytest.approx((10.0, 10.0, 10.0))
