"""From folders to files: which input files a batch runs, their partners, and their outputs.

A file-level stage (:attr:`~napari_cryolearn.engine.registry.Stage.per_file`) reads one main
input per run (a tomogram, a label volume, a STAR file, a mesh container, …: its first
required input that is not a model), maybe other per-file inputs matched to it by file stem
(``--pair labels=DIR``), and shared inputs given once (a model). Each run writes its outputs
into the batch's output folder, named after the main input's stem: the first required output
as ``<stem><suffix>`` (``TS_01.mrc``, ``TS_01.zarr``, a folder ``TS_01/``), other outputs as
``<stem>_<field><suffix>``.

Everything here is pure: it lists folders and builds paths, it reads and writes no data.

Examples
--------
>>> file_stem("TS_01.mrc"), file_stem("TS_01_labels.rec"), file_stem("TS_01.zarr")
('TS_01', 'TS_01_labels', 'TS_01')
>>> shard(["a", "b", "c", "d", "e"], 2, 2)
['b', 'd']
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.registry import Port, Stage

#: Inputs of these kinds are shared by every file of a batch (given once), never per file.
SHARED_KINDS = ("model", "config", "run")

#: The files a folder offers for an input of each kind, when ``--pattern`` is not given.
DEFAULT_PATTERNS = {
    "tomogram": ("*.mrc", "*.rec", "*.map"),
    "labels": ("*.mrc", "*.rec", "*.map"),
    "distances": ("*.npy", "*.npz"),
    "micrographs": ("*.mrc", "*.mrcs", "*.tif", "*.tiff", "*.png", "*.jpg", "*.jpeg"),
    "points": ("*.star",),
    "mesh": ("*.h5",),
    "scan4d": ("*.npy", "*.h5", "*.hdf5", "*.mrc"),
    "patch_store": ("*.zarr",),
    "table": ("*.csv", "*.parquet"),
    "file_list": ("*.txt",),
}

#: Separators allowed between a stem and the rest of a partner's name (``TS_01`` ↔ ``TS_01_labels``).
_SEPARATORS = ("_", "-", ".")


def file_stem(path: str | os.PathLike) -> str:
    """A file's name without its last suffix (a ``.zarr`` store's too)."""
    name = Path(path).name
    stem = Path(name).stem
    return stem or name


def shard(items: Sequence, index: int, count: int) -> list:
    """Shard ``index`` (1-based) of ``count``: every ``count``-th item from the ``index``-th.

    Shards 1..count of the same sorted list cover every item exactly once (a Slurm job array
    runs one shard per task: ``--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``).
    """
    if count < 1 or not 1 <= index <= count:
        raise InputError(f"shard {index}/{count}: expected K/N with 1 ≤ K ≤ N", field="shard")
    return list(items[index - 1::count])


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"2/4"`` → ``(2, 4)``; ``None`` stays ``None``.

    >>> parse_shard("2/4")
    (2, 4)
    """
    if text is None or text == "":
        return None
    k, sep, n = str(text).partition("/")
    try:
        index, count = int(k), int(n)
    except ValueError:
        raise InputError(f"shard {text!r}: expected K/N, e.g. 1/4", field="shard") from None
    if not sep or count < 1 or not 1 <= index <= count:
        raise InputError(f"shard {text!r}: expected K/N with 1 ≤ K ≤ N", field="shard")
    return index, count


def main_input(stage: Stage) -> Port:
    """The input a batch takes from ``--input``: the stage's first required input that is not
    shared (a model); :class:`InputError` for a stage that is not file-level."""
    if not stage.per_file:
        raise InputError(f"stage {stage.name!r} does not work file by file; batch runs "
                         f"{', '.join(batch_stage_names()) or 'none'}", field="stage")
    for port in stage.inputs:
        if not port.optional and port.kind not in SHARED_KINDS:
            return port
    raise InputError(f"stage {stage.name!r} has no per-file input", field="stage")


def batch_stage_names() -> list[str]:
    """The stages a batch can run (the file-level ones), in pipeline order."""
    from napari_cryolearn.stages import all_stages

    return [s.name for s in all_stages() if s.per_file]


def per_file_fields(stage: Stage, pairs: Mapping[str, object] = ()) -> set[str]:
    """The config fields a batch sets per file (the main input, the paired inputs, the
    outputs): the settings a user may not give for them."""
    return {main_input(stage).field, *dict(pairs)} | {p.field for p in stage.outputs}


def per_file_ports(stage: Stage) -> set[str]:
    """The fields a batch may set per file, whatever is paired: every input that is not shared
    (a model) and every output. The command and the widget offer no option for them."""
    return {p.field for p in stage.inputs if p.kind not in SHARED_KINDS} | {p.field for p in stage.outputs}


