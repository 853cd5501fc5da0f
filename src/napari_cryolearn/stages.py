"""The suite's stages, registered by import path so that nothing heavy loads until a stage runs."""

from napari_cryolearn.engine.registry import Stage, register_stage

register_stage(
    Stage(
        name="sample",
        config="napari_cryolearn.sample.job:SampleConfig",
        job="napari_cryolearn.sample.job:sample_job",
        summary="write the synthetic sample tomogram, labels, STAR coordinates and micrographs",
        order=0,
        demo="napari_cryolearn.sample.job:sample_demo",
        cli_positionals=("output",),
    )
)
