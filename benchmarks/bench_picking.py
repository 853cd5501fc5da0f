"""Membrane-protein picking end to end: F1 at 60 Å, training and prediction time per membrane.

    .venv/bin/python benchmarks/bench_picking.py [--epochs 150] [--segmented] [--workdir DIR]

Synthetic tomograms (``picking.sample_data``, 64×96×96 voxels of 10 Å, vesicles and open sheets
with six proteins each): seeds 0 and 1 train, 50 validates, 100–103 are held out. Meshes from the
true membrane labels (``--segmented``: from a segmentation that ``segment train`` learns on the
training tomograms for ``--segment-time`` minutes and ``segment predict`` writes for every tomogram);
``pick train`` for ``--epochs``; ``pick predict`` and ``pick eval`` (one-to-one, 60 Å) on the
held-out tomograms. The reference, computed in the same run on the same predictions, is
MemBrain-pick's picking rules (profile windows combined by their minimum, mean-shift weights
10 − score): printed beside ours with their ratio. Times are per membrane (training: per epoch).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.picking.config import PickPredictConfig, PickTrainConfig
from napari_cryolearn.picking.eval_job import PickEvalConfig, pick_eval_job
from napari_cryolearn.picking.predict_job import pick_predict_job
from napari_cryolearn.picking.sample_data import write_picking_dataset
from napari_cryolearn.picking.train_job import pick_train_job

SPLITS = {"train": [0, 1], "val": [50], "test": [100, 101, 102, 103]}


def segmenter(root: Path, minutes: float):
    """A ``segment(tomogram, out)`` callable: a segmentation network trained for ``minutes`` on the
    training tomograms' true labels (64³ patches, half overlapping; written by a first, label-only pass), then applied
    with the training patch as its window."""
    from napari_cryolearn.prep.patch_job import PatchesConfig, patches_job
    from napari_cryolearn.segmentation.config import NetworkConfig, SegmentationPredictConfig, SegmentationTrainConfig
    from napari_cryolearn.segmentation.predict_job import predict_job
    from napari_cryolearn.segmentation.train_job import train_job

    labels_only = root / "labels_pass"
    write_picking_dataset(labels_only, {"train": SPLITS["train"]})
    stores = []
    for seed in SPLITS["train"]:
        tomos = labels_only / "tomograms"
        store = root / "patches" / f"t{seed}.zarr"
        run_job(patches_job(PatchesConfig(image=tomos / f"t{seed}.mrc", labels=tomos / f"t{seed}_labels.mrc",
                                          output=store, patch_size=(64, 64, 64), overlap=0.5, overwrite=True)))
        stores.append(store)
    t0 = time.perf_counter()
    result = run_job(train_job(SegmentationTrainConfig(
        patch_stores=stores, log_dir=root / "segmentation", network=NetworkConfig(out_channels=4),
        max_time=f"{minutes * 60:.0f}s", validation_ratio=0.1, overwrite=True)))
    print(f"segmentation: trained {time.perf_counter() - t0:.0f} s, {result.metrics}")
    model = result.outputs["model"]

    def segment(tomogram: Path, out: Path) -> Path:
        run_job(predict_job(SegmentationPredictConfig(model=model, input=tomogram, output=out)))
        return out

    return segment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--segmented", action="store_true", help="mesh a predicted segmentation, not the true labels")
    ap.add_argument("--segment-time", type=float, default=6.0, help="minutes of segmentation training")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench_picking_"))
    segment = segmenter(root, args.segment_time) if args.segmented else None
    meshes = write_picking_dataset(root, SPLITS, segment=segment)
    n_train = len(meshes["train"])
    t0 = time.perf_counter()
    trained = run_job(pick_train_job(PickTrainConfig(data=root / "DATA", log_dir=root / "run", max_epochs=args.epochs,
                                                     cache_dir=root / "cache", device="cpu", overwrite=True)))
    train_s = time.perf_counter() - t0
    test = root / "DATA" / "test"
    rows = {}
    for name, rules in (("ours", {}), ("MemBrain-pick's rules", {"windows": "min", "weighting": "membrain"})):
        out = root / f"picks_{'ours' if not rules else 'membrain'}"
        t0 = time.perf_counter()
        run_job(pick_predict_job(PickPredictConfig(model=trained.best_checkpoint, meshes=[test], output_dir=out,
                                                   cache_dir=root / "cache", overwrite=True, **rules)))
        predict_s = time.perf_counter() - t0
        scores = run_job(pick_eval_job(PickEvalConfig(picks=[out], truth=[test], threshold=60)))
        rows[name] = (scores.metrics, predict_s)
    source = "a predicted segmentation" if args.segmented else "the true labels"
    print(f"meshes from {source}: {n_train} training membranes, {len(meshes['test'])} held out "
          f"({sum(m['truth'] for m in rows['ours'][0]['per_file'].values())} proteins)")
    print(f"training: {train_s:.1f} s for {args.epochs} epochs = {train_s / args.epochs / n_train * 1000:.1f} ms per "
          f"membrane per epoch (including operators, computed once)")
    for (name, (m, predict_s)), when in zip(rows.items(), ("operators computed", "operators cached")):
        print(f"{name:>22}: F1 {m['f1']:.3f} (precision {m['precision']:.3f}, recall {m['recall']:.3f}; "
              f"hit F1 {m['hit_f1']:.3f}), prediction {predict_s / len(meshes['test']):.2f} s per membrane ({when})")
    ours, theirs = rows["ours"][0]["f1"], rows["MemBrain-pick's rules"][0]["f1"]
    print(f"F1 ratio ours / MemBrain-pick's rules: {ours / max(theirs, 1e-9):.2f}")


if __name__ == "__main__":
    main()
