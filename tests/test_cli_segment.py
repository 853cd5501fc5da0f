"""`cryolearn segment train|predict` from flags and from CryoSiam YAML files, end to end."""

import re

import numpy as np
import pytest
import yaml

from napari_cryolearn.cli import main
from napari_cryolearn.io import read_mrc, write_mrc
from napari_cryolearn.io.sidecar import label_names_from, read_sidecar
from napari_cryolearn.segmentation.predict_job import load_model


@pytest.fixture
def tomograms(tmp_path):
    rng = np.random.default_rng(0)
    data, labels = tmp_path / "data", tmp_path / "labels"
    for name in ("tomo_a", "tomo_b"):
        lab = np.zeros((24, 32, 32), np.uint8)
        z, y, x = rng.integers(6, 18, size=3)
        lab[z - 4 : z + 4, y - 6 : y + 6, x - 6 : x + 6] = 1
        vol = (rng.normal(size=lab.shape) - 2.0 * lab).astype(np.float32)
        write_mrc(data / f"{name}.mrc", vol, voxel_size=12.0)
        write_mrc(labels / f"{name}.mrc", lab, voxel_size=12.0)
    return tmp_path


def test_cryosiam_yaml_prepares_trains_and_predicts(tomograms, capsys):
    root = tomograms
    cfg = {
        "data_folder": str(root / "data"),
        "labels_folder": str(root / "labels"),
        "patches_folder": str(root / "patches"),
        "temp_dir": str(root / "temp"),
        "log_dir": str(root / "run"),
        "file_extension": ".mrc",
        "train_files": ["tomo_a.mrc", "tomo_b.mrc"],
        "val_files": ["tomo_b.mrc"],
        "parameters": {
            "data": {"patch_size": [16, 16, 16], "patch_overlap": 0.5, "remove_only_background": False},
            "network": {"out_channels": 2, "distance_prediction": True, "filters": [8, 8]},
            "transforms": {"low_pass_sigma_range": [0.5, 1.0]},
        },
        "hyper_parameters": {"batch_size": 2, "max_epochs": 1, "lr": 0.001, "optimizer": "adam"},
    }
    path = root / "semantic_train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["-q", "prep", "distances", "--config", str(path)]) == 0
    assert main(["-q", "prep", "patches", "--config", str(path)]) == 0
    assert main(["-q", "segment", "train", "--config", str(path), "--device", "cpu",
                 "--network-backbone-num-filters", "4", "8", "8", "16"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"epochs:? 1\b", printed)  # "metrics: epochs 1, ..." (the CLI prints a JobResult's fields)
    run = root / "run"
    assert (run / "model" / "last.ckpt").exists() and (run / "config.yaml").exists()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optimizer"] == "adam" and saved["network"]["distance_prediction"] is True
    assert saved["network"]["backbone"]["num_filters"] == [4, 8, 8, 16]
    split = yaml.safe_load((run / "train_val_split.json").read_text())
    assert [p.endswith("tomo_b.zarr") for p in split["val"]] == [True]
    assert [p.endswith("tomo_a.zarr") for p in split["train"]] == [True]

    out = root / "pred" / "tomo_a_labels.mrc"
    assert main(["-q", "segment", "predict", str(run / "model" / "last.ckpt"), str(root / "data" / "tomo_a.mrc"),
                 str(out), "--window", "16", "--device", "cpu"]) == 0
    pred = read_mrc(out)
    assert pred.data.shape == (24, 32, 32) and pred.voxel_size == (12.0, 12.0, 12.0)
    assert set(np.unique(pred.data)) <= {0, 1}
    assert label_names_from(read_sidecar(out)) == {0: "class_0", 1: "class_1"}
    assert load_model(run / "model" / "last.ckpt").network.out_channels == 2


def test_train_from_flags_and_bad_class_count(tomograms, capsys):
    root = tomograms
    store = root / "a.zarr"
    assert main(["-q", "prep", "patches", str(root / "data" / "tomo_a.mrc"), str(store),
                 "--labels", str(root / "labels" / "tomo_a.mrc"), "--patch-size", "16"]) == 0
    # labels hold class 1, so one output channel is too few: refused before training
    assert main(["-q", "segment", "train", str(store), "--log-dir", str(root / "bad"),
                 "--network-out-channels", "1", "--device", "cpu"]) == 2
    assert "out_channels" in capsys.readouterr().err
    assert not (root / "bad" / "model").exists()
    assert main(["-q", "segment", "train", str(store), "--log-dir", str(root / "ok"), "--max-epochs", "1",
                 "--network-out-channels", "2", "--device", "cpu", "--batch-size", "2"]) == 0
    assert (root / "ok" / "model" / "last.ckpt").exists()


def test_own_run_config_reloads_and_resume_checks_the_schedule(tomograms, capsys):
    root = tomograms
    store = root / "a.zarr"
    assert main(["-q", "prep", "patches", str(root / "data" / "tomo_a.mrc"), str(store),
                 "--labels", str(root / "labels" / "tomo_a.mrc"), "--patch-size", "16"]) == 0
    run = root / "run"
    assert main(["-q", "segment", "train", str(store), "--log-dir", str(run), "--max-epochs", "1",
                 "--device", "cpu", "--network-backbone-num-filters", "4", "8", "8", "16"]) == 0
    capsys.readouterr()
    # the run's own config.yaml (which has log_dir) is ours, not CryoSiam's
    longer = ["-q", "segment", "train", "--config", str(run / "config.yaml"), "--continue-training",
              "--max-epochs", "3"]
    assert main(longer) == 2
    err = capsys.readouterr().err
    assert "max_epochs 1" in err and "pretrained_model" in err
