"""The pick-evaluation job: picks and true positions (STAR files) in, precision, recall and F1 out.

Each picks file is paired with a truth file: by name when every picks file has one
(``<mesh>_picks.star`` or ``<mesh>_clusters.star`` with ``<mesh>.star``, or the same stem), or
one of its tomogram's (the picks of ``<tomogram>_1_picks.star``, ``<tomogram>_2_picks.star``, ...
scored together against ``<tomogram>.star``, reported under the truth file's name), else by
order when both lists are as long. Coordinates are read as :func:`~napari_cryolearn.io.
star.read_star` reads them (pixels of the tomogram, ``rlnCoordinateX/Y/Z``) and measured in Å
with ``pixel_size`` (the argument, else the files', else the voxel size of ``tomogram``);
``coordinates: angstrom`` takes the columns as Å already (MemBrain-pick's cluster STAR files).

Two scores, as :mod:`napari_cryolearn.picking.evaluation` defines them: **one-to-one** (each
pick matched to at most one true position within ``threshold`` Å, by the Hungarian algorithm:
the F1 printed first) and MemBrain v1's **hit-based** variant (a true position is found when any
pick lies within the threshold, a pick is right when any true position does). Per file and
overall (true and false positives summed over the files). ``sweep`` adds the overall scores
at other thresholds. ``output`` (``.json``) keeps it all for machines.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from napari_cryolearn.engine.atomic import atomic_path
from napari_cryolearn.engine.config import EXPERT, Config
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import JobResult
from napari_cryolearn.engine.outputs import check_output
from napari_cryolearn.engine.progress import Progress

STAGE = "pick.eval"

#: Endings MemBrain-pick and our picker give a mesh's picks file.
_PICK_ENDINGS = ("_picks", "_clusters")


class PickEvalConfig(Config):
    """Evaluation of picks against true positions (see the module docstring)."""

    picks: list[Path] = Field(description="STAR files of picks (one per membrane or tomogram), or folders of "
                              "<name>_picks.star files")
    truth: list[Path] = Field(description="STAR files of the true positions, paired with the picks by name (else by "
                              "order), or folders of them")
    threshold: float = Field(60.0, gt=0, description="largest distance, in Å, at which a pick finds a true position")
    pixel_size: float | None = Field(None, gt=0, description="Å per pixel of the coordinates (default: the files', else the tomogram's voxel size)")
    tomogram: Path | None = Field(None, description="MRC whose voxel size converts pixel coordinates to Å")
    coordinates: Literal["pixel", "angstrom"] = Field("pixel", description="units of rlnCoordinateX/Y/Z: pixel (RELION) or angstrom (MemBrain-pick's cluster files)", json_schema_extra=EXPERT)
    sweep: list[float] | None = Field(None, description="more thresholds (Å) for the overall scores, e.g. 20 40 60 80")
    output: Path | None = Field(None, description="JSON file for the scores (per file, overall, sweep)")
    overwrite: bool = Field(False, description="replace an existing output")


def _stem(path: Path) -> str:
    stem = path.name[: -len(".star")] if path.name.lower().endswith(".star") else path.stem
    for ending in _PICK_ENDINGS:
        if stem.endswith(ending):
            return stem[: -len(ending)]
    return stem


def _membrane_of(stem: str) -> str | None:
    """The tomogram stem of a membrane's name ``<tomogram>_<k>`` (``pick meshes``'s naming)."""
    head, _, tail = stem.rpartition("_")
    return head if head and tail.isdigit() else None


def pair_files(picks: list[Path], truth: list[Path]) -> list[tuple[list[Path], Path]]:
    """(picks files, truth file) groups: by name when every picks file has a truth file of its
    name, or of its tomogram's (``<tomogram>_<k>_picks.star``, one per membrane, with
    ``<tomogram>.star``: the membranes' picks are scored together); else one to one by order
    when the lists are as long; :class:`InputError` otherwise.

    >>> pair_files([Path("b_picks.star"), Path("a_picks.star")], [Path("a.star"), Path("b.star")])
    [([PosixPath('b_picks.star')], PosixPath('b.star')), ([PosixPath('a_picks.star')], PosixPath('a.star'))]
    >>> pair_files([Path("t1_1_picks.star"), Path("t1_2_picks.star")], [Path("t1.star")])
    [([PosixPath('t1_1_picks.star'), PosixPath('t1_2_picks.star')], PosixPath('t1.star'))]
    """
    by_name = {_stem(t): t for t in truth}
    if len(by_name) == len(truth):
        owner = {}
        for p in picks:
            stem = _stem(p)
            owner[p] = by_name.get(stem) or by_name.get(_membrane_of(stem) or "")
        if all(owner.values()):
            groups: dict[Path, list[Path]] = {}
            for p in picks:
                groups.setdefault(owner[p], []).append(p)
            return [(files, t) for t, files in groups.items()]
    if len(picks) == len(truth):
        return [([p], t) for p, t in zip(picks, truth)]
    raise InputError(f"{len(picks)} picks files and {len(truth)} truth files, and their names do not pair "
                     f"them (<name>_picks.star with <name>.star, or <tomogram>_<k>_picks.star with "
                     f"<tomogram>.star)", field="truth")


def star_files(given, *, picks: bool) -> list[Path]:
    """The STAR files named: files as given, a folder as its picks files (``*_picks.star``,
    ``*_clusters.star``) or, for the truth, its other ``.star`` files."""
    out: list[Path] = []
    for p in (Path(g) for g in given):
        if not p.is_dir():
            out.append(p)
            continue
        found = sorted(q for q in p.glob("*.star") if (_stem(q) != q.name[:-5]) == picks)
        if not found:
            raise InputError(f"holds no {'picks' if picks else 'truth'} STAR file", path=p,
                             field="picks" if picks else "truth")
        out += found
    return out


def _pixel_size(config: PickEvalConfig, stars) -> float:
    if config.coordinates == "angstrom":
        return 1.0
    if config.pixel_size is not None:
        return float(config.pixel_size)
    sizes = {round(float(s.pixel_size), 6) for s in stars if s.pixel_size}
    if len(sizes) == 1:
        return sizes.pop()
    if config.tomogram is not None:
        from napari_cryolearn.io.mrc import read_mrc

        return float(read_mrc(config.tomogram, mmap=True).voxel_size[0])
    why = "the files give different pixel sizes" if sizes else "no pixel size in the files"
    raise InputError(f"{why}: give --pixel-size (Å per pixel) or --tomogram", field="pixel_size")


def pick_eval_job(config: PickEvalConfig, stop=None) -> Generator[Progress, None, JobResult]:
    """Score ``config.picks`` against ``config.truth``; a :class:`JobResult` whose metrics are
    ``f1``, ``precision``, ``recall`` (one-to-one, overall), ``hit_f1`` (MemBrain v1's),
    ``per_file`` and, with ``sweep``, ``sweep`` (threshold → overall scores)."""
    from napari_cryolearn.io.star import read_star
    from napari_cryolearn.picking.evaluation import combine, hit_scores, pick_scores, threshold_sweep

    pairs = pair_files(star_files(config.picks, picks=True), star_files(config.truth, picks=False))
    if config.output is not None:
        check_output(config.picks[0], config.output, config.overwrite, suffixes=(".json",), what="JSON scores")
    yield Progress(0, len(pairs), f"reading {sum(len(p) + 1 for p, _ in pairs)} STAR files", STAGE)
    read = [([read_star(p, require_z=True) for p in files], read_star(t, require_z=True)) for files, t in pairs]
    size = _pixel_size(config, [s for files, t in read for s in (*files, t)])
    per_file: dict[str, Any] = {}
    exact, hits, both = [], [], []
    for i, ((files, truth_path), (picks, truth)) in enumerate(zip(pairs, read)):
        picks_path = files[0] if len(files) == 1 else truth_path
        a = np.concatenate([np.asarray(s.coords, np.float64).reshape(-1, 3) for s in picks]) * size
        b = truth.coords * size
        score = pick_scores(a, b, threshold=config.threshold)
        hit = hit_scores(a, b, threshold=config.threshold)
        exact.append(score)
        hits.append(hit)
        both.append((a, b))
        per_file[picks_path.name] = {**_plain(score), "hit_f1": float(hit["f1"]), "picks": len(a), "truth": len(b)}
        yield Progress(i + 1, len(pairs), f"{picks_path.name}: F1 {float(score['f1']):.3f}", STAGE)
    overall = combine(exact)
    hit_overall = combine(hits)
    metrics: dict[str, Any] = {"f1": float(overall["f1"]), "precision": float(overall["precision"]),
                               "recall": float(overall["recall"]), "hit_f1": float(hit_overall["f1"]),
                               "threshold": config.threshold, "pixel_size": size, "per_file": per_file}
    if config.sweep:
        rows = [threshold_sweep(a, b, list(config.sweep)) for a, b in both]
        metrics["sweep"] = {str(t): _plain(combine([r[k] for r in rows])) for k, t in enumerate(config.sweep)}
    outputs = {}
    if config.output is not None:
        with atomic_path(config.output) as tmp:
            Path(tmp).write_text(json.dumps(metrics, indent=1))
        outputs["output"] = config.output
    return JobResult(outputs, metrics=metrics)


def _plain(score) -> dict[str, float | int]:
    return {k: (int(v) if k in ("tp", "fp", "fn", "tp_picks") else float(v)) for k, v in dict(score).items()}

