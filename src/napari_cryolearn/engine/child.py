"""Running a job in a child process, driven like any job.

Training in napari's own process holds its event loop (the GUI stutters while torch works,
even in a worker thread). :func:`run_in_child` starts the job in a fresh process ("spawn": no
Qt, no CUDA state is inherited) and is itself a job generator: it yields the child's
:class:`~napari_cryolearn.engine.progress.Progress` events, relays a set :class:`StopFlag` to
the child (which stops as the job would: a resumable checkpoint, a clean return), returns the
child's result and raises its error — an :class:`~napari_cryolearn.engine.errors.InputError`
arrives with its message, path and field. Closing the generator stops the child, waits for its
clean exit and, past a deadline, terminates it. Nothing here imports Qt or the job's modules:
the job is named by import path and loaded in the child.
"""

from __future__ import annotations

import multiprocessing
import queue as queues
import traceback
from collections.abc import Generator
from typing import Any

from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag

#: Seconds a stopped child may take to save its checkpoint and exit before it is terminated.
STOP_GRACE_S = 60.0


#: How much lower the child's scheduling priority is than its parent's (``os.nice``): the
#: viewer's event loop wins the CPU whenever it has work, training takes the rest.
CHILD_NICENESS = 10


def run_in_child(
    job: str,
    *args: Any,
    stop: StopFlag | None = None,
    poll_s: float = 0.1,
    niceness: int = CHILD_NICENESS,
    **kwargs: Any,
) -> Generator[Progress, None, Any]:
    """Run ``job(*args, stop=..., **kwargs)`` in a child process; a job generator itself.

    Parameters
    ----------
    job:
        Import path of the job function, ``"package.module:name"`` (loaded in the child).
    args, kwargs:
        Its arguments (pickled to the child: configs, arrays).
    stop:
        Setting it asks the child's job to stop after its current step.
    poll_s:
        How often the stop flag and the child's health are checked while it is silent.
    niceness:
        Added to the child's ``os.nice`` value (0: the parent's priority), so that a GUI
        driving it stays responsive while the child computes.
    """
    ctx = multiprocessing.get_context("spawn")
    child_stop = ctx.Event()
    messages = ctx.Queue()
    process = ctx.Process(target=_child_main, args=(job, args, kwargs, child_stop, messages, niceness),
                          name=f"cryolearn {job.rpartition(':')[2]}", daemon=True)
    process.start()
    try:
        while True:
            if stop is not None and stop.is_set():
                child_stop.set()
            try:
                kind, payload = messages.get(timeout=poll_s)
            except queues.Empty:
                if not process.is_alive():
                    kind, payload = _last_word(messages, process)
                else:
                    continue
            if kind == "progress":
                yield payload
            elif kind == "result":
                return payload
            else:
                raise payload
    finally:
        child_stop.set()
        process.join(STOP_GRACE_S)
        if process.is_alive():
            process.terminate()
            process.join(5)
        messages.close()


def _last_word(messages, process) -> tuple[str, Any]:
    """What a child that ended said last; an error when it ended without a result."""
    try:
        return messages.get(timeout=1.0)
    except queues.Empty:
        return "error", RuntimeError(f"the job's process ended without a result (exit code {process.exitcode})")


def _child_main(job: str, args: tuple, kwargs: dict, stop, messages, niceness: int = 0) -> None:
    import os

    from napari_cryolearn.engine.jobs import run_job
    from napari_cryolearn.engine.registry import resolve

    if niceness and hasattr(os, "nice"):
        try:
            os.nice(niceness)
        except OSError:  # not permitted here: run at the parent's priority
            pass

    try:
        result = run_job(resolve(job)(*args, stop=stop, **kwargs), lambda e: messages.put(("progress", e)))
        messages.put(("result", result))
    except BaseException as err:  # noqa: BLE001  (every failure goes back to the parent)
        messages.put(("error", _portable(err)))
    finally:
        messages.close()
        messages.join_thread()


def _portable(err: BaseException) -> BaseException:
    """``err`` if it survives pickling, else a RuntimeError with its type, message and traceback."""
    import pickle

    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # noqa: BLE001
        text = "".join(traceback.format_exception(type(err), err, err.__traceback__, limit=-3))
        return RuntimeError(f"{type(err).__name__}: {err}\n{text}")
