"""Run a job generator in napari's ``thread_worker``, with progress, errors and a stop flag.

The same job the CLI drives with a terminal progress bar runs here in a worker thread:
its :class:`~napari_cryolearn.engine.progress.Progress` events move a napari progress bar (in
the activity dock), its result is handed to ``on_result`` in the GUI thread (where layers are
added), an exception becomes an error notification with its message, and :meth:`RunningJob.stop`
sets the job's stop flag so that it finishes its step and returns cleanly.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Generator
from typing import Any

from napari.qt.threading import create_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info

from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag

log = logging.getLogger(__name__)

JobFactory = Callable[[StopFlag], Generator[Progress, None, Any]]


class RunningJob:
    """A job running in a napari worker thread.

    Attributes
    ----------
    worker:
        The napari ``GeneratorWorker`` (signals ``yielded``, ``returned``, ``errored``, ``finished``).
    stop_flag:
        The :class:`StopFlag` handed to the job.
    progress_events:
        Every event the job yielded so far (GUI thread).
    error:
        The exception the job raised, if any.
    done:
        True once the worker finished (GUI thread); tests wait on it.
    """

    def __init__(
        self,
        factory: JobFactory,
        *,
        title: str,
        on_result: Callable[[Any], None] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_finished: Callable[[], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        start: bool = True,
    ):
        self.title = title
        self.stop_flag = StopFlag()
        self.progress_events: list[Progress] = []
        self.error: Exception | None = None
        self.result: Any = None
        self.done = False
        self._on_result = on_result
        self._on_progress = on_progress
        self._on_error = on_error
        self.pbar = napari_progress(total=0, desc=title)

        def drive(stop: StopFlag):
            return (yield from factory(stop))

        self.worker = create_worker(drive, self.stop_flag, _start_thread=False, _ignore_errors=True)
        # napari relays worker errors as full tracebacks; ours shows the message instead.
        try:
            self.worker.errored.disconnect(self.worker._relay_error)
        except (AttributeError, TypeError, RuntimeError):
            pass
        self._on_finished = on_finished
        self._pending: deque[tuple[Callable[[Any], None], Any]] = deque()
        self._dispatching = False
        self.worker.yielded.connect(lambda event: self._dispatch(self._progress, event))
        self.worker.returned.connect(lambda result: self._dispatch(self._returned, result))
        self.worker.errored.connect(lambda exc: self._dispatch(self._errored, exc))
        self.worker.finished.connect(lambda: self._dispatch(self._finished, None))
        if start:
            self.worker.start()

    @property
    def is_running(self) -> bool:
        """True until the worker has finished (returned, failed or stopped)."""
        return self.worker.is_running

    def stop(self) -> None:
        """Ask the job to stop after its current step (it keeps what it finished)."""
        self.stop_flag.set()
        self.pbar.set_description(f"{self.title}: stopping…")

    def _dispatch(self, handler: Callable[[Any], None], payload: Any) -> None:
        # napari's progress bar calls processEvents() when it changes, which would run the
        # handlers of later signals inside this one: queue them and run them in order instead
        self._pending.append((handler, payload))
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._pending:
                handler, payload = self._pending.popleft()
                handler(payload)
        finally:
            self._dispatching = False

    def _progress(self, event: Any) -> None:
        if not isinstance(event, Progress):
            return
        self.progress_events.append(event)
        if event.total is not None and self.pbar.total != event.total:
            self.pbar.total = event.total
        desc = f"{self.title}: {event.message}" if event.message else self.title
        self.pbar.set_description(desc[:120])
        if event.step != self.pbar.n:  # napari's bar moves on update() (its value event), not on n
            self.pbar.update(event.step - self.pbar.n)
        if self._on_progress is not None:
            self._on_progress(event)

    def _returned(self, result: Any) -> None:
        self.result = result
        if self.stop_flag.is_set():
            show_info(f"{self.title}: stopped")
        if self._on_result is not None:
            self._on_result(result)

    def _errored(self, exc: Exception) -> None:
        self.error = exc
        log.error("%s failed", self.title, exc_info=(type(exc), exc, exc.__traceback__))
        show_error(f"{self.title} failed: {exc}")
        if self._on_error is not None:
            self._on_error(exc)

    def _finished(self, _: Any = None) -> None:
        self.pbar.close()
        self.done = True
        if self._on_finished is not None:
            self._on_finished()


def start_job(factory: JobFactory, *, title: str, **callbacks) -> RunningJob:
    """Start ``factory(stop_flag)`` (a job generator) in a worker thread; see :class:`RunningJob`."""
    return RunningJob(factory, title=title, **callbacks)
