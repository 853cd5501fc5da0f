"""Preparation stages: label filtering, masks, intensity scaling, distance maps, patches.

The patch geometry (grids, extraction, reassembly) is :mod:`napari_cryolearn.io.patch_grid`:
patch stores need it too, and io sits below the stages.

Operations are pure functions on numpy arrays; the ``*_job`` modules read and write files.
Nothing here imports torch, Qt or napari.
"""

from napari_cryolearn.prep.filtering import filter_labels  # noqa: F401
from napari_cryolearn.prep.masks import spheres_mask, threshold_mask  # noqa: F401
from napari_cryolearn.prep.scaling import percentiles, scale_intensity  # noqa: F401
from napari_cryolearn.prep.distances import signed_distance_maps, tube_skeleton  # noqa: F401
