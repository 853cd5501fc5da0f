"""The Lightning trainer factory and the callbacks every training stage shares.

- :func:`resolve_accelerator`: ``"auto" | "cpu" | "cuda" | "mps"`` → a Lightning accelerator,
  with an :class:`InputError` when the requested device does not exist.
- :func:`make_trainer`: a ``lightning.Trainer`` with our defaults: devices / nodes → DDP,
  mixed precision on CUDA, CSV and TensorBoard loggers under ``log_dir``, atomic checkpoint
  writes, no console progress bar (progress goes through :class:`ProgressRelay`).
- :class:`ProgressRelay`: turns training into :class:`Progress` events (rank zero only).
- :class:`StopOnFlag`: a set :class:`StopFlag` → finish the current batch, save a resumable
  checkpoint, stop.
- :class:`StopOnDivergence`: a non-finite training loss → stop at once, and no checkpoint is
  written afterwards (:class:`LastCheckpoint`, :class:`BestCheckpoint`); the checkpoint IO
  refuses to write non-finite weights in any case.
- :class:`LastCheckpoint` / :class:`BestCheckpoint`: ``last.ckpt`` after every epoch and at a
  stop in the middle of one (resumable there); the best checkpoint by a monitored metric.
- :func:`fit_in_thread`: runs a blocking ``trainer.fit`` in a thread and makes a job
  generator of it: each event waits until the consumer asks for the next one, so a consumer
  that sets the stop flag when it sees an event stops training at that very point.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, Checkpoint, ModelCheckpoint

from napari_cryolearn.engine.atomic import atomic_path
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag

R = TypeVar("R")


def resolve_accelerator(device: str) -> str:
    """``"auto"`` → cuda, else mps, else cpu; an explicit device must exist (``InputError``)."""
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if device == "auto":
        return "cuda" if cuda else ("mps" if mps else "cpu")
    if device == "cuda" and not cuda:
        built = "with" if torch.backends.cuda.is_built() else "without"
        raise InputError(f"CUDA requested but no CUDA device is available (torch {torch.__version__} built {built} "
                         "CUDA); use 'cpu' or 'auto'", field="device")
    if device == "mps" and not mps:
        raise InputError("MPS requested but not available on this machine; use 'cpu' or 'auto'", field="device")
    if device not in ("cpu", "cuda", "mps"):
        raise InputError(f"unknown device {device!r}; expected auto, cpu, cuda or mps", field="device")
    return device


def describe_device(accelerator: str) -> str:
    """The device training runs on, for a person: ``"cpu"``, ``"cuda:0 (NVIDIA H200)"``, ``"mps"``."""
    if accelerator == "cuda" and torch.cuda.is_available():
        i = torch.cuda.current_device()
        return f"cuda:{i} ({torch.cuda.get_device_name(i)})"
    return accelerator


def torch_device(device: str) -> torch.device:
    """A ``torch.device`` for ``"auto" | "cpu" | "cuda" | "mps"`` (checked as above)."""
    return torch.device(resolve_accelerator(device))


def resolve_precision(precision: str, accelerator: str) -> str:
    """``"auto"`` → ``"16-mixed"`` on CUDA, ``"32-true"`` elsewhere; others pass through."""
    if precision == "auto":
        return "16-mixed" if accelerator == "cuda" else "32-true"
    return precision


def resolve_strategy(strategy: str, devices: int, num_nodes: int) -> str:
    """``"auto"`` with more than one process in all → ``"ddp"``; otherwise as given."""
    if strategy == "auto" and devices * num_nodes > 1:
        return "ddp"
    return strategy


def make_optimizer(params, name: str, *, lr: float, momentum: float = 0.9, weight_decay: float = 0.0):
    """The optimiser a training config names: ``"sgd"`` (with ``momentum``), ``"adam"`` or
    ``"adamw"``, over ``params`` (tensors or parameter groups).

    >>> make_optimizer([torch.zeros(2, requires_grad=True)], "sgd", lr=0.1).defaults["momentum"]
    0.9
    """
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise InputError(f"unknown optimizer {name!r}; expected sgd, adam or adamw", field="optimizer")


def one_cycle_factor(progress: float, *, pct_start: float = 0.3, div_factor: float = 25.0,
                     final_div_factor: float = 1e4) -> float:
    """The one-cycle learning rate as a fraction of its peak, ``progress`` in [0, 1] through the run.

    The curve of ``torch.optim.lr_scheduler.OneCycleLR`` (cosine): from ``1 / div_factor`` up to
    1 over the first ``pct_start`` of the run, then down to ``1 / (div_factor *
    final_div_factor)``.

    >>> round(one_cycle_factor(0.0), 4), one_cycle_factor(0.3), round(one_cycle_factor(1.0), 8)
    (0.04, 1.0, 4e-06)
    """
    p = min(max(float(progress), 0.0), 1.0)
    low, end = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)
    if p < pct_start:
        start, stop, t = low, 1.0, p / pct_start
    else:
        start, stop, t = 1.0, end, (p - pct_start) / (1.0 - pct_start)
    return stop + (start - stop) / 2.0 * (math.cos(math.pi * t) + 1.0)


def run_progress(trainer: L.Trainer, time_limit: float | None) -> float:
    """How far through its run training is, in [0, 1]: the larger of the steps done over the
    steps the epochs allow and (with ``time_limit`` seconds) the training time spent over it
    (Lightning's ``Timer``, which a resumed run restores)."""
    done = 0.0
    total = trainer.estimated_stepping_batches
    if total and math.isfinite(total) and total > 0:
        done = trainer.global_step / float(total)
    if time_limit:
        from lightning.pytorch.callbacks import Timer

        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        if timer is not None:
            done = max(done, float(timer.time_elapsed("train") or 0.0) / time_limit)
    return min(max(done, 0.0), 1.0)


def one_cycle_schedule(optimizer: torch.optim.Optimizer, trainer: L.Trainer, *,
                       time_limit: float | None = None) -> dict[str, Any]:
    """A one-cycle learning-rate schedule over the run, as Lightning's ``lr_scheduler`` entry
    (stepped every batch; the optimiser's ``lr`` is the peak).

    Without ``time_limit``: ``OneCycleLR`` over the run's steps. With it (seconds, the run's
    ``max_time``): the same curve (:func:`one_cycle_factor`) driven by :func:`run_progress`, so
    a run cut by time still warms up, peaks and anneals within it.
    """
    from torch.optim.lr_scheduler import LambdaLR, OneCycleLR

    if time_limit is None:
        total = int(trainer.estimated_stepping_batches)
        peak = [g["lr"] for g in optimizer.param_groups]
        sched = OneCycleLR(optimizer, max_lr=peak, total_steps=max(total, 2), anneal_strategy="cos")
    else:
        sched = LambdaLR(optimizer, lambda _step: one_cycle_factor(run_progress(trainer, time_limit)))
    return {"scheduler": sched, "interval": "step", "frequency": 1}


class DivergedError(InputError):
    """Training diverged (a non-finite loss or non-finite weights); no bad checkpoint was written."""


def first_non_finite(state: dict[str, Any]) -> str | None:
    """The first key of ``state`` whose floating-point tensor holds NaN or ±inf, else ``None``."""
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex()):
            if not bool(torch.isfinite(value).all()):
                return str(key)
    return None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file and renames it: never a half-written .ckpt.

    A checkpoint whose ``state_dict`` holds a non-finite tensor is not written:
    :class:`DivergedError` naming the file and the tensor (the file on disk, if any, is kept).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        bad = first_non_finite(checkpoint.get("state_dict") or {})
        if bad is not None:
            raise DivergedError(f"not written: the weights hold NaN or infinite values ({bad}); training "
                                "diverged (lower the learning rate or check the inputs)", path=path)
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


