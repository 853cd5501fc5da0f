"""Driving job generators.

A *job* is a generator function: it reads its inputs, yields :class:`Progress` events while it
works, and ``return`` s its result (usually the paths it wrote). Stopping a job is either
setting the :class:`StopFlag` it was given (it returns early, cleanly) or closing the generator
(``GeneratorExit`` is raised at the current ``yield``; the job's ``finally``/atomic writers
remove partial output).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag

R = TypeVar("R")
Job = Generator[Progress, None, R]


class JobStopped(RuntimeError):
    """Raised by a job helper when a stop flag was set and there is nothing to return."""


def run_job(job: Job[R], on_progress: Callable[[Progress], Any] | None = None) -> R:
    """Run ``job`` to the end and return its result.

    Parameters
    ----------
    job:
        A started generator (the return value of calling a job function).
    on_progress:
        Called with every :class:`Progress` the job yields.

    Returns
    -------
    The value the job returned.
    """
    try:
        while True:
            event = next(job)
            if on_progress is not None:
                on_progress(event)
    except StopIteration as done:
        return done.value
    finally:
        job.close()


def check_stop(stop: StopFlag | None) -> bool:
    """True when ``stop`` is given and set; a helper for jobs' loops."""
    return stop is not None and stop.is_set()
