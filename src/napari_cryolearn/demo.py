"""``cryolearn demo``: each stage's config on the synthetic sample data, in pipeline order.

Each builder takes the paths written so far (``outputs``: role → Path), adds the paths its
stage will write, and returns the stage's config. Sizes are chosen so that the whole demo runs
in a few minutes on a laptop CPU.
"""

from __future__ import annotations

from pathlib import Path


def _prep(workdir: Path) -> Path:
    return Path(workdir) / "prep"


def filter_demo(outputs: dict[str, Path], workdir: Path):
    """Membranes with their proteins as one binary mask (labels 1 and 2 → 1)."""
    from napari_cryolearn.prep.filter_job import FilterLabelsConfig

    outputs["membrane_mask"] = _prep(workdir) / "membrane_mask.mrc"
    return FilterLabelsConfig(input=outputs["labels"], output=outputs["membrane_mask"], keep=[1, 2], binary=True)


def masks_demo(outputs: dict[str, Path], workdir: Path):
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


def scale_demo(outputs: dict[str, Path], workdir: Path):
    """The tomogram inverted (dense = bright), clipped at 0.1/99.9 percentiles, in [0, 1]."""
    from napari_cryolearn.prep.scale_job import ScaleConfig

    outputs["scaled"] = _prep(workdir) / "tomogram_scaled.mrc"
    return ScaleConfig(input=outputs["tomogram"], output=outputs["scaled"], invert=True)


def threshold_demo(outputs: dict[str, Path], workdir: Path):
    """Dense objects of the scaled tomogram: above 0.75, pieces of at least 20 voxels."""
    from napari_cryolearn.prep.masks_job import MaskFromThresholdConfig

    outputs["dense_mask"] = _prep(workdir) / "dense_mask.mrc"
    return MaskFromThresholdConfig(input=outputs["scaled"], output=outputs["dense_mask"], threshold=0.75, min_size=20)


def distances_demo(outputs: dict[str, Path], workdir: Path):
    """Signed distance maps of the four sample classes."""
    from napari_cryolearn.prep.distance_job import DistanceMapConfig

    outputs["distances"] = _prep(workdir) / "labels_distances.npy"
    return DistanceMapConfig(input=outputs["labels"], output=outputs["distances"], n_classes=4)


def patches_demo(outputs: dict[str, Path], workdir: Path):
    """48³ patches with 25 % overlap of the scaled tomogram, labels and distance maps."""
    from napari_cryolearn.prep.patch_job import PatchesConfig

    outputs["patches"] = Path(workdir) / "patches" / "tomogram.zarr"
    return PatchesConfig(
        image=outputs["scaled"],
        labels=outputs["labels"],
        distances=outputs["distances"],
        output=outputs["patches"],
        patch_size=(48, 48, 48),
        overlap=0.25,
    )
