"""Synthetic sample data: a tomogram with membranes, membrane proteins and particles, and
stacks of 2D micrographs of distinct kinds. Pure array operations, no file I/O."""

from napari_cryolearn.sample.micrographs import MICROGRAPH_KINDS, MicrographStack, make_micrographs
from napari_cryolearn.sample.synthetic import LABEL_NAMES, SyntheticTomogram, make_synthetic_tomogram

__all__ = [
    "LABEL_NAMES",
    "MICROGRAPH_KINDS",
    "MicrographStack",
    "SyntheticTomogram",
    "make_micrographs",
    "make_synthetic_tomogram",
]
