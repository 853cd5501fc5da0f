"""The run log of a batch: one row per file, what happened to it, and what it wrote.

``batch_log.csv`` in the output folder (``batch_log.shard-K-of-N.csv`` for a shard, so that
the tasks of a Slurm array never write the same file) has the columns :data:`COLUMNS`:
``file`` (the main input's name), ``status`` (``done``, ``skipped``, ``failed``, ``stopped``),
``seconds``, ``error`` (the message of a failure), ``outputs`` (the files written, ``;``-
separated) and ``config`` (a digest of the file's settings: a re-run with other settings
redoes the file). It is rewritten atomically after every file, so a run that is killed leaves
the log of what it finished.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from napari_cryolearn.engine.atomic import atomic_path

COLUMNS = ("file", "status", "seconds", "error", "outputs", "config")
STATUSES = ("queued", "running", "done", "skipped", "failed", "stopped")


@dataclass(frozen=True)
class LogRow:
    """One file of a batch (see the module docstring for the columns)."""

    file: str
    status: str
    seconds: float = 0.0
    error: str = ""
    outputs: str = ""
    config: str = ""

    @property
    def ok(self) -> bool:
        """Done or skipped (up to date)."""
        return self.status in ("done", "skipped")


def log_name(shard_of: tuple[int, int] | None = None) -> str:
    """``batch_log.csv``, or ``batch_log.shard-K-of-N.csv`` for a shard."""
    return "batch_log.csv" if shard_of is None else f"batch_log.shard-{shard_of[0]}-of-{shard_of[1]}.csv"


def config_digest(settings: Mapping[str, Any]) -> str:
    """A short digest of one file's settings (paths as text, ``overwrite`` left out: redoing a
    file does not change what it computes)."""
    data = {k: v for k, v in settings.items() if k != "overwrite"}
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_log(path: str | os.PathLike, rows: Iterable[LogRow]) -> Path:
    """Write ``rows`` to ``path`` (CSV, atomically)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            for row in rows:
                d = asdict(row)
                d["seconds"] = f"{row.seconds:.2f}"
                writer.writerow(d)
    return Path(path)


def read_logs(folder: str | os.PathLike) -> dict[str, LogRow]:
    """The latest row per file of every batch log in ``folder`` (shards' too); unreadable or
    foreign CSV files are ignored."""
    rows: dict[str, LogRow] = {}
    logs = sorted(Path(folder).glob("batch_log*.csv"), key=lambda p: p.stat().st_mtime)
    for path in logs:
        try:
            with open(path, newline="") as f:
                for d in csv.DictReader(f):
                    if not set(COLUMNS) <= set(d):
                        break
                    rows[d["file"]] = LogRow(d["file"], d["status"], float(d["seconds"] or 0), d["error"],
                                             d["outputs"], d["config"])
        except (OSError, ValueError, csv.Error):
            continue
    return rows
