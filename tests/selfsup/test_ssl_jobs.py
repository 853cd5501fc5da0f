"""cryolearn ssl train, embed and intersect: the jobs on small synthetic micrographs in a temporary folder."""

import numpy as np
import pytest
import torch

from napari_cryolearn.cli import main
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.io import write_mrc
from napari_cryolearn.sample import make_quality_micrographs
from napari_cryolearn.selfsup.config import EmbedConfig, IntersectConfig, SSLTrainConfig
from napari_cryolearn.selfsup.embed_job import load_ssl_model, ssl_embed_job, ssl_intersect_job
from napari_cryolearn.selfsup.tables import embedding_columns, read_embedding_table
from napari_cryolearn.selfsup.train_job import ssl_train_job

TINY = dict(image_size=32, batch_size=4, dim=32, pred_dim=16, projection_dim=16, device="cpu", max_epochs=2)


@pytest.fixture(scope="module")
def micrographs(tmp_path_factory):
    root = tmp_path_factory.mktemp("micrographs")
    q = make_quality_micrographs(16, size=64, seed=0)
    for i, image in enumerate(q.images):
        write_mrc(root / f"m{i:02d}.mrc", image, voxel_size=(1.0, q.pixel_size, q.pixel_size))
    return root, q


def _train(root, log_dir, **kw):
    return run_job(ssl_train_job(SSLTrainConfig(data=root, log_dir=log_dir, **{**TINY, **kw})))


@pytest.fixture(scope="module")
def simsiam_run(micrographs, tmp_path_factory):
    root, _ = micrographs
    run = tmp_path_factory.mktemp("simsiam") / "run"
    events = []
    result = run_job(ssl_train_job(SSLTrainConfig(data=root, log_dir=run, **TINY)), on_progress=events.append)
    return run, result, events


def test_simsiam_writes_prismpyps_outputs_and_ours(simsiam_run):
    run, result, _ = simsiam_run
    assert result.epochs == 2
    for name in ("model_best", "model_lowest_collapse", "model_last"):
        ckpt = torch.load(run / "checkpoints" / f"{name}.pth.tar", map_location="cpu", weights_only=False)
        assert set(ckpt) == {"epoch", "arch", "state_dict", "optimizer"} and ckpt["arch"] == "simsiam_resnet18"
        assert "encoder.conv1.weight" in ckpt["state_dict"] and "predictor.0.weight" in ckpt["state_dict"]
    for name in ("total_loss.webp", "collapse_level.webp", "training_config.yaml", "config.yaml"):
        assert (run / name).is_file()
    assert (run / "model" / "model_best.ckpt").is_file() and (run / "model" / "last.ckpt").is_file()
    assert 0.0 <= result.metrics["collapse_level"] <= 1.0
    assert -1.0 <= result.metrics["train_loss"] <= 1.0  # a negative cosine


def test_each_epoch_reports_its_own_collapse_level(simsiam_run):
    from napari_cryolearn.selfsup.exports import epoch_values

    run, _, events = simsiam_run
    logged = epoch_values(run, "collapse_level")
    assert len(logged) == 2
    reported = {e.metrics["epoch"]: e.metrics.get("collapse_level") for e in events
                if e.metrics and "batch" not in e.metrics and "epoch" in e.metrics}
    # the progress of epoch k carries epoch k's level (it used to arrive one epoch late)
    assert reported[1] == pytest.approx(logged[0]) and reported[2] == pytest.approx(logged[1])
    best = torch.load(run / "checkpoints" / "model_lowest_collapse.pth.tar", map_location="cpu", weights_only=False)
    assert best["epoch"] == int(np.argmin(logged)) + 1


