"""The distance-map and patches jobs: outputs, validation before writing, stopping, CryoSiam configs."""

from __future__ import annotations

import json

import edt
import numpy as np
import pytest

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.io.mrc import read_mrc, write_mrc
from napari_cryolearn.io.patch_store import open_patch_store
from napari_cryolearn.prep.distance_job import DistanceMapConfig, distance_map_job
from napari_cryolearn.prep.distances import signed_distance_maps
from napari_cryolearn.prep.patch_job import PatchesConfig, patches_job
from napari_cryolearn.io.patch_grid import cryosiam_grid, patch_grid

VOXEL = (12.0, 10.0, 8.0)


@pytest.fixture
def files(tmp_path, rng):
    """A 32x40x48 tomogram, its labels (classes 0..2) and our distance maps, in tmp_path/in."""
    folder = tmp_path / "in"
    image = rng.normal(size=(32, 40, 48)).astype(np.float32)
    labels = np.zeros(image.shape, np.uint8)
    labels[4:12, 5:20, 6:30] = 1
    labels[20:28, 25:35, 30:44] = 2
    write_mrc(folder / "tomo.mrc", image, voxel_size=VOXEL)
    write_mrc(folder / "tomo_labels.mrc", labels, voxel_size=VOXEL)
    np.save(folder / "tomo_dist.npy", signed_distance_maps(labels))
    return folder, image, labels


