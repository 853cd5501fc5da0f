"""Self-supervised training → Embedding explorer in a real viewer, on 16 synthetic quality
micrographs (64 px, the tiny network of tests/selfsup/test_ssl_jobs.py).

The training widget trains two epochs on a folder (a second run, stopped after its first epoch,
keeps ``model/last.ckpt``) and on an Image layer (written to the run folder as an MRC stack at the
layer's scale); the explorer embeds the folder with the model it was handed, shows the map as a
Points layer coloured by cluster, shows the selected points' micrographs and power spectra, and
exports the selection as a list of micrographs; a table alone opens the same map.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import napari.layers
import numpy as np
import pandas as pd
import pytest

from napari_cryolearn.io import read_mrc, write_mrc
from napari_cryolearn.sample import make_quality_micrographs
from napari_cryolearn.selfsup.images import ImageRef, list_micrographs, read_micrograph
from napari_cryolearn.selfsup.tables import read_embedding_table
from napari_cryolearn.ui.embedding_explorer import (
    CLUSTER_COLORS,
    DISPLAY_SIZE,
    IMAGES_LAYER,
    MAP_LAYER,
    SPECTRA_LAYER,
    display_micrograph,
    display_spectrum,
)
from napari_cryolearn.ui.handoff import handoff

PLUGIN = "napari-cryolearn"
#: The job tests' tiny network and batches.
TINY = dict(image_size=32, batch_size=4, dim=32, pred_dim=16, projection_dim=16)


@pytest.fixture(autouse=True)
def _no_encoder_handed_between_tests():
    """The training → explorer hand-off is process-wide: each test starts without one."""
    handoff.last_encoder = None
    yield
    handoff.last_encoder = None


@pytest.fixture(scope="module")
def micrographs(tmp_path_factory):
    """A folder of 16 quality micrographs (m00.mrc … m15.mrc, 64 px) and the sample."""
    root = tmp_path_factory.mktemp("micrographs")
    q = make_quality_micrographs(16, size=64, seed=0)
    for i, image in enumerate(q.images):
        write_mrc(root / f"m{i:02d}.mrc", image, voxel_size=(1.0, q.pixel_size, q.pixel_size))
    return root, q


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


def _train_widget(viewer, run, *, epochs):
    train = _dock(viewer, "Self-supervised training")
    train.form["log_dir"].value = str(run)
    train.form["max_epochs"].value = str(epochs)
    train.form["device"].value = "cpu"
    for name, value in TINY.items():
        train.form[name].value = value if isinstance(train.form[name].value, int) else str(value)
    return train


def _prepared(path: Path, index=None):
    image, _ = read_micrograph(ImageRef(path, index))
    return display_micrograph(image), display_spectrum(image)


def test_train_on_a_folder_then_explore_select_and_export(make_napari_viewer, qtbot, tmp_path, micrographs):
    root, q = micrographs
    viewer = make_napari_viewer()

    # -- two epochs on the folder: the plots, the checkpoints, the hand-off
    train = _train_widget(viewer, tmp_path / "run", epochs=2)
    train.source.value = "data folder"
    train.data.value = str(root)
    _run(train, qtbot)
    result = train.result
    assert result.epochs == 2 and not result.stopped
    best = tmp_path / "run" / "model" / "model_best.ckpt"
    assert result.best_checkpoint == best and best.is_file()
    assert (tmp_path / "run" / "checkpoints" / "model_best.pth.tar").is_file()
    assert [x for x, _ in train.loss_plot.series["train_loss"]] == [1, 2]
    assert [x for x, _ in train.loss_plot.series["val_loss"]] == [1, 2]
    assert all(-1.0 <= y <= 1.0 for _, y in train.loss_plot.series["train_loss"])  # a negative cosine
    # SimSiam's collapse level arrives with its own epoch's progress event
    assert [x for x, _ in train.metric_plot.series["collapse_level"]] == [1, 2]
    assert all(0.0 <= y <= 1.0 for _, y in train.metric_plot.series["collapse_level"])
    assert handoff.last_encoder == best
    assert "handed to Embedding explorer" in train.status.value

    # -- a second run, stopped once its first epoch is plotted, keeps model/last.ckpt
    again = _train_widget(viewer, tmp_path / "run2", epochs=1000)
    again.source.value = "data folder"
    again.data.value = str(root)
    running = again.run()
    assert running is not None, again.status.value
    qtbot.waitUntil(lambda: "train_loss" in again.loss_plot.series, timeout=300000)
    again.stop()
    qtbot.waitUntil(lambda: running.done, timeout=120000)
    assert running.error is None, running.error
    stopped = again.result
    assert stopped.stopped and 1 <= stopped.epochs < 1000
    last = tmp_path / "run2" / "model" / "last.ckpt"
    assert stopped.last_checkpoint == last and last.is_file()
    assert "stopped" in again.status.value
    handoff.trained_encoder.emit(best)  # the explorer below uses the two-epoch model

    # -- the explorer, handed the model (and the run's micrographs), a PCA map saved as CSV
    explorer = _dock(viewer, "Embedding explorer")
    assert Path(str(explorer.model.value)) == best
    assert Path(str(explorer.data.value)) == root
    explorer.form["map"].value = "pca"
    explorer.output.value = str(tmp_path / "emb.csv")
    _run(explorer, qtbot)
    table = read_embedding_table(tmp_path / "emb.csv")
    layer = viewer.layers[MAP_LAYER]
    assert isinstance(layer, napari.layers.Points) and explorer.map_layer.name == MAP_LAYER
    assert len(layer.data) == 16
    files = sorted(str(p) for p in root.glob("m*.mrc"))
    assert layer.features["file"].tolist() == files == table["file"].tolist()
    assert layer.features["index"].tolist() == [0] * 16
    clusters = table["cluster"].to_numpy()
    assert layer.features["cluster"].tolist() == clusters.tolist()
    np.testing.assert_allclose(layer.face_color, CLUSTER_COLORS[clusters % len(CLUSTER_COLORS)], atol=1e-6)
    assert len(np.unique(clusters)) >= 2
    # the map's places: the table's (y, x), one scale for both, spanning the display size
    yx = table[["y", "x"]].to_numpy()
    expected = (yx - yx.min(axis=0)) * (DISPLAY_SIZE / (yx - yx.min(axis=0)).max())
    np.testing.assert_allclose(layer.data, expected, rtol=1e-6, atol=1e-6)
    assert f"{len(table)} micrographs" in explorer.status.value

    # -- selecting three points shows their micrographs and spectra, in row order
    layer.selected_data = {9, 0, 5}
    qtbot.waitUntil(lambda: explorer.shown_rows == [0, 5, 9], timeout=60000)
    images, spectra = viewer.layers[IMAGES_LAYER], viewer.layers[SPECTRA_LAYER]
    assert isinstance(images, napari.layers.Image) and isinstance(spectra, napari.layers.Image)
    assert images.data.shape == spectra.data.shape == (3, DISPLAY_SIZE, DISPLAY_SIZE)
    for k, row in enumerate([0, 5, 9]):
        micrograph, spectrum = _prepared(Path(files[row]))
        np.testing.assert_allclose(images.data[k], micrograph, atol=1e-5)
        np.testing.assert_allclose(spectra.data[k], spectrum, atol=1e-5)
    # the files are the sample's micrographs, in order
    np.testing.assert_array_equal(read_micrograph(ImageRef(Path(files[5])))[0], q.images[5].astype(np.float32))
    assert explorer.selection_label.value.startswith("3 selected")

    # -- a new selection replaces the shown one
    layer.selected_data = {2}
    qtbot.waitUntil(lambda: explorer.shown_rows == [2], timeout=60000)
    assert viewer.layers[IMAGES_LAYER].data.shape == (1, DISPLAY_SIZE, DISPLAY_SIZE)
    np.testing.assert_allclose(viewer.layers[IMAGES_LAYER].data[0], _prepared(Path(files[2]))[0], atol=1e-5)

    # -- export the selection, then a cluster
    layer.selected_data = {0, 5, 9}
    qtbot.waitUntil(lambda: explorer.shown_rows == [0, 5, 9], timeout=60000)
    explorer.export_what.value = "selection"
    out = explorer.export(tmp_path / "chosen.txt")
    assert out.read_text().splitlines() == [files[0], files[5], files[9]]
    with pytest.raises(FileExistsError):  # never replaced unless asked
        explorer.export(tmp_path / "chosen.txt")
    explorer.export_what.reset_choices()
    c = int(clusters[0])
    explorer.export_what.value = f"cluster {c}"
    explorer.export_file.value = str(tmp_path / "cluster.txt")
    explorer.export_button.changed.emit(True)
    assert (tmp_path / "cluster.txt").read_text().splitlines() == [f for f, k in zip(files, clusters) if k == c]
    assert "written to" in explorer.status.value
    # the listed files are micrographs again
    assert [str(r.path) for r in list_micrographs(tmp_path / "cluster.txt")] == \
        [f for f, k in zip(files, clusters) if k == c]


def test_train_on_an_image_layer_writes_its_stack_at_the_layer_scale(make_napari_viewer, qtbot, tmp_path,
                                                                   micrographs):
    _, q = micrographs
    viewer = make_napari_viewer()
    viewer.add_image(q.images, name="stack", scale=(1.0, q.pixel_size, q.pixel_size))
    train = _train_widget(viewer, tmp_path / "run", epochs=1)
    train.source.value = "Image layer"
    train.image.value = viewer.layers["stack"]
    _run(train, qtbot)
    assert train.result.epochs == 1 and train.result.best_checkpoint.is_file()
    stack = tmp_path / "run" / "training_data" / "micrographs.mrcs"
    vol = read_mrc(stack)
    np.testing.assert_array_equal(vol.data, q.images.astype(np.float32))
    assert np.allclose(vol.voxel_size[1:], q.pixel_size)
    assert train.config.data == stack
    # a layer too small for a batch is refused before anything is written
    viewer.add_image(q.images[0], name="one")
    train.image.value = viewer.layers["one"]
    train.form["log_dir"].value = str(tmp_path / "small")
    assert train.run() is None
    assert "fewer than a batch of 4" in train.status.value
    assert not (tmp_path / "small").exists()


def test_explorer_from_a_table_alone(make_napari_viewer, qtbot, tmp_path):
    """A table of a stack and a single file (no model): the map, the slices shown, path#index lines."""
    rng = np.random.default_rng(1)
    images = rng.normal(size=(3, 48, 40)).astype(np.float32)
    single = rng.normal(size=(50, 50)).astype(np.float32)
    write_mrc(tmp_path / "s.mrcs", images, voxel_size=(1.0, 2.0, 2.0))
    write_mrc(tmp_path / "a.mrc", single, voxel_size=2.0)
    table = pd.DataFrame({"file": [str(tmp_path / "s.mrcs")] * 3 + [str(tmp_path / "a.mrc")],
                          "index": [0, 1, 2, 0], "emb_0": [0.1, 0.2, 0.3, 0.4], "emb_1": [1.0, 0.0, 1.0, 0.0],
                          "x": [0.0, 1.0, 2.0, 4.0], "y": [0.0, 0.5, 1.0, 0.0], "cluster": [0, 0, 1, 1]})
    table.to_parquet(tmp_path / "emb.parquet", index=False)
    viewer = make_napari_viewer()
    explorer = _dock(viewer, "Embedding explorer")
    explorer.source.value = "table"
    assert explorer.model.native.isHidden() and not explorer.table_file.native.isHidden()
    explorer.table_file.value = str(tmp_path / "emb.parquet")
    _run(explorer, qtbot)
    layer = viewer.layers[MAP_LAYER]
    assert len(layer.data) == 4 and layer.features["cluster"].tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(layer.data[:, 1], [0.0, 64.0, 128.0, 256.0])  # x spans the display
    np.testing.assert_allclose(layer.face_color[[0, 2]], CLUSTER_COLORS[[0, 1]], atol=1e-6)
    layer.selected_data = {1, 3}
    qtbot.waitUntil(lambda: explorer.shown_rows == [1, 3], timeout=60000)
    shown = viewer.layers[IMAGES_LAYER].data
    np.testing.assert_allclose(shown[0], display_micrograph(images[1]), atol=1e-5)
    np.testing.assert_allclose(shown[1], display_micrograph(single), atol=1e-5)
    np.testing.assert_allclose(viewer.layers[SPECTRA_LAYER].data[0], display_spectrum(images[1]), atol=1e-5)
    out = explorer.export(tmp_path / "list.txt")
    assert out.read_text().splitlines() == [f"{tmp_path / 's.mrcs'}#1", str(tmp_path / "a.mrc")]
    # s.mrcs#1 names slice 1 of the stack
    lines = out.read_text().splitlines()
    path, index = lines[0].split("#")
    np.testing.assert_array_equal(read_micrograph(ImageRef(Path(path), int(index)))[0], images[1])
    # a cluster's rows
    explorer.export_what.reset_choices()
    assert explorer.export_what.choices == ("selection", "cluster 0", "cluster 1")
    explorer.export_what.value = "cluster 0"
    assert explorer.export_rows() == [0, 1]
    # nothing selected: a clear error, nothing written
    layer.selected_data = set()
    explorer.export_what.value = "selection"
    explorer.export_file.value = str(tmp_path / "none.txt")
    explorer.export_button.changed.emit(True)
    assert explorer.status.value.startswith("error:") and "nothing selected" in explorer.status.value
    assert not (tmp_path / "none.txt").exists()
    # a file that is no table: the error names it
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    explorer.table_file.value = str(tmp_path / "bad.csv")
    running = explorer.run()
    qtbot.waitUntil(lambda: running.done, timeout=60000)
    assert running.error is not None and "bad.csv" in str(running.error)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert viewer.layers[MAP_LAYER] is layer  # the map shown stays
