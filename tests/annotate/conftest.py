"""A small synthetic tomogram with membranes, its truth as annotation values, and a project of it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_cryolearn.annotate.round_job import AnnotateInitConfig, AnnotateRoundConfig, init_job
from napari_cryolearn.annotate.sparse import simulated_annotations
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.io.mrc import write_mrc

SHAPE = (32, 64, 64)


def membrane_truth(shape=SHAPE, seed=5):
    """``(volume, truth)``: a synthetic tomogram and its classes as annotation values (1 background, 2 membrane)."""
    from napari_cryolearn.sample import make_synthetic_tomogram

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tomo = make_synthetic_tomogram(shape=shape, seed=seed, n_particles=2, proteins_per_vesicle=2)
    return tomo.volume, np.where(tomo.labels == 1, 2, 1).astype(np.uint8)


#: A round small enough for a test: a narrow U-Net, 16³ patches.
def tiny_round(project, **kw) -> AnnotateRoundConfig:
    return AnnotateRoundConfig(project=project, **{"epochs": 2, "patch_size": (16, 16, 16), "channels": (8, 16),
                                                   "window": (32, 32, 32), "device": "cpu", **kw})


@pytest.fixture
def project(tmp_path):
    """``(project folder, truth)``: a project of the small tomogram with strokes on 0.7 % of its voxels."""
    volume, truth = membrane_truth()
    write_mrc(tmp_path / "tomogram.mrc", volume, voxel_size=10.0)
    write_mrc(tmp_path / "strokes.mrc", simulated_annotations(truth, fraction=0.007), voxel_size=10.0)
    run_job(init_job(AnnotateInitConfig(tomogram=tmp_path / "tomogram.mrc", project=tmp_path / "project",
                                        classes=["background", "membrane"], annotations=tmp_path / "strokes.mrc")))
    return tmp_path / "project", truth
