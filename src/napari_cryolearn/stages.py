"""Registers the suite's stages (imported lazily by :mod:`napari_cryolearn.engine.registry`)."""

from napari_cryolearn.engine.registry import Stage, register_stage
from napari_cryolearn.sample.job import SampleConfig, sample_job

register_stage(
    Stage(
        name="sample",
        config=SampleConfig,
        job=sample_job,
        summary="write the synthetic sample tomogram, labels, STAR coordinates and micrographs",
    )
)
