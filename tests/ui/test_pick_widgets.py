"""Membrane meshes → Train picker → Pick proteins in a real viewer, on a synthetic vesicle.

The meshes widget saves its containers (the Surface layers keep their ``source_path``), the
training widget trains two epochs on those layers and a Points layer of the true protein
positions, and the picking widget scores the same layers with the model it was handed: a
Surface coloured by score and a Points layer of picks on the membrane, at the tomogram's scale.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import napari.layers
import numpy as np
import pytest
from scipy.spatial import cKDTree

from napari_cryolearn.io import read_star
from napari_cryolearn.io.mesh_container import read_mesh_container
from napari_cryolearn.sample.synthetic import make_synthetic_tomogram
from napari_cryolearn.ui.handoff import handoff
from napari_cryolearn.ui.pick_train_widget import positions_in_voxels

PLUGIN = "napari-cryolearn"
VOXEL = 10.0
SHAPE = (48, 64, 64)
TRANSLATE = (20.0, 0.0, -10.0)
#: The tiny network of the job tests (tests/picking/test_pick_jobs.py).
SMALL = dict(partition_size=400, eigenpairs=32)


@pytest.fixture(autouse=True)
def _no_picker_handed_between_tests():
    """The Train picker → Pick proteins hand-off is process-wide: each test starts without one."""
    handoff.last_picker = None
    yield
    handoff.last_picker = None


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One operator cache for the module: the partitions' operators are computed once."""
    return tmp_path_factory.mktemp("operators")


