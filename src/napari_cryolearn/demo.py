"""``cryolearn demo``: each stage's config on the synthetic sample data, in pipeline order.

Each builder takes the paths written so far (``outputs``: role → Path), the demo folder and
``quick`` (a smoke run: smaller volume, ten epochs), adds the paths its stage will write, and
returns the stage's config. Sizes are chosen so that the whole demo runs in a few minutes on a
laptop CPU, and the quick one in well under a minute.
"""

from __future__ import annotations

from pathlib import Path


def _prep(workdir: Path) -> Path:
    return Path(workdir) / "prep"


def _patch(quick: bool) -> int:
    return 32 if quick else 48


def sample_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """The sample data in ``workdir/sample`` (96×128×128 voxels; 48×64×64 when quick)."""
    from napari_cryolearn.sample.job import SampleConfig

    if quick:
        return SampleConfig(output=Path(workdir) / "sample", shape=(48, 64, 64), n_micrographs=8)
    return SampleConfig(output=Path(workdir) / "sample")


def filter_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """Membranes with their proteins as one binary mask (labels 1 and 2 → 1)."""
    from napari_cryolearn.prep.filter_job import FilterLabelsConfig

    outputs["membrane_mask"] = _prep(workdir) / "membrane_mask.mrc"
    return FilterLabelsConfig(input=outputs["labels"], output=outputs["membrane_mask"], keep=[1, 2], binary=True)


def masks_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """Spheres of 50 Å at the free particles' STAR coordinates."""
    from napari_cryolearn.prep.masks_job import MasksFromCoordinatesConfig

    outputs["particle_spheres"] = _prep(workdir) / "particle_spheres.mrc"
    return MasksFromCoordinatesConfig(
        coordinates=outputs["particles"],
        reference=outputs["tomogram"],
        output=outputs["particle_spheres"],
        radius=50.0,
        radius_unit="angstrom",
    )


def scale_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """The tomogram inverted (dense = bright), clipped at 0.1/99.9 percentiles, in [0, 1]."""
    from napari_cryolearn.prep.scale_job import ScaleConfig

    outputs["scaled"] = _prep(workdir) / "tomogram_scaled.mrc"
    return ScaleConfig(input=outputs["tomogram"], output=outputs["scaled"], invert=True)


def threshold_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """Dense objects of the scaled tomogram: above 0.75, pieces of at least 20 voxels."""
    from napari_cryolearn.prep.masks_job import MaskFromThresholdConfig

    outputs["dense_mask"] = _prep(workdir) / "dense_mask.mrc"
    return MaskFromThresholdConfig(input=outputs["scaled"], output=outputs["dense_mask"], threshold=0.75, min_size=20)


def distances_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """Signed distance maps of the four sample classes."""
    from napari_cryolearn.prep.distance_job import DistanceMapConfig

    outputs["distances"] = _prep(workdir) / "labels_distances.npy"
    return DistanceMapConfig(input=outputs["labels"], output=outputs["distances"], n_classes=4)


def patches_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """48³ patches (32³ when quick) with 25 % overlap of the scaled tomogram, labels and distance maps."""
    from napari_cryolearn.prep.patch_job import PatchesConfig

    outputs["patches"] = Path(workdir) / "patches" / "tomogram.zarr"
    return PatchesConfig(
        image=outputs["scaled"],
        labels=outputs["labels"],
        distances=outputs["distances"],
        output=outputs["patches"],
        patch_size=(_patch(quick),) * 3,
        overlap=0.25,
    )


def pretrain3d_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """Dense 3D SimSiam on the scaled tomogram, a few seconds: 1 epoch of 8 patches (24³ views of
    48³ patches) of a small network when quick, else 3 epochs of 16."""
    from napari_cryolearn.selfsup.pretrain3d_config import Pretrain3DConfig

    run = Path(workdir) / "pretrain3d"
    outputs["pretrained_3d"] = run / "model" / "last.ckpt"
    size = {"max_epochs": 1, "samples_per_epoch": 8} if quick else {"max_epochs": 3, "samples_per_epoch": 16}
    return Pretrain3DConfig(data=[outputs["scaled"]], log_dir=run, patch_size=(48, 48, 48), view_size=(24, 24, 24),
                            backbone={"num_filters": (4, 8, 8, 16), "fpn_channels": 8, "dense_dim": 8}, dim=32,
                            pred_dim=16, dense_pred_dim=8, batch_size=4, **size)