def test_checkpoints_reload_strictly_and_a_misfit_is_named(simsiam_run, tmp_path):
    run, _, _ = simsiam_run
    a, cfg = load_ssl_model(run / "model" / "model_best.ckpt")
    b, _ = load_ssl_model(run / "checkpoints" / "model_best.pth.tar")
    assert cfg.method == "simsiam" and cfg.dim == 32
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    # a DDP-trained checkpoint (module. prefix) loads too
    ckpt = torch.load(run / "checkpoints" / "model_best.pth.tar", map_location="cpu", weights_only=False)
    ckpt["state_dict"] = {f"module.{k}": v for k, v in ckpt["state_dict"].items()}
    (tmp_path / "ddp").mkdir()
    torch.save(ckpt, tmp_path / "ddp" / "m.pth.tar")
    (tmp_path / "ddp" / "training_config.yaml").write_text((run / "training_config.yaml").read_text())
    load_ssl_model(tmp_path / "ddp" / "m.pth.tar")
    # one that lacks tensors is an error naming them, never a random model
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if "layer4" not in k}
    torch.save(ckpt, tmp_path / "ddp" / "m.pth.tar")
    with pytest.raises(InputError, match="missing.*layer4"):
        load_ssl_model(tmp_path / "ddp" / "m.pth.tar")


def test_embed_writes_a_table_and_intersect_keeps_good_clusters(micrographs, simsiam_run, tmp_path):
    root, q = micrographs
    run, _, _ = simsiam_run
    out = tmp_path / "real.csv"
    result = run_job(ssl_embed_job(EmbedConfig(model=run / "model" / "model_best.ckpt", data=root, output=out,
                                               map="pca", clusters=3, device="cpu")))
    table = read_embedding_table(out)
    assert len(table) == 16 and len(embedding_columns(table)) == 32
    assert sorted(set(table["cluster"])) == [0, 1, 2] and result.metrics["clusters"] == 3
    np.testing.assert_allclose(np.linalg.norm(table[embedding_columns(table)].to_numpy(), axis=1), 1.0, rtol=1e-5)
    parquet = tmp_path / "real.parquet"
    run_job(ssl_embed_job(EmbedConfig(model=run / "model" / "model_best.ckpt", data=root, output=parquet,
                                      map="pca", clusters=3, device="cpu")))
    assert read_embedding_table(parquet)["file"].tolist() == table["file"].tolist()
    fft = table.copy()
    fft["cluster"] = np.arange(16) % 2
    fft.to_csv(tmp_path / "fft.csv", index=False)
    run_job(ssl_intersect_job(IntersectConfig(real=out, fft=tmp_path / "fft.csv", good_real=[0], good_fft=[1],
                                              output=tmp_path / "keep.txt")))
    kept = (tmp_path / "keep.txt").read_text().split()
    expected = [f for f, c, i in zip(table["file"], table["cluster"], range(16)) if c == 0 and i % 2 == 1]
    assert kept == expected
    with pytest.raises(InputError, match="clusters \\[7\\] are not in the table"):
        run_job(ssl_intersect_job(IntersectConfig(real=out, fft=tmp_path / "fft.csv", good_real=[7], good_fft=[1],
                                                  output=tmp_path / "k2.txt")))


def test_simclr_in_fourier_space_trains_and_embeds(micrographs, tmp_path):
    root, _ = micrographs
    result = _train(root, tmp_path / "run", method="simclr", fft=True, max_epochs=1, scheduler="plateau")
    assert np.isfinite(result.metrics["train_loss"]) and "collapse_level" not in result.metrics
    # the SimCLR trainer's checkpoint and history, loadable by its layout into a fresh network
    from napari_cryolearn.selfsup.checkpoints import load_encoder_weights
    from napari_cryolearn.selfsup.simclr import SimCLR

    trainer_ckpt = torch.load(tmp_path / "run" / "checkpoints" / "best_model.pt", map_location="cpu",
                              weights_only=False)
    assert set(trainer_ckpt) == {"epoch", "model_state_dict", "optimizer_state_dict", "loss", "best_loss",
                                 "train_losses", "val_losses", "lr_history", "global_step"}
    assert trainer_ckpt["lr_history"] == pytest.approx([3e-4]) and len(trainer_ckpt["val_losses"]) == 1
    assert trainer_ckpt["best_loss"] == pytest.approx(trainer_ckpt["val_losses"][0])
    fresh = SimCLR("resnet18", in_channels=1, out_dim=16)
    report = load_encoder_weights(fresh, tmp_path / "run" / "checkpoints" / "best_model.pt")
    assert report.layout == "simclr" and not report.untouched
    trained, _ = load_ssl_model(result.outputs["model"])
    assert torch.equal(fresh.projection_head.projection[2].weight, trained.projection_head.projection[2].weight)
    history = (tmp_path / "run" / "training_history.csv").read_text().splitlines()
    assert history[0] == "epoch,train_loss,val_loss,lr" and len(history) == 2
    out = tmp_path / "fft.csv"
    run_job(ssl_embed_job(EmbedConfig(model=result.outputs["last"], data=root, output=out, map="pca", device="cpu")))
    table = read_embedding_table(out)
    assert len(embedding_columns(table)) == 512  # SimCLR's embedding: the ResNet-18 features
    assert 2 <= table["cluster"].nunique() <= 10


