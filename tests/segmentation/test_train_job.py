import json

import numpy as np
import pytest
import torch
import yaml

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.segmentation.config import SegmentationTrainConfig
from napari_cryolearn.segmentation.predict_job import load_model
from napari_cryolearn.segmentation.train_job import train_arrays_job, train_job


@pytest.fixture
def train(run_collecting):
    """``train(cfg, stop=None, on=None) -> (result, progress events)``."""
    return lambda cfg, stop=None, on=None: run_collecting(train_job(cfg, stop), on)


def test_training_writes_run_folder_checkpoints_logs_and_metrics(tmp_path, blob_store, make_blobs, make_store,
                                                                 make_config, train):
    cfg = make_config([blob_store], tmp_path / "run", max_epochs=2)
    result, events = train(cfg)
    run = tmp_path / "run"
    assert result.epochs == 2 and not result.stopped
    assert result.best_checkpoint == run / "model" / "model_best.ckpt" and result.best_checkpoint.is_file()
    assert result.last_checkpoint == run / "model" / "last.ckpt"
    saved = SegmentationTrainConfig.from_yaml(run / "config.yaml")
    given = cfg.model_fields_set - {"network"}
    assert {k: getattr(saved, k) for k in given} == {k: getattr(cfg, k) for k in given}
    # what the preset filled in is written too: the saved config repeats the run
    assert saved.preset == "cpu" and saved.foreground_probability == 0.67 and saved.patch_size == (16, 16, 16)
    assert len(saved.network.class_weights) == 3 and saved.with_preset("cpu", (16, 16, 16))[1] == {}
    split = json.loads((run / "train_val_split.json").read_text())
    assert len(split["train_items"]) == 14 and len(split["val_items"]) == 4
    assert list((run / "lightning_logs").rglob("events.out.tfevents*"))
    csv = next((run / "csv_logs").rglob("metrics.csv")).read_text()
    assert "val_dice_class_1" in csv and "train_loss" in csv
    epochs = [e for e in events if "val_dice" in e.metrics and "epoch" in e.metrics]
    assert [e.metrics["epoch"] for e in epochs] == [1, 2]
    assert {"train_loss", "val_loss", "val_dice_class_0", "val_dice_class_1", "val_dice_class_2"} <= set(
        epochs[-1].metrics)
    assert all(e.stage == "segment.train" for e in events)
    batch_events = [e for e in events if "batch" in e.metrics]
    assert batch_events and all(e.total == 14 for e in batch_events)
    # training learned something: the loss went down and a checkpoint loads for prediction
    assert epochs[-1].metrics["train_loss"] < epochs[0].metrics["train_loss"]
    model = load_model(result.best_checkpoint)
    assert model.network == saved.network and model.patch_shape == (16, 16, 16)


def test_resume_after_stop_equals_uninterrupted_run(tmp_path, blob_store, make_blobs, make_store, make_config, train):
    full, _ = train(make_config([blob_store], tmp_path / "a", max_epochs=2, validation_ratio=0.0))
    stop = StopFlag()

    def stop_after_first_epoch(e):
        if e.metrics.get("epoch") == 1 and "train_loss" in e.metrics and "batch" not in e.metrics:
            stop.set()

    cfg_b = make_config([blob_store], tmp_path / "b", max_epochs=2, validation_ratio=0.0)
    first, _ = train(cfg_b, stop, stop_after_first_epoch)
    assert first.stopped and first.epochs == 1
    ck = torch.load(tmp_path / "b" / "model" / "last.ckpt", weights_only=False)
    assert ck["epoch"] == 0 and ck["global_step"] == 9
    second, _ = train(cfg_b.model_copy(update={"continue_training": True}))
    assert second.epochs == full.epochs == 2
    a = torch.load(tmp_path / "a" / "model" / "last.ckpt", weights_only=False)
    b = torch.load(tmp_path / "b" / "model" / "last.ckpt", weights_only=False)
    assert a["global_step"] == b["global_step"] == 18
    sa, sb = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert float(sa[k]["step"]) == float(sb[k]["step"]) == 18
        torch.testing.assert_close(sa[k]["exp_avg"], sb[k]["exp_avg"], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"], rtol=1e-4, atol=1e-9)
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=1e-4, atol=1e-5)