def listing(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# ------------------------------------------------------------------------------- distance maps


def test_distance_job_npy(tmp_path, files):
    folder, _, labels = files
    events = []
    out = run_job(
        distance_map_job(DistanceMapConfig(input=folder / "tomo_labels.mrc", output=tmp_path / "d.npy")), events.append
    )
    assert out.outputs == {"output": tmp_path / "d.npy"} and out.metrics == {"classes": 3}
    out = out["output"]
    maps = np.load(out, mmap_mode="r")
    assert maps.shape == (3, 32, 40, 48) and maps.dtype == np.float32
    np.testing.assert_array_equal(maps, signed_distance_maps(labels))
    meta = json.loads((tmp_path / "d.npy.json").read_text())
    assert meta["voxel_size"] == list(VOXEL) and meta["unit"] == "voxel" and meta["n_classes"] == 3
    assert all(isinstance(e, Progress) and e.stage == "distance-maps" for e in events)
    assert events[-1].step == events[-1].total and len(events) >= 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npy", "d.npy.json", "in"]


def test_distance_job_angstrom_clip_normalize_uses_slabs_exactly(tmp_path, files):
    folder, _, labels = files
    config = DistanceMapConfig(
        input=folder / "tomo_labels.mrc", output=tmp_path / "d.npy", voxel_size_aware=True, clip=30.0, normalize=True, n_classes=4
    )
    maps = np.load(run_job(distance_map_job(config))["output"])
    expected = signed_distance_maps(labels, n_classes=4, voxel_size=VOXEL, clip=30.0, normalize=True)
    np.testing.assert_allclose(maps, expected, atol=1e-6)
    assert json.loads((tmp_path / "d.npy.json").read_text())["unit"] == "angstrom"


def test_distance_job_cryosiam_npz(tmp_path, files):
    folder, _, labels = files
    out = run_job(
        distance_map_job(
            DistanceMapConfig(input=folder / "tomo_labels.mrc", output=tmp_path / "distances" / "tomo.npz", format="cryosiam-npz")
        )
    )["output"]
    with np.load(out) as npz:
        assert list(npz.keys()) == ["data"]
        data = npz["data"]
    assert data.dtype == np.float32 and data.shape == (3, 32, 40, 48)
    for i in range(3):
        np.testing.assert_array_equal(data[i], edt.sdf(labels == i, black_border=True))
    assert listing(tmp_path / "distances") == ["tomo.npz"]


def test_distance_job_validation_writes_nothing(tmp_path, files):
    folder, image, labels = files
    write_mrc(folder / "halves.mrc", labels.astype(np.float32) + 0.5)
    before = listing(tmp_path)
    bad = [
        (DistanceMapConfig(input=folder / "halves.mrc", output=tmp_path / "d.npy"), "whole numbers"),
        (DistanceMapConfig(input=folder / "tomo_labels.mrc", output=tmp_path / "d.npy", n_classes=2), "n_classes"),
        (DistanceMapConfig(input=folder / "tomo_labels.mrc", output=tmp_path / "d.npz"), r"\.npy"),
        (DistanceMapConfig(input=folder / "missing.mrc", output=tmp_path / "d.npy"), "missing.mrc"),
    ]
    for config, message in bad:
        with pytest.raises(InputError, match=message):
            run_job(distance_map_job(config))
    assert listing(tmp_path) == before
    with pytest.raises(InputError, match="normalize"):
        DistanceMapConfig.from_dict({"input": "a.mrc", "output": "b.npy", "normalize": True})


def test_float_labels_with_whole_values_are_accepted(tmp_path, files):
    folder, _, labels = files
    write_mrc(folder / "float_labels.mrc", labels.astype(np.float32))
    maps = np.load(run_job(distance_map_job(DistanceMapConfig(input=folder / "float_labels.mrc", output=tmp_path / "d.npy")))["output"])
    np.testing.assert_array_equal(maps, signed_distance_maps(labels))


@pytest.mark.parametrize("fmt,name,clip", [("npy", "d.npy", None), ("cryosiam-npz", "d.npz", None), ("npy", "d.npy", 4.0)])
def test_distance_job_stop_leaves_nothing(tmp_path, files, fmt, name, clip):
    folder, _, _ = files
    stop = StopFlag()
    job = distance_map_job(DistanceMapConfig(input=folder / "tomo_labels.mrc", output=tmp_path / name, format=fmt, clip=clip), stop)
    next(job)
    next(job)
    stop.set()
    assert run_job(job).stopped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_distance_config_from_cryosiam(tmp_path, files):
    folder, _, _ = files
    (folder / "notes.txt").write_text("x")
    cfg = {
        "labels_folder": str(folder),
        "temp_dir": str(tmp_path / "tmp"),
        "file_extension": ".mrc",
        "train_files": ["tomo_labels"],
        "parameters": {"network": {"out_channels": 3}},
    }
    configs = DistanceMapConfig.from_cryosiam(cfg)
    assert len(configs) == 1
    assert configs[0].input == folder / "tomo_labels.mrc"
    assert configs[0].output == tmp_path / "tmp" / "distances" / "tomo_labels.npz"
    assert configs[0].n_classes == 3 and configs[0].format == "cryosiam-npz" and configs[0].clip is None
    del cfg["train_files"]
    assert [c.input.name for c in DistanceMapConfig.from_cryosiam(cfg)] == ["tomo.mrc", "tomo_labels.mrc"]
    with pytest.raises(InputError, match="temp_dir"):
        DistanceMapConfig.from_cryosiam({"labels_folder": str(folder)})


# ------------------------------------------------------------------------------------- patches


def test_patches_job_zarr(tmp_path, files):
    folder, image, labels = files
    config = PatchesConfig(
        image=folder / "tomo.mrc",
        labels=folder / "tomo_labels.mrc",
        distances=folder / "tomo_dist.npy",
        output=tmp_path / "tomo.zarr",
        patch_size=16,
        overlap=0.5,
    )
    events = []
    store = open_patch_store(run_job(patches_job(config), events.append)["output"])
    np.testing.assert_array_equal(store.origins, patch_grid(image.shape, 16, overlap=0.5))
    assert store.voxel_size == VOXEL and store.attrs["name"] == "tomo"
    assert store.attrs["sources"]["labels"] == str(folder / "tomo_labels.mrc")
    distances = np.load(folder / "tomo_dist.npy")
    for i in (0, 5, len(store) - 1):
        item = store[i]
        box = tuple(slice(o, o + 16) for o in item["origin"])
        np.testing.assert_array_equal(item["image"], image[box])
        np.testing.assert_array_equal(item["labels"], labels[box])
        np.testing.assert_array_equal(item["distances"], distances[(slice(None), *box)])
    assert len(events) == len(store) + 1 and events[-1].step == events[-1].total == len(store)
    assert all(e.stage == "patches" for e in events)


def test_patches_job_remove_only_background_and_cryosiam_grid(tmp_path, files):
    folder, image, labels = files
    config = PatchesConfig(
        image=folder / "tomo.mrc",
        labels=folder / "tomo_labels.mrc",
        output=tmp_path / "t.zarr",
        patch_size=(8, 16, 16),
        overlap=0.0,
        grid="cryosiam",
        remove_only_background=True,
    )
    store = open_patch_store(run_job(patches_job(config))["output"])
    grid = cryosiam_grid(image.shape, (8, 16, 16), overlap=0.0)
    keep = [o for o in grid.tolist() if labels[o[0] : o[0] + 8, o[1] : o[1] + 16, o[2] : o[2] + 16].any()]
    assert store.origins.tolist() == keep and len(keep) < len(grid)


def test_patches_job_cryosiam_folder(tmp_path, files):
    folder, image, labels = files
    out = tmp_path / "patches"
    config = PatchesConfig(
        image=folder / "tomo.mrc",
        labels=folder / "tomo_labels.mrc",
        distances=folder / "tomo_dist.npy",
        output=out,
        patch_size=16,
        grid="cryosiam",
        format="cryosiam",
    )
    assert run_job(patches_job(config))["output"] == out
    origins = cryosiam_grid(image.shape, 16, overlap=0.5)
    stems = sorted(f"tomo_z{z}_y{y}_x{x}" for z, y, x in origins)
    assert sorted(p.stem for p in (out / "image").iterdir()) == stems
    assert sorted(p.stem for p in (out / "labels").iterdir()) == stems
    assert sorted(p.name for p in (out / "distances").iterdir()) == sorted(s + ".npz" for s in stems)
    patch = read_mrc(out / "labels" / "tomo_z16_y16_x16.mrc")
    assert patch.voxel_size == VOXEL and patch.data.dtype == np.float32
    np.testing.assert_array_equal(patch.data, labels[16:32, 16:32, 16:32])


def test_patches_job_validation_writes_nothing(tmp_path, files):
    folder, image, labels = files
    write_mrc(folder / "small_labels.mrc", labels[:, :, :40])
    write_mrc(folder / "halves.mrc", labels.astype(np.float32) / 2)
    np.save(folder / "bad_dist.npy", np.zeros((3, 32, 40, 40), np.float32))
    before = listing(tmp_path)
    base = {"image": folder / "tomo.mrc", "output": tmp_path / "t.zarr", "patch_size": 16}
    cases = [
        ({"labels": folder / "small_labels.mrc"}, r"small_labels\.mrc.*\(32, 40, 40\) differs from the tomogram .*tomo\.mrc \(32, 40, 48\)"),
        ({"labels": folder / "halves.mrc"}, "labels must be integers"),
        ({"patch_size": (16, 16, 64)}, r"patch size \(16, 16, 64\) is larger than the volume \(32, 40, 48\)"),
        ({"distances": folder / "bad_dist.npy"}, r"bad_dist\.npy: distances: shape \(3, 32, 40, 40\)"),
        ({"distances": folder / "nothing.npz"}, "not found"),
    ]
    for change, message in cases:
        for fmt, output in (("zarr", tmp_path / "t.zarr"), ("cryosiam", tmp_path / "patches")):
            config = PatchesConfig(**{**base, **change, "format": fmt, "output": output})
            with pytest.raises(InputError, match=message):
                run_job(patches_job(config))
    assert listing(tmp_path) == before
    with pytest.raises(InputError, match="remove_only_background needs labels"):
        PatchesConfig.from_dict({**base, "remove_only_background": True})


@pytest.mark.parametrize("fmt", ["zarr", "cryosiam"])
def test_patches_job_stop_leaves_nothing(tmp_path, files, fmt):
    folder, _, _ = files
    out = tmp_path / ("t.zarr" if fmt == "zarr" else "patches")
    before = listing(tmp_path)
    stop = StopFlag()
    job = patches_job(PatchesConfig(image=folder / "tomo.mrc", labels=folder / "tomo_labels.mrc", output=out, patch_size=16, format=fmt), stop)
    for _ in range(4):
        next(job)
    assert listing(tmp_path) != before  # it was writing
    stop.set()
    assert run_job(job).stopped
    assert listing(tmp_path) == before


def test_patches_job_closed_leaves_nothing(tmp_path, files):
    folder, _, _ = files
    before = listing(tmp_path)
    job = patches_job(PatchesConfig(image=folder / "tomo.mrc", output=tmp_path / "patches", patch_size=16, format="cryosiam"))
    for _ in range(3):
        next(job)
    job.close()
    assert listing(tmp_path) == before


def test_patches_config_from_cryosiam(tmp_path, files):
    folder, _, _ = files
    labels_folder = tmp_path / "labels"
    labels_folder.mkdir()
    (labels_folder / "tomo.mrc").write_bytes((folder / "tomo_labels.mrc").read_bytes())
    cfg = {
        "data_folder": str(folder),
        "labels_folder": str(labels_folder),
        "patches_folder": str(tmp_path / "patches"),
        "temp_dir": str(tmp_path / "tmp"),
        "file_extension": ".mrc",
        "train_files": ["tomo.mrc"],
        "val_files": [],
        "parameters": {"data": {"patch_size": [16, 16, 16], "patch_overlap": 0.25, "remove_only_background": True}},
    }
    (config,) = PatchesConfig.from_cryosiam(cfg)
    assert config.image == folder / "tomo.mrc" and config.labels == labels_folder / "tomo.mrc"
    assert config.distances == tmp_path / "tmp" / "distances" / "tomo.npz"
    assert config.output == tmp_path / "patches" and config.format == "cryosiam" and config.grid == "cryosiam"
    assert config.patch_size == (16, 16, 16) and config.overlap == 0.25 and config.remove_only_background
    (as_zarr,) = PatchesConfig.from_cryosiam(cfg, format="zarr", with_distances=False)
    assert as_zarr.output == tmp_path / "patches" / "tomo.zarr" and as_zarr.distances is None
    assert PatchesConfig(image="a.mrc", output="b.zarr", patch_size=[8, 16, 32]).patch_size == (8, 16, 32)
    assert PatchesConfig(image="a.mrc", output="b.zarr", overlap=4).overlap == 4


def test_patches_job_refuses_nan_in_the_tomogram_and_leaves_nothing(tmp_path):
    import pytest as _pytest

    from napari_cryolearn.engine.errors import InputError as _InputError
    from napari_cryolearn.engine.jobs import run_job as _run_job
    from napari_cryolearn.io import write_mrc as _write_mrc
    from napari_cryolearn.prep.patch_job import PatchesConfig as _PatchesConfig, patches_job as _patches_job

    vol = np.zeros((16, 16, 24), np.float32)
    vol[12, 3, 20] = np.nan
    image = _write_mrc(tmp_path / "nan.mrc", vol)
    out = tmp_path / "nan.zarr"
    with _pytest.raises(_InputError, match="NaN") as err:
        _run_job(_patches_job(_PatchesConfig(image=image, output=out, patch_size=8, overlap=0)))
    assert "nan.mrc" in str(err.value) and "(8, 0, 16)" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.mrc"]


def test_distance_job_writes_the_tube_skeleton(tmp_path):
    from napari_cryolearn.engine.jobs import run_job as _run_job
    from napari_cryolearn.io import read_mrc as _read_mrc, write_mrc as _write_mrc
    from napari_cryolearn.prep.distance_job import DistanceMapConfig as _Config, distance_map_job as _job
    from napari_cryolearn.prep.distances import tube_skeleton as _tube

    labels = np.zeros((20, 24, 24), np.uint8)
    labels[4:16, 10:14, 10:14] = 1  # a tube along z
    labels[5:8, 2:6, 15:22] = 2
    src = _write_mrc(tmp_path / "labels.mrc", labels, voxel_size=11.0)
    cfg = _Config(input=src, output=tmp_path / "d.npy", skeleton=tmp_path / "skeleton.mrc", skeleton_classes=[1],
                  skeleton_fraction=0.6)
    _run_job(_job(cfg))
    skeleton = _read_mrc(tmp_path / "skeleton.mrc")
    assert skeleton.voxel_size == (11.0, 11.0, 11.0)
    expected = _tube(labels, 1, fraction=0.6)
    np.testing.assert_array_equal(skeleton.data == 1, expected)
    assert expected.any() and (labels[expected] == 1).all() and expected.sum() < (labels == 1).sum()
    assert set(np.unique(skeleton.data)) == {0, 1}