def _scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


class ProgressRelay(Callback):
    """Sends :class:`Progress` events to ``emit``: every ``every_n_batches`` and per epoch.

    ``step``/``total`` count training batches over the whole run. Per-batch events carry
    ``train_loss`` (the batch's loss); per-epoch events carry everything the module logged
    (``trainer.callback_metrics``) and ``epoch`` (1-based), and their message shows the
    metrics named in ``shown`` (the stage's: segmentation adds its ``val_dice``). Only global
    rank zero emits (but every rank must carry this callback: reading the metrics is a
    collective under DDP).
    """

    def __init__(self, emit: Callable[[Progress], Any], stage: str, every_n_batches: int = 10,
                 shown: Sequence[str] = ("train_loss", "val_loss")) -> None:
        self.emit = emit
        self.stage = stage
        self.every = max(1, int(every_n_batches))
        self.shown = tuple(shown)
        self.time_limit: float | None = None  # seconds (the run's max_time), set by the harness

    def _total(self, trainer: L.Trainer) -> int | None:
        """Batches of the whole run: those the epochs allow, or fewer as the time limit projects
        them from the pace so far."""
        n = trainer.num_training_batches
        total = None
        if n is not None and n != float("inf") and (trainer.max_epochs or 0) > 0:
            total = int(n) * int(trainer.max_epochs)
        if self.time_limit and trainer.global_step > 0:
            progress = run_progress(trainer, self.time_limit)
            if progress > 0:
                projected = max(int(trainer.global_step / progress), trainer.global_step)
                total = projected if total is None else min(total, projected)
        return total

    def _epoch(self, trainer: L.Trainer) -> str:
        if (trainer.max_epochs or 0) > 0:
            return f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
        return f"epoch {trainer.current_epoch + 1}"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.is_global_zero or (batch_idx + 1) % self.every:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        metrics = {"epoch": trainer.current_epoch + 1, "batch": batch_idx + 1,
                   "batches": int(trainer.num_training_batches)}
        if loss is not None:
            metrics["train_loss"] = float(loss)
        self.emit(Progress(
            step=trainer.global_step, total=self._total(trainer),
            message=f"{self._epoch(trainer)}, batch {batch_idx + 1}"
                    f"/{trainer.num_training_batches}",
            stage=self.stage, metrics=metrics,
        ))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # reading callback_metrics may synchronise metrics across ranks: every rank reads them
        metrics = _scalar_metrics(trainer.callback_metrics)
        if not trainer.is_global_zero or stopped_unfinished(trainer):
            return  # a stopped epoch is not done: it is finished when the run is resumed
        metrics["epoch"] = trainer.current_epoch + 1
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k in self.shown)
        self.emit(Progress(
            step=trainer.global_step, total=self._total(trainer),
            message=f"{self._epoch(trainer)} done" + (f": {shown}" if shown else ""),
            stage=self.stage, metrics=metrics,
        ))