def test_stop_mid_epoch_saves_resumable_checkpoint_and_closing_stops(tmp_path, blob_store, make_blobs, make_store,
                                                                     make_config, train):
    stop = StopFlag()
    cfg = make_config([blob_store], tmp_path / "run", max_epochs=3)
    result, events = train(cfg, stop, lambda e: stop.set() if e.metrics.get("batch") == 2 else None)
    assert result.stopped and result.epochs == 0
    ck = torch.load(result.last_checkpoint, weights_only=False)
    assert ck["global_step"] == 2
    # closing the generator (what a GUI does when its worker quits) also stops training cleanly
    job = train_job(make_config([blob_store], tmp_path / "run2", max_epochs=3))
    for e in job:
        if e.metrics.get("batch") == 2:
            break
    job.close()
    assert (tmp_path / "run2" / "model" / "last.ckpt").is_file()


def test_in_memory_training_from_sparse_annotations(tmp_path, make_blobs, make_store, make_config):
    image, labels = make_blobs((16, 32, 32), seed=3)
    sparse = np.full_like(labels, 255)
    sparse[4:12] = labels[4:12]  # only some slices annotated
    cfg = make_config([], tmp_path / "run", max_epochs=1, validation_ratio=0.3)
    result = run_job(train_arrays_job([image], [sparse], cfg, patch_size=(16, 16, 16), overlap=0.5))
    assert result.epochs == 1 and result.best_checkpoint.is_file()
    with pytest.raises(InputError, match="no patch has any annotated voxel"):
        run_job(train_arrays_job([image], [np.full_like(labels, 255)], cfg, patch_size=(16, 16, 16)))


def test_distance_head_trains_from_store_distances(tmp_path, blob_store_dist, make_blobs, make_store, make_config,
                                                   train):
    cfg = make_config([blob_store_dist], tmp_path / "run", max_epochs=1, network={"distance_prediction": True})
    result, events = train(cfg)
    assert "train_distance_loss" in events[-1].metrics and result.best_checkpoint.is_file()


def test_bad_input_is_reported_before_anything_is_written(tmp_path, blob_store, make_blobs, make_store, make_config,
                                                          train):
    log = tmp_path / "run"
    image, labels = make_blobs()
    labels[0, 0, 0] = 5
    bad = make_store(tmp_path / "bad.zarr", image, labels)
    with pytest.raises(InputError, match=r"bad\.zarr.*label 5 but out_channels is 3"):
        train(make_config([bad], log))
    with pytest.raises(InputError, match="missing.zarr.*not found"):
        train(make_config([tmp_path / "missing.zarr"], log))
    with pytest.raises(InputError, match="distance"):
        train(make_config([blob_store], log, network={"distance_prediction": True}))
    with pytest.raises(InputError, match="continue_training"):
        train(make_config([blob_store], log, continue_training=True))
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"_model.encoder.conv1.weight": torch.zeros(2, 1, 7, 7, 7)}}, other)
    with pytest.raises(InputError, match="other.ckpt.*encoder.conv1.weight"):
        train(make_config([blob_store], log, pretrained_model=other))
    with pytest.raises(InputError, match="multiple of 8"):
        train(make_config([blob_store], log, patch_size=(12, 16, 16)))
    with pytest.raises(InputError, match="patch_stores"):
        train(make_config([], log))
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA requested"):
            train(make_config([blob_store], log, device="cuda"))
    assert not log.exists()


def test_empty_patch_store_is_an_input_error(tmp_path, make_blobs, make_store, make_config, train):
    from napari_cryolearn.io.patch_store import write_patch_store

    image, labels = make_blobs((16, 16, 16))
    empty = tmp_path / "empty.zarr"
    for _ in write_patch_store(empty, image, labels, patch_size=16, origins=np.zeros((0, 3), np.int64)):
        pass
    with pytest.raises(InputError, match="empty.zarr.*no patches"):
        train(make_config([empty], tmp_path / "run"))


