"""The suite's stages, registered by import path so that nothing heavy loads until a stage runs.

Importing this module registers them; :func:`all_stages` and :func:`get` read the registry.
``order`` is the pipeline order that ``cryolearn demo`` follows. Adding a stage is one
``register_stage`` call here (see docs/adding-a-stage.md).
"""

from napari_cryolearn.engine.registry import Port, Stage, get_stage, register_stage, stages


def all_stages() -> list[Stage]:
    """The suite's stages, in pipeline order."""
    return stages()


def get(name: str) -> Stage:
    """The stage called ``name`` (``KeyError`` lists the known names)."""
    return get_stage(name)


#: Dock widgets that are not one stage's (import path → title): the batch runner over any
#: file-level stage (``cryolearn batch``).
TOOL_WIDGETS = {"napari_cryolearn.ui.batch_widget:BatchWidget": "Batch"}


register_stage(
    Stage(
        name="sample",
        config="napari_cryolearn.sample.job:SampleConfig",
        job="napari_cryolearn.sample.job:sample_job",
        summary="write the synthetic sample tomogram, labels, STAR coordinates and micrographs",
        order=0,
        demo="napari_cryolearn.demo:sample_demo",
        cli_positionals=("output",),
        inputs=(),
        outputs=(Port("output", "run"),),
        widget="napari_cryolearn.ui.stage_widget:sample",
        title="Synthetic tomogram",
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
        inputs=(Port("input", "labels"),),
        outputs=(Port("output", "labels"),),
        widget="napari_cryolearn.ui.stage_widget:prep_filter",
        title="Filter labels",
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
        inputs=(Port("coordinates", "points"), Port("reference", "tomogram")),
        outputs=(Port("output", "labels"),),
        widget="napari_cryolearn.ui.stage_widget:prep_masks",
        title="Masks from points",
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
        inputs=(Port("input", "tomogram"),),
        outputs=(Port("output", "tomogram"),),
        widget="napari_cryolearn.ui.stage_widget:prep_scale",
        title="Scale intensity",
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
        inputs=(Port("input", "tomogram"),),
        outputs=(Port("output", "labels"),),
        widget="napari_cryolearn.ui.stage_widget:prep_threshold",
        title="Mask from threshold",
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
        inputs=(Port("input", "labels"),),
        outputs=(Port("output", "distances"), Port("skeleton", "labels", optional=True)),
        widget="napari_cryolearn.ui.stage_widget:prep_distances",
        title="Distance maps",
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
        inputs=(Port("image", "tomogram"), Port("labels", "labels", optional=True),
                Port("distances", "distances", optional=True)),
        outputs=(Port("output", "patch_store"),),
        widget="napari_cryolearn.ui.stage_widget:prep_patches",
        title="Training patches",
    )
)
register_stage(
    Stage(
        name="ssl.pretrain3d",
        config="napari_cryolearn.selfsup.pretrain3d_config:Pretrain3DConfig",
        job="napari_cryolearn.selfsup.pretrain3d_job:pretrain3d_job",
        summary="label-free dense 3D SimSiam pretraining (CryoSiam's DenseSimSiam) of the segmentation backbone on tomograms",
        order=44,
        demo="napari_cryolearn.demo:pretrain3d_demo",
        cli_positionals=("data",),
        inputs=(Port("data", "tomogram"), Port("pretrained_model", "model", optional=True)),
        outputs=(Port("log_dir", "run"),),
        widget="napari_cryolearn.ui.pretrain3d_widget:Pretrain3DWidget",
        title="Pretrain (3D, no labels)",
    )
)
register_stage(
    Stage(
        name="ssl.embed3d",
        config="napari_cryolearn.selfsup.pretrain3d_config:Embed3DConfig",
        job="napari_cryolearn.selfsup.embed3d_job:embed3d_job",
        summary="per-voxel embeddings of a tomogram by a pretrained DenseSimSiam: 3 PCA components (RGB) and k-means clusters",
        per_file=True,
        order=46,
        demo="napari_cryolearn.demo:embed3d_demo",
        cli_positionals=("model", "tomogram"),
        inputs=(Port("model", "model"), Port("tomogram", "tomogram")),
        outputs=(Port("output_dir", "run"),),
        widget="napari_cryolearn.ui.embedding_volume:EmbeddingVolumeWidget",
        title="Embedding volume",
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
        inputs=(Port("patch_stores", "patch_store"), Port("pretrained_model", "model", optional=True)),
        outputs=(Port("log_dir", "run"),),
        widget="napari_cryolearn.ui.segment_train_widget:TrainSegmentationWidget",
        title="Train segmentation",
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
        inputs=(Port("model", "model"), Port("input", "tomogram")),
        outputs=(Port("output", "labels"), Port("probabilities", "distances", optional=True),
                 Port("distances", "distances", optional=True)),
        widget="napari_cryolearn.ui.stage_widget:segment_predict",
        title="Segment",
    )
)
register_stage(
    Stage(
        name="pick.meshes",
        config="napari_cryolearn.picking.meshes_job:MeshesConfig",
        job="napari_cryolearn.picking.meshes_job:meshes_job",
        summary="one surface mesh per membrane of a segmentation, with the tomogram sampled along the normals (MemBrain-pick's .h5)",
        per_file=True,
        order=70,
        demo="napari_cryolearn.demo:meshes_demo",
        cli_positionals=("segmentation", "tomogram", "output_dir"),
        inputs=(Port("segmentation", "labels"), Port("tomogram", "tomogram")),
        outputs=(Port("output_dir", "run"),),
        widget="napari_cryolearn.ui.stage_widget:pick_meshes",
        title="Membrane meshes",
    )
)
register_stage(
    Stage(
        name="pick.train",
        config="napari_cryolearn.picking.config:PickTrainConfig",
        job="napari_cryolearn.picking.train_job:pick_train_job",
        summary="train the DiffusionNet picker on mesh containers and protein positions (MemBrain-pick's DATA/train, DATA/val)",
        order=75,
        demo="napari_cryolearn.demo:pick_train_demo",
        cli_positionals=("data",),
        inputs=(Port("data", "run"), Port("pretrained_model", "model", optional=True)),
        outputs=(Port("log_dir", "run"),),
        widget="napari_cryolearn.ui.pick_train_widget:TrainPickerWidget",
        title="Train picker",
    )
)
register_stage(
    Stage(
        name="pick.predict",
        config="napari_cryolearn.picking.config:PickPredictConfig",
        job="napari_cryolearn.picking.predict_job:pick_predict_job",
        summary="per-vertex distance scores and mean-shift picks on mesh containers, to STAR with orientations",
        per_file=True,
        order=80,
        demo="napari_cryolearn.demo:pick_predict_demo",
        cli_positionals=("model", "meshes"),
        inputs=(Port("meshes", "mesh"), Port("model", "model")),
        outputs=(Port("output_dir", "run"),),
        widget="napari_cryolearn.ui.stage_widget:pick_predict",
        title="Pick proteins",
    )
)
register_stage(
    Stage(
        name="pick.eval",
        config="napari_cryolearn.picking.eval_job:PickEvalConfig",
        job="napari_cryolearn.picking.eval_job:pick_eval_job",
        summary="precision, recall and F1 of picks against true positions (one-to-one within a distance, and MemBrain v1's hits)",
        order=90,
        demo="napari_cryolearn.demo:pick_eval_demo",
        cli_positionals=("picks",),
        inputs=(Port("picks", "points"), Port("truth", "points"), Port("tomogram", "tomogram", optional=True)),
        outputs=(),
    )
)
register_stage(
    Stage(
        name="ssl.train",
        config="napari_cryolearn.selfsup.config:SSLTrainConfig",
        job="napari_cryolearn.selfsup.train_job:ssl_train_job",
        summary="label-free training of an encoder on micrographs or their power spectra (SimSiam as prismpyp, SimCLR)",
        order=110,
        demo="napari_cryolearn.demo:ssl_train_demo",
        cli_positionals=("data",),
        inputs=(Port("data", "micrographs"), Port("pretrained_model", "model", optional=True)),
        outputs=(Port("log_dir", "run"),),
        widget="napari_cryolearn.ui.ssl_train_widget:SSLTrainWidget",
        title="Self-supervised training",
    )
)
register_stage(
    Stage(
        name="ssl.embed",
        config="napari_cryolearn.selfsup.config:EmbedConfig",
        job="napari_cryolearn.selfsup.embed_job:ssl_embed_job",
        summary="embeddings of micrographs by a trained encoder, with a 2D map and k-means clusters, as a table",
        per_file=True,
        order=120,
        demo="napari_cryolearn.demo:ssl_embed_demo",
        cli_positionals=("model", "data"),
        inputs=(Port("model", "model"), Port("data", "micrographs")),
        outputs=(Port("output", "table"),),
        widget="napari_cryolearn.ui.embedding_explorer:EmbeddingExplorer",
        title="Embedding explorer",
    )
)
register_stage(
    Stage(
        name="ssl.intersect",
        config="napari_cryolearn.selfsup.config:IntersectConfig",
        job="napari_cryolearn.selfsup.embed_job:ssl_intersect_job",
        summary="the micrographs whose clusters are good in both the real-space and the Fourier-space embeddings",
        order=130,
        cli_positionals=("real", "fft"),
        inputs=(Port("real", "table"), Port("fft", "table")),
        outputs=(Port("output", "file_list"),),
    )
)
register_stage(
    Stage(
        name="ae.train",
        config="napari_cryolearn.selfsup.ae_config:AETrainConfig",
        job="napari_cryolearn.selfsup.ae_train_job:ae_train_job",
        summary="a regularised autoencoder of 4D-STEM diffraction patterns (non-negative latents; PSNR and SSIM)",
        order=140,
        demo="napari_cryolearn.demo:ae_train_demo",
        cli_positionals=("data",),
        inputs=(Port("data", "scan4d"), Port("pretrained_model", "model", optional=True)),
        outputs=(Port("log_dir", "run"),),
        widget="napari_cryolearn.ui.ae_train_widget:AETrainWidget",
        title="Train autoencoder",
    )
)
register_stage(
    Stage(
        name="ae.apply",
        config="napari_cryolearn.selfsup.ae_config:AEApplyConfig",
        job="napari_cryolearn.selfsup.ae_apply_job:ae_apply_job",
        summary="latent maps over the scan, reconstructed patterns and their PSNR/SSIM, from a trained autoencoder",
        per_file=True,
        order=150,
        demo="napari_cryolearn.demo:ae_apply_demo",
        cli_positionals=("model", "data"),
        inputs=(Port("model", "model"), Port("data", "scan4d")),
        outputs=(Port("output_dir", "run"),),
        widget="napari_cryolearn.ui.latent_maps:LatentMapsWidget",
        title="Latent maps",
    )
)
register_stage(
    Stage(
        name="annotate.init",
        config="napari_cryolearn.annotate.round_job:AnnotateInitConfig",
        job="napari_cryolearn.annotate.round_job:init_job",
        summary="an annotation project folder for a tomogram: classes and colours, annotations (0: not annotated), rounds",
        order=160,
        demo="napari_cryolearn.demo:annotate_init_demo",
        cli_positionals=("tomogram", "project"),
        inputs=(Port("tomogram", "tomogram"), Port("annotations", "labels", optional=True)),
        outputs=(Port("project", "run"),),
    )
)
register_stage(
    Stage(
        name="annotate.round",
        config="napari_cryolearn.annotate.round_job:AnnotateRoundConfig",
        job="napari_cryolearn.annotate.round_job:round_job",
        summary="one annotate → train → predict round of a project: train on its sparse annotations (warm-started), predict the whole tomogram",
        order=170,
        demo="napari_cryolearn.demo:annotate_round_demo",
        cli_positionals=("project",),
        inputs=(Port("project", "run"), Port("pretrained_model", "model", optional=True)),
        outputs=(Port("project", "run"),),
        widget="napari_cryolearn.ui.annotate_widget:AnnotateWidget",
        title="Annotate & train",
    )
)
