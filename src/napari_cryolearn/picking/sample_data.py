"""Picking data from the synthetic tomogram generator: MemBrain-pick's training layout, made.

:func:`write_picking_dataset` writes, for each seed, the synthetic tomogram and its labels as
MRC files, one mesh container per membrane (the ``pick meshes`` job on the true labels, or on a
segmentation given by ``segment``) and the tomogram's protein positions as
``<split>/<tomogram stem>.star`` (voxels, ``rlnClassNumber`` 2): the layout ``pick train``
reads (``root/DATA/train``, ``root/DATA/val``). The tests, the benchmark and the demo use it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["write_picking_dataset"]


def write_picking_dataset(
    root: str | Path,
    splits: Mapping[str, Sequence[int]],
    *,
    shape: tuple[int, int, int] = (64, 96, 96),
    voxel_size: float = 10.0,
    n_particles: int = 3,
    min_voxels: int = 2000,
    segment: Callable[[Path, Path], Path] | None = None,
) -> dict[str, list[Path]]:
    """Write synthetic tomograms and their meshes and positions under ``root``.

    Parameters
    ----------
    root : folder
        Receives ``tomograms/t<seed>.mrc`` and ``tomograms/t<seed>_labels.mrc``, and
        ``DATA/<split>/t<seed>_<k>.h5`` with ``DATA/<split>/t<seed>.star``.
    splits : {split: seeds}
        E.g. ``{"train": [0, 1], "val": [2], "test": [3]}``.
    shape, voxel_size, n_particles : generator settings (:func:`make_synthetic_tomogram`).
    min_voxels : smallest membrane meshed.
    segment : callable, optional
        ``segment(tomogram_path, out_path) -> labels_path``: mesh this segmentation (e.g. one
        predicted by ``segment predict``) instead of the true labels.

    Returns
    -------
    {split: mesh containers written}
    """
    import pandas as pd

    from napari_cryolearn.engine.jobs import run_job
    from napari_cryolearn.io import write_mrc, write_star
    from napari_cryolearn.picking.meshes_job import MeshesConfig, meshes_job
    from napari_cryolearn.sample import make_synthetic_tomogram

    root = Path(root)
    tomos = root / "tomograms"
    tomos.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    for split, seeds in splits.items():
        out = root / "DATA" / split
        out.mkdir(parents=True, exist_ok=True)
        written[split] = []
        for seed in seeds:
            with warnings.catch_warnings():  # fewer proteins fit a small volume: fine here
                warnings.simplefilter("ignore", RuntimeWarning)
                t = make_synthetic_tomogram(shape=shape, voxel_size=voxel_size, seed=int(seed), n_particles=n_particles)
            vs = (voxel_size,) * 3
            tomo = write_mrc(tomos / f"t{seed}.mrc", t.volume, voxel_size=vs)
            labels = write_mrc(tomos / f"t{seed}_labels.mrc", t.labels, voxel_size=vs)
            if segment is not None:
                labels = segment(tomo, tomos / f"t{seed}_segmented.mrc")
            result = run_job(meshes_job(MeshesConfig(segmentation=labels, tomogram=tomo, output_dir=out,
                                                     min_voxels=min_voxels, overwrite=True)))
            written[split] += [Path(p) for p in result.outputs.values()]
            classes = pd.DataFrame({"rlnClassNumber": np.full(len(t.protein_coords), 2, dtype=int)})
            write_star(out / f"t{seed}.star", t.protein_coords, features=classes, pixel_size=voxel_size)
    return written
