"""The training harness: TrainerConfig, the run folder, resume rules and fit(), with a toy stage."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from napari_cryolearn.engine import InputError, StopFlag
from napari_cryolearn.engine.jobs import JobResult
from napari_cryolearn.engine.lightning import one_cycle_factor, one_cycle_schedule, run_progress
from napari_cryolearn.engine.training import (
    DEFAULT_EPOCHS,
    RunFolder,
    TrainerConfig,
    TrainResult,
    fit,
    parse_duration,
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


class SlowToy(Toy):
    """Each step takes a while; ``lr`` 0 keeps the validation score from ever improving."""

    def __init__(self, lr=0.05, pause=0.0):
        super().__init__()
        self.lr, self.pause = lr, pause

    def training_step(self, batch, batch_idx):
        import time

        time.sleep(self.pause)
        return super().training_step(batch, batch_idx)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


@pytest.fixture
def fit_toy(run_collecting):
    """``fit_toy(cfg, stop=None, on=None, module=None) -> (result, progress events)``: the toy
    stage trained in its run folder."""

    def run(cfg, stop=None, on=None, module=None):
        folder = RunFolder(cfg, files=("notes.txt",))
        folder.check()
        try:
            job = fit(module or Toy(), _loader(), _loader(4, 1), cfg, folder, stage="toy.train", monitor=("val_mse", "min"),
                      shown=("val_mse",), files={"notes.txt": "toy"}, resume=resume_checkpoint(cfg), stop=stop)
            return run_collecting(job, on)
        finally:
            folder.release()

    return run


def test_every_shared_field_is_described_and_inherited():
    fields = TrainerConfig.model_fields
    assert {"log_dir", "pretrained_model", "continue_training", "overwrite", "batch_size", "max_epochs",
            "val_interval", "optimizer", "lr", "momentum", "weight_decay", "scheduler", "device", "gpu_devices",
            "nodes", "strategy", "precision", "num_workers", "seed", "progress_every_n_batches", "max_time",
            "early_stopping"} == set(fields)
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


def test_durations_read_as_people_write_them():
    assert parse_duration("5m") == 300 and parse_duration("1h30m") == 5400 and parse_duration("1.5h") == 5400
    assert parse_duration("90s") == parse_duration("90") == parse_duration("00:01:30") == parse_duration(90) == 90
    assert parse_duration("2d") == 2 * 86400 and parse_duration("1:00") == 60
    for bad in ("5 minutes", "m5", "-5m", "0s", "", "1h-3m"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    with pytest.raises(Exception, match="not a duration"):
        ToyConfig(log_dir=".", max_time="five minutes")
    assert ToyConfig(log_dir=".").epoch_limit() == DEFAULT_EPOCHS
    assert ToyConfig(log_dir=".", max_time="5m").epoch_limit() == -1  # as many as fit
    assert ToyConfig(log_dir=".", max_time="5m", max_epochs=3).epoch_limit() == 3
    assert ToyConfig(log_dir=".", max_time="5m").time_limit() == 300.0


def test_max_time_ends_training_and_the_cut_epoch_is_judged(tmp_path, fit_toy):
    # without the limit this run would take 200 epochs (about 20 s)
    cfg = ToyConfig(log_dir=tmp_path / "run", max_epochs=200, max_time="1s", device="cpu", progress_every_n_batches=1)
    result, events = fit_toy(cfg, module=SlowToy(pause=0.02))
    assert 1 <= result.epochs < 100 and not result.stopped
    assert events[-1].message.startswith("time limit 1s reached after")
    assert result.best_checkpoint.is_file() and result.last_checkpoint.is_file()
    # the progress total projects the run's end from the time spent, not from the 200 epochs
    batch_totals = [e.total for e in events if "batch" in e.metrics]
    assert batch_totals and batch_totals[-1] < 200 * 4
    # a resumed run counts the time already spent: the limit is reached at once
    again, _ = fit_toy(cfg.model_copy(update={"continue_training": True}), module=SlowToy(pause=0.02))
    assert again.epochs <= result.epochs + 1


def test_early_stopping_ends_a_run_that_stopped_improving(tmp_path, fit_toy):
    cfg = ToyConfig(log_dir=tmp_path / "run", max_epochs=20, early_stopping=2, device="cpu")
    result, events = fit_toy(cfg, module=SlowToy(lr=0.0))  # the validation score never improves
    assert result.epochs == 3 and not result.stopped  # the best at epoch 1, then 2 without improvement
    assert events[-1].message.startswith("stopped early after epoch 3: val_mse has not improved for 2 validations")
    improving, _ = fit_toy(cfg.model_copy(update={"log_dir": tmp_path / "run2", "max_epochs": 4}))
    assert improving.epochs == 4


class _Trainer:
    """What the schedule reads of a trainer."""

    def __init__(self, steps, total, elapsed=None, limit=None):
        from datetime import timedelta

        from lightning.pytorch.callbacks import Timer

        self.global_step, self.estimated_stepping_batches = steps, total
        self.callbacks = []
        if limit is not None:
            timer = Timer(duration=timedelta(seconds=limit))
            timer._offset = elapsed  # the time a resumed run had already spent
            self.callbacks.append(timer)


def test_the_one_cycle_schedule_spans_the_time_limit():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    assert run_progress(_Trainer(10, 100), None) == pytest.approx(0.1)
    assert run_progress(_Trainer(10, float("inf"), elapsed=150, limit=300), 300) == pytest.approx(0.5)
    # whichever is further: epochs almost done with time to spare
    assert run_progress(_Trainer(90, 100, elapsed=30, limit=300), 300) == pytest.approx(0.9)
    assert run_progress(_Trainer(5, float("inf"), elapsed=400, limit=300), 300) == 1.0
    trainer = _Trainer(0, float("inf"), elapsed=0.0, limit=300)
    entry = one_cycle_schedule(opt, trainer, time_limit=300)
    assert entry["interval"] == "step"
    lrs = []
    for spent in (0.0, 90.0, 200.0, 300.0):
        trainer.callbacks[0]._offset = spent
        entry["scheduler"].step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.01 / 25) and lrs[1] == pytest.approx(0.01)  # warm-up to the peak at 30 %
    assert 0 < lrs[2] < 0.01 and lrs[3] == pytest.approx(0.01 * one_cycle_factor(1.0))
    # without a time limit: torch's OneCycleLR over the steps, the same curve
    opt2 = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    sched = one_cycle_schedule(opt2, _Trainer(0, 1001))["scheduler"]
    for step in range(1001):
        if step in (0, 500, 1000):
            assert opt2.param_groups[0]["lr"] == pytest.approx(0.01 * one_cycle_factor(step / 1000), abs=2e-4)
        opt2.step()
        sched.step()
