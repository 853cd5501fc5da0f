"""Segmentation training on the command line when something is wrong: NaN in the inputs or in
the loss, broken checkpoints to continue or start from, a run folder that holds a run or that
another training is writing.

Each case runs ``cryolearn segment train ...`` through :func:`napari_cryolearn.cli.main` and
checks the exit code (2), the one-line message (the file, the field, the problem) and what is
on disk afterwards.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_cryolearn.cli import main
from napari_cryolearn.engine.locks import output_lock
from napari_cryolearn.io import write_mrc

@pytest.fixture(scope="module")
def base(tmp_path_factory, two_class_labels, train_argv) -> dict[str, Path]:
    """A patch store with distance maps and a tiny run trained one epoch on it (copied per case)."""
    root = tmp_path_factory.mktemp("training_faults")
    lab = two_class_labels
    tomo = (np.random.default_rng(0).normal(size=lab.shape) - 2.0 * (lab > 0)).astype(np.float32)
    write_mrc(root / "tomogram.mrc", tomo, voxel_size=10.0)
    write_mrc(root / "labels.mrc", lab, voxel_size=10.0)
    assert main(["-q", "prep", "distances", str(root / "labels.mrc"), str(root / "distances.npy"),
                 "--n-classes", "3"]) == 0
    store = root / "tomogram.zarr"
    assert main(["-q", "prep", "patches", str(root / "tomogram.mrc"), str(store), "--labels",
                 str(root / "labels.mrc"), "--distances", str(root / "distances.npy"), "--patch-size", "16"]) == 0
    run = root / "run"
    assert main(["-q", *train_argv(store, run)]) == 0
    return {"store": store, "run": run}


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _copy_run(base, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(base["run"], run)
    return run


# ---------------------------------------------------------------------------------------------
# NaN and inf


@pytest.mark.parametrize("array, value", [("distances", np.nan), ("distances", np.inf), ("image", -np.inf)])
def test_non_finite_value_in_a_store_is_refused_before_training(array, value, base, tmp_path, refused, train_argv):
    import zarr

    store = tmp_path / "damaged.zarr"
    shutil.copytree(base["store"], store)
    data = zarr.open_group(str(store), mode="r+")[array]
    patch = data.shape[0] - 1
    data[(patch, *(0,) * (data.ndim - 1))] = value  # another tool damaged the last patch
    run = tmp_path / "run"
    extra = ["--network-distance-prediction"] if array == "distances" else []
    refused(train_argv(store, run, *extra), "damaged.zarr", array, f"patch {patch}",
            problem="NaN or infinite values")
    assert not run.exists()


def test_infinite_learning_rate_is_refused(base, tmp_path, refused, train_argv):
    run = tmp_path / "run"
    refused(train_argv(base["store"], run, "--lr", "inf"), "lr", problem="finite")
    assert not run.exists()


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(base, tmp_path, refused, monkeypatch, train_argv):
    from napari_cryolearn.segmentation.module import SegmentationModule

    n = torch.load(base["run"] / "model" / "last.ckpt", weights_only=False)["global_step"]  # batches per epoch
    step = SegmentationModule.training_step

    def nan_at_epoch_2_batch_3(self, batch, batch_idx):
        loss = step(self, batch, batch_idx)
        return loss * float("nan") if self.global_step == n + 2 else loss

    monkeypatch.setattr(SegmentationModule, "training_step", nan_at_epoch_2_batch_3)
    run = tmp_path / "run"
    last = run / "model" / "last.ckpt"
    msg = refused(train_argv(base["store"], run, "--max-epochs", "3"), str(run),
                  problem=f"training diverged at epoch 2, batch 3: loss is nan; last good checkpoint kept at {last}")
    ck = torch.load(last, weights_only=False)
    assert ck["global_step"] == n and ck["epoch"] == 0  # the end of epoch 1
    assert all(torch.isfinite(t).all() for t in ck["state_dict"].values() if t.is_floating_point())
    best = torch.load(run / "model" / "model_best.ckpt", weights_only=False)
    assert best["global_step"] == n
    assert "lower the learning rate" in msg
    # and the kept checkpoint continues
    monkeypatch.setattr(SegmentationModule, "training_step", step)
    assert main(["-q", *train_argv(base["store"], run, "--max-epochs", "3", "--continue-training")]) == 0
    assert torch.load(last, weights_only=False)["global_step"] == 3 * n


def test_nan_loss_in_the_first_epoch_writes_no_checkpoint(base, tmp_path, refused, monkeypatch, train_argv):
    from napari_cryolearn.segmentation.module import SegmentationModule

    step = SegmentationModule.training_step
    monkeypatch.setattr(SegmentationModule, "training_step",
                        lambda self, b, i: step(self, b, i) * (float("nan") if i == 1 else 1.0))
    run = tmp_path / "run"
    refused(train_argv(base["store"], run), problem="diverged at epoch 1, batch 2: loss is nan; no checkpoint")
    assert not (run / "model").exists() or not list((run / "model").iterdir())


def test_non_finite_weights_are_never_written(tmp_path):
    from napari_cryolearn.engine.lightning import AtomicCheckpointIO, DivergedError

    target = tmp_path / "last.ckpt"
    target.write_bytes(b"the good one")
    bad = {"state_dict": {"net.a": torch.ones(2), "net.b": torch.tensor([1.0, float("inf")])}}
    with pytest.raises(DivergedError, match=r"last\.ckpt: not written: .*\(net\.b\)"):
        AtomicCheckpointIO().save_checkpoint(bad, target)
    assert target.read_bytes() == b"the good one" and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


# ---------------------------------------------------------------------------------------------
# checkpoints to continue from or to start from


KINDS = ["random", "truncated", "tensor", "dict", "nan"]


@pytest.mark.parametrize("kind", KINDS)
def test_continue_from_a_broken_last_checkpoint(kind, base, tmp_path, refused, broken_checkpoint, train_argv):
    run = _copy_run(base, tmp_path)
    last = run / "model" / "last.ckpt"
    good = tmp_path / "good.ckpt"
    shutil.copy(last, good)
    name, problem = broken_checkpoint(kind, good, last)
    before = _digest(run)
    refused(train_argv(base["store"], run, "--continue-training"), str(last), name, problem=problem)
    assert _digest(run) == before


def test_continue_from_a_bare_state_dict(base, tmp_path, refused, train_argv):
    run = _copy_run(base, tmp_path)
    last = run / "model" / "last.ckpt"
    torch.save(torch.load(last, weights_only=False)["state_dict"], last)
    refused(train_argv(base["store"], run, "--continue-training"), str(last),
            problem="not a checkpoint of a training run that can be continued (no optimizer_states")


def test_continue_with_another_number_of_classes(base, tmp_path, refused, train_argv):
    run = _copy_run(base, tmp_path)
    argv = train_argv(base["store"], run, "--continue-training", out_channels=4)
    msg = refused(argv, "last.ckpt", problem="does not fit this network")
    assert "net.heads.semantic_head" in msg and "(3," in msg and "(4," in msg


def test_continue_from_a_checkpoint_whose_tensors_do_not_fit(base, tmp_path, refused, train_argv):
    """A checkpoint whose config describes this network but whose tensors have other shapes."""
    run = _copy_run(base, tmp_path)
    last = run / "model" / "last.ckpt"
    ck = torch.load(last, weights_only=False)
    key = next(k for k, t in ck["state_dict"].items() if k.startswith("net.backbone.") and t.ndim == 5)
    ck["state_dict"][key] = torch.zeros(ck["state_dict"][key].shape[0] + 1, *ck["state_dict"][key].shape[1:])
    torch.save(ck, last)
    msg = refused(train_argv(base["store"], run, "--continue-training"), str(last), key,
                  problem="does not fit this network")
    assert "config.yaml" in msg


def test_continue_with_another_optimizer(base, tmp_path, refused, train_argv):
    run = _copy_run(base, tmp_path)
    refused(train_argv(base["store"], run, "--continue-training", "--optimizer", "sgd"), "last.ckpt",
            "optimizer", problem="the stopped run used optimizer 'adamw'")


@pytest.mark.parametrize("kind", KINDS)
def test_pretrained_model_broken(kind, base, tmp_path, refused, broken_checkpoint, train_argv):
    ckpt = tmp_path / "in" / "pretrained.ckpt"
    ckpt.parent.mkdir()
    name, problem = broken_checkpoint(kind, base["run"] / "model" / "last.ckpt", ckpt)
    run = tmp_path / "run"
    refused(train_argv(base["store"], run, "--pretrained-model", str(ckpt)), str(ckpt), name, problem=problem)
    assert not run.exists()


def test_pretrained_model_of_another_class_count_reports_untrained_heads(base, tmp_path, capsys):
    """Fine-tuning to other classes keeps the backbone and says which heads start untrained."""
    from napari_cryolearn.engine.jobs import run_job
    from napari_cryolearn.segmentation.config import SegmentationTrainConfig
    from napari_cryolearn.segmentation.train_job import train_job

    cfg = SegmentationTrainConfig.from_yaml(base["run"] / "config.yaml")
    cfg = cfg.model_copy(update={"log_dir": tmp_path / "run", "pretrained_model": base["run"] / "model" / "last.ckpt",
                                 "network": cfg.network.model_copy(update={"out_channels": 4, "class_weights": None})})
    events = []
    run_job(train_job(cfg), events.append)
    notes = [e.message for e in events if "start untrained" in e.message]
    assert len(notes) == 1 and "heads.semantic_head" in notes[0] and "last.ckpt" in notes[0]


# ---------------------------------------------------------------------------------------------
# the run folder


def test_training_again_into_a_run_folder_is_refused(base, tmp_path, refused, train_argv):
    run = _copy_run(base, tmp_path)
    before = _digest(run)
    msg = refused(train_argv(base["store"], run), str(run), "log_dir", "--continue-training", "--overwrite",
                  problem="already holds a training run")
    assert "config.yaml" in msg and "model/last.ckpt" in msg
    assert _digest(run) == before


def test_overwrite_replaces_the_run_and_keeps_other_files(base, tmp_path, capsys, train_argv):
    run = _copy_run(base, tmp_path)
    (run / "notes.txt").write_text("mine")
    (run / "prediction.mrc").write_bytes(b"a prediction made from the old model")
    old = _digest(run)
    (run / "model" / "model_best.ckpt").unlink()  # this run's checkpoints are only what it writes
    (run / "model" / "stale.ckpt").write_bytes(b"old")
    old_events = list((run / "lightning_logs").rglob("events.out.tfevents*"))
    assert old_events
    assert main(["-q", *train_argv(base["store"], run, "--overwrite", "--seed", "7")]) == 0
    now = _digest(run)
    assert now["notes.txt"] == old["notes.txt"] and now["prediction.mrc"] == old["prediction.mrc"]
    assert sorted(p.name for p in (run / "model").iterdir()) == ["last.ckpt", "model_best.ckpt"]
    assert now["model/last.ckpt"] != old["model/last.ckpt"]
    text = (run / "config.yaml").read_text()
    assert "seed: 7" in text and "overwrite: false" in text  # continuing from it needs no change
    # the old logs are gone (else the new ones would be version_1), the new ones are there
    assert [p.name for p in (run / "csv_logs").iterdir()] == ["version_0"]
    assert [p.name for p in (run / "lightning_logs").iterdir()] == ["version_0"]
    assert not any(p.exists() for p in old_events)
    assert list((run / "lightning_logs").rglob("events.out.tfevents*"))


def test_overwrite_and_continue_together_are_refused(base, tmp_path, refused, train_argv):
    run = _copy_run(base, tmp_path)
    before = _digest(run)
    refused(train_argv(base["store"], run, "--overwrite", "--continue-training"), "overwrite",
            problem="set one")
    assert _digest(run) == before


def test_overwrite_refuses_to_remove_its_own_pretrained_model(base, tmp_path, refused, train_argv):
    run = _copy_run(base, tmp_path)
    before = _digest(run)
    model = run / "model" / "last.ckpt"
    refused(train_argv(base["store"], run, "--overwrite", "--pretrained-model", str(model)), str(model),
            problem="which overwrite removes")
    assert _digest(run) == before


def test_a_run_folder_another_training_is_writing_is_refused(base, tmp_path, refused, train_argv):
    run = tmp_path / "run"
    with output_lock(run, field="log_dir"):  # as a training running in another process holds it
        msg = refused(train_argv(base["store"], run), str(run), "log_dir", problem="another run is writing")
    import os

    assert f"process {os.getpid()}" in msg
    assert not run.exists()
    assert main(["-q", *train_argv(base["store"], run)]) == 0  # and once it is done, the folder is free
    assert not list(tmp_path.glob(".*.lock"))