def embed3d_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """The scaled tomogram's embeddings by that network: 3 PCA components and 2 k-means clusters."""
    from napari_cryolearn.selfsup.pretrain3d_config import Embed3DConfig

    return Embed3DConfig(model=outputs["pretrained_3d"], tomogram=outputs["scaled"],
                         output_dir=Path(workdir) / "pretrain3d" / "embeddings", clusters=2)


def train_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """A 4-class network trained on the demo's patches with the defaults (the device's preset):
    10 epochs when quick, else for 3 minutes."""
    from napari_cryolearn.segmentation.config import NetworkConfig, SegmentationTrainConfig

    names = ["background", "membrane", "membrane_protein", "particle"]
    outputs["segmentation_run"] = Path(workdir) / "segmentation"
    outputs["model"] = outputs["segmentation_run"] / "model" / "last.ckpt"
    limit = {"max_epochs": 10} if quick else {"max_time": "3m"}
    return SegmentationTrainConfig(
        patch_stores=[outputs["patches"]],
        log_dir=outputs["segmentation_run"],
        network=NetworkConfig(out_channels=4, class_names=names),
        validation_ratio=0.1,
        **limit,
    )


def predict_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """The demo model applied to the whole scaled tomogram (labels and probabilities)."""
    from napari_cryolearn.segmentation.config import SegmentationPredictConfig

    out = Path(workdir) / "segmentation"
    outputs["predicted_labels"] = out / "tomogram_predicted_labels.mrc"
    return SegmentationPredictConfig(
        model=outputs["model"],
        input=outputs["scaled"],
        output=outputs["predicted_labels"],
        probabilities=out / "tomogram_probabilities.npy",
        window=(_patch(quick),) * 3,
    )


def _picking(workdir: Path) -> Path:
    return Path(workdir) / "picking"


def meshes_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """Meshes of the membranes the demo model segmented (class 1), with the tomogram sampled along
    their normals, and the sample's protein positions beside them: training data for the picker
    in MemBrain-pick's layout (``picking/DATA/train``)."""
    from napari_cryolearn.picking.meshes_job import MeshesConfig, positions_path

    config = MeshesConfig(segmentation=outputs["predicted_labels"], tomogram=outputs["tomogram"],
                          output_dir=_picking(workdir) / "DATA" / "train", classes=[1],
                          min_voxels=500 if quick else 2000, positions=outputs["proteins"])
    outputs["meshes"] = config.output_dir
    outputs["mesh_positions"] = positions_path(config)
    return config


def pick_train_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """The picker trained on those meshes: 15 epochs when quick, else 100 (operators cached in
    ``picking/cache``)."""
    from napari_cryolearn.picking.config import PickTrainConfig

    run = _picking(workdir) / "run"
    outputs["picker"] = run / "model" / "last.ckpt"
    return PickTrainConfig(data=_picking(workdir) / "DATA", log_dir=run, max_epochs=15 if quick else 100,
                           cache_dir=_picking(workdir) / "cache")


def pick_predict_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """Scores and picks on the same meshes (the demo has one tomogram: no held-out data)."""
    from napari_cryolearn.picking.config import PickPredictConfig

    outputs["picks"] = _picking(workdir) / "picks"
    return PickPredictConfig(model=outputs["picker"], meshes=[outputs["meshes"]], output_dir=outputs["picks"],
                             cache_dir=_picking(workdir) / "cache")


