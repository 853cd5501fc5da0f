"""``cryolearn segment predict`` with a broken model, a window larger than the volume, and
outputs that coincide: exit code 2 and a message naming the file and the problem, before
anything is written (or, for the window, a clamped window and a note)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_cryolearn.cli import main
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.io import write_mrc
from napari_cryolearn.segmentation.config import NetworkConfig, SegmentationPredictConfig, SegmentationTrainConfig
from napari_cryolearn.segmentation.module import SegmentationModule
from napari_cryolearn.segmentation.predict_job import predict_job

SHAPE = (20, 30, 40)  # not multiples of the network's stride (8) along z and y
TINY = {"backbone": {"num_filters": (4, 8, 8, 16), "fpn_channels": 8, "dense_dim": 8}, "filters": (8, 8)}


def save_model(path: Path, out_channels: int = 3, distances: bool = False, **change) -> Path:
    """A checkpoint as training writes it (weights untrained: prediction only needs them finite)."""
    net = NetworkConfig.from_dict({**TINY, "out_channels": out_channels, "distance_prediction": distances})
    cfg = SegmentationTrainConfig(log_dir=path.parent, network=net)
    torch.manual_seed(0)
    module = SegmentationModule(cfg.to_dict(), patch_shape=(16, 16, 16))
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), **change}
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("predict_faults")
    tomo = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    d = {"tomogram": write_mrc(root / "tomogram.mrc", tomo, voxel_size=10.0),
         "model": save_model(root / "model.ckpt"), "distance_model": save_model(root / "dist.ckpt", distances=True)}
    return d


def _predict(model: Path, tomogram: Path, out: Path, *extra: str) -> list[str]:
    return ["segment", "predict", str(model), str(tomogram), str(out), "--device", "cpu", "--window", "16", *extra]


# ---------------------------------------------------------------------------------------------
# the model


def _other_class_model(good: Path, path: Path) -> tuple[str, str]:
    """The weights of a 2-class network under the config of the 3-class ``good`` one."""
    two = save_model(path.with_name("two.ckpt"), out_channels=2)
    ck = torch.load(good, weights_only=False)
    ck["state_dict"] = torch.load(two, weights_only=False)["state_dict"]
    two.unlink()
    torch.save(ck, path)
    return "heads.semantic_head.6.weight: checkpoint (2, 8, 3, 3, 3) vs model (3, 8, 3, 3, 3)", "does not fit"


@pytest.mark.parametrize("kind", ["random", "truncated", "tensor", "dict", "foreign_state", "not_tensors",
                                  "other_class", "nan"])
def test_predict_with_a_broken_model(kind, data, tmp_path, refused, broken_checkpoint):
    model = tmp_path / "in" / "model.ckpt"
    model.parent.mkdir()
    write = _other_class_model if kind == "other_class" else lambda *paths: broken_checkpoint(kind, *paths)
    name, problem = write(data["model"], model)
    out, probs = tmp_path / "out" / "labels.mrc", tmp_path / "out" / "p.npy"
    out.parent.mkdir()
    refused(_predict(model, data["tomogram"], out, "--probabilities", str(probs)), str(model), name,
            problem=problem, outputs=[out, probs])


def test_load_model_refuses_nan_weights_naming_the_tensor(data, tmp_path, broken_checkpoint):
    from napari_cryolearn.engine.errors import InputError
    from napari_cryolearn.segmentation.predict_job import load_model

    name, _ = broken_checkpoint("nan", data["model"], tmp_path / "nan.ckpt")
    with pytest.raises(InputError, match=rf"nan\.ckpt: tensor {name} holds NaN or infinite values"):
        load_model(tmp_path / "nan.ckpt")


# ---------------------------------------------------------------------------------------------
# the window


def test_a_window_larger_than_the_volume_is_clamped_to_it(data, tmp_path):
    cfg = SegmentationPredictConfig(model=data["model"], input=data["tomogram"], output=tmp_path / "l.mrc",
                                    probabilities=tmp_path / "p.npy", window=(512, 512, 512), device="cpu")
    events = []
    result = run_job(predict_job(cfg), events.append)
    notes = [e for e in events if "larger than the volume" in e.message]
    assert len(notes) == 1
    assert notes[0].message == ("window (512, 512, 512) is larger than the volume (20, 30, 40): using (24, 32, 40) "
                                "(the volume rounded up to a multiple of 8)")
    assert notes[0].metrics["window"] == [24, 32, 40]
    windows = [e for e in events if e.message.startswith("window ") and "/" in e.message]
    assert windows[-1].message == "window 1/1"  # one window covers the volume
    probs = np.load(result["probabilities"])
    assert probs.shape == (3, *SHAPE) and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)


def test_a_window_that_fits_is_used_as_given(data, tmp_path):
    cfg = SegmentationPredictConfig(model=data["model"], input=data["tomogram"], output=tmp_path / "l.mrc",
                                    window=(16, 16, 16), device="cpu")
    events = []
    run_job(predict_job(cfg), events.append)
    assert not [e for e in events if "larger than the volume" in e.message]
    assert events[0].metrics["window"] == [16, 16, 16]


def test_fit_window():
    from napari_cryolearn.models.sliding_window import fit_window

    assert fit_window((512, 512, 512), (48, 64, 64), divisor=16) == (48, 64, 64)
    assert fit_window((64, 64, 64), (50, 200, 7), divisor=8) == (56, 64, 8)
    assert fit_window((32, 32, 32), (48, 64, 64), divisor=16) == (32, 32, 32)


# ---------------------------------------------------------------------------------------------
# outputs that coincide


def test_labels_named_like_a_probability_map(data, tmp_path, refused):
    out, probs = tmp_path / "o_class_0.mrc", tmp_path / "o.mrc"
    maps = [tmp_path / f"o_class_{i}.mrc" for i in range(3)]
    refused(_predict(data["model"], data["tomogram"], out, "--probabilities", str(probs)),
            str(out), "probabilities", problem="is also the file of the labels", outputs=maps)


def test_probabilities_and_distances_into_the_same_files(data, tmp_path, refused):
    out, same = tmp_path / "labels.mrc", tmp_path / "maps.mrc"
    maps = [tmp_path / f"maps_class_{i}.mrc" for i in range(3)]
    refused(_predict(data["distance_model"], data["tomogram"], out, "--probabilities", str(same),
                     "--distances", str(same)), "maps_class_0.mrc", "distances",
            problem="is also the file of a probabilities map", outputs=[out, *maps])


def test_probabilities_and_distances_into_the_same_npy(data, tmp_path, refused):
    out, same = tmp_path / "labels.mrc", tmp_path / "maps.npy"
    refused(_predict(data["distance_model"], data["tomogram"], out, "--probabilities", str(same),
                     "--distances", str(same)), "maps.npy", "distances",
            problem="is also the file of a probabilities map", outputs=[out, same])


def test_distinct_outputs_are_all_written(data, tmp_path):
    out = tmp_path / "labels.mrc"
    assert main(["-q", *_predict(data["distance_model"], data["tomogram"], out, "--probabilities",
                                 str(tmp_path / "p.mrc"), "--distances", str(tmp_path / "d.mrc"))]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["labels.mrc", "labels.mrc.json", *(f"{k}_class_{i}.mrc" for k in "pd" for i in range(3))])


def test_a_margin_that_leaves_nothing_of_the_window_is_refused(data, tmp_path, capsys):
    out = tmp_path / "l.mrc"
    assert main(["-q", *_predict(data["model"], data["tomogram"], out, "--margin", "1000")]) == 2
    err = capsys.readouterr().err
    assert "margin: a margin of 1000 voxels" in err and "at most 7" in err, err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_prediction_is_replaced_only_with_overwrite(data, tmp_path, capsys):
    out = tmp_path / "l.mrc"
    assert main(["-q", *_predict(data["model"], data["tomogram"], out)]) == 0
    before = out.read_bytes()
    assert main(["-q", *_predict(data["model"], data["tomogram"], out)]) == 2
    assert "exists (set overwrite to replace it)" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(["-q", *_predict(data["model"], data["tomogram"], out, "--overwrite")]) == 0


@pytest.mark.parametrize("where", ["readonly", "under_a_file"])
def test_predict_into_a_folder_it_cannot_write(where, data, tmp_path, readonly_dir, capsys):
    if where == "readonly":
        out = readonly_dir / "l.mrc"
    else:
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "l.mrc"
    assert main(["-q", *_predict(data["model"], data["tomogram"], out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(out.parent) in err, err