def list_inputs(folder: str | os.PathLike, patterns: Sequence[str]) -> list[Path]:
    """The files (or ``.zarr`` stores) in ``folder`` matching any of ``patterns``, sorted by
    name; hidden files and our temporaries (names starting with ``.``) are left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("is not a folder", path=folder, field="input")
    found: dict[str, Path] = {}
    for pattern in patterns:
        for path in folder.glob(pattern):
            if path.name.startswith(".") or not (path.is_file() or path.suffix == ".zarr"):
                continue
            found[path.name] = path
    return [found[name] for name in sorted(found)]


def match_partner(stem: str, candidates: Sequence[Path]) -> Path:
    """The one file of ``candidates`` whose stem is ``stem``, else the one whose stem starts with
    ``stem`` and a separator (``TS_01`` ↔ ``TS_01_labels.mrc``); a ``LookupError`` that says
    why when none or several do."""
    exact = [p for p in candidates if file_stem(p) == stem]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        raise LookupError(f"several files named {stem}: {', '.join(p.name for p in exact)}")
    near = [p for p in candidates if any(file_stem(p).startswith(stem + s) for s in _SEPARATORS)]
    if len(near) == 1:
        return near[0]
    if near:
        raise LookupError(f"several files match {stem}: {', '.join(p.name for p in near)}")
    raise LookupError(f"no file matches {stem}")


@dataclass(frozen=True)
class FileTask:
    """One run of a batch: the main input's name, the config fields it sets (inputs and
    outputs, by field), and why it cannot run (``problem``: a partner missing), if so."""

    name: str
    inputs: Mapping[str, Path]
    outputs: Mapping[str, Path]
    problem: str | None = None
    stem: str = field(default="")


def output_paths(stage: Stage, stem: str, output: Path, also: Sequence[str] = ()) -> dict[str, Path]:
    """The outputs one file's run writes, by field: the first required output as
    ``<stem><suffix>``, other required ones and those in ``also`` as ``<stem>_<field><suffix>``."""
    ports = {p.field: p for p in stage.outputs}
    unknown = [f for f in also if f not in ports or not ports[f].optional]
    if unknown:
        optional = [p.field for p in stage.outputs if p.optional]
        raise InputError(f"{', '.join(unknown)}: not an optional output of {stage.name} "
                         f"(its optional outputs: {', '.join(optional) or 'none'})", field="also")
    paths: dict[str, Path] = {}
    first = True
    for port in stage.outputs:
        if port.optional and port.field not in also:
            continue
        name = stem if first else f"{stem}_{port.field}"
        paths[port.field] = output / (name + port.file_suffix)
        first = False
    return paths


def plan_batch(
    stage: Stage,
    input: str | os.PathLike,
    output: str | os.PathLike,
    *,
    pattern: Sequence[str] | None = None,
    pairs: Mapping[str, str | os.PathLike] | None = None,
    also: Sequence[str] = (),
    shard_of: tuple[int, int] | None = None,
) -> list[FileTask]:
    """One :class:`FileTask` per input file of ``input`` (matching ``pattern``, else the main
    input kind's usual suffixes), in name order, or the shard ``shard_of`` = (K, N) of them.

    ``pairs`` maps other input fields of the stage to folders whose files are matched by stem
    (:func:`match_partner`); a file without its partner is a task with a ``problem`` (it fails,
    the others run). Refused with :class:`InputError`: a stage that is not file-level, a pair
    field that is not a per-file input of the stage, a folder that does not exist, an output
    folder that is the input folder or a paired one (outputs would replace inputs), and a
    folder with no matching file.
    """
    main = main_input(stage)
    pairs = dict(pairs or {})
    ports = {p.field: p for p in stage.inputs}
    for name in pairs:
        if name not in ports or ports[name].kind in SHARED_KINDS or name == main.field:
            choices = [p.field for p in stage.inputs if p.kind not in SHARED_KINDS and p.field != main.field]
            raise InputError(f"--pair {name}=…: {stage.name} has no per-file input {name!r} (its inputs to pair: "
                             f"{', '.join(choices) or 'none'})", field="pair")
    input, output = Path(input), Path(output)
    folders = {"input": input, **{f"pair {k}": Path(v) for k, v in pairs.items()}}
    for what, folder in folders.items():
        if not folder.is_dir():
            raise InputError("is not a folder", path=folder, field=what)
        if output.exists() and output.resolve() == folder.resolve():
            raise InputError(f"is also the {what} folder: outputs could replace inputs; choose another output folder",
                             path=output, field="output")
    patterns = tuple(pattern) if pattern else DEFAULT_PATTERNS.get(main.kind, ("*",))
    files = list_inputs(input, patterns)
    if not files:
        raise InputError(f"no {main.kind} files matching {' '.join(patterns)}", path=input, field="input")
    if shard_of is not None:
        files = shard(files, *shard_of)
    partners = {k: list_inputs(v, DEFAULT_PATTERNS.get(ports[k].kind, ("*",))) for k, v in pairs.items()}
    stems = [file_stem(p) for p in files]
    tasks = []
    for path, stem in zip(files, stems):
        inputs: dict[str, Path] = {main.field: path}
        problems = []
        for name, candidates in partners.items():
            try:
                inputs[name] = match_partner(stem, candidates)
            except LookupError as err:
                problems.append(f"{name}: {err} in {pairs[name]}")
        if stems.count(stem) > 1:
            twins = [p.name for p, s in zip(files, stems) if s == stem]
            problems.append(f"{' and '.join(twins)} would write the same outputs (same stem {stem}); rename one")
        tasks.append(FileTask(path.name, inputs, output_paths(stage, stem, output, also),
                              "; ".join(problems) or None, stem))
    return tasks
