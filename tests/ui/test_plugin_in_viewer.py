"""The plugin inside a real napari viewer: manifest widgets, readers, writers, sample data."""

import numpy as np
import pandas as pd
import pytest
from npe2 import PluginManager

from napari_cryolearn.io import read_mrc, read_star, write_mrc, write_star

PLUGIN = "napari-cryolearn"


def _manifest():
    pm = PluginManager.instance()
    pm.discover()
    return pm.get_manifest(PLUGIN)


def test_open_mrc_and_star_with_scale(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    vol = np.random.default_rng(0).normal(size=(8, 10, 12)).astype(np.float32)
    write_mrc(tmp_path / "tomo.mrc", vol, voxel_size=(12.0, 10.0, 8.0))
    lab = np.zeros((8, 10, 12), np.uint8)
    lab[2:4] = 1
    write_mrc(tmp_path / "tomo_labels.mrc", lab, voxel_size=(12.0, 10.0, 8.0))
    coords = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    write_star(tmp_path / "picks.star", coords, features=pd.DataFrame({"rlnClassNumber": [1, 2]}), pixel_size=10.0)

    [image] = viewer.open(str(tmp_path / "tomo.mrc"), plugin=PLUGIN)
    [labels] = viewer.open(str(tmp_path / "tomo_labels.mrc"), plugin=PLUGIN)
    [points] = viewer.open(str(tmp_path / "picks.star"), plugin=PLUGIN)
    assert image._type_string == "image" and labels._type_string == "labels"
    assert tuple(image.scale) == (12.0, 10.0, 8.0)
    np.testing.assert_array_equal(image.data, vol)
    np.testing.assert_allclose(points.data, coords)
    assert tuple(points.scale) == (10.0, 10.0, 10.0)
    assert list(points.features["rlnClassNumber"]) == [1, 2]


def test_save_layers_through_writers(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    vol = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    image = viewer.add_image(vol, scale=(15.0, 10.0, 5.0), name="vol")
    labels = viewer.add_labels((vol > 50).astype(np.uint8), scale=(15.0, 10.0, 5.0), name="lab",
                               metadata={"label_names": {0: "background", 1: "membrane"}})
    points = viewer.add_points(np.array([[1.0, 2.0, 3.0]]), scale=(10.0, 10.0, 10.0),
                               features=pd.DataFrame({"score": [0.5]}))
    image.save(str(tmp_path / "vol.mrc"), plugin=PLUGIN)
    labels.save(str(tmp_path / "lab.mrc"), plugin=PLUGIN)
    points.save(str(tmp_path / "pts.star"), plugin=PLUGIN)
    back = read_mrc(tmp_path / "vol.mrc")
    np.testing.assert_array_equal(back.data, vol)
    assert back.voxel_size == pytest.approx((15.0, 10.0, 5.0))
    assert read_mrc(tmp_path / "lab.mrc").data.sum() == (vol > 50).sum()
    [reopened] = viewer.open(str(tmp_path / "lab.mrc"), plugin=PLUGIN)
    assert reopened._type_string == "labels"
    assert reopened.metadata["label_names"] == {0: "background", 1: "membrane"}
    star = read_star(tmp_path / "pts.star")
    np.testing.assert_allclose(star.coords, [[1.0, 2.0, 3.0]])
    assert star.pixel_size == pytest.approx(10.0)
    assert list(star.features["score"]) == [0.5]


def test_sample_data_opens(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "tomogram")
    names = [layer.name for layer in viewer.layers]
    assert {"synthetic tomogram", "synthetic labels", "membrane proteins"} <= set(names)
    labels = viewer.layers["synthetic labels"]
    proteins = viewer.layers["membrane proteins"]
    idx = np.round(proteins.data).astype(int)
    assert (labels.data[idx[:, 0], idx[:, 1], idx[:, 2]] == 2).mean() > 0.9
    assert tuple(proteins.scale) == tuple(labels.scale)


def test_open_patch_store_reassembled(make_napari_viewer, tmp_path):
    from napari_cryolearn.io.patch_store import write_patch_store

    rng = np.random.default_rng(2)
    image = rng.normal(size=(20, 24, 28)).astype(np.float32)
    labels = (image > 1).astype(np.uint8)
    store = tmp_path / "tomo.zarr"
    for _ in write_patch_store(store, image, labels, patch_size=12, overlap=0.5, voxel_size=(9.0, 8.0, 7.0),
                               attrs={"label_names": {"0": "background", "1": "dense"}}):
        pass
    viewer = make_napari_viewer()
    layers = viewer.open(str(store), plugin=PLUGIN)
    by_name = {layer.name: layer for layer in layers}
    np.testing.assert_array_equal(by_name["tomo image"].data, image)
    np.testing.assert_array_equal(by_name["tomo labels"].data, labels)
    assert by_name["tomo labels"].metadata["label_names"] == {0: "background", 1: "dense"}
    assert tuple(by_name["tomo image"].scale) == (9.0, 8.0, 7.0)
    assert len(by_name["tomo patches"].data) == by_name["tomo image"].metadata["patches"]


def test_reader_leaves_other_zarr_folders_alone(tmp_path):
    import zarr

    from napari_cryolearn.io.patch_store import write_patch_store
    from napari_cryolearn.ui.io_hooks import get_reader, read_layers

    zarr.open_group(str(tmp_path / "other.zarr"), mode="w").attrs["format"] = "something else"
    assert get_reader(str(tmp_path / "other.zarr")) is None
    assert get_reader(str(tmp_path / "missing.zarr")) is None
    image = np.zeros((8, 8, 8), np.float32)
    for _ in write_patch_store(tmp_path / "ours.zarr", image, patch_size=8, overlap=0.0):
        pass
    assert get_reader(str(tmp_path / "ours.zarr")) is read_layers
    assert get_reader(str(tmp_path / "tomo.mrc")) is read_layers
    assert get_reader([str(tmp_path / "tomo.mrc"), str(tmp_path / "other.zarr")]) is None


def test_labels_show_their_class_name_on_hover(make_napari_viewer, tmp_path):
    from napari_cryolearn.io.sidecar import write_sidecar

    labels = np.zeros((4, 6, 6), np.uint8)
    labels[1:3, 2:4, 2:4] = 2
    path = write_mrc(tmp_path / "seg.mrc", labels, voxel_size=(5.0, 5.0, 5.0))
    write_sidecar(path, {"label_names": {"0": "background", "1": "vesicle", "2": "membrane"}})
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-cryolearn")
    assert layer.__class__.__name__ == "Labels"
    inside = layer.get_status((10.0, 15.0, 15.0), world=True)
    outside = layer.get_status((0.0, 0.0, 0.0), world=True)
    assert "membrane" in str(inside) and "vesicle" not in str(inside)
    assert "background" in str(outside)


def test_layers_carry_angstrom_units_so_the_scale_bar_reads_angstrom(make_napari_viewer, tmp_path):
    vol = np.zeros((4, 6, 8), np.float32)
    known = write_mrc(tmp_path / "tomo.mrc", vol, voxel_size=(12.0, 12.0, 12.0))
    unknown = write_mrc(tmp_path / "raw.mrc", vol)  # header voxel size 1: unknown
    star = write_star(tmp_path / "p.star", np.array([[1.0, 2, 3]]), pixel_size=12.0)
    viewer = make_napari_viewer()
    (tomo,) = viewer.open(str(known), plugin="napari-cryolearn")
    (raw,) = viewer.open(str(unknown), plugin="napari-cryolearn")
    (points,) = viewer.open(str(star), plugin="napari-cryolearn")
    assert [str(u) for u in tomo.units] == ["angstrom"] * 3
    assert [str(u) for u in points.units] == ["angstrom"] * 3
    assert [str(u) for u in raw.units] == ["pixel"] * 3
