"""Reading and writing the files of cryo-EM / cryo-ET: MRC volumes and STAR coordinate tables.

Axis order is (z, y, x) everywhere; voxel sizes and origins are in Angstrom, STAR coordinates in
pixels. Nothing here imports Qt or napari.
"""

from napari_cryolearn.io.mrc import (
    MRC_SUFFIXES,
    Volume,
    create_mrc,
    looks_like_labels,
    read_mrc,
    read_voxel_size,
    write_mrc,
)
from napari_cryolearn.io.star import StarPoints, check_in_bounds, points_in_bounds, read_star, write_star

__all__ = [
    "MRC_SUFFIXES",
    "StarPoints",
    "Volume",
    "check_in_bounds",
    "create_mrc",
    "looks_like_labels",
    "points_in_bounds",
    "read_mrc",
    "read_star",
    "read_voxel_size",
    "write_mrc",
    "write_star",
]
