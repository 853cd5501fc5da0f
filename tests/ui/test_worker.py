"""The thread_worker helper: progress, result layers, error notifications, stop."""

import time

import numpy as np

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.ui.worker import start_job


def _steps(n, stop, delay=0.0):
    for i in range(n):
        if stop.is_set():
            return {"stopped_at": i}
        time.sleep(delay)
        yield Progress(i + 1, n, f"step {i + 1}")
    return {"stopped_at": None, "image": np.full((4, 5), 7.0)}


def test_progress_and_result_layer(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    job = start_job(
        lambda stop: _steps(5, stop),
        title="count",
        on_result=lambda r: viewer.add_image(r["image"], name="result"),
    )
    qtbot.waitUntil(lambda: job.done, timeout=10000)
    assert [e.step for e in job.progress_events] == [1, 2, 3, 4, 5]
    assert job.pbar.n == 5 and job.pbar.total == 5
    assert job.error is None
    assert np.all(viewer.layers["result"].data == 7.0)


def test_error_becomes_notification_with_message(make_napari_viewer, qtbot, monkeypatch):
    make_napari_viewer()
    shown = []
    monkeypatch.setattr("napari_cryolearn.ui.worker.show_error", shown.append)

    def failing(stop):
        yield Progress(1, 2, "about to fail")
        raise InputError("shape (3, 3) differs from (4, 4)", path="labels.mrc")

    job = start_job(failing, title="check")
    qtbot.waitUntil(lambda: job.done, timeout=10000)
    assert isinstance(job.error, InputError)
    assert shown == ["check failed: labels.mrc: shape (3, 3) differs from (4, 4)"]


def test_stop_ends_the_job_cleanly(make_napari_viewer, qtbot):
    make_napari_viewer()
    results = []
    job = start_job(lambda stop: _steps(1000, stop, delay=0.005), title="long", on_result=results.append)
    qtbot.waitUntil(lambda: len(job.progress_events) >= 3, timeout=10000)
    job.stop()
    qtbot.waitUntil(lambda: job.done, timeout=10000)
    [result] = results
    assert 3 <= result["stopped_at"] < 1000 and "image" not in result
    assert job.error is None


def test_callbacks_run_in_order_even_when_napari_processes_events(make_napari_viewer, qtbot):
    """napari's progress bar calls processEvents(); callbacks must still see events in order."""
    make_napari_viewer()
    seen = []

    def job(stop):
        for i in range(50):
            yield Progress(i + 1, 50, f"step {i + 1}")
        return "result"

    running = start_job(job, title="order", on_progress=lambda e: seen.append(e.step),
                        on_result=seen.append, on_finished=lambda: seen.append("finished"))
    qtbot.waitUntil(lambda: running.done, timeout=10000)
    assert seen == [*range(1, 51), "result", "finished"]


def test_napari_progress_bar_moves_with_the_steps(make_napari_viewer, qtbot):
    """The activity dock's bar follows the progress object's value events (not its ``n``)."""
    make_napari_viewer()
    values = []

    def jumps(stop):
        for step in (2, 5, 6, 3):  # a later phase may restart lower
            yield Progress(step, 6, f"at {step}")
        return None

    job = start_job(jumps, title="jumps", start=False)
    job.pbar.events.value.connect(lambda e: values.append(e.value))
    job.worker.start()
    qtbot.waitUntil(lambda: job.done, timeout=10000)
    assert values == [2, 5, 6, 3]
