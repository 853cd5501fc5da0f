"""Shared test set-up. Nothing Qt-related here: napari's pytest plugin provides
``make_napari_viewer`` and pytest-qt provides ``qtbot`` to the tests in ``tests/ui/``.
"""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")  # before anything imports matplotlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# No wall-clock limits: a 2-core CI machine under load must not fail a correct test.
settings.register_profile(
    "cryolearn",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "cryolearn"))


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator, so that generated test data are the same on every run."""
    return np.random.default_rng(20240607)


@pytest.fixture
def run_collecting():
    """``run_collecting(job, on=None) -> (result, events)``: run ``job`` to its end and return its
    result with every :class:`~napari_cryolearn.engine.Progress` it yielded, in order; each event
    is also handed to ``on`` (to set a stop flag at a chosen step, say)."""
    from napari_cryolearn.engine.jobs import run_job

    def run(job, on=None):
        events = []

        def record(event):
            events.append(event)
            if on is not None:
                on(event)

        return run_job(job, record), events

    return run
