"""Preparation stages: label filtering, masks, intensity scaling, distance maps, patches.

The patch geometry (grids, extraction, reassembly) is :mod:`napari_cryolearn.io.patch_grid`:
patch stores need it too, and io sits below the stages.

Operations are pure functions on numpy arrays; the ``*_job`` modules read and write files.
Nothing here imports torch, Qt or napari. The names below are imported from their modules when
first used (see :mod:`napari_cryolearn._lazy`): importing the package imports none of them.
"""

from napari_cryolearn._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "filter_labels": "filtering",
        "spheres_mask": "masks",
        "threshold_mask": "masks",
        "percentiles": "scaling",
        "scale_intensity": "scaling",
        "signed_distance_maps": "distances",
        "tube_skeleton": "distances",
    },
)
del attach
