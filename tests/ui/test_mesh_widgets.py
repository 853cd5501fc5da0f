"""Membrane meshes in napari: the mesh container reader and the "Membrane meshes" widget.

A mesh container (MemBrain-pick's ``.h5``) opens as a Surface layer in voxels, scaled by its
voxel size; the widget runs ``pick.meshes`` on a Labels and an Image layer and adds one Surface
per membrane on the input layers' scale.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import h5py
import napari.layers
import numpy as np
import pytest

from napari_cryolearn.io.mesh_container import MeshContainer, read_mesh_container, write_mesh_container
from napari_cryolearn.picking.meshes import mean_vertex_area
from napari_cryolearn.sample.synthetic import MEMBRANE, make_synthetic_tomogram
from napari_cryolearn.ui.io_hooks import get_reader
from napari_cryolearn.ui.mesh_layers import SCORES_COLORMAP

PLUGIN = "napari-cryolearn"
VOXEL = 10.0
SHAPE = (48, 64, 64)
#: Whole bilayer thickness of the synthetic membranes, Å (sample.synthetic.MEMBRANE_THICKNESS_A).
THICKNESS = 45.0


def _container(scores=None) -> MeshContainer:
    # a tetrahedron in (z, y, x) voxels
    verts = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 7.0], [1.0, 6.0, 3.0], [5.0, 2.0, 3.0]])
    faces = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    normals = np.tile([1.0, 0.0, 0.0], (4, 1))
    return MeshContainer.from_zyx(verts, faces, normals, np.zeros((4, 20), np.float32), tomo_file="/data/t.mrc",
                                  voxel_size=14.0, label=1, scores=scores)


@pytest.mark.parametrize("scores", [None, np.array([0.0, 2.5, 7.0, 10.0], np.float32)])
def test_a_mesh_container_opens_as_a_surface_in_voxels_at_its_voxel_size(tmp_path, scores):
    path = write_mesh_container(tmp_path / "tomo_1.h5", _container(scores))
    reader = get_reader(str(path))
    assert reader is not None
    ((data, kwargs, kind),) = reader(str(path))
    assert kind == "surface"
    expected = _container(scores)
    np.testing.assert_array_equal(data[0], expected.verts_zyx())
    np.testing.assert_array_equal(data[0][3], [5.0, 2.0, 3.0])  # z, y, x as given
    np.testing.assert_array_equal(data[1], expected.faces_zyx())
    assert kwargs["name"] == "tomo_1" and kwargs["scale"] == (14.0, 14.0, 14.0)
    assert kwargs["metadata"]["tomo_file"] == "/data/t.mrc"
    assert kwargs["metadata"]["source_path"] == str(path) and kwargs["metadata"]["label"] == 1
    if scores is None:
        assert len(data) == 2 and "colormap" not in kwargs
    else:
        assert len(data) == 3
        np.testing.assert_array_equal(data[2], scores)
        assert kwargs["colormap"] == SCORES_COLORMAP and kwargs["contrast_limits"] == (0.0, 10.0)


def test_a_container_without_voxel_size_opens_at_scale_one(tmp_path):
    c = _container()
    c.voxel_size = None
    path = write_mesh_container(tmp_path / "m.h5", c)
    ((_, kwargs, _),) = get_reader(str(path))(str(path))
    assert kwargs["scale"] == (1.0, 1.0, 1.0)


def test_other_hdf5_files_are_left_to_other_readers(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("data", data=np.zeros((4, 4)))
        f.create_dataset("points", data=np.zeros((4, 3)))  # points but no faces: not a mesh
    (tmp_path / "text.h5").write_text("not HDF5")
    assert get_reader(str(tmp_path / "other.h5")) is None
    assert get_reader(str(tmp_path / "text.h5")) is None
    assert get_reader(str(tmp_path / "missing.h5")) is None


def test_the_viewer_opens_a_container_with_the_plugin(make_napari_viewer, tmp_path):
    scores = np.array([0.0, 2.5, 7.0, 10.0], np.float32)
    path = write_mesh_container(tmp_path / "tomo_1.h5", _container(scores))
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert isinstance(layer, napari.layers.Surface)
    assert tuple(layer.scale) == (14.0, 14.0, 14.0)
    np.testing.assert_array_equal(layer.vertex_values, scores)
    np.testing.assert_array_equal(layer.data[0], _container().verts_zyx())


# ------------------------------------------------------------------------------------ widget


@pytest.fixture
def membrane_viewer(make_napari_viewer):
    """A viewer with one synthetic vesicle: its tomogram (Image) and labels (Labels), 10 Å voxels,
    shifted by a translation the outputs must share."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fewer proteins fit this small volume
        tomo = make_synthetic_tomogram(shape=SHAPE, n_vesicles=1, n_open_membranes=0, proteins_per_vesicle=3,
                                       n_particles=0, seed=0)
    membrane_voxels = int((tomo.labels == MEMBRANE).sum())
    assert membrane_voxels > 5000  # one whole vesicle: a membrane worth meshing
    viewer = make_napari_viewer()
    common = dict(scale=(VOXEL,) * 3, translate=(20.0, 0.0, -10.0), units=("angstrom",) * 3)
    viewer.add_image(tomo.volume, name="tomo", **common)
    viewer.add_labels(tomo.labels, name="seg", **common)
    return viewer, membrane_voxels


