"""Jobs for tests/engine/test_child.py, importable by path in a child process."""

from __future__ import annotations

import os
import time
from pathlib import Path

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import JobResult
from napari_cryolearn.engine.progress import Progress


def counting_job(n: int, folder: str, *, delay: float = 0.0, fail_at: int | None = None, stop=None):
    """``n`` steps, each writing a file holding the process id; honours ``stop``."""
    for i in range(n):
        if stop is not None and stop.is_set():
            return JobResult(metrics={"steps": i, "pid": os.getpid()}, stopped=True)
        if fail_at == i:
            raise InputError("value 3 is not allowed", path=Path(folder) / "bad.mrc", field="keep")
        time.sleep(delay)
        (Path(folder) / f"step{i}").write_text(str(os.getpid()))
        yield Progress(i + 1, n, f"step {i + 1}", stage="count", metrics={"i": i})
    return JobResult({"output": Path(folder)}, metrics={"steps": n, "pid": os.getpid(), "nice": os.nice(0)})


def dying_job(stop=None):
    """A process that ends without a word (as a crash or the OOM killer would)."""
    yield Progress(0, 1, "about to die")
    os._exit(3)