def time_is_up(trainer: L.Trainer) -> bool:
    """Whether the run's ``max_time`` (Lightning's ``Timer``) has run out."""
    from lightning.pytorch.callbacks import Timer

    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    left = None if timer is None else timer.time_remaining("train")
    return left is not None and left <= 0


def stopped_unfinished(trainer: L.Trainer) -> bool:
    """True at the end of an epoch that a stop cut short: it is finished when the run is
    resumed, so it is neither reported as done nor judged. An epoch cut by the time limit is
    the run's end, and is judged."""
    return epoch_cut_short(trainer) and not time_is_up(trainer)


def epoch_cut_short(trainer: L.Trainer) -> bool:
    """True at the end of an epoch that training left before its last batch (a stop)."""
    n = trainer.num_training_batches
    if not n or n == float("inf"):
        return False
    return trainer.fit_loop.epoch_loop.batch_progress.current.completed < int(n)


def _last_batch_of_epoch(trainer: L.Trainer, batch_idx: int) -> bool:
    return batch_idx + 1 >= trainer.num_training_batches


class StopOnFlag(Callback):
    """When ``stop`` is set: ``trainer.should_stop = True`` after the current batch (or at the
    end of the epoch) and, with ``checkpoint_path``, a resumable checkpoint is written there.
    A stop in the middle of an epoch skips that epoch's validation.

    Under DDP the flag is only visible in the process that owns it; the decision is shared
    with every rank (any rank stopping stops all).
    """

    def __init__(self, stop: StopFlag, checkpoint_path: str | os.PathLike | None = None) -> None:
        self.stop = stop
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.stopped = False

    def _check(self, trainer: L.Trainer) -> bool:
        if self.stopped:
            return False
        decision = trainer.strategy.reduce_boolean_decision(self.stop.is_set(), all=False)
        if not decision:
            return False
        self.stopped = True
        trainer.should_stop = True
        if self.checkpoint_path is not None:
            trainer.save_checkpoint(self.checkpoint_path, weights_only=False)
        return True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # at the end of an epoch the epoch hook decides, so the checkpoint counts the epoch as done
        if not _last_batch_of_epoch(trainer, batch_idx) and self._check(trainer):
            # Lightning validates when training stops early; a part of an epoch is not judged
            # (and the stop returns at once): the resumed run validates the whole epoch
            trainer.limit_val_batches = 0

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._check(trainer)


