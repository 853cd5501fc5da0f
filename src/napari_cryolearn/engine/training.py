"""The training harness every training stage runs on: trainer config, run folder, resume, fit.

- :class:`TrainerConfig`: the fields every training stage shares (run folder, resume and
  fine-tune switches, devices, precision, optimiser, schedule, epochs, batch size, workers,
  seed, progress). A stage's config inherits them, so their flags and YAML keys are the same
  in every stage.
- :class:`RunFolder`: the run-folder convention. A run folder holds ``config.yaml`` (the
  config the run used), the stage's own files (``train_val_split.json`` for segmentation),
  ``model/model_best.ckpt``, ``model/last.ckpt`` and the CSV and TensorBoard logs; one that
  holds a run is refused unless ``continue_training`` (resume it) or ``overwrite`` (replace
  it: only what a run writes is removed) is set; global rank zero holds its lock for the
  whole run.
- :func:`resume_checkpoint`: the rules of ``continue_training`` (``last.ckpt`` must exist; a
  one-cycle schedule continues over the same number of epochs); ``pretrained_model`` is
  only used when a run starts (:func:`start_weights`).
- :func:`fit`: the one job generator a stage calls with its LightningModule, its loaders and
  its config: it claims the folder, writes the config, trains with the suite's callbacks
  (stop flag, divergence guard, best and last checkpoints, progress relay) and returns a
  :class:`TrainResult`.

Nothing here imports a stage; checkpoints are read by the stage (``models.checkpoints``).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from napari_cryolearn.engine.config import Config
from napari_cryolearn.engine.errors import InputError, OutputError
from napari_cryolearn.engine.jobs import JobResult
from napari_cryolearn.engine.locks import output_lock
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag

Device = Literal["auto", "cpu", "cuda", "mps"]

#: What every training run writes into its folder (``overwrite`` removes these and nothing else).
RUN_FILES = ("config.yaml",)
RUN_FOLDERS = ("model", "csv_logs", "lightning_logs")


#: Epochs of a run that sets neither ``max_epochs`` nor ``max_time``.
DEFAULT_EPOCHS = 10

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str | float | int) -> float:
    """Seconds in a duration such as ``"90s"``, ``"5m"``, ``"1h30m"``, ``"1.5h"``, ``"00:05:00"``
    (hours:minutes:seconds) or a plain number of seconds.

    >>> parse_duration("1h30m"), parse_duration("5m"), parse_duration("00:01:30"), parse_duration(45)
    (5400.0, 300.0, 90.0, 45.0)
    """
    import re

    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        word = str(text).strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", word):
            seconds = float(word)
        elif re.fullmatch(r"(\d+:){1,2}\d+(\.\d+)?", word):
            seconds = 0.0
            for part in word.split(":"):
                seconds = seconds * 60 + float(part)
        elif re.fullmatch(r"(\d+(\.\d+)?[dhms])+", word):
            seconds = sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([dhms])", word))
        else:
            raise ValueError(f"not a duration: {text!r} (examples: 90s, 5m, 1h30m, 00:05:00)")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"a duration must be positive, got {text!r}")
    return seconds


class TrainerConfig(Config):
    """The settings every training stage shares; a stage's config inherits them.

    ``log_dir`` is the run folder (see :class:`RunFolder`); checkpoints go to
    ``log_dir/model/``.
    """

    log_dir: Path = Field(description="run folder: config.yaml, model/model_best.ckpt, model/last.ckpt and the "
                                      "CSV and TensorBoard logs")
    pretrained_model: Path | None = Field(None, description="checkpoint whose weights start a new run (fine-tuning)")
    continue_training: bool = Field(False, description="resume the run in log_dir from model/last.ckpt")
    overwrite: bool = Field(False, description="start afresh in a run folder that already holds a run: its "
                            "checkpoints, config and logs are replaced")
    batch_size: int = Field(2, ge=1, description="samples per batch (per device)")
    max_epochs: int | None = Field(None, ge=1, description=f"epochs to train (default: {DEFAULT_EPOCHS}; with "
                                   "max_time, as many as fit in it)")
    max_time: str | None = Field(None, description="stop training after this long, e.g. 90s, 5m, 1h30m (the "
                                 "learning-rate schedule spans it; a resumed run counts the time already spent)")
    early_stopping: int | None = Field(None, ge=1, description="stop when the validation score has not improved "
                                       "for this many validations (default: off)")
    val_interval: int = Field(1, ge=1, description="validate every this many epochs", json_schema_extra={"expert": True})
    optimizer: Literal["adamw", "adam", "sgd"] = Field("adamw", description="optimiser", json_schema_extra={"expert": True})
    lr: float = Field(1e-3, gt=0, description="learning rate (the peak of the one-cycle schedule)")
    momentum: float = Field(0.9, ge=0, description="momentum (sgd only)", json_schema_extra={"expert": True})
    weight_decay: float = Field(1e-5, ge=0, description="weight decay", json_schema_extra={"expert": True})
    scheduler: Literal["onecycle", "none"] = Field("onecycle", description="learning-rate schedule over the run", json_schema_extra={"expert": True})
    device: Device = Field("auto", description="auto (CUDA, else MPS, else CPU), cpu, cuda or mps")
    gpu_devices: int = Field(1, ge=1, description="devices (processes) per node; more than one in all: DDP", json_schema_extra={"expert": True})
    nodes: int = Field(1, ge=1, description="nodes (e.g. Slurm); more than one: DDP", json_schema_extra={"expert": True})
    strategy: str = Field("auto", description="Lightning strategy (auto: DDP for several devices or nodes)", json_schema_extra={"expert": True})
    precision: Literal["auto", "32-true", "16-mixed", "bf16-mixed"] = Field(
        "auto", description="numeric precision (auto: 16-bit mixed on CUDA, else 32-bit)", json_schema_extra={"expert": True})
    num_workers: int = Field(0, ge=0, description="data-loader worker processes", json_schema_extra={"expert": True})
    seed: int = Field(0, description="seed of the weights, the split and the augmentation", json_schema_extra={"expert": True})
    progress_every_n_batches: int = Field(10, ge=1, description="a progress event every this many batches", json_schema_extra={"expert": True})

    @field_validator("max_time")
    @classmethod
    def _check_max_time(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    def epoch_limit(self) -> int:
        """Epochs the run may last: ``max_epochs``, else -1 (no limit) with ``max_time``, else
        :data:`DEFAULT_EPOCHS`."""
        if self.max_epochs is not None:
            return self.max_epochs
        return -1 if self.max_time is not None else DEFAULT_EPOCHS

    def time_limit(self) -> float | None:
        """``max_time`` in seconds (``None``: no limit)."""
        return None if self.max_time is None else parse_duration(self.max_time)


@dataclass(frozen=True)
class TrainResult(JobResult):
    """What a training run left: outputs ``log_dir``, ``model`` (the best checkpoint) and ``last``
    (those written), metrics ``epochs`` (whole epochs done) and the last logged metrics."""

    @property
    def log_dir(self) -> Path:
        return self.outputs["log_dir"]

    @property
    def best_checkpoint(self) -> Path | None:
        return self.outputs.get("model")

    @property
    def last_checkpoint(self) -> Path | None:
        return self.outputs.get("last")

    @property
    def epochs(self) -> int:
        return int(self.metrics.get("epochs", 0))


def model_dir(log_dir: str | os.PathLike) -> Path:
    """Where checkpoints go: ``log_dir/model``."""
    return Path(log_dir) / "model"


def check_log_dir(log_dir: str | os.PathLike, inputs: Sequence[str | os.PathLike] = (), what: str = "input") -> None:
    """:class:`InputError` when ``log_dir`` is a file or lies inside one of ``inputs`` (each
    named ``what`` in the message, e.g. "patch store")."""
    if log_dir is not None and Path(log_dir).exists() and not Path(log_dir).is_dir():
        raise InputError("is a file; expected a folder for the run", path=log_dir, field="log_dir")
    run = Path(log_dir).resolve()
    for given in inputs:
        given = Path(given).resolve()
        if run == given or given in run.parents:
            raise InputError(f"is inside the {what} {given}; choose a run folder outside the inputs",
                             path=log_dir, field="log_dir")


def previous_run(log_dir: Path) -> list[str]:
    """The files in ``log_dir`` that show it holds a training run (relative names)."""
    found = [name for name in ("config.yaml",) if (log_dir / name).is_file()]
    if (log_dir / "model").is_dir():
        found += sorted(f"model/{p.name}" for p in (log_dir / "model").glob("*.ckpt"))
    return found


def global_rank_zero(nodes: int) -> bool:
    """Whether this process is global rank zero of the run (before Lightning sets ranks up).

    ``rank_zero_only.rank`` comes from ``RANK``, ``LOCAL_RANK`` or ``SLURM_PROCID``; a process
    started by hand on another node of a multi-node run has only ``NODE_RANK`` to say so.
    """
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank != 0:
        return False
    return nodes == 1 or int(os.environ.get("NODE_RANK", "0") or 0) == 0


def _inside(path: Path, folder: Path) -> bool:
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


class RunFolder:
    """The run folder of one training job, as global rank zero sees it.

    :meth:`check` refuses a folder that holds a run unless ``continue_training`` or
    ``overwrite`` is set (and both together), and an input (``inputs``, the pretrained model)
    inside what ``overwrite`` would remove. :meth:`claim` takes the folder's lock (another job
    writing it → ``OutputError`` naming its pid) and checks again under it;
    :meth:`clear_previous` (with ``overwrite``) removes what a previous run wrote, and nothing
    else: ``RUN_FILES``, the stage's ``files``, ``RUN_FOLDERS``, and what ``clear_more(folder)``
    removes (the stage's own outputs; it returns them). :meth:`release` frees the lock. Other
    DDP ranks (started by Lightning inside the run of rank zero) do none of this.
    """

    def __init__(
        self,
        config: TrainerConfig,
        inputs: Sequence[str | os.PathLike] = (),
        files: Sequence[str] = (),
        clear_more: Callable[[RunFolder], list[Path]] | None = None,
    ) -> None:
        self.config = config
        self.path = Path(config.log_dir)
        self.primary = global_rank_zero(config.nodes)
        self.inputs = [Path(p) for p in inputs]
        self.files = (*RUN_FILES, *files)
        self.clear_more = clear_more
        self.in_use: list[Path] = []
        self._lock = ExitStack()
        self._claimed = False

    def check(self) -> None:
        cfg = self.config
        if not self.primary:
            return
        if cfg.continue_training and cfg.overwrite:
            raise InputError("continue_training resumes the run in log_dir and overwrite replaces it: set one",
                             path=self.path, field="overwrite")
        if cfg.overwrite:
            inputs = list(self.inputs)
            if cfg.pretrained_model is not None:
                inputs.append(cfg.pretrained_model)
            for given in inputs:
                for name in (*RUN_FOLDERS, *self.files):
                    if _inside(given, self.path / name):
                        raise InputError(f"lies in {self.path / name}, which overwrite removes; copy it out of "
                                         "the run folder first", path=given, field="overwrite")
        if cfg.continue_training or cfg.overwrite:
            return
        found = previous_run(self.path)
        if found:
            raise InputError(f"already holds a training run ({', '.join(found[:3])}); pass --continue-training "
                             "(continue_training) to resume it, --overwrite (overwrite) to start afresh and replace "
                             "its checkpoints, config and logs, or choose another folder",
                             path=self.path, field="log_dir")

    def claim(self) -> None:
        if not self.primary or self._claimed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot make the folder ({err.strerror})", path=self.path.parent,
                              field="log_dir") from None
        self._lock.enter_context(output_lock(self.path, field="log_dir"))
        self._claimed = True
        self.check()  # another job may have written a run here since the first check

    def clear_previous(self) -> list[Path]:
        """With ``overwrite``: remove the previous run's files; returns what was removed."""
        if not self.primary or not self.config.overwrite or not self.path.is_dir():
            return []
        removed = []
        for name in self.files:
            p = self.path / name
            if p.is_file() or p.is_symlink():
                p.unlink()
                removed.append(p)
        for name in RUN_FOLDERS:
            p = self.path / name
            if p.is_symlink():
                p.unlink()
                removed.append(p)
            elif p.is_dir():
                shutil.rmtree(p)
                removed.append(p)
        if self.clear_more is not None:
            removed += self.clear_more(self)
        return removed

    def write(self, config: TrainerConfig, files: Mapping[str, str] = {}) -> None:  # noqa: B006 (read only)
        """Rank zero: make the folder, write ``config.yaml`` and the stage's text ``files``."""
        if not self.primary:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        # overwrite acted on the folder once; a config.yaml that kept it could not be continued from
        config.model_copy(update={"overwrite": False}).to_yaml(self.path / "config.yaml")
        for name, text in files.items():
            (self.path / name).write_text(text)

    def release(self) -> None:
        self._lock.close()
        self._claimed = False


def resume_checkpoint(config: TrainerConfig) -> Path | None:
    """With ``continue_training``: the ``last.ckpt`` to resume from, else ``None``.

    :class:`InputError` when there is none, and when the stopped run's one-cycle schedule
    spans another number of epochs than ``config.max_epochs`` (read from its ``config.yaml``).
    """
    if not config.continue_training:
        return None
    log_dir = Path(config.log_dir)
    last = model_dir(log_dir) / "last.ckpt"
    if not last.is_file():
        raise InputError("continue_training is set but there is no checkpoint to continue from",
                         path=last, field="continue_training")
    previous = log_dir / "config.yaml"
    if config.scheduler == "onecycle" and previous.is_file():
        before = type(config).from_yaml(previous).epoch_limit()
        if before != config.epoch_limit() and config.max_time is None:
            raise InputError(
                f"the stopped run's one-cycle learning-rate schedule spans {before} epochs: continue with "
                f"max_epochs {before}, or train further in a new run with pretrained_model {last}",
                path=previous, field="max_epochs")
    return last


def start_weights(config: TrainerConfig, resume: Path | None) -> Path | None:
    """The pretrained model to start from: ``pretrained_model`` for a new run, none when resuming."""
    return config.pretrained_model if resume is None else None


def loader_position(ckpt: Mapping[str, Any] | None) -> dict | None:
    """The training loader's position saved in a checkpoint (a stateful loader's
    ``{"epoch", "batches"}``), if any."""
    if ckpt is None:
        return None
    try:
        states = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
        state = states[0]
        return {"epoch": int(state["epoch"]), "batches": int(state["batches"])}
    except (KeyError, IndexError, TypeError, ValueError):
        return None  # a checkpoint of an older version: Lightning's own restart applies


def epochs_done(trainer) -> int:
    """Whole epochs trained (a stop in the middle of an epoch ends Lightning's epoch too)."""
    n = trainer.num_training_batches
    if not n or n == float("inf"):
        return int(trainer.current_epoch)
    return int(trainer.global_step // int(n))


def fit(
    module,
    train_loader,
    val_loader,
    config: TrainerConfig,
    folder: RunFolder,
    *,
    stage: str,
    monitor: tuple[str, str] = ("val_loss", "min"),
    shown: Sequence[str] = ("train_loss", "val_loss"),
    files: Mapping[str, str] = {},  # noqa: B006 (read only)
    resume: Path | None = None,
    stop: StopFlag | None = None,
    keep_best: int = 1,
    extra_callbacks: Sequence[Any] = (),
    **trainer_options: Any,
) -> Generator[Progress, None, TrainResult]:
    """Train ``module`` on ``train_loader`` (validating on ``val_loader``, or ``None``): a job.

    Claims ``folder`` (lock; with ``overwrite`` the previous run's files are removed, and a
    progress message says which), writes ``config.yaml`` and the stage's ``files`` (name →
    text), and trains with ``config``'s devices, precision, epochs and validation interval.
    ``model/model_best.ckpt`` keeps the best epoch by ``monitor`` (metric, ``"min"`` or
    ``"max"``), ``model/last.ckpt`` the last (every epoch, and at a stop in the middle of
    one). ``config.max_time`` ends training after that long (Lightning's ``Timer``, which a
    resumed run restores), ``config.early_stopping`` when ``monitor`` has not improved for
    that many validations; the closing progress message says which ended it. Progress events (stage ``stage``) every ``config.progress_every_n_batches`` batches
    and per epoch; the epoch messages show the metrics named in ``shown``. ``resume``: the
    checkpoint to continue from (:func:`resume_checkpoint`). Setting ``stop`` (or closing the
    generator) ends training after the current batch; a non-finite loss raises
    :class:`~napari_cryolearn.engine.lightning.DivergedError`. ``trainer_options`` go to
    :func:`~napari_cryolearn.engine.lightning.make_trainer`. ``keep_best`` above 1 also keeps
    that many best checkpoints as ``model/top-epoch=<e>.ckpt``; ``extra_callbacks`` (e.g. a
    checkpoint of another metric) join the suite's.
    """
    from napari_cryolearn.engine.lightning import (
        BestCheckpoint,
        LastCheckpoint,
        ProgressRelay,
        StopOnDivergence,
        StopOnFlag,
        TopCheckpoints,
        fit_in_thread,
        make_trainer,
        time_is_up,
    )

    stop = stop if stop is not None else StopFlag()
    log_dir = Path(config.log_dir)
    mdir = model_dir(log_dir)
    last = mdir / "last.ckpt"
    folder.claim()
    removed = folder.clear_previous()
    if removed:
        yield Progress(0, None, f"overwrite: removed the previous run's {', '.join(p.name for p in removed)}",
                       stage)
    folder.write(config, files)

    metric, mode = monitor
    guard = StopOnDivergence()
    best_cb = BestCheckpoint(
        dirpath=str(mdir), filename="model_best", monitor=metric, mode=mode, save_top_k=1, save_last=False,
        enable_version_counter=False, auto_insert_metric_name=False, guard=guard,
    )
    last_cb = LastCheckpoint(last, guard=guard)
    tops = []
    if keep_best > 1:
        tops.append(TopCheckpoints(
            dirpath=str(mdir), filename="top-epoch={epoch:03d}", monitor=metric, mode=mode, save_top_k=keep_best,
            save_last=False, enable_version_counter=False, auto_insert_metric_name=False, guard=guard,
        ))
    relay = ProgressRelay(lambda e: None, stage, config.progress_every_n_batches, shown=shown)
    stopper = StopOnFlag(stop)
    callbacks: list = [guard, relay, stopper, best_cb, *tops, *extra_callbacks, last_cb]
    early = None
    if config.early_stopping is not None:
        from lightning.pytorch.callbacks import EarlyStopping

        early = EarlyStopping(monitor=metric, mode=mode, patience=config.early_stopping, check_finite=False,
                              check_on_train_epoch_end=val_loader is None)
        callbacks.insert(1, early)
    options: dict[str, Any] = dict(check_val_every_n_epoch=config.val_interval)
    limit = config.time_limit()
    if limit is not None:
        from datetime import timedelta

        options["max_time"] = timedelta(seconds=limit)
    options.update(trainer_options)
    trainer = make_trainer(
        log_dir, config.epoch_limit(), device=config.device, devices=config.gpu_devices, num_nodes=config.nodes,
        strategy=config.strategy, precision=config.precision, callbacks=callbacks, **options,
    )
    relay.time_limit = limit

    def run(emit) -> TrainResult:
        relay.emit = emit
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(resume) if resume else None)
        if guard.diverged:
            raise guard.error(last, path=log_dir)
        best = Path(best_cb.best_model_path) if best_cb.best_model_path else None
        if best is None and (mdir / "model_best.ckpt").is_file():
            best = mdir / "model_best.ckpt"
        outputs = {"log_dir": log_dir, "model": best, "last": last if last.is_file() else None}
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        return TrainResult(outputs={k: v for k, v in outputs.items() if v is not None},
                           metrics={"epochs": epochs_done(trainer), **metrics}, stopped=stopper.stopped)

    result = yield from fit_in_thread(run, stop)
    message = "done"
    if early is not None and early.stopped_epoch > 0 and not result.stopped:
        message = (f"stopped early after epoch {result.epochs}: {metric} has not improved for "
                   f"{config.early_stopping} validations (best {float(early.best_score):.4g})")
    elif limit is not None and not result.stopped and time_is_up(trainer):
        message = f"time limit {config.max_time} reached after {result.epochs} epochs ({trainer.global_step} batches)"
    if result.stopped:
        n = trainer.num_training_batches
        partial = int(trainer.global_step) % int(n) if n and n != float("inf") else 0
        message = (f"stopped in epoch {result.epochs + 1} after batch {partial}/{int(n)}: continue_training "
                   f"resumes at the next batch" if partial else f"stopped after epoch {result.epochs}")
    yield Progress(trainer.global_step, trainer.global_step, message, stage,
                   {k: v for k, v in result.metrics.items() if k != "epochs"})
    return result
