"""The annotate → train → correct loop headless: time per round and membrane Dice per round.

    .venv/bin/python benchmarks/bench_annotate.py [--shape Z Y X] [--epochs N] [--rounds R]
        [--fraction F] [--device auto|cpu|cuda] [--seed S]

Makes a held-out synthetic tomogram (``make_synthetic_tomogram(seed=S)``, classes background
and membrane; proteins and particles count as background), a project whose annotations are
strokes on a few slices taken from the truth (:func:`~napari_cryolearn.annotate.sparse.simulated_annotations`,
half of ``--fraction`` of the voxels), and runs ``--rounds`` rounds of ``annotate.round``;
between rounds it paints corrections where the prediction is wrong on new slices
(:func:`~napari_cryolearn.annotate.sparse.simulated_corrections`) so that the annotations
cover at most ``--fraction`` of the voxels in the end. Prints, per round, the seconds of
training and prediction, the annotated fraction and the whole-volume membrane Dice.
Acceptance (#23): 64×256×256 on 2 CPU cores, ≤ 1 % annotated, ≤ 3 minutes a round, Dice ≥ 0.8
after round 2 and not lower than after round 1.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from napari_cryolearn.annotate.project import open_project
from napari_cryolearn.annotate.round_job import AnnotateInitConfig, AnnotateRoundConfig, init_job, round_job
from napari_cryolearn.annotate.sparse import simulated_annotations, simulated_corrections
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.io.mrc import read_mrc, write_mrc
from napari_cryolearn.sample import make_synthetic_tomogram


def dice(prediction: np.ndarray, truth: np.ndarray, value: int = 2) -> float:
    a, b = prediction == value, truth == value
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(64, 256, 256))
    ap.add_argument("--epochs", type=int, default=AnnotateRoundConfig.model_fields["epochs"].default)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--fraction", type=float, default=0.01)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tomo = make_synthetic_tomogram(shape=tuple(args.shape), seed=args.seed)
    truth = np.where(tomo.labels == 1, 2, 1).astype(np.uint8)  # 1 background, 2 membrane
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_mrc(tmp / "tomogram.mrc", tomo.volume, voxel_size=tomo.voxel_size)
        write_mrc(tmp / "strokes.mrc", simulated_annotations(truth, fraction=args.fraction / 2, seed=args.seed),
                  voxel_size=tomo.voxel_size)
        run_job(init_job(AnnotateInitConfig(tomogram=tmp / "tomogram.mrc", project=tmp / "project",
                                            classes=["background", "membrane"], annotations=tmp / "strokes.mrc")))
        project = open_project(tmp / "project")
        config = AnnotateRoundConfig(project=project.path, epochs=args.epochs, device=args.device)
        for r in range(args.rounds):
            if r:  # correct on new slices what the last round got wrong
                annotations = project.read_annotations()
                left = int(args.fraction * truth.size) - int((annotations > 0).sum())
                shown = np.where(prediction == 0, project.background_value, prediction)
                simulated_corrections(truth, shown, annotations, voxels=max(left, 0) // (args.rounds - r),
                                      seed=args.seed + r)
                project.save_annotations(annotations)
            t0 = time.monotonic()
            result = run_job(round_job(config))
            seconds = time.monotonic() - t0
            prediction = np.asarray(read_mrc(result["prediction"]).data)
            row = {"round": r + 1, "seconds": round(seconds, 1), "train_s": result.metrics.get("train_seconds"),
                   "predict_s": result.metrics.get("predict_seconds"),
                   "annotated_fraction": round(float(result.metrics["annotated_fraction"]), 4),
                   "membrane_dice": round(dice(prediction, truth), 3)}
            rows.append(row)
            print(" ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    return rows


if __name__ == "__main__":
    main()
