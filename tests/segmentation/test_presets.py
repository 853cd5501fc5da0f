"""Defaults that work (#18): the CPU and GPU presets fill the fields a run leaves unset."""

import pytest

from napari_cryolearn.segmentation.config import CPU_TRANSFORMS, PRESETS, SegmentationTrainConfig
from napari_cryolearn.segmentation.train_job import train_job


def test_a_preset_fills_only_the_fields_left_unset():
    cfg = SegmentationTrainConfig(log_dir="run", lr=0.002)
    got, applied = cfg.with_preset("cpu", (64, 64, 64), multiple=8)
    assert got.preset == "cpu" and "lr" not in applied and got.lr == 0.002
    assert (got.batch_size, got.patch_size, got.foreground_probability) == (4, (32, 32, 32), 0.67)
    assert got.transforms.rotate is None and got.transforms.zoom is None and got.transforms.rotate90
    assert applied == {k: v for k, v in PRESETS["cpu"].items() if k != "lr"}
    # on a GPU, the GPU preset; its patch is capped by the stored patches, kept a multiple of the stride
    gpu, applied = SegmentationTrainConfig(log_dir="run").with_preset("cuda", (40, 96, 96), multiple=8)
    assert gpu.preset == "gpu" and gpu.patch_size == (40, 64, 64) and gpu.transforms == cfg.transforms
    small, _ = SegmentationTrainConfig(log_dir="run").with_preset("cpu", (20, 16, 12), multiple=8)
    assert small.patch_size == (16, 16, 8)
    # any transforms field given keeps the transforms as given; fine-tuning keeps the learning rate
    given = SegmentationTrainConfig.from_dict({"log_dir": "run", "transforms": {"flip": False}})
    assert given.with_preset("cpu")[0].transforms == given.transforms
    tuned = SegmentationTrainConfig(log_dir="run", pretrained_model="model.ckpt").with_preset("cpu")[0]
    assert tuned.lr == SegmentationTrainConfig.model_fields["lr"].default
    # preset none, or an explicit preset, whatever the device
    assert SegmentationTrainConfig(log_dir="run", preset="none").with_preset("cpu") == (
        SegmentationTrainConfig(log_dir="run", preset="none"), {})
    assert SegmentationTrainConfig(log_dir="run", preset="cpu").with_preset("cuda")[0].transforms.zoom is None
    # the resolved config is complete: read back from YAML it resolves to itself
    again, more = SegmentationTrainConfig.from_dict(got.to_dict()).with_preset("cpu", (64, 64, 64), multiple=8)
    assert again == got and more == {}
    assert set(CPU_TRANSFORMS) <= set(type(cfg.transforms).model_fields)


def test_a_run_with_the_defaults_takes_the_cpu_preset_and_writes_it(tmp_path, blob_store, run_collecting):
    cfg = SegmentationTrainConfig(patch_stores=[blob_store], log_dir=tmp_path / "run", device="cpu", max_epochs=1,
                                  network={"out_channels": 3, "unet_channels": (8, 16)})
    result, events = run_collecting(train_job(cfg))
    assert result.epochs == 1
    said = [e.message for e in events if e.metrics.get("preset")]
    assert said and said[0].startswith("cpu preset: batch_size 4, patch_size (16, 16, 16), lr 0.01")
    used = SegmentationTrainConfig.from_yaml(tmp_path / "run" / "config.yaml")
    assert (used.preset, used.batch_size, used.lr, used.network.architecture) == ("cpu", 4, 0.01, "unet")
    assert used.patch_size == (16, 16, 16)  # the stored patches are 16^3
    # continuing with the same flags resolves the same way
    cont, _ = run_collecting(train_job(cfg.model_copy(update={"continue_training": True, "max_epochs": 1})))
    assert cont.epochs == 1


@pytest.mark.parametrize("field", ["batch_size", "patch_size", "foreground_probability"])
def test_preset_values_are_described_in_the_fields_help(field):
    assert field in SegmentationTrainConfig.model_fields["preset"].description
