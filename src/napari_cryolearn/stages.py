"""The suite's stages, registered by import path so that nothing heavy loads until a stage runs.

``order`` is the pipeline order that ``cryolearn demo`` follows.
"""

from napari_cryolearn.engine.registry import Stage, register_stage

register_stage(
    Stage(
        name="sample",
        config="napari_cryolearn.sample.job:SampleConfig",
        job="napari_cryolearn.sample.job:sample_job",
        summary="write the synthetic sample tomogram, labels, STAR coordinates and micrographs",
        order=0,
        demo="napari_cryolearn.demo:sample_demo",
        cli_positionals=("output",),
    )
)
register_stage(
    Stage(
        name="prep.filter",
        config="napari_cryolearn.prep.filter_job:FilterLabelsConfig",
        job="napari_cryolearn.prep.filter_job:filter_labels_job",
        summary="keep some label values (binary mask, kept classes, or renumbered 1..n)",
        per_file=True,
        order=10,
        demo="napari_cryolearn.demo:filter_demo",
        cli_positionals=("input", "output"),
    )
)
register_stage(
    Stage(
        name="prep.masks",
        config="napari_cryolearn.prep.masks_job:MasksFromCoordinatesConfig",
        job="napari_cryolearn.prep.masks_job:masks_from_coordinates_job",
        summary="label volume of spheres at STAR coordinates (a class per coordinate)",
        per_file=True,
        order=15,
        demo="napari_cryolearn.demo:masks_demo",
        cli_positionals=("coordinates", "reference", "output"),
    )
)
register_stage(
    Stage(
        name="prep.scale",
        config="napari_cryolearn.prep.scale_job:ScaleConfig",
        job="napari_cryolearn.prep.scale_job:scale_job",
        summary="invert, clip at percentiles and rescale a tomogram to [0, 1] (streamed)",
        per_file=True,
        order=20,
        demo="napari_cryolearn.demo:scale_demo",
        cli_positionals=("input", "output"),
    )
)
register_stage(
    Stage(
        name="prep.threshold",
        config="napari_cryolearn.prep.masks_job:MaskFromThresholdConfig",
        job="napari_cryolearn.prep.masks_job:mask_from_threshold_job",
        summary="mask from a density or probability map by threshold, small pieces removed",
        per_file=True,
        order=25,
        demo="napari_cryolearn.demo:threshold_demo",
        cli_positionals=("input", "output"),
    )
)
register_stage(
    Stage(
        name="prep.distances",
        config="napari_cryolearn.prep.distance_job:DistanceMapConfig",
        job="napari_cryolearn.prep.distance_job:distance_map_job",
        summary="per-class signed distance maps of a label volume",
        per_file=True,
        order=30,
        demo="napari_cryolearn.demo:distances_demo",
        cli_positionals=("input", "output"),
    )
)
register_stage(
    Stage(
        name="prep.patches",
        config="napari_cryolearn.prep.patch_job:PatchesConfig",
        job="napari_cryolearn.prep.patch_job:patches_job",
        summary="overlapping training patches of tomogram, labels and distance maps into a store",
        per_file=True,
        order=40,
        demo="napari_cryolearn.demo:patches_demo",
        cli_positionals=("image", "output"),
    )
)
register_stage(
    Stage(
        name="segment.train",
        config="napari_cryolearn.segmentation.config:SegmentationTrainConfig",
        job="napari_cryolearn.segmentation.train_job:train_job",
        summary="train a 3D semantic segmentation network on patch stores (CPU, GPU, DDP, Slurm)",
        order=50,
        demo="napari_cryolearn.demo:train_demo",
        cli_positionals=("patch_stores",),
    )
)
register_stage(
    Stage(
        name="segment.predict",
        config="napari_cryolearn.segmentation.config:SegmentationPredictConfig",
        job="napari_cryolearn.segmentation.predict_job:predict_job",
        summary="segment a whole tomogram with a trained model (sliding window, Gaussian blending)",
        per_file=True,
        order=60,
        demo="napari_cryolearn.demo:predict_demo",
        cli_positionals=("model", "input", "output"),
    )
)
