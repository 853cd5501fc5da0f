"""Synthetic sample data: a tomogram with membranes, membrane proteins and particles, and
stacks of 2D micrographs of distinct kinds. Pure array operations, no file I/O.

The names below are imported from their modules when first used (see
:mod:`napari_cryolearn._lazy`): importing the package imports none of them.
"""

from napari_cryolearn._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "LABEL_NAMES": "synthetic",
        "MICROGRAPH_KINDS": "micrographs",
        "MicrographStack": "micrographs",
        "QUALITY_KINDS": "micrograph_quality",
        "QualityStack": "micrograph_quality",
        "make_quality_micrographs": "micrograph_quality",
        "SyntheticTomogram": "synthetic",
        "make_micrographs": "micrographs",
        "make_synthetic_tomogram": "synthetic",
    },
)
del attach
