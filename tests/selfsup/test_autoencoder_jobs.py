"""The 4D-STEM autoencoder's training and apply jobs on tiny generated scans: outputs, bad input
(clear errors, nothing written), resume and fine-tuning."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.io.mrc import read_mrc
from napari_cryolearn.io.stem4d import normalise
from napari_cryolearn.sample.stem4d import make_4dstem_scan
from napari_cryolearn.selfsup.ae_apply_job import ae_apply_job
from napari_cryolearn.selfsup.ae_config import AEApplyConfig, AETrainConfig
from napari_cryolearn.selfsup.ae_module import load_ae_model
from napari_cryolearn.selfsup.ae_train_job import ae_train_job


def run(job):
    try:
        while True:
            next(job)
    except StopIteration as stop:
        return stop.value


def tiny(tmp_path, name="scan.npy", *, detector=(16, 16), seed=0):
    scan = make_4dstem_scan((8, 8), detector, n_grains=5, seed=seed)
    path = tmp_path / name
    np.save(path, scan.data)
    return path, scan


def train_config(data, log_dir, **kw):
    base = dict(data=data, log_dir=log_dir, latent=4, width=8, batch_size=16, max_epochs=1, device="cpu",
                validation_ratio=0.25)
    return AETrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ae")
    data, scan = tiny(tmp)
    torch.manual_seed(0)
    result = run(ae_train_job(train_config(data, tmp / "run", realtime_metrics=True)))
    return tmp, data, scan, result


def test_train_writes_a_run_with_the_normalisation_inside(trained):
    tmp, data, _, result = trained
    assert result.best_checkpoint.is_file() and result.last_checkpoint.is_file()
    assert (tmp / "run" / "config.yaml").is_file() and (tmp / "run" / "csv_logs").exists()
    for key in ("train_mse", "train_act", "train_sim", "train_div", "train_loss", "val_loss", "val_psnr",
                "val_ssim"):
        assert key in result.metrics and np.isfinite(result.metrics[key])
    model, norm, cfg = load_ae_model(result.best_checkpoint)
    assert model.detector_shape == (16, 16) and cfg.latent == 4
    raw = np.load(data)
    assert norm.log_max == pytest.approx(np.log(raw.max() + 1e-6), rel=1e-6)


def test_apply_writes_latent_reconstruction_metrics_and_maps(trained, tmp_path):
    _, data, scan, result = trained
    out = tmp_path / "out"
    res = run(ae_apply_job(AEApplyConfig(model=result.best_checkpoint, data=data, output_dir=out, step=2.0,
                                         batch_size=10, device="cpu")))
    latent = np.load(out / "latent.npy")
    recon = np.load(out / "reconstruction.npy")
    assert latent.shape == (8, 8, 4) and (latent >= 0).all()
    assert recon.shape == scan.data.shape and recon.dtype == np.float32
    metrics = json.loads((out / "metrics.json").read_text())
    # input units: normalised with the training normalisation, the reconstruction gives the MSE reported
    _, norm, _ = load_ae_model(result.best_checkpoint)
    mse = np.mean((normalise(recon, norm).astype(np.float64) - normalise(scan.data, norm)) ** 2)
    assert mse == pytest.approx(metrics["mse"], rel=1e-3)
    assert set(metrics) == {"mse", "psnr", "ssim", "n_patterns"} and metrics["n_patterns"] == 64
    assert metrics == pytest.approx(res.metrics)
    maps = read_mrc(out / "latent_maps.mrc", mmap=False)
    assert maps.data.shape == (4, 8, 8) and maps.voxel_size[1:] == pytest.approx((20.0, 20.0))
    np.testing.assert_allclose(maps.data, np.moveaxis(latent, -1, 0))
    # again without overwrite: refused, with it: replaced
    with pytest.raises(InputError, match="exists"):
        run(ae_apply_job(AEApplyConfig(model=result.best_checkpoint, data=data, output_dir=out, device="cpu")))
    run(ae_apply_job(AEApplyConfig(model=result.best_checkpoint, data=data, output_dir=out, device="cpu",
                                   overwrite=True)))


def test_apply_refuses_a_stack_and_another_detector_and_writes_nothing(trained, tmp_path):
    tmp, data, scan, result = trained
    np.save(tmp_path / "stack.npy", scan.data.reshape(64, 16, 16))
    out = tmp_path / "out"
    with pytest.raises(InputError, match="4D scan") as err:
        run(ae_apply_job(AEApplyConfig(model=result.best_checkpoint, data=tmp_path / "stack.npy", output_dir=out,
                                       device="cpu")))
    assert "stack.npy" in str(err.value)
    other, _ = tiny(tmp_path, "other.npy", detector=(20, 20))
    with pytest.raises(InputError, match=r"trained on patterns of \(16, 16\)") as err:
        run(ae_apply_job(AEApplyConfig(model=result.best_checkpoint, data=other, output_dir=out, device="cpu")))
    assert str(result.best_checkpoint) in str(err.value)
    assert not out.exists()
    # a model of another detector size (its own run) on this scan: refused naming the model
    model20 = run(ae_train_job(train_config(other, tmp_path / "run20"))).best_checkpoint
    with pytest.raises(InputError, match=r"\(20, 20\)") as err:
        run(ae_apply_job(AEApplyConfig(model=model20, data=data, output_dir=out, device="cpu")))
    assert str(model20) in str(err.value) and not out.exists()


def test_train_refuses_nan_and_empty_files_before_writing(tmp_path):
    data, scan = tiny(tmp_path)
    bad = scan.data.copy()
    bad[5, 6, 3, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(InputError, match="NaN") as err:
        run(ae_train_job(train_config(tmp_path / "nan.npy", tmp_path / "run")))
    assert "nan.npy" in str(err.value)
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        run(ae_train_job(train_config(tmp_path / "empty.npy", tmp_path / "run")))
    with pytest.raises(InputError, match="fewer than a batch"):
        run(ae_train_job(train_config(data, tmp_path / "run", batch_size=64)))
    assert not (tmp_path / "run").exists()


def test_resume_and_fine_tune(tmp_path):
    data, _ = tiny(tmp_path)
    first = run(ae_train_job(train_config(data, tmp_path / "run", max_epochs=1)))
    assert first.epochs == 1
    with pytest.raises(InputError, match="already holds a training run"):
        run(ae_train_job(train_config(data, tmp_path / "run", max_epochs=2)))
    resumed = run(ae_train_job(train_config(data, tmp_path / "run", max_epochs=2, continue_training=True)))
    assert resumed.epochs == 2
    tuned = run(ae_train_job(train_config(data, tmp_path / "tuned", pretrained_model=first.last_checkpoint)))
    assert tuned.best_checkpoint.is_file()
    other, _ = tiny(tmp_path, "other.npy", detector=(20, 20))
    with pytest.raises(InputError, match="pretrained_model") as err:
        run(ae_train_job(train_config(other, tmp_path / "bad", pretrained_model=first.last_checkpoint)))
    assert "(16, 16)" in str(err.value) and not (tmp_path / "bad").exists()


def test_stack_with_scan_shape_and_pt_input(tmp_path):
    _, scan = tiny(tmp_path)
    torch.save(torch.from_numpy(scan.data.reshape(64, 1, 16, 16)), tmp_path / "train_tensor.pt")
    result = run(ae_train_job(train_config(tmp_path / "train_tensor.pt", tmp_path / "run", scan_shape=(8, 8),
                                           binning=2)))
    model, norm, _ = load_ae_model(result.best_checkpoint)
    assert model.detector_shape == (8, 8) and norm.binning == 2
    out = tmp_path / "out"
    run(ae_apply_job(AEApplyConfig(model=result.best_checkpoint, data=tmp_path / "train_tensor.pt",
                                   scan_shape=(8, 8), output_dir=out, device="cpu")))
    assert np.load(out / "reconstruction.npy").shape == (8, 8, 8, 8)


def test_apply_stopped_writes_nothing(trained, tmp_path):
    from napari_cryolearn.engine.stop import StopFlag

    _, data, _, result = trained
    stop = StopFlag()
    out = tmp_path / "out"
    job = ae_apply_job(AEApplyConfig(model=result.best_checkpoint, data=data, output_dir=out, batch_size=8,
                                     device="cpu"), stop)
    next(job)
    stop.set()
    res = run(job)
    assert res.stopped and not res.outputs
    assert not out.exists()  # no output, no temporary, not even the folder


def test_h5_scan_trains_and_applies_with_its_step(tmp_path):
    import h5py

    _, scan = tiny(tmp_path)
    with h5py.File(tmp_path / "scan.h5", "w") as f:
        f.create_dataset("data", data=scan.data).attrs["step"] = 3.0
    result = run(ae_train_job(train_config(tmp_path / "scan.h5", tmp_path / "run")))
    out = tmp_path / "out"
    run(ae_apply_job(AEApplyConfig(model=result.best_checkpoint, data=tmp_path / "scan.h5", output_dir=out,
                                   device="cpu")))
    assert read_mrc(out / "latent_maps.mrc").voxel_size[1:] == pytest.approx((30.0, 30.0))


def test_cli_trains_and_applies_with_the_scan_step(tmp_path, capsys):
    from napari_cryolearn.cli import main

    data, _ = tiny(tmp_path)
    run_dir, out = tmp_path / "run", tmp_path / "out"
    assert main(["-q", "ae", "train", str(data), "--log-dir", str(run_dir), "--latent", "4", "--width", "8",
                 "--batch-size", "16", "--max-epochs", "1", "--device", "cpu"]) == 0
    model = run_dir / "model" / "model_best.ckpt"
    assert model.is_file()
    assert main(["-q", "ae", "apply", str(model), str(data), "--output-dir", str(out), "--step", "2.5",
                 "--clusters", "3"]) == 0
    latent = np.load(out / "latent.npy")
    assert latent.shape == (8, 8, 4)
    maps = read_mrc(out / "latent_maps.mrc")
    assert maps.data.shape == (4, 8, 8)
    assert maps.voxel_size[-1] == pytest.approx(25.0)  # 2.5 nm per step, in Å
    clusters = read_mrc(out / "cluster_labels.mrc")
    labels = np.asarray(clusters.data[0])
    assert labels.shape == (8, 8) and labels[0, 0] == 1 and set(np.unique(labels)) <= {1, 2, 3}
    assert clusters.voxel_size[-1] == pytest.approx(25.0)
    assert json.loads((out / "metrics.json").read_text())["k"] == 3
    # positions with the same unit-length latent share a cluster
    unit = latent / np.maximum(np.linalg.norm(latent, axis=-1, keepdims=True), 1e-12)
    same = np.all(np.isclose(unit[:, :, None, None], unit[None, None]), axis=-1)
    assert (labels[:, :, None, None] == labels[None, None])[same].all()
    # a second apply into the same folder is refused, and leaves the first outputs
    before = (out / "metrics.json").read_bytes()
    assert main(["-q", "ae", "apply", str(model), str(data), "--output-dir", str(out)]) != 0
    assert "overwrite" in capsys.readouterr().err
    assert (out / "metrics.json").read_bytes() == before
