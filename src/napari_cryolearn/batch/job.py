"""A batch as a job: one stage over a folder, resumable, here or on a cluster.

:func:`batch_job` plans the files (:func:`~napari_cryolearn.batch.plan.plan_batch`), checks
the stage's settings once (a bad value stops the batch before anything runs), skips the files
that are up to date, runs the others (in this process, in ``workers`` processes, or on a Dask
cluster) and keeps the run log (:mod:`~napari_cryolearn.batch.log`) after every file. A file
that fails is logged with its message and the others go on; inputs are never written (an
output that would replace an input is refused).

A file is **up to date**, and skipped, when every output it would write exists, none is older
than its inputs (the shared ones, such as a model, too) or the stage's YAML, and the log of
an earlier batch, when it has the file, ran it with the same settings. ``force`` redoes it.
An existing output that no batch in this folder wrote is not replaced unless ``force``.

Each event's ``metrics`` carries the file a change is about: ``{"file": name, "status":
"running" | "done" | "skipped" | "failed" | "stopped", "seconds", "error", "outputs"}``,
which is how the *Batch* widget fills its table.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from napari_cryolearn.batch.log import LogRow, config_digest, log_name, read_logs, write_log
from napari_cryolearn.batch.plan import FileTask, SHARED_KINDS, parse_shard, per_file_fields, plan_batch
from napari_cryolearn.batch.runner import Outcome, build_stage_config, gpu_count, run_dask, run_one, run_pool
from napari_cryolearn.engine.config import EXPERT, Config, read_yaml
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import JobResult, check_stop
from napari_cryolearn.engine.progress import ITEM_STEPS, Progress, nested
from napari_cryolearn.engine.stop import StopFlag

STAGE = "batch"


class BatchConfig(Config):
    """Run a file-level stage once per file of a folder."""

    stage: str = Field(description="the stage to run on every file, e.g. prep.scale or segment.predict")
    input: Path = Field(description="folder of the files to process (the stage's main input)")
    output: Path = Field(description="folder for the outputs, named after each input (and the run log)")
    pattern: list[str] | None = Field(None, description="glob(s) of the input files (default: the usual suffixes "
                                      "of the stage's input, e.g. *.mrc *.rec *.map)")
    pairs: dict[str, Path] = Field(default_factory=dict, description="other per-file inputs of the stage: field → "
                                   "folder, matched by file stem (TS_01.mrc ↔ TS_01.mrc or TS_01_labels.mrc)")
    also: list[str] = Field(default_factory=list, description="optional outputs of the stage to write too "
                            "(<stem>_<field><suffix>)")
    stage_config: Path | None = Field(None, description="YAML of the stage's settings, applied to every file")
    settings: dict[str, Any] = Field(default_factory=dict, description="the stage's settings, over the YAML's")
    workers: int = Field(1, ge=1, description="files processed at once, each in its own process (a GPU stage: at "
                         "most one per GPU)")
    shard: str | None = Field(None, description="K/N: only the K-th of N shares of the files (a Slurm array task)")
    dask: str | None = Field(None, description="run the files on a Dask cluster: a scheduler address, or local:N",
                             json_schema_extra=EXPERT)
    force: bool = Field(False, description="redo files whose outputs are up to date (and replace outputs this "
                        "batch did not write)")
    dry_run: bool = Field(False, description="list what would run, be skipped or fail (partners, outputs), and "
                          "run nothing")

    @field_validator("shard")
    @classmethod
    def _shard(cls, value):
        try:
            parse_shard(value)
        except InputError as err:
            raise ValueError(str(err)) from None
        return value


@dataclass(frozen=True)
class BatchResult(JobResult):
    """``outputs``: ``log`` (the run log); ``metrics``: files ``done``, ``skipped``, ``failed``,
    ``stopped``; ``rows``: the log's rows, one per file, in name order."""

    rows: tuple[LogRow, ...] = ()

    @property
    def ok(self) -> bool:
        """Every file done or up to date."""
        return bool(self.rows) and all(r.ok for r in self.rows)


def _mtime(path: Path) -> float:
    """A file's modification time; for a folder (a store, a run), its newest entry's."""
    stat = path.stat()
    if not path.is_dir():
        return stat.st_mtime
    newest = stat.st_mtime
    for root, _, files in os.walk(path):
        for name in files:
            newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
    return newest


