"""One progress protocol: jobs pass inner events on with ``relay``; ``nested`` makes one bar of many items."""

from __future__ import annotations

import pytest

from napari_cryolearn.engine.jobs import JobStopped, relay, run_job
from napari_cryolearn.engine.progress import ITEM_STEPS, Progress, nested
from napari_cryolearn.engine.stop import StopFlag


def _inner(log: list[str], n: int = 3):
    try:
        for i in range(n):
            yield Progress(i + 1, n, f"step {i + 1}")
        return "value"
    finally:
        log.append("inner closed")


def test_relay_returns_the_inner_value_and_maps_every_event():
    log: list[str] = []

    def outer():
        got = yield from relay(_inner(log), event=lambda e: Progress(e.step * 10, 30, e.message.upper()))
        return got

    events: list[Progress] = []
    assert run_job(outer(), events.append) == "value"
    assert [(e.step, e.message) for e in events] == [(10, "STEP 1"), (20, "STEP 2"), (30, "STEP 3")]
    assert log == ["inner closed"]


def test_relay_stops_the_inner_job_when_the_flag_is_set():
    log: list[str] = []
    stop = StopFlag()

    def outer():
        try:
            yield from relay(_inner(log, n=5), stop=stop)
        except JobStopped:
            return "stopped"
        return "finished"

    seen: list[int] = []

    def on_progress(e: Progress) -> None:
        seen.append(e.step)
        if e.step == 2:
            stop.set()

    assert run_job(outer(), on_progress) == "stopped"
    assert seen == [1, 2] and log == ["inner closed"]


@pytest.mark.parametrize("index, step, total, expected", [(0, 0, 4, 0), (0, 4, 4, ITEM_STEPS),
                                                          (2, 1, 4, 2 * ITEM_STEPS + ITEM_STEPS // 4),
                                                          (1, 5, None, ITEM_STEPS)])
def test_nested_places_each_item_in_its_share_of_one_bar(index, step, total, expected):
    e = nested(Progress(step, total, "writing", stage="prep.scale", metrics={"loss": 1.0}),
               index=index, count=3, name="t.mrc")
    assert (e.step, e.total) == (expected, 3 * ITEM_STEPS)
    assert e.message == f"[{index + 1}/3] t.mrc: writing"
    assert e.stage == "prep.scale" and e.metrics == {"loss": 1.0}


def test_nested_steps_never_go_back_across_items():
    steps = [nested(Progress(s, 2), index=i, count=3).step for i in range(3) for s in range(3)]
    assert steps == sorted(steps) and steps[-1] == 3 * ITEM_STEPS


def test_nested_refuses_an_index_outside_the_run():
    with pytest.raises(ValueError, match="not in 0..2"):
        nested(Progress(0, 1), index=3, count=3)
