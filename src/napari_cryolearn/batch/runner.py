"""Running one file of a batch, and many: here, in worker processes, or on a Dask cluster.

:func:`run_one` runs a stage's job for one file's settings as the stage's command does (the
config validated, the inputs checked, the job driven to its end) and turns whatever happens
into an :class:`Outcome`: a failure is a message, never an exception that would end the batch.
:func:`run_file` is the same for another process (a pool worker, a Dask worker): a plain,
picklable function of the stage's name and the settings.

:func:`run_pool` and :func:`run_dask` run many files and yield ``(key, outcome)`` as each ends.
CPU stages share the machine's cores among the workers (each worker's torch and OpenMP threads
are limited to cores ÷ workers); a stage that runs on a GPU (its ``device`` resolves to CUDA)
gets at most one worker per GPU, each worker seeing one device.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import JobStopped, relay, run_job
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag


@dataclass(frozen=True)
class Outcome:
    """How one file's run ended: ``status`` (``done``, ``failed``, ``stopped``), its seconds,
    the error message, the files written and the suite's warnings it raised."""

    status: str
    seconds: float = 0.0
    error: str = ""
    outputs: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)


def validation_message(err: ValidationError) -> str:
    """A pydantic error in one line: ``field: message; …``."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e.get("loc", ())) or "config"
        parts.append(f"{loc}: {e.get('msg', '')}")
    return "; ".join(parts)


def build_stage_config(stage, settings: dict[str, Any]):
    """The stage's config from ``settings``; :class:`InputError` with the fields' messages."""
    try:
        return stage.config_class().model_validate(settings)
    except ValidationError as err:
        raise InputError(f"invalid {stage.name} settings: {validation_message(err)}") from None


def run_one(stage_name: str, settings: dict[str, Any], stop: StopFlag | None = None,
            ) -> Generator[Progress, None, Outcome]:
    """Run stage ``stage_name`` on one file's ``settings``, yielding its progress; returns how it
    ended (a failure as its message: the batch goes on)."""
    from napari_cryolearn.engine.inputs import check_inputs
    from napari_cryolearn.stages import get

    start = time.perf_counter()
    caught: list[warnings.WarningMessage] = []
    try:
        stage = get(stage_name)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            config = build_stage_config(stage, settings)
            check_inputs(stage, config)
            result = yield from relay(stage.job_function()(config, stop=stop), stop=stop)
    except JobStopped:
        return Outcome("stopped", time.perf_counter() - start, "stopped before the end")
    except (InputError, OSError, ValueError) as err:
        return Outcome("failed", time.perf_counter() - start, str(err), warnings=_own(caught))
    except Exception as err:  # any other failure of one file must not end the batch
        return Outcome("failed", time.perf_counter() - start, f"{type(err).__name__}: {err}", warnings=_own(caught))
    seconds = time.perf_counter() - start
    if getattr(result, "stopped", False):
        return Outcome("stopped", seconds, "stopped before the end")
    outputs = tuple(str(p) for p in getattr(result, "outputs", {}).values())
    return Outcome("done", seconds, "", outputs, _own(caught))


def _own(caught: Sequence[warnings.WarningMessage]) -> tuple[str, ...]:
    """The messages of the suite's own warnings (others are libraries' noise), each once."""
    out: dict[str, None] = {}
    for w in caught:
        if "napari_cryolearn" in (w.filename or ""):
            out.setdefault(" ".join(str(w.message).split()), None)
    return tuple(out)


def run_file(stage_name: str, settings: dict[str, Any], stop: Any = None) -> Outcome:
    """:func:`run_one` to its end, without progress (for a worker process: ``stop`` defaults to
    the stop event of the pool's batch)."""
    return run_job(run_one(stage_name, settings, stop if stop is not None else _WORKER_STOP))


# --- several files ------------------------------------------------------------------------------

def gpu_count(settings: dict[str, Any], config_cls: type) -> int:
    """How many CUDA devices the stage would use (0 for a CPU stage: no ``device`` field, or a
    device that resolves to the CPU)."""
    if "device" not in getattr(config_cls, "model_fields", {}):
        return 0
    device = str(settings.get("device", "auto"))
    if device == "cpu" or device == "mps":
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


#: The stop event of the batch a worker process serves (set by :func:`_init_worker`).
_WORKER_STOP: Any = None


def _init_worker(threads: int, devices, stop) -> None:
    """A worker's start: its share of the cores, its GPU when the stage uses one, and the
    batch's stop event."""
    global _WORKER_STOP
    _WORKER_STOP = stop
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(devices.get())
    torch = sys.modules.get("torch")  # torch reads OMP_NUM_THREADS when a stage imports it; not before
    if torch is not None:
        torch.set_num_threads(threads)


def run_pool(stage_name: str, items: Sequence[tuple[str, dict[str, Any]]], *, workers: int, gpus: int = 0,
             stop: StopFlag | None = None) -> Iterator[tuple[str, Outcome | None]]:
    """Run ``items`` (key, settings) in ``workers`` processes (at most one per GPU for a GPU
    stage); yields ``(key, None)`` when a file is handed to a worker and ``(key, outcome)`` when
    it ends. When ``stop`` is set, files not started are dropped and the running ones are asked
    to stop after their current step."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")  # torch and threads: never fork a process that may hold them
    workers = max(1, min(workers, len(items), gpus or workers))
    devices = None
    if gpus:
        devices = ctx.Queue()
        for i in range(workers):
            devices.put(i)
    threads = max(1, (os.cpu_count() or 1) // workers)
    remote_stop = ctx.Event()  # handed to the workers as they start (initargs), not per task
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(threads, devices, remote_stop)) as pool:
        pending = list(items)
        running: dict[Any, str] = {}
        while pending or running:
            while pending and len(running) < workers and not (stop is not None and stop.is_set()):
                key, settings = pending.pop(0)
                running[pool.submit(run_file, stage_name, settings)] = key
                yield key, None
            if stop is not None and stop.is_set():
                remote_stop.set()
                pending.clear()
            if not running:
                break
            done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                key = running.pop(future)
                yield key, _result(future)


def _result(future) -> Outcome:
    try:
        return future.result()
    except Exception as err:  # a worker that died (killed, out of memory)
        return Outcome("failed", 0.0, f"the worker process failed: {type(err).__name__}: {err}")


def open_dask(address: str):
    """A ``distributed.Client``: ``local:N`` starts a local cluster of N single-threaded worker
    processes, anything else is a scheduler's address (``tcp://host:8786``)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("--dask needs the 'distributed' package: pip install distributed", field="dask") from None
    if address.startswith("local:"):
        try:
            n = int(address.partition(":")[2])
        except ValueError:
            raise InputError(f"--dask {address!r}: expected local:N or a scheduler address", field="dask") from None
        if n < 1:
            raise InputError(f"--dask {address!r}: N must be at least 1", field="dask")
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster), cluster
    try:
        return Client(address, timeout=30), None
    except (OSError, TimeoutError) as err:
        raise InputError(f"cannot reach the Dask scheduler at {address}: {err}", field="dask") from None


def run_dask(stage_name: str, items: Sequence[tuple[str, dict[str, Any]]], *, address: str,
             stop: StopFlag | None = None) -> Iterator[tuple[str, Outcome | None]]:
    """Run ``items`` on a Dask cluster (see :func:`open_dask`); yields as :func:`run_pool`.
    When ``stop`` is set, files not started are cancelled; running ones finish."""
    from distributed import as_completed

    client, cluster = open_dask(address)
    try:
        futures = {}
        for key, settings in items:
            futures[client.submit(run_file, stage_name, settings, pure=False)] = key
            yield key, None
        completed = as_completed(list(futures))
        for future in completed:
            if stop is not None and stop.is_set():
                for other in futures:
                    if not other.done():
                        other.cancel()
            if future.cancelled():
                yield futures[future], Outcome("stopped", 0.0, "stopped before it started")
                continue
            yield futures[future], _result(future)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
