"""Preparation stages: label filtering, masks, intensity scaling, distance maps, patches.

Operations are pure functions on numpy arrays; the ``*_job`` modules read and write files.
Nothing here imports torch, Qt or napari.
"""

from napari_cryolearn.prep.filtering import filter_labels  # noqa: F401
from napari_cryolearn.prep.masks import spheres_mask, threshold_mask  # noqa: F401
from napari_cryolearn.prep.scaling import percentiles, scale_intensity  # noqa: F401

# Distance-map and patch exports are added below by the agent that writes those modules.
from napari_cryolearn.prep.distances import signed_distance_maps, tube_skeleton  # noqa: F401
from napari_cryolearn.prep.patches import (  # noqa: F401
    cryosiam_grid,
    extract_patches,
    keep_nonbackground,
    patch_grid,
    reassemble,
)
