"""The training harness: TrainerConfig, the run folder, resume rules and fit(), with a toy stage."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from napari_cryolearn.engine import InputError, StopFlag
from napari_cryolearn.engine.jobs import JobResult
from napari_cryolearn.engine.training import (
    RunFolder,
    TrainerConfig,
    TrainResult,
    fit,
    resume_checkpoint,
    start_weights,
)


class ToyConfig(TrainerConfig):
    """A stage's config: the shared fields and one of its own."""

    width: int = 3


class Toy(L.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(3, 1)

    def _loss(self, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(self.lin(x), y)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_mse", self._loss(batch), on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def _loader(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=2)


@pytest.fixture
def fit_toy(run_collecting):
    """``fit_toy(cfg, stop=None, on=None) -> (result, progress events)``: the toy stage trained in
    its run folder."""

    def run(cfg, stop=None, on=None):
        folder = RunFolder(cfg, files=("notes.txt",))
        folder.check()
        try:
            job = fit(Toy(), _loader(), _loader(4, 1), cfg, folder, stage="toy.train", monitor=("val_mse", "min"),
                      shown=("val_mse",), files={"notes.txt": "toy"}, resume=resume_checkpoint(cfg), stop=stop)
            return run_collecting(job, on)
        finally:
            folder.release()

    return run


def test_every_shared_field_is_described_and_inherited():
    fields = TrainerConfig.model_fields
    assert {"log_dir", "pretrained_model", "continue_training", "overwrite", "batch_size", "max_epochs",
            "val_interval", "optimizer", "lr", "momentum", "weight_decay", "scheduler", "device", "gpu_devices",
            "nodes", "strategy", "precision", "num_workers", "seed", "progress_every_n_batches"} == set(fields)
    assert all(f.description for f in fields.values())
    assert set(fields) < set(ToyConfig.model_fields)


def test_fit_writes_the_run_folder_reports_the_stage_metric_and_returns_a_job_result(tmp_path, fit_toy):
    cfg = ToyConfig(log_dir=tmp_path / "run", max_epochs=2, device="cpu", progress_every_n_batches=2)
    result, events = fit_toy(cfg)
    run = tmp_path / "run"
    assert isinstance(result, TrainResult) and isinstance(result, JobResult)
    assert result.outputs == {"log_dir": run, "model": run / "model" / "model_best.ckpt",
                              "last": run / "model" / "last.ckpt"}
    assert result.epochs == 2 and result.metrics["epochs"] == 2 and not result.stopped
    assert result.best_checkpoint.is_file() and result.last_checkpoint.is_file() and result.log_dir == run
    assert "val_mse" in result.metrics and (run / "notes.txt").read_text() == "toy"
    assert ToyConfig.from_yaml(run / "config.yaml") == cfg
    done = [e for e in events if e.message.startswith("epoch") and "done" in e.message]
    assert [e.metrics["epoch"] for e in done] == [1, 2]
    assert all(e.stage == "toy.train" and "val_mse " in e.message and "train_loss" not in e.message for e in done)
    assert events[-1].message == "done"
    # the folder now holds a run: refused, unless continued or overwritten
    with pytest.raises(InputError, match="already holds a training run"):
        RunFolder(cfg).check()
    with pytest.raises(InputError, match="set one"):
        RunFolder(cfg.model_copy(update={"continue_training": True, "overwrite": True})).check()


def test_resume_rules_and_overwrite_keep_what_is_not_the_runs(tmp_path, fit_toy):
    cfg = ToyConfig(log_dir=tmp_path / "run", max_epochs=2, device="cpu", pretrained_model=tmp_path / "p.ckpt")
    with pytest.raises(InputError, match="no checkpoint to continue from"):
        resume_checkpoint(cfg.model_copy(update={"continue_training": True}))
    assert resume_checkpoint(cfg) is None and start_weights(cfg, None) == tmp_path / "p.ckpt"
    stop = StopFlag()
    first, _ = fit_toy(cfg.model_copy(update={"pretrained_model": None}), stop,
                    lambda e: stop.set() if e.metrics.get("epoch") == 1 and "batch" not in e.metrics else None)
    assert first.stopped and first.epochs == 1
    cont = cfg.model_copy(update={"continue_training": True, "pretrained_model": None})
    with pytest.raises(InputError, match="spans 2 epochs"):
        resume_checkpoint(cont.model_copy(update={"max_epochs": 3}))
    last = resume_checkpoint(cont)
    assert last == tmp_path / "run" / "model" / "last.ckpt" and start_weights(cfg, last) is None
    second, _ = fit_toy(cont)
    assert second.epochs == 2 and not second.stopped
    assert torch.load(second.last_checkpoint, weights_only=False)["global_step"] == 8
    keep = tmp_path / "run" / "mine.txt"
    keep.write_text("not the run's")
    folder = RunFolder(cfg.model_copy(update={"overwrite": True, "pretrained_model": None}), files=("notes.txt",))
    removed = folder.clear_previous()
    assert {p.name for p in removed} == {"config.yaml", "notes.txt", "model", "csv_logs", "lightning_logs"}
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["mine.txt"]
    inside = RunFolder(cfg.model_copy(update={"overwrite": True, "pretrained_model": tmp_path / "run" / "model" / "x"}))
    with pytest.raises(InputError, match="which overwrite removes"):
        inside.check()
