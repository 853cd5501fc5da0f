"""Base of every stage's dock widget: a form, Run and Stop buttons, a status line.

A subclass lists its form widgets, builds the job from them (:meth:`JobWidget.make_job`, in the
GUI thread, where bad input raises before anything runs) and turns the job's result into layers
(:meth:`JobWidget.on_result`). The job itself runs in a worker thread (:mod:`.worker`).
"""

from __future__ import annotations

from typing import Any

import time

from magicgui.widgets import Container, Label, ProgressBar, PushButton, Widget
from napari.utils.notifications import show_error

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.ui.worker import JobFactory, RunningJob, start_job


class JobWidget(Container):
    """A dock widget that runs one job.

    Parameters
    ----------
    viewer:
        The napari viewer results are added to.
    fields:
        The form's widgets (magicgui), shown above the buttons.
    title:
        Name of the job in progress bars and notifications.
    run_text:
        The Run button's label.
    """

    def __init__(self, viewer, fields: list[Widget], *, title: str, run_text: str = "Run"):
        self.viewer = viewer
        self.title = title
        self.run_button = PushButton(text=run_text)
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.status = Label(value="")
        self.progress_bar = ProgressBar(min=0, max=1000, value=0, label="progress")
        self.time_left = Label(value="")
        buttons = Container(widgets=[self.run_button, self.stop_button], layout="horizontal", labels=False)
        bar = Container(widgets=[self.progress_bar, self.time_left], layout="horizontal", labels=False)
        super().__init__(widgets=[*fields, buttons, bar, self.status])
        self._started = time.monotonic()
        self.running: RunningJob | None = None
        self.run_button.changed.connect(self.run)
        self.stop_button.changed.connect(self.stop)

    def make_job(self) -> JobFactory:
        """Validate the form and return ``factory(stop) -> job generator``; raise InputError on bad input."""
        raise NotImplementedError

    def on_result(self, result: Any) -> None:
        """Add the job's result to the viewer (GUI thread)."""

    def on_progress(self, event: Progress) -> None:
        """Called for every progress event (GUI thread); subclasses may plot metrics."""

    def run(self) -> RunningJob | None:
        """Start the job; returns the running job, or None when the form was invalid."""
        if self.running is not None and self.running.is_running:
            return self.running
        try:
            factory = self.make_job()
        except (InputError, ValueError) as err:
            self.status.value = f"error: {err}"
            show_error(f"{self.title}: {err}")
            return None
        self.status.value = "running…"
        self.progress_bar.value, self.time_left.value = 0, ""
        self._started = time.monotonic()
        self.run_button.enabled = False
        self.stop_button.enabled = True
        self.running = start_job(
            factory,
            title=self.title,
            on_result=self._result,
            on_progress=self._progress,
            on_error=self._error,
            on_finished=self._finished,
        )
        return self.running

    def stop(self) -> None:
        """Ask the running job to stop after its current step."""
        if self.running is not None:
            self.running.stop()
            self.status.value = "stopping…"

    def _progress(self, event: Progress) -> None:
        if event.message:
            self.status.value = event.message
        done = event.fraction
        if done is not None:
            self.progress_bar.value = round(done * 1000)
            self.time_left.value = _time_left(time.monotonic() - self._started, done)
        self.on_progress(event)

    def _result(self, result: Any) -> None:
        self.status.value = "stopped" if self.running and self.running.stop_flag.is_set() else "done"
        self.on_result(result)

    def _error(self, exc: Exception) -> None:
        self.status.value = f"error: {exc}"

    def _finished(self) -> None:
        self.run_button.enabled = True
        self.stop_button.enabled = False
        self.time_left.value = ""


def _time_left(elapsed_s: float, done: float) -> str:
    """``"1:05 left"`` from the time so far and the done fraction ("" until it means something).

    Examples
    --------
    >>> _time_left(30.0, 0.25), _time_left(1.0, 0.001), _time_left(5.0, 1.0)
    ('1:30 left', '', '')
    """
    if done < 0.01 or done >= 1.0:
        return ""
    left = int(round(elapsed_s * (1.0 - done) / done))
    hours, rest = divmod(left, 3600)
    return (f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}") + " left"