def pick_eval_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """Precision, recall and F1 of the picks at 60 Å against the sample's protein positions."""
    from napari_cryolearn.picking.eval_job import PickEvalConfig

    return PickEvalConfig(picks=[outputs["picks"]], truth=[outputs["mesh_positions"]], threshold=60.0,
                          output=_picking(workdir) / "pick_scores.json")


def ssl_train_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """SimSiam (prismpyp's) on the sample micrographs: 2 epochs of 32² px when quick, else 20
    of 64² px."""
    from napari_cryolearn.selfsup.config import SSLTrainConfig

    if "micrographs" not in outputs:
        return None
    run = Path(workdir) / "ssl"
    outputs["ssl_model"] = run / "model" / "last.ckpt"
    size = {"image_size": 32, "batch_size": 4, "max_epochs": 2} if quick else {"image_size": 64, "max_epochs": 20,
                                                                                  "batch_size": 8}
    return SSLTrainConfig(data=outputs["micrographs"], log_dir=run, **size)


def ssl_embed_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """The sample micrographs' embeddings, 2D map (PCA when quick, else UMAP) and clusters."""
    from napari_cryolearn.selfsup.config import EmbedConfig

    if "ssl_model" not in outputs:
        return None
    outputs["embeddings"] = Path(workdir) / "ssl" / "embeddings.csv"
    return EmbedConfig(model=outputs["ssl_model"], data=outputs["micrographs"], output=outputs["embeddings"],
                       map="pca" if quick else "umap")


def ae_train_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """The 4D-STEM autoencoder on the sample scan: 2 epochs of narrow blocks when quick, else 15
    epochs of 32-channel blocks."""
    from napari_cryolearn.selfsup.ae_config import AETrainConfig

    if "scan4d" not in outputs:
        return None
    run = Path(workdir) / "ae"
    outputs["ae_model"] = run / "model" / "model_best.ckpt"
    size = {"width": 8, "max_epochs": 2} if quick else {"width": 32, "max_epochs": 15}
    return AETrainConfig(data=outputs["scan4d"], log_dir=run, batch_size=32, lr=3e-3, **size)


def ae_apply_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """The sample scan's latent maps, reconstruction and PSNR/SSIM."""
    from napari_cryolearn.selfsup.ae_config import AEApplyConfig

    if "ae_model" not in outputs:
        return None
    return AEApplyConfig(model=outputs["ae_model"], data=outputs["scan4d"], output_dir=Path(workdir) / "ae" / "apply")


def annotate_init_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """An annotation project of the scaled tomogram (background, membrane) whose annotations are
    a few strokes per class on four slices, taken from the sample's labels (0.5 % of the voxels)."""
    import numpy as np

    from napari_cryolearn.annotate.round_job import AnnotateInitConfig
    from napari_cryolearn.annotate.sparse import simulated_annotations
    from napari_cryolearn.io.mrc import read_mrc, write_mrc

    folder = Path(workdir) / "annotate"
    labels = read_mrc(outputs["labels"])
    truth = np.where(np.asarray(labels.data) == 1, 2, 1).astype(np.uint8)
    strokes = write_mrc(folder / "strokes.mrc", simulated_annotations(truth, fraction=0.005),
                        voxel_size=labels.voxel_size)
    outputs["annotation_project"] = folder / "project"
    return AnnotateInitConfig(tomogram=outputs["scaled"], project=outputs["annotation_project"],
                              classes=["background", "membrane"], annotations=strokes)


def annotate_round_demo(outputs: dict[str, Path], workdir: Path, quick: bool = False):
    """One headless round on that project with a tiny network (seconds): 3 epochs of 16³ patches
    when quick, else 10 of 32³."""
    from napari_cryolearn.annotate.round_job import AnnotateRoundConfig

    size = {"epochs": 3, "patch_size": (16, 16, 16), "channels": (8, 16)} if quick else \
        {"epochs": 10, "patch_size": (32, 32, 32), "channels": (8, 16, 32)}
    return AnnotateRoundConfig(project=outputs["annotation_project"], window=(32, 32, 32), **size)