@pytest.fixture
def vesicle_viewer(make_napari_viewer):
    """A viewer with one synthetic vesicle and its proteins: tomogram (Image), labels (Labels)
    and true positions (Points), 10 Å voxels, shifted by a translation every output must share."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fewer proteins fit this small volume
        tomo = make_synthetic_tomogram(shape=SHAPE, n_vesicles=1, n_open_membranes=0, proteins_per_vesicle=6,
                                       n_particles=0, seed=0)
    assert len(tomo.protein_coords) >= 3
    viewer = make_napari_viewer()
    common = dict(scale=(VOXEL,) * 3, translate=TRANSLATE, units=("angstrom",) * 3)
    viewer.add_image(tomo.volume, name="tomo", **common)
    viewer.add_labels(tomo.labels, name="seg", **common)
    viewer.add_points(tomo.protein_coords, name="proteins", **common)
    return viewer, tomo


def _dock(viewer, title):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, title)
    widget.reset_choices()
    return widget


def _run(widget, qtbot, timeout=240000):
    running = widget.run()
    assert running is not None, widget.status.value
    qtbot.waitUntil(lambda: running.done, timeout=timeout)
    assert running.error is None, running.error
    return running


def _surfaces(viewer):
    return [layer for layer in viewer.layers if isinstance(layer, napari.layers.Surface)]


def _saved_meshes(viewer, qtbot, folder):
    """Run Membrane meshes (the recipe of tests/ui/test_mesh_widgets.py) saving into ``folder``."""
    meshes = _dock(viewer, "Membrane meshes")
    meshes.form["segmentation"].value = viewer.layers["seg"]
    meshes.form["tomogram"].value = viewer.layers["tomo"]
    meshes.form["min_voxels"].value = 100
    meshes.form["output_dir"].value = str(folder)
    _run(meshes, qtbot)
    surfaces = _surfaces(viewer)
    assert len(surfaces) == 1 and Path(surfaces[0].metadata["source_path"]).parent == folder
    return surfaces


def _train_widget(viewer, tmp_path, cache, *, epochs, **values):
    train = _dock(viewer, "Train picker")
    train.form["log_dir"].value = str(tmp_path / "run")
    train.form["max_epochs"].value = str(epochs)
    train.form["device"].value = "cpu"
    train.form["cache_dir"].value = str(cache)
    for name, value in SMALL.items():
        train.network_form[name].value = value
    for name, value in values.items():
        (train.network_form if name in train.network_form else train.form)[name].value = value
    return train


def test_meshes_then_train_on_layers_then_pick(vesicle_viewer, qtbot, tmp_path, cache):
    viewer, tomo = vesicle_viewer
    (surface,) = _saved_meshes(viewer, qtbot, tmp_path / "meshes")

    # -- Train picker on the Surface layer and the Points layer of true positions
    train = _train_widget(viewer, tmp_path, cache, epochs=2)
    train.source.value = "layers"
    train.surfaces.value = [surface]
    train.positions.value = viewer.layers["proteins"]
    _run(train, qtbot)
    result = train.result
    assert result.epochs == 2 and not result.stopped
    best = result.best_checkpoint
    assert best == tmp_path / "run" / "model" / "model_best.ckpt" and best.is_file()
    assert result.last_checkpoint.is_file()
    assert [x for x, _ in train.loss_plot.series["train_loss"]] == [1, 2]
    assert all(np.isfinite(y) for _, y in train.loss_plot.series["train_loss"])
    assert train.device_label.value == "device: cpu"
    # the data written from the layers: the container linked, the positions in voxels of the mesh
    data = tmp_path / "run" / "training_data" / "train"
    (h5,) = sorted(data.glob("*.h5"))
    assert h5.name == Path(surface.metadata["source_path"]).name
    np.testing.assert_array_equal(read_mesh_container(h5).points,
                                  read_mesh_container(surface.metadata["source_path"]).points)
    (star,) = sorted(data.glob("*.star"))
    # named after the tomogram the container names (the widget handed the layer as tomogram_tomo.mrc)
    assert star.name == Path(surface.metadata["tomo_file"]).stem + ".star" == "tomogram_tomo.star"
    written = read_star(star)
    np.testing.assert_allclose(written.coords, tomo.protein_coords, atol=1e-4)
    assert written.pixel_size == VOXEL
    record = json.loads((tmp_path / "run" / "training_data.json").read_text())
    assert record["train"][0]["proteins"] == len(tomo.protein_coords) and record["val"] == []

    # -- Pick proteins on the Surface layer with the model just trained (handed over)
    pick = _dock(viewer, "Pick proteins")
    assert Path(str(pick.form["model"].value)) == best
    pick.form["meshes"].value = [surface]
    pick.form["score_threshold"].value = "10"
    pick.form["device"].value = "cpu"
    pick.form["cache_dir"].value = str(cache)
    pick.form["output_dir"].value = str(tmp_path / "picks")
    before = set(viewer.layers)
    _run(pick, qtbot)
    added = [layer for layer in viewer.layers if layer not in before]
    (scored,) = [layer for layer in added if isinstance(layer, napari.layers.Surface)]
    (picks,) = [layer for layer in added if isinstance(layer, napari.layers.Points)]
    verts = surface.data[0]
    np.testing.assert_array_equal(scored.data[0], verts)
    values = scored.vertex_values
    assert values.shape == (len(verts),) and np.isfinite(values).all()
    assert values.min() >= 0 and values.max() > values.min()
    for layer in (scored, picks):
        assert tuple(layer.scale) == (VOXEL,) * 3 and tuple(layer.translate) == TRANSLATE
    # picks on the membrane: within 2 voxels of the mesh, in world units too
    assert len(picks.data) == pick.result.metrics["picks"][0] > 0
    world = picks.data * picks.scale + picks.translate
    distance, nearest = cKDTree(verts * surface.scale + surface.translate).query(world)
    assert distance.max() < 2 * VOXEL
    # each pick carries its orientation (the normal at its vertex) as features
    assert {"rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"} <= set(picks.features.columns)
    # the STAR saved in the named folder, and the scored mesh beside it
    stem = Path(surface.metadata["source_path"]).name[:-3]
    saved = read_star(tmp_path / "picks" / f"{stem}_picks.star")
    np.testing.assert_allclose(saved.coords, picks.data)
    np.testing.assert_allclose(read_mesh_container(tmp_path / "picks" / f"{stem}.h5").scores, values)
    assert str(tmp_path / "picks") in pick.status.value


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from napari_cryolearn.picking.sample_data import write_picking_dataset

    root = tmp_path_factory.mktemp("picking")
    write_picking_dataset(root, {"train": [0], "val": [1]}, shape=SHAPE, n_particles=0, min_voxels=1000)
    return root


def test_train_on_a_data_folder_plots_validation_and_stop_keeps_last_ckpt(make_napari_viewer, qtbot, tmp_path,
                                                                         dataset, cache):
    viewer = make_napari_viewer()
    train = _train_widget(viewer, tmp_path, cache, epochs=1000)
    train.source.value = "data folder"
    train.data.value = str(dataset / "DATA")
    running = train.run()
    assert running is not None, train.status.value
    # stop once a validated epoch is plotted
    qtbot.waitUntil(lambda: "val_loss" in train.loss_plot.series, timeout=240000)
    train.stop()
    qtbot.waitUntil(lambda: running.done, timeout=120000)
    assert running.error is None, running.error
    result = train.result
    assert result.stopped and 1 <= result.epochs < 1000
    last = tmp_path / "run" / "model" / "last.ckpt"
    assert result.last_checkpoint == last and last.is_file()
    assert train.metric_plot.series["val_mae_A"][0][1] > 0
    assert "stopped" in train.status.value and handoff.last_picker is not None
    # and it resumes from there
    from napari_cryolearn.picking.predict_job import load_picker

    load_picker(last)


def test_layers_without_a_container_are_refused(vesicle_viewer, tmp_path, cache):
    viewer, _ = vesicle_viewer
    verts = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 7.0], [1.0, 6.0, 3.0]])
    viewer.add_surface((verts, np.array([[0, 1, 2]])), name="drawn")
    train = _train_widget(viewer, tmp_path, cache, epochs=1)
    train.surfaces.value = [viewer.layers["drawn"]]
    train.positions.value = viewer.layers["proteins"]
    assert train.run() is None
    assert "Surface layer 'drawn' was not opened from a mesh container" in train.status.value
    assert not (tmp_path / "run").exists()
    pick = _dock(viewer, "Pick proteins")
    pick.form["model"].value = str(tmp_path / "model.ckpt")
    pick.form["meshes"].value = [viewer.layers["drawn"]]
    assert pick.run() is None
    assert "Surface layer 'drawn' was not opened from a mesh container" in pick.status.value


def test_points_go_to_voxels_of_the_mesh():
    class Layer:
        def __init__(self, data, scale, translate):
            self.data, self.scale, self.translate, self.name = data, scale, translate, "p"

    points = Layer(np.array([[1.0, 2.0, 3.0]]), (20.0, 20.0, 20.0), (5.0, 0.0, 0.0))
    surface = Layer(None, (10.0, 10.0, 10.0), (5.0, 10.0, -10.0))
    np.testing.assert_allclose(positions_in_voxels(points, surface), [[2.0, 3.0, 7.0]])


def test_pick_proteins_on_files_keeps_them_in_the_viewer(make_napari_viewer, qtbot, tiny_picker):
    model, meshes, cache = tiny_picker
    viewer = make_napari_viewer()
    pick = _dock(viewer, "Pick proteins")
    pick.form["model"].value = str(model)
    pick.form["meshes"].value = meshes
    pick.form["score_threshold"].value = "10"
    pick.form["device"].value = "cpu"
    pick.form["cache_dir"].value = str(cache)
    _run(pick, qtbot)
    surfaces = _surfaces(viewer)
    points = [layer for layer in viewer.layers if isinstance(layer, napari.layers.Points)]
    assert len(surfaces) == len(points) == len(meshes)
    for mesh, surface, picked in zip(meshes, surfaces, points):
        verts = read_mesh_container(mesh).verts_zyx()
        np.testing.assert_array_equal(surface.data[0], verts)
        assert surface.vertex_values.shape == (len(verts),) and np.isfinite(surface.vertex_values).all()
        # at the containers' voxel size, as the reader opens them
        assert tuple(surface.scale) == tuple(picked.scale) == (VOXEL,) * 3
        if len(picked.data):
            assert cKDTree(verts).query(picked.data)[0].max() < 2.0
    assert sum(pick.result.metrics["picks"]) == sum(len(p.data) for p in points) > 0
    assert pick.status.value == "done (in the viewer only: not saved)"