def _oldest(path: Path) -> float:
    """A file's modification time; for a folder, its oldest file's."""
    if not path.is_dir():
        return path.stat().st_mtime
    times = [os.stat(os.path.join(root, n)).st_mtime for root, _, files in os.walk(path) for n in files]
    return min(times) if times else path.stat().st_mtime


def _up_to_date(task: FileTask, shared: list[Path], yaml: Path | None, previous: LogRow | None,
                digest: str) -> bool:
    outputs = list(task.outputs.values())
    if not outputs or not all(p.exists() for p in outputs):
        return False
    if previous is not None and (previous.config != digest or previous.status not in ("done", "skipped")):
        return False
    sources = [*task.inputs.values(), *shared] + ([yaml] if yaml is not None else [])
    newest_input = max(_mtime(p) for p in sources if p.exists())
    return min(_oldest(p) for p in outputs) >= newest_input


def _ours(task: FileTask, previous: LogRow | None) -> bool:
    """Whether the existing outputs of ``task`` are ones a batch in this folder wrote."""
    if previous is None:
        return False
    written = set(filter(None, previous.outputs.split(";")))
    return all(str(p) in written for p in task.outputs.values() if p.exists())


def _shared_inputs(stage, settings: dict[str, Any]) -> list[Path]:
    """The inputs every file shares (a model), checked: :class:`InputError` for a required one
    missing or unreadable."""
    from napari_cryolearn.engine.inputs import check_input_path

    out = []
    for port in stage.inputs:
        value = settings.get(port.field)
        if port.kind not in SHARED_KINDS:
            continue
        if not value and not port.optional:
            raise InputError(f"{stage.name} needs --{port.field.replace('_', '-')} (one file for every input)",
                             field=port.field)
        for v in (value if isinstance(value, (list, tuple)) else [value]) if value else []:
            check_input_path(v, port)
            out.append(Path(v))
    return out


def base_settings(config: BatchConfig, stage) -> dict[str, Any]:
    """The stage's settings for every file: the YAML's, then ``settings``; refused when they set
    a field the batch sets per file."""
    data: dict[str, Any] = {}
    if config.stage_config is not None:
        if not config.stage_config.is_file():
            raise InputError("stage config not found", path=config.stage_config, field="stage_config")
        data = dict(read_yaml(config.stage_config))
    data.update(config.settings)
    per_file = per_file_fields(stage, config.pairs) & set(data)
    given = sorted(k for k in per_file if k in config.settings)
    if given:
        raise InputError(f"{', '.join(given)}: set per file by the batch (from --input, --pair and --output); "
                         "leave it out of the stage's settings", field="settings")
    for key in per_file:  # a stage YAML of one run names its files: the batch names them per file
        data.pop(key)
    return data