def _meshes_widget(viewer, **values):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Membrane meshes")
    widget.reset_choices()
    widget.form["segmentation"].value = viewer.layers["seg"]
    widget.form["tomogram"].value = viewer.layers["tomo"]
    widget.form["min_voxels"].value = 100
    for field, value in values.items():
        widget.form[field].value = value
    return widget


def _run(widget, qtbot):
    running = widget.run()
    assert running is not None, widget.status.value
    qtbot.waitUntil(lambda: running.done, timeout=120000)
    assert running.error is None, running.error


def _surfaces(viewer):
    return [layer for layer in viewer.layers if isinstance(layer, napari.layers.Surface)]


def _check_surface(surface, reference, membrane_voxels):
    verts, faces = surface.data[0], surface.data[1]
    # vertices in voxels of the volume, faces indexing them
    assert verts.shape[1] == 3 and faces.shape[1] == 3 and len(faces) > len(verts)
    assert verts.min() >= 0 and np.all(verts.max(axis=0) <= np.array(SHAPE) - 1)
    assert faces.min() == 0 and faces.max() == len(verts) - 1
    # on the input layers' scale and place
    assert tuple(surface.scale) == (VOXEL,) * 3
    assert tuple(surface.translate) == tuple(reference.translate)
    assert [str(u) for u in surface.units] == ["angstrom"] * 3
    # about one vertex per 400 Å²; a closed shell THICKNESS thick has two sides, 2 V / THICKNESS in all
    area = mean_vertex_area(verts, faces) * len(verts) * VOXEL**2
    assert 0.7 < area / len(verts) / 400.0 < 1.4, area / len(verts)
    expected = 2 * membrane_voxels * VOXEL**3 / THICKNESS / 400.0
    assert 0.7 < len(verts) / expected < 1.4, (len(verts), expected)


def test_the_meshes_widget_adds_a_surface_per_membrane(membrane_viewer, qtbot):
    viewer, membrane_voxels = membrane_viewer
    before = set(Path(tempfile.gettempdir()).glob("cryolearn-*"))
    widget = _meshes_widget(viewer)
    _run(widget, qtbot)
    assert widget.result.metrics["membranes"] == 1
    (surface,) = _surfaces(viewer)
    assert surface.name == "seg meshes mesh 1"
    assert len(surface.data[0]) == widget.result.metrics["vertices"][0]
    _check_surface(surface, viewer.layers["seg"], membrane_voxels)
    assert "source_path" not in surface.metadata and surface.metadata["derived_from"] == "seg"
    # nothing was saved: the scratch folder is gone
    assert widget.status.value == "done (in the viewer only: not saved)"
    assert set(Path(tempfile.gettempdir()).glob("cryolearn-*")) == before


def test_the_meshes_widget_saves_the_containers_in_a_named_folder(membrane_viewer, qtbot, tmp_path):
    viewer, membrane_voxels = membrane_viewer
    folder = tmp_path / "meshes"
    widget = _meshes_widget(viewer, output_dir=str(folder))
    _run(widget, qtbot)
    (path,) = sorted(folder.glob("*.h5"))
    (surface,) = _surfaces(viewer)
    assert surface.name == path.stem and surface.metadata["source_path"] == str(path)
    saved = read_mesh_container(path)
    np.testing.assert_array_equal(surface.data[0], saved.verts_zyx())
    np.testing.assert_array_equal(surface.data[1], saved.faces_zyx())
    assert saved.voxel_size == VOXEL
    _check_surface(surface, viewer.layers["seg"], membrane_voxels)
    assert str(folder) in widget.status.value