class StopOnDivergence(Callback):
    """A training loss that is NaN or infinite stops training after that very batch.

    The decision is shared across DDP ranks (one rank's NaN stops all). Afterwards
    ``diverged`` is true, ``where`` says ``(epoch, batch, loss)`` (1-based; ``loss`` as this
    rank saw it), and :class:`LastCheckpoint` / :class:`BestCheckpoint` given this guard
    write nothing more: the last checkpoint written stays the last good one. Put it before
    any callback that saves checkpoints.
    """

    def __init__(self) -> None:
        self.diverged = False
        self.where: tuple[int, int, float] | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.diverged:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        value = float(loss.detach().float().mean()) if isinstance(loss, torch.Tensor) else None
        bad = value is not None and not math.isfinite(value)
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):
            return
        self.diverged = True
        self.where = (trainer.current_epoch + 1, batch_idx + 1, float("nan") if value is None else value)
        trainer.should_stop = True

    def error(self, last: str | os.PathLike | None, path: str | os.PathLike | None = None) -> DivergedError:
        """The error to raise after ``fit``: where it diverged and which checkpoint is kept."""
        epoch, batch, value = self.where or (0, 0, float("nan"))
        kept = (f"last good checkpoint kept at {last}" if last is not None and Path(last).is_file()
                else "no checkpoint was written")
        return DivergedError(f"training diverged at epoch {epoch}, batch {batch}: loss is {_loss_word(value)}; "
                             f"{kept}; lower the learning rate (lr) or check the inputs", path=path)


