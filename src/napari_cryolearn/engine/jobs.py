"""Driving job generators.

A *job* is a generator function: it reads its inputs, yields :class:`Progress` events while it
works, and ``return`` s its result (usually the paths it wrote). Stopping a job is either
setting the :class:`StopFlag` it was given (it returns early, cleanly) or closing the generator
(``GeneratorExit`` is raised at the current ``yield``; the job's ``finally``/atomic writers
remove partial output).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag

R = TypeVar("R")
Job = Generator[Progress, None, R]


@dataclass(frozen=True)
class JobResult:
    """What a job produced: its outputs by role, numbers worth reporting, whether it was stopped.

    Every job returns one, so the CLI, the demo, the widgets and a batch runner collect results
    the same way. A role is the config field that named the output (a stage's output
    :class:`~napari_cryolearn.engine.registry.Port`: ``"output"``, ``"skeleton"``,
    ``"log_dir"``) or, for files a job writes beside it, a name of its own (``"model"``,
    ``"mapping"``). A stopped job lists only what it finished.

    Examples
    --------
    >>> r = JobResult({"output": Path("a.mrc")}, metrics={"voxels": {1: 8, 2: 0}, "loss": 0.123456})
    >>> r["output"].name, r.lines()
    ('a.mrc', ['output: a.mrc', 'voxels: 1 8, 2 0', 'loss: 0.1235'])
    """

    outputs: Mapping[str, Path] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    stopped: bool = False

    def __getitem__(self, role: str) -> Path:
        return self.outputs[role]

    def get(self, role: str, default: Any = None) -> Any:
        """The output for ``role``, or ``default``."""
        return self.outputs.get(role, default)

    def lines(self) -> list[str]:
        """One ``role: value`` line per output and metric, for a terminal."""
        out = [f"{k}: {v}" for k, v in self.outputs.items()]
        out += [f"{k}: {_readable(v)}" for k, v in self.metrics.items()]
        return [*out, "stopped before the end"] if self.stopped else out


def _readable(value: Any) -> str:
    """A metric for a terminal: floats to 4 significant digits, mappings as ``key value, ...``."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_readable(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


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


def relay(
    job: Generator[Any, None, R],
    *,
    stop: StopFlag | None = None,
    event: Callable[[Any], Progress] | None = None,
) -> Generator[Progress, None, R]:
    """Yield ``job``'s events (through ``event`` if given) and return its value; for
    ``yield from`` inside another job.

    When ``stop`` is set after an event, ``job`` is closed (its ``finally`` blocks and atomic
    writers clean up) and :class:`JobStopped` is raised for the caller to turn into its
    stopped result.

    Examples
    --------
    >>> def inner():
    ...     yield Progress(1, 2)
    ...     yield Progress(2, 2)
    ...     return "done"
    >>> def outer():
    ...     value = yield from relay(inner(), event=lambda e: Progress(e.step, e.total + 1, "inner"))
    ...     yield Progress(3, 3, "outer")
    ...     return value
    >>> events = []
    >>> run_job(outer(), events.append), [(e.step, e.total) for e in events]
    ('done', [(1, 3), (2, 3), (3, 3)])
    """
    try:
        while True:
            try:
                item = next(job)
            except StopIteration as done:
                return done.value
            if check_stop(stop):
                raise JobStopped
            yield item if event is None else event(item)
    finally:
        job.close()


def check_stop(stop: StopFlag | None) -> bool:
    """True when ``stop`` is given and set; a helper for jobs' loops."""
    return stop is not None and stop.is_set()