def test_from_cryosiam_reads_their_yaml_keys(tmp_path):
    text = """
patches_folder: /data/patches.zarr
log_dir: /runs/semantic
pretrained_model: /models/dense_simsiam.ckpt
val_files: [/data/val.zarr]
validation_ratio: 0.2
continue_training: False
parameters:
  nodes: 2
  gpu_devices: 4
  data: {patch_size: [64, 64, 64], patch_overlap: 0.5, min: 0, max: 1, mean: 0, std: 1}
  transforms:
    low_pass_sigma_range: [0.5, 2]
    high_pass_sigma_range: [0.1, 0.5]
    high_pass_sigma2_range: [4, 5]
    noise_sigma_range: [0.1, 0.5]
    combine_transforms: False
    use_noisy_input: False
    scale_intensity_factors: null
    elastic: [5, 10]
    zoom: [0.8, 1.2]
    rotate: [3.14, 3.14, 3.14]
    flip: True
  network: {in_channels: 1, spatial_dims: 3, out_channels: 4, dense_dim: 64, filters: [32, 64], kernel_size: 3,
            padding: 1, distance_prediction: True, use_dice_loss: True, unfreeze_decoder: True,
            unfreeze_backbone: False}
hyper_parameters: {cache_rate: 0, val_interval: 2, batch_size: 3, optimizer: sgd, lr: 0.01, momentum: 0.8,
                   weight_decay: 0.0001, max_epochs: 200}
"""
    cfg = SegmentationTrainConfig.from_cryosiam(yaml.safe_load(text), source="semantic.yaml")
    assert [str(p) for p in cfg.patch_stores] == ["/data/patches.zarr"]
    assert [str(p) for p in cfg.val_stores] == ["/data/val.zarr"]
    assert str(cfg.pretrained_model) == "/models/dense_simsiam.ckpt" and cfg.validation_ratio == 0.2
    assert (cfg.nodes, cfg.gpu_devices, cfg.patch_size) == (2, 4, (64, 64, 64))
    assert cfg.network.out_channels == 4 and cfg.network.backbone.dense_dim == 64
    assert cfg.network.filters == (32, 64) and cfg.network.distance_prediction
    assert not cfg.network.unfreeze_backbone and cfg.network.unfreeze_decoder
    assert cfg.transforms.rotate == (3.14, 3.14, 3.14) and cfg.transforms.zoom == (0.8, 1.2)
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size, cfg.max_epochs,
            cfg.val_interval) == ("sgd", 0.01, 0.8, 0.0001, 3, 200, 2)
    assert (cfg.intensity.min, cfg.intensity.max, cfg.intensity.std) == (0, 1, 1)
    # their network, loss and hyper-parameters: no device preset fills anything in
    assert (cfg.network.architecture, cfg.network.dice_type, cfg.preset) == ("cryosiam", "generalized", "none")
    assert cfg.with_preset("cpu", (64, 64, 64)) == (cfg, {})
    with pytest.raises(InputError, match="semantic.yaml.*spatial_dims"):
        SegmentationTrainConfig.from_cryosiam({"patches_folder": "x", "parameters": {"network": {"spatial_dims": 2}}},
                                              source="semantic.yaml")


def _states_equal(a: dict, b: dict) -> list[str]:
    """Keys of two checkpoints' weights and optimiser moments that differ (bit for bit)."""
    differ = [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])]
    sa, sb = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    differ += [f"optimizer {k} {m}" for k in sa for m in sa[k] if not torch.equal(torch.as_tensor(sa[k][m]),
                                                                                torch.as_tensor(sb[k][m]))]
    return differ