def test_stop_keeps_a_checkpoint_that_resumes(micrographs, tmp_path):
    root, _ = micrographs
    stop = StopFlag()
    job = ssl_train_job(SSLTrainConfig(data=root, log_dir=tmp_path / "run", **{**TINY, "max_epochs": 3}), stop=stop)
    for event in _events(job):
        if "epoch 1" in event.message:
            stop.set()
    assert (tmp_path / "run" / "model" / "last.ckpt").is_file()
    resumed = run_job(ssl_train_job(SSLTrainConfig(data=root, log_dir=tmp_path / "run", continue_training=True,
                                                   **{**TINY, "max_epochs": 3})))
    assert resumed.epochs == 3


def _events(job):
    while True:
        try:
            yield next(job)
        except StopIteration:
            return


def test_starts_from_the_official_simsiam_checkpoint_layout(micrographs, tmp_path):
    from napari_cryolearn.models.resnet import resnet

    root, _ = micrographs
    encoder = resnet("resnet18", in_channels=3, num_classes=None).state_dict()
    state = {f"module.encoder.{k}": v for k, v in encoder.items()}
    state["module.encoder.fc.0.weight"] = torch.zeros(8, 512)
    state["module.predictor.0.weight"] = torch.zeros(8, 8)
    torch.save({"epoch": 100, "arch": "resnet18", "state_dict": state, "optimizer": {}}, tmp_path / "simsiam.pth.tar")
    messages = []
    run_job(ssl_train_job(SSLTrainConfig(data=root, log_dir=tmp_path / "run", pretrained_model=tmp_path / "simsiam.pth.tar",
                                         freeze_backbone=True, **{**TINY, "max_epochs": 1})),
            lambda e: messages.append(e.message))
    assert any("simsiam_official" in m and "loaded" in m for m in messages)


def test_bad_inputs_are_refused_before_anything_is_written(micrographs, tmp_path):
    root, _ = micrographs
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError):
        _train(empty, tmp_path / "run")
    bad = tmp_path / "bad"
    bad.mkdir()
    for p in sorted(root.glob("*.mrc"))[:6]:
        (bad / p.name).write_bytes(p.read_bytes())
    (bad / "broken.mrc").write_bytes(b"not an mrc file at all")
    with pytest.raises(InputError, match="broken.mrc"):
        _train(bad, tmp_path / "run")
    with pytest.raises(InputError, match="fewer than a batch of 32"):
        _train(root, tmp_path / "run", batch_size=32)
    assert not (tmp_path / "run").exists()


def test_cli_train_and_embed(micrographs, tmp_path):
    root, _ = micrographs
    assert main(["-q", "ssl", "train", str(root), "--log-dir", str(tmp_path / "run"), "--image-size", "32",
                 "--batch-size", "4", "--dim", "32", "--pred-dim", "16", "--max-epochs", "1", "--device", "cpu"]) == 0
    assert main(["-q", "ssl", "embed", str(tmp_path / "run" / "model" / "last.ckpt"), str(root), "--output",
                 str(tmp_path / "e.csv"), "--map", "pca", "--device", "cpu"]) == 0
    assert len(read_embedding_table(tmp_path / "e.csv")) == 16