def batch_job(config: BatchConfig, stop: StopFlag | None = None) -> Generator[Progress, None, BatchResult]:
    """Run ``config.stage`` over ``config.input`` (see the module docstring); returns the log."""
    from napari_cryolearn.stages import get

    try:
        stage = get(config.stage)
    except KeyError as err:
        raise InputError(str(err.args[0]), field="stage") from None
    shard_of = parse_shard(config.shard)
    tasks = plan_batch(stage, config.input, config.output, pattern=config.pattern, pairs=config.pairs,
                       also=config.also, shard_of=shard_of)
    base = base_settings(config, stage)
    if not tasks:
        raise InputError(f"shard {config.shard} holds no file", field="shard")
    # the settings are checked once, on the first file, before anything runs
    first = {**base, **tasks[0].inputs, **tasks[0].outputs}
    stage_cfg = build_stage_config(stage, first)
    shared = _shared_inputs(stage, stage_cfg.to_dict())
    if not config.dry_run:
        config.output.mkdir(parents=True, exist_ok=True)
    log_path = config.output / log_name(shard_of)
    previous = read_logs(config.output)
    has_overwrite = "overwrite" in stage.config_class().model_fields

    rows: dict[str, LogRow] = {}
    to_run: list[tuple[str, dict[str, Any]]] = []
    digests: dict[str, str] = {}
    n = len(tasks)
    yield Progress(0, n * ITEM_STEPS, f"{n} files for {stage.name}", STAGE)
    for task in tasks:
        settings = {**base, **{k: str(v) for k, v in task.inputs.items()},
                    **{k: str(v) for k, v in task.outputs.items()}}
        digest = digests[task.name] = config_digest(settings)
        prev = previous.get(task.name)
        if task.problem:
            rows[task.name] = LogRow(task.name, "failed", 0.0, task.problem, "", digest)
        elif not config.force and _up_to_date(task, shared, config.stage_config, prev, digest):
            rows[task.name] = LogRow(task.name, "skipped", 0.0, "", ";".join(map(str, task.outputs.values())), digest)
        else:
            existing = [p for p in task.outputs.values() if p.exists()]
            if existing and not (config.force or _ours(task, prev)):
                rows[task.name] = LogRow(task.name, "failed", 0.0, f"{existing[0]} exists and was not written by a "
                                         "batch in this folder: --force replaces it", "", digest)
            else:
                if existing and has_overwrite:
                    settings["overwrite"] = True
                to_run.append((task.name, settings))
                continue
        row = rows[task.name]
        yield Progress(len(rows) * ITEM_STEPS, n * ITEM_STEPS, f"{task.name}: {row.status}", STAGE, _event(row))
    if config.dry_run:  # nothing run, nothing written
        by_name = {t.name: t for t in tasks}
        for name, _ in to_run:
            task = by_name[name]
            partners = [f"{k}={v}" for k, v in task.inputs.items() if k in config.pairs]
            what = " ".join([*partners, "→", *map(str, task.outputs.values())])
            rows[name] = LogRow(name, "to run", 0.0, "", what, digests[name])
        counts = {s: sum(r.status == s for r in rows.values()) for s in ("to run", "skipped", "failed")}
        return BatchResult({"log": log_path}, {**counts, "done": 0, "stopped": 0}, False,
                           rows=tuple(_ordered(rows, tasks)))
    if rows:
        write_log(log_path, _ordered(rows, tasks))

    def finish(name: str, outcome: Outcome) -> Progress:
        row = LogRow(name, outcome.status, outcome.seconds, outcome.error, ";".join(outcome.outputs), digests[name])
        rows[name] = row
        write_log(log_path, _ordered(rows, tasks))
        text = f"{name}: {outcome.status}" + (f" ({outcome.error})" if outcome.error else "")
        return Progress(len(rows) * ITEM_STEPS, n * ITEM_STEPS, text, STAGE, {**_event(row),
                                                                              "warnings": list(outcome.warnings)})

    gpus = gpu_count(first, stage.config_class()) if to_run else 0
    if config.dask is not None and to_run:
        for name, outcome in run_dask(stage.name, to_run, address=config.dask, stop=stop):
            yield _running(name, len(rows), n) if outcome is None else finish(name, outcome)
    elif config.workers > 1 and len(to_run) > 1:
        for name, outcome in run_pool(stage.name, to_run, workers=config.workers, gpus=gpus, stop=stop):
            yield _running(name, len(rows), n) if outcome is None else finish(name, outcome)
    else:
        for name, settings in to_run:
            if check_stop(stop):
                break
            yield _running(name, len(rows), n)
            index = len(rows)
            inner = run_one(stage.name, settings, stop)
            try:
                while True:
                    event = next(inner)
                    yield nested(event, index=index, count=n, name=name)
            except StopIteration as done:
                yield finish(name, done.value)

    counts = {s: sum(r.status == s for r in rows.values()) for s in ("done", "skipped", "failed", "stopped")}
    stopped = check_stop(stop) and len(rows) < n
    return BatchResult({"log": log_path}, counts, stopped, rows=tuple(_ordered(rows, tasks)))


def _event(row: LogRow) -> dict[str, Any]:
    return {"file": row.file, "status": row.status, "seconds": row.seconds, "error": row.error,
            "outputs": [p for p in row.outputs.split(";") if p]}


def _running(name: str, done: int, n: int) -> Progress:
    return Progress(done * ITEM_STEPS, n * ITEM_STEPS, f"{name}: running", STAGE, {"file": name, "status": "running"})


def _ordered(rows: dict[str, LogRow], tasks: list[FileTask]) -> list[LogRow]:
    return [rows[t.name] for t in tasks if t.name in rows]