def test_resume_after_mid_epoch_stops_equals_uninterrupted_run(tmp_path, blob_store, make_config, train):
    """Stopped in the middle of epoch 1, resumed, stopped in the middle of epoch 2, resumed: the
    weights, optimiser state, schedule, best model and epoch count are those of a run that was
    never stopped, bit for bit."""
    kw = dict(max_epochs=2, validation_ratio=0.25, progress_every_n_batches=1)
    full, _ = train(make_config([blob_store], tmp_path / "a", **kw))
    cfg = make_config([blob_store], tmp_path / "b", **kw)

    def stop_at(epoch, batch):
        stop = StopFlag()

        def on(e):
            if (e.metrics.get("epoch"), e.metrics.get("batch")) == (epoch, batch):
                stop.set()

        return stop, on

    first, events = train(cfg, *stop_at(1, 3))
    assert first.stopped and first.epochs == 0
    assert events[-1].message == "stopped in epoch 1 after batch 3/7: continue_training resumes at the next batch"
    assert torch.load(first.last_checkpoint, weights_only=False)["global_step"] == 3
    assert not (tmp_path / "b" / "model" / "model_best.ckpt").exists()  # a stopped epoch is not judged
    # the progress of a stopped epoch has no "epoch done" event
    assert not [e for e in events if "epoch" in e.metrics and "batch" not in e.metrics]
    cont = cfg.model_copy(update={"continue_training": True})
    second, events = train(cont, *stop_at(2, 5))
    assert second.stopped and second.epochs == 1
    batches = [(e.metrics["epoch"], e.metrics["batch"]) for e in events if "batch" in e.metrics]
    assert batches[0] == (1, 4) and batches[-1] == (2, 5)  # resumed at the batch after the stop
    assert torch.load(second.last_checkpoint, weights_only=False)["global_step"] == 7 + 5
    third, _ = train(cont)
    assert not third.stopped and third.epochs == full.epochs == 2
    a = torch.load(tmp_path / "a" / "model" / "last.ckpt", weights_only=False)
    b = torch.load(tmp_path / "b" / "model" / "last.ckpt", weights_only=False)
    assert a["global_step"] == b["global_step"] == 14 and a["epoch"] == b["epoch"]
    assert _states_equal(a, b) == []
    assert a["lr_schedulers"] == b["lr_schedulers"]
    best_a = torch.load(full.best_checkpoint, weights_only=False)
    best_b = torch.load(third.best_checkpoint, weights_only=False)
    assert best_a["global_step"] == best_b["global_step"] and _states_equal(best_a, best_b) == []
    assert third.metrics["val_dice"] == full.metrics["val_dice"]


def test_last_checkpoint_is_written_every_epoch_even_without_a_better_model(tmp_path, blob_store, make_config,
                                                                              monkeypatch, train):
    """Lightning 2.6 writes ``save_last`` only when the monitored model improved; ours is the
    last epoch's whatever its score."""
    from napari_cryolearn.segmentation.module import SegmentationModule

    def worse_every_epoch(self):
        self.log("val_dice", -float(self.current_epoch))

    monkeypatch.setattr(SegmentationModule, "on_validation_epoch_end", worse_every_epoch)
    result, _ = train(make_config([blob_store], tmp_path / "run", max_epochs=3))
    assert torch.load(result.last_checkpoint, weights_only=False)["global_step"] == 3 * 7
    assert torch.load(result.best_checkpoint, weights_only=False)["global_step"] == 7


def test_class_names_travel_from_the_patch_store_to_the_model_and_its_predictions(tmp_path, make_blobs, make_config, train):
    from napari_cryolearn.io.mrc import write_mrc
    from napari_cryolearn.io.patch_store import write_patch_store
    from napari_cryolearn.io.sidecar import label_names_from, read_sidecar
    from napari_cryolearn.segmentation.config import SegmentationPredictConfig
    from napari_cryolearn.segmentation.predict_job import predict_job

    image, labels = make_blobs()
    store = run_job(write_patch_store(tmp_path / "named.zarr", image, labels, patch_size=16, voxel_size=(10,) * 3,
                                      attrs={"label_names": {"0": "background", "1": "vesicle", "2": "membrane"}}))
    result, events = train(make_config([store], tmp_path / "run", max_epochs=1))
    assert load_model(result["model"]).network.names() == ["background", "vesicle", "membrane"]
    assert "val_dice_vesicle" in next(e for e in events if "val_dice" in e.metrics).metrics
    tomo = write_mrc(tmp_path / "tomo.mrc", image, voxel_size=(10,) * 3)
    out = run_job(predict_job(SegmentationPredictConfig(model=result["model"], input=tomo, output=tmp_path / "p.mrc",
                                                        window=(16, 16, 16))))["output"]
    assert label_names_from(read_sidecar(out)) == {0: "background", 1: "vesicle", 2: "membrane"}


def test_stores_that_name_a_class_differently_leave_the_default_names(tmp_path, make_blobs, make_config):
    from napari_cryolearn.io.patch_store import open_patch_store, write_patch_store
    from napari_cryolearn.segmentation.train_job import _with_store_class_names

    image, labels = make_blobs()
    stores = [open_patch_store(run_job(write_patch_store(tmp_path / f"{n}.zarr", image, labels, patch_size=16,
                                                         attrs={"label_names": {"1": n}})))
              for n in ("vesicle", "mito")]
    cfg = make_config([], tmp_path / "run")
    assert _with_store_class_names(cfg, stores[:1]).network.names() == ["background", "vesicle", "class_2"]
    assert _with_store_class_names(cfg, stores).network.names() == ["class_0", "class_1", "class_2"]
