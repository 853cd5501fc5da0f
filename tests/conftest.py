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


#: ``cryolearn segment train`` flags of the smallest network the tests train, and of one quick
#: epoch on the CPU.
TINY_NET = ("--network-backbone-num-filters", "4", "8", "8", "16", "--network-backbone-fpn-channels", "8",
            "--network-backbone-dense-dim", "8", "--network-filters", "8", "8")
TRAIN_FAST = ("--max-epochs", "1", "--device", "cpu", "--patch-size", "16", "--batch-size", "2",
              "--validation-ratio", "0")


@pytest.fixture(scope="session")
def train_argv():
    """``train_argv(store, log_dir, *extra, out_channels=3)``: the arguments (after ``cryolearn``)
    of ``segment train`` of the tests' tiny network for one quick CPU epoch; ``extra`` flags come
    last, so they override."""

    def argv(store, log_dir, *extra: str, out_channels: int = 3) -> list[str]:
        return ["segment", "train", str(store), "--log-dir", str(log_dir), "--network-out-channels",
                str(out_channels), *TINY_NET, *TRAIN_FAST, *extra]

    return argv


@pytest.fixture(scope="session")
def two_class_labels() -> np.ndarray:
    """Read-only labels of shape (24, 32, 40) (z, y, x): a ball of class 1 (radius 6 around
    (12, 16, 14)) and a ball of class 2 (radius 4 around (10, 12, 30)) on background."""
    z, y, x = np.indices((24, 32, 40))
    labels = np.zeros((24, 32, 40), np.uint8)
    labels[(z - 12) ** 2 + (y - 16) ** 2 + (x - 14) ** 2 < 36] = 1
    labels[(z - 10) ** 2 + (y - 12) ** 2 + (x - 30) ** 2 < 16] = 2
    labels.flags.writeable = False
    return labels
