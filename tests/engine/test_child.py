"""Jobs run in a child process: progress, result, errors, stop and close cross the boundary."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from napari_cryolearn.engine.child import run_in_child
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag

@pytest.fixture(autouse=True)
def _jobs_importable(monkeypatch):
    """The child imports the job by path; a spawned child starts with the parent's sys.path."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


def test_progress_and_result_come_from_another_process(tmp_path):
    events = []
    result = run_job(run_in_child("child_jobs:counting_job", 3, str(tmp_path)), events.append)
    assert [(e.step, e.total, e.message, e.metrics) for e in events] == [
        (1, 3, "step 1", {"i": 0}), (2, 3, "step 2", {"i": 1}), (3, 3, "step 3", {"i": 2})]
    assert result.outputs == {"output": tmp_path} and result.metrics["steps"] == 3
    assert result.metrics["pid"] != os.getpid()
    assert {p.read_text() for p in tmp_path.iterdir()} == {str(result.metrics["pid"])}


def test_the_child_runs_at_a_lower_priority_so_the_viewer_stays_responsive(tmp_path):
    result = run_job(run_in_child("child_jobs:counting_job", 1, str(tmp_path)))
    assert result.metrics["nice"] == min(19, os.nice(0) + 10)
    same = run_job(run_in_child("child_jobs:counting_job", 1, str(tmp_path), niceness=0))
    assert same.metrics["nice"] == os.nice(0)


def test_an_input_error_arrives_with_its_message_path_and_field(tmp_path):
    with pytest.raises(InputError) as caught:
        run_job(run_in_child("child_jobs:counting_job", 5, str(tmp_path), fail_at=2))
    assert str(caught.value) == f"{tmp_path / 'bad.mrc'}: keep: value 3 is not allowed"
    assert caught.value.path == str(tmp_path / "bad.mrc") and caught.value.field == "keep"


def test_the_stop_flag_reaches_the_child_which_returns_what_it_finished(tmp_path):
    stop = StopFlag()

    def on(e):
        if e.step == 2:
            stop.set()

    result = run_job(run_in_child("child_jobs:counting_job", 1000, str(tmp_path), delay=0.02, stop=stop), on)
    assert result.stopped and 2 <= result.metrics["steps"] < 1000
    assert len(list(tmp_path.iterdir())) == result.metrics["steps"]


def test_closing_the_generator_stops_the_child(tmp_path):
    job = run_in_child("child_jobs:counting_job", 1000, str(tmp_path), delay=0.02)
    assert next(job).step == 1
    job.close()  # waits for the child's clean exit
    written = len(list(tmp_path.iterdir()))
    time.sleep(0.3)
    assert len(list(tmp_path.iterdir())) == written < 1000


def test_a_child_that_dies_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match=r"ended without a result \(exit code 3\)"):
        run_job(run_in_child("child_jobs:dying_job"))
