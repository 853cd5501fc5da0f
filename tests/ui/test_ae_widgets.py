"""The 4D-STEM reader, Train autoencoder → Latent maps in a real viewer, on a small generated scan.

The reader opens a 4D ``.npy`` (and an HDF5 scan with its step) as a 4D Image layer; the training
widget trains two epochs on that layer (written into the run folder) with the live plots; Latent
maps is handed the model, applies it to the layer's file and shows the latent channels, their
k-means clusters and, for a clicked scan position, the pattern and its reconstruction.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_cryolearn.sample.stem4d import make_4dstem_scan
from napari_cryolearn.ui.handoff import handoff
from napari_cryolearn.ui.io_hooks import get_reader
from napari_cryolearn.ui.latent_maps import CLUSTERS_LAYER, MAPS_LAYER, PATTERN_LAYER, RECONSTRUCTION_LAYER

PLUGIN = "napari-cryolearn"


@pytest.fixture(autouse=True)
def _no_model_handed_between_tests():
    handoff.last_autoencoder = None
    yield
    handoff.last_autoencoder = None


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    scan = make_4dstem_scan((12, 12), (16, 16), n_grains=8, seed=0)
    path = tmp_path_factory.mktemp("scan") / "scan.npy"
    np.save(path, scan.data)
    return path, scan


def test_reader_opens_4d_scans_and_leaves_other_arrays(tmp_path, scan_file):
    import h5py

    path, scan = scan_file
    reader = get_reader(str(path))
    assert reader is not None
    [(data, kwargs, kind)] = reader(str(path))
    assert kind == "image" and data.shape == (12, 12, 16, 16) and isinstance(data, np.memmap)
    assert kwargs["axis_labels"] == ("scan y", "scan x", "k y", "k x") and kwargs["metadata"]["scan4d"] == str(path)
    with h5py.File(tmp_path / "scan.h5", "w") as f:
        f.create_dataset("data", data=scan.data).attrs["step"] = 2.5
    [(_, kwargs, _)] = get_reader(str(tmp_path / "scan.h5"))(str(tmp_path / "scan.h5"))
    assert kwargs["scale"] == (2.5, 2.5, 1.0, 1.0) and kwargs["units"][0] == "nm"
    np.save(tmp_path / "stack.npy", scan.data[0])  # 3D: left to other readers
    assert get_reader(str(tmp_path / "stack.npy")) is None


def _dock(viewer, title):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, title)
    widget.reset_choices()
    return widget


def _run(widget, qtbot, timeout=300000):
    running = widget.run()
    assert running is not None, widget.status.value
    qtbot.waitUntil(lambda: running.done, timeout=timeout)
    assert running.error is None, running.error
    return running


def test_train_on_a_layer_then_latent_maps(make_napari_viewer, qtbot, tmp_path, scan_file):
    path, scan = scan_file
    viewer = make_napari_viewer()
    layer = viewer.open(str(path), plugin=PLUGIN)[0]

    train = _dock(viewer, "Train autoencoder")
    train.source.value = "Image layer"
    train.image.value = layer
    for name, value in (("log_dir", str(tmp_path / "run")), ("max_epochs", "2"), ("batch_size", 16),
                        ("width", 8), ("lr", "0.003"), ("device", "cpu")):
        train.form[name].value = value
    assert train.form["realtime_metrics"].value is True
    _run(train, qtbot)
    result = train.result
    assert result.epochs == 2 and not result.stopped
    written = np.load(tmp_path / "run" / "training_data" / "scan4d.npy")
    np.testing.assert_array_equal(written, scan.data)
    for name in ("train_act", "train_sim", "train_div"):
        assert [x for x, _ in train.metric_plot.series[name]] == [1, 2]
    (psnr_plot, _), (ssim_plot, _) = train.extra_plots
    assert [x for x, _ in psnr_plot.series["val_psnr"]] == [1, 2]
    assert all(0.0 <= y <= 1.0 for _, y in ssim_plot.series["val_ssim"])
    best = result.best_checkpoint
    assert handoff.last_autoencoder == best and "handed to Latent maps" in train.status.value

    maps = _dock(viewer, "Latent maps")
    assert maps.model.value == best
    maps.image.value = layer
    maps.output.value = str(tmp_path / "apply")
    maps.n_clusters.value = 3
    maps.form["device"].value = "cpu"
    _run(maps, qtbot)
    latent = np.load(tmp_path / "apply" / "latent.npy")
    assert latent.shape[:2] == (12, 12) and (latent >= 0).all()
    assert not (tmp_path / "apply" / "scan4d.npy").exists()  # the layer's own file was used
    shown = viewer.layers[MAPS_LAYER]
    assert shown.data.shape == (latent.shape[2], 12, 12)
    np.testing.assert_array_equal(shown.data[1], latent[..., 1])
    clusters = viewer.layers[CLUSTERS_LAYER].data
    assert clusters.shape == (12, 12) and set(np.unique(clusters)) <= {1, 2, 3} and len(np.unique(clusters)) >= 2
    assert "PSNR" in maps.status.value

    # a click on the cluster map at scan position (5, 7) shows that pattern and its reconstruction
    labels = viewer.layers[CLUSTERS_LAYER]
    maps._on_click(labels, SimpleNamespace(position=tuple(labels.data_to_world((5, 7)))))
    np.testing.assert_allclose(viewer.layers[PATTERN_LAYER].data, scan.data[5, 7], rtol=1e-6)
    recon = np.load(tmp_path / "apply" / "reconstruction.npy")
    np.testing.assert_allclose(viewer.layers[RECONSTRUCTION_LAYER].data, recon[5, 7], rtol=1e-6)
    assert viewer.layers[PATTERN_LAYER].metadata["scan_position"] == [5, 7]
    assert f"cluster {int(clusters[5, 7])}" in maps.status.value
