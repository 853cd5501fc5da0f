"""`cryolearn prep ...` on files, with our flags and with a CryoSiam YAML, and bad input."""

import numpy as np
import pytest
import yaml

from napari_cryolearn.cli import main
from napari_cryolearn.io import read_mrc, write_mrc
from napari_cryolearn.io.patch_store import open_patch_store


@pytest.fixture
def tomo(tmp_path):
    rng = np.random.default_rng(1)
    vol = rng.normal(size=(32, 40, 48)).astype(np.float32)
    labels = np.zeros(vol.shape, np.uint8)
    labels[8:16, 10:30, 10:30] = 1
    labels[20:24, 5:15, 30:40] = 2
    data, lab = tmp_path / "data", tmp_path / "raw_labels"
    write_mrc(data / "tomo_a.mrc", vol, voxel_size=(14.0, 14.0, 14.0))
    write_mrc(lab / "tomo_a.mrc", labels, voxel_size=(14.0, 14.0, 14.0))
    return vol, labels, tmp_path


def test_prep_scale_flags(tomo):
    vol, _, root = tomo
    out = root / "scaled.mrc"
    args = ["-q", "prep", "scale", str(root / "data" / "tomo_a.mrc"), str(out), "--invert",
            "--lower-percentile", "1", "--upper-percentile", "99", "--method", "exact"]
    assert main(args) == 0
    x = -vol.astype(np.float64)
    lo, hi = np.percentile(x, [1, 99])
    result = read_mrc(out)
    np.testing.assert_allclose(result.data, np.clip((x - lo) / (hi - lo), 0, 1), atol=1e-6)
    assert result.voxel_size == pytest.approx((14.0, 14.0, 14.0))


def test_prep_patches_flags(tomo):
    _, labels, root = tomo
    out = root / "store.zarr"
    args = ["-q", "prep", "patches", str(root / "data" / "tomo_a.mrc"), str(out),
            "--labels", str(root / "raw_labels" / "tomo_a.mrc"), "--patch-size", "16", "--overlap", "0.5"]
    assert main(args) == 0
    store = open_patch_store(out)
    assert store.patch_size == (16, 16, 16)
    np.testing.assert_array_equal(store.reassemble("labels"), labels)


def test_cryosiam_yaml_unchanged(tomo):
    """A CryoSiam training YAML drives filter, distances and patches without edits."""
    _, labels, root = tomo
    cfg = {
        "data_folder": str(root / "data"),
        "labels_folder": str(root / "labels"),
        "labels_folder_for_filtering": str(root / "raw_labels"),
        "selected_labels": [2],
        "patches_folder": str(root / "patches"),
        "temp_dir": str(root / "temp"),
        "file_extension": ".mrc",
        "train_files": ["tomo_a.mrc"],
        "parameters": {
            "data": {"patch_size": [16, 16, 16], "patch_overlap": 0.5, "remove_only_background": True},
            "network": {"out_channels": 2},
        },
        "hyper_parameters": {"batch_size": 2},
    }
    path = root / "cryosiam.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["-q", "prep", "filter", "--config", str(path)]) == 0
    filtered = read_mrc(root / "labels" / "tomo_a.mrc").data
    assert set(np.unique(filtered)) == {0, 1}
    assert filtered.sum() >= (labels == 2).sum()  # CryoSiam grows the kept class by one voxel
    assert main(["-q", "prep", "distances", "--config", str(path)]) == 0
    distances = np.load(root / "temp" / "distances" / "tomo_a.npz")["data"]
    assert distances.shape == (2, *labels.shape)
    assert main(["-q", "prep", "patches", "--config", str(path)]) == 0
    names = sorted(p.name for p in (root / "patches" / "image").iterdir())
    assert names and all(n.startswith("tomo_a_z") and n.endswith(".mrc") for n in names)
    assert len(names) == len(list((root / "patches" / "labels").iterdir()))
    assert len(list((root / "patches" / "distances").iterdir())) == len(names)
    for name in names:
        patch = read_mrc(root / "patches" / "labels" / name).data
        assert patch.any()  # remove_only_background dropped the empty ones


def test_shape_mismatch_exits_2_and_writes_nothing(tomo, capsys):
    _, _, root = tomo
    write_mrc(root / "small_labels.mrc", np.zeros((8, 8, 8), np.uint8))
    out = root / "bad.zarr"
    args = ["-q", "prep", "patches", str(root / "data" / "tomo_a.mrc"), str(out),
            "--labels", str(root / "small_labels.mrc"), "--patch-size", "8"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "small_labels.mrc" in err and "(8, 8, 8)" in err
    assert not out.exists()


def test_masks_need_coordinates_with_cryosiam_config(tomo, capsys):
    _, _, root = tomo
    path = root / "c.yaml"
    path.write_text(yaml.safe_dump({"data_folder": str(root / "data"), "labels_folder": str(root / "m")}))
    assert main(["-q", "prep", "masks", "--config", str(path)]) == 2
    assert "--coordinates" in capsys.readouterr().err


@pytest.mark.parametrize("words, extra", [
    (["prep", "scale"], []),
    (["prep", "filter"], ["--keep", "1"]),
    (["prep", "threshold"], ["--threshold", "0.5"]),
    (["prep", "distances"], []),
])
def test_an_output_named_for_another_format_is_refused(tomo, capsys, words, extra):
    """``prep scale in.mrc out.png`` would write an MRC called out.png: refused, nothing written."""
    _, _, root = tomo
    source = root / ("raw_labels" if words[1] in ("filter", "distances") else "data") / "tomo_a.mrc"
    out = root / "out.png"
    assert main(["-q", *words, str(source), str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert "out.png" in err and "ends in .png" in err
    assert not out.exists() and not list(root.glob("*out.png*"))


def test_distance_maps_name_the_ending_their_format_writes(tomo, capsys):
    _, _, root = tomo
    labels = root / "raw_labels" / "tomo_a.mrc"
    assert main(["-q", "prep", "distances", str(labels), str(root / "d.npz")]) == 2
    assert "name it .npy" in capsys.readouterr().err
    assert main(["-q", "prep", "distances", str(labels), str(root / "d.npz"), "--format", "cryosiam-npz"]) == 0
