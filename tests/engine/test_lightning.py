import threading

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from napari_cryolearn.engine import InputError, Progress, StopFlag, run_job
from napari_cryolearn.engine.lightning import (
    AtomicCheckpointIO,
    ProgressRelay,
    StopOnFlag,
    fit_in_thread,
    make_trainer,
    resolve_accelerator,
    resolve_precision,
    resolve_strategy,
)


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.lin(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader(n=8):
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n, 3, generator=g), torch.randn(n, 1, generator=g)), batch_size=2)


def test_device_choice():
    assert resolve_accelerator("cpu") == "cpu"
    assert resolve_accelerator("auto") in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="device: CUDA requested"):
            resolve_accelerator("cuda")
    with pytest.raises(InputError, match="unknown device"):
        resolve_accelerator("tpu")
    assert resolve_precision("auto", "cuda") == "16-mixed" and resolve_precision("auto", "cpu") == "32-true"
    assert resolve_strategy("auto", 1, 1) == "auto" and resolve_strategy("auto", 4, 1) == "ddp"
    assert resolve_strategy("auto", 1, 2) == "ddp" and resolve_strategy("ddp_spawn", 2, 1) == "ddp_spawn"


def test_trainer_relays_progress_stops_on_flag_and_writes_logs(tmp_path):
    stop = StopFlag()
    ckpt = tmp_path / "stop.ckpt"
    relay = ProgressRelay(lambda e: None, "demo", every_n_batches=2)
    stopper = StopOnFlag(stop, ckpt)
    trainer = make_trainer(tmp_path, 5, device="cpu", callbacks=[relay, stopper], enable_checkpointing=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)

    def run(emit):
        relay.emit = emit
        trainer.fit(Tiny(), _loader())
        return trainer.global_step

    events = []

    def on(e):
        events.append(e)
        if e.metrics.get("epoch") == 2 and "batch" not in e.metrics:
            stop.set()  # training waits for us: it stops right after epoch 2

    steps = run_job(fit_in_thread(run, stop), on)
    assert steps == 8 and stopper.stopped
    assert [(e.step, e.metrics.get("batch")) for e in events] == [(2, 2), (4, 4), (4, None), (6, 2), (8, 4), (8, None)]
    assert all(e.total == 20 and e.stage == "demo" for e in events)
    assert "train_loss" in events[2].metrics and events[2].message.startswith("epoch 1/5 done")
    assert torch.load(ckpt, weights_only=False)["global_step"] == 8
    assert list((tmp_path / "csv_logs").rglob("metrics.csv"))
    assert list((tmp_path / "lightning_logs").rglob("events.out.tfevents*"))
    assert not list(tmp_path.glob(".*part*"))


class Validated(Tiny):
    def __init__(self):
        super().__init__()
        self.validated_at: list[tuple[int, int]] = []  # (epoch, batches trained in it)

    def validation_step(self, batch, batch_idx):
        if batch_idx == 0:
            self.validated_at.append((self.current_epoch, self.trainer.fit_loop.epoch_loop.batch_progress.current.completed))
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.lin(x), y))


@pytest.mark.parametrize("stop_after, validated", [(6, [(0, 4)]), (8, [(0, 4), (1, 4)])])
def test_a_stop_inside_an_epoch_skips_its_validation(tmp_path, stop_after, validated):
    """Stopped after batch 2 of epoch 2, epoch 2 is not validated; stopped at its end, it is."""
    stop = StopFlag()

    class StopAt(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == stop_after:
                stop.set()

    stopper = StopOnFlag(stop, tmp_path / "stop.ckpt")
    trainer = make_trainer(tmp_path, 5, device="cpu", callbacks=[StopAt(), stopper], enable_checkpointing=False)
    module = Validated()
    trainer.fit(module, _loader(), _loader(4))
    assert stopper.stopped and trainer.global_step == stop_after
    assert module.validated_at == validated
    assert torch.load(tmp_path / "stop.ckpt", weights_only=False)["global_step"] == stop_after


def test_fit_in_thread_backpressure_close_and_errors():
    stop = StopFlag()
    progressed = []

    def run(emit):
        for i in range(100):
            if stop.is_set():
                return "stopped"
            progressed.append(i)
            emit(Progress(i))
        return "done"

    gen = fit_in_thread(run, stop)
    assert next(gen).step == 0 and next(gen).step == 1
    assert progressed == [0, 1]  # the thread waits for the consumer
    gen.close()
    assert stop.is_set() and len(progressed) <= 3
    assert not [t for t in threading.enumerate() if t.name == "cryolearn-fit"]

    def failing(emit):
        emit(Progress(0))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_job(fit_in_thread(failing, StopFlag()))