def _loss_word(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return "not finite on another process"  # DDP: another rank saw it


class LastCheckpoint(Checkpoint):
    """Writes ``path`` (``last.ckpt``) at the end of every epoch, and at the batch where training
    is stopped in the middle of an epoch (``trainer.should_stop``): resuming from it continues
    at the next batch. Nothing is written once ``guard`` (a :class:`StopOnDivergence`) saw a
    non-finite loss. A :class:`Checkpoint`, so Lightning calls it after the module's and the
    other callbacks' epoch-end hooks (and after :class:`BestCheckpoint` when listed after it):
    the file holds the state of the finished epoch, best-model bookkeeping included.
    """

    def __init__(self, path: str | os.PathLike, guard: StopOnDivergence | None = None) -> None:
        self.path = Path(path)
        self.guard = guard

    def _vetoed(self) -> bool:
        return self.guard is not None and self.guard.diverged

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.should_stop and not _last_batch_of_epoch(trainer, batch_idx) and not self._vetoed():
            trainer.save_checkpoint(self.path, weights_only=False)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not epoch_cut_short(trainer) and not self._vetoed():
            trainer.save_checkpoint(self.path, weights_only=False)


class BestCheckpoint(ModelCheckpoint):
    """:class:`ModelCheckpoint` that saves nothing after a divergence (``guard``) or for an epoch
    cut short by a stop (a stopped epoch's weights are resumed, not judged)."""

    def __init__(self, *args: Any, guard: StopOnDivergence | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = guard

    def _vetoed(self, trainer: L.Trainer) -> bool:
        return (self.guard is not None and self.guard.diverged) or (trainer.should_stop and stopped_unfinished(trainer))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not (self.guard is not None and self.guard.diverged) and not trainer.should_stop:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._vetoed(trainer):
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self._vetoed(trainer):
            super().on_validation_end(trainer, pl_module)


class TopCheckpoints(BestCheckpoint):
    """The ``save_top_k`` best checkpoints beside :class:`BestCheckpoint`'s one (its own state
    in a checkpoint: Lightning keys callback states by type and monitor)."""

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode, top_k=self.save_top_k, role="top")


def make_trainer(
    log_dir: str | os.PathLike,
    max_epochs: int,
    *,
    device: str = "auto",
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str = "auto",
    callbacks: Sequence[Callback] = (),
    loggers: bool = True,
    **kwargs: Any,
) -> L.Trainer:
    """A ``lightning.Trainer`` with the suite's defaults.

    Parameters
    ----------
    log_dir:
        Run folder: TensorBoard logs in ``log_dir/lightning_logs/``, CSV in ``log_dir/csv_logs/``.
    device:
        ``"auto" | "cpu" | "cuda" | "mps"`` (:func:`resolve_accelerator`).
    devices, num_nodes:
        Processes per node and nodes; more than one in all selects DDP (one process per
        device; on CPU, ``devices`` CPU processes with the gloo backend).
    strategy:
        ``"auto"`` or any Lightning strategy name (``"ddp"``, ``"ddp_spawn"``, ...).
    precision:
        ``"auto"`` (mixed 16-bit on CUDA, else 32-bit) or a Lightning precision string.
    kwargs:
        Passed on to ``lightning.Trainer`` (they override the defaults here).
    """
    accelerator = resolve_accelerator(device)
    log_dir = Path(log_dir)
    logs: list = []
    if loggers:
        from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

        logs.append(CSVLogger(save_dir=str(log_dir), name="csv_logs"))
        try:
            logs.append(TensorBoardLogger(save_dir=str(log_dir), name="lightning_logs"))
        except ModuleNotFoundError:  # tensorboard is optional
            pass
    options: dict[str, Any] = dict(
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=resolve_strategy(strategy, devices, num_nodes),
        precision=resolve_precision(precision, accelerator),
        max_epochs=max_epochs,
        callbacks=list(callbacks),
        logger=logs or False,
        default_root_dir=str(log_dir),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        plugins=[AtomicCheckpointIO()],
        log_every_n_steps=1,
    )
    options.update(kwargs)
    return L.Trainer(**options)


_DONE = object()


def fit_in_thread(
    run: Callable[[Callable[[Progress], None]], R],
    stop: StopFlag,
) -> Generator[Progress, None, R]:
    """Run ``run(emit)`` (which calls ``trainer.fit``) in a thread; yield what it emits.

    ``emit(event)`` blocks the training thread until the generator is resumed, so training
    never runs ahead of its consumer. Closing the generator sets ``stop`` (the
    :class:`StopOnFlag` callback then saves a checkpoint and ends training) and waits for the
    thread. An exception in the thread is raised here. Returns what ``run`` returned.
    """
    q: queue.Queue = queue.Queue()
    result: dict[str, Any] = {}

    def emit(event: Progress) -> None:
        done = threading.Event()
        q.put((event, done))
        done.wait()

    def target() -> None:
        try:
            result["value"] = run(emit)
        except BaseException as err:  # noqa: BLE001  (re-raised in the consumer)
            result["error"] = err
        finally:
            q.put(_DONE)

    thread = threading.Thread(target=target, name="cryolearn-fit", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                break
            event, done = item
            try:
                yield event
            finally:
                done.set()
    except BaseException:
        stop.set()
        while True:  # let the thread finish, releasing every event it still sends
            item = q.get()
            if item is _DONE:
                break
            item[1].set()
        thread.join()
        raise
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")
