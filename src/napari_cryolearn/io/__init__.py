"""Reading and writing the files of cryo-EM / cryo-ET: MRC volumes and STAR coordinate tables.

Axis order is (z, y, x) everywhere; voxel sizes and origins are in Angstrom, STAR coordinates in
pixels. Nothing here imports Qt or napari. The names below are imported from their modules when
first used (see :mod:`napari_cryolearn._lazy`): importing the package imports none of them.
"""

from napari_cryolearn._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "MRC_SUFFIXES": "mrc",
        "MeshContainer": "mesh_container",
        "read_mesh_container": "mesh_container",
        "write_mesh_container": "mesh_container",
        "StarPoints": "star",
        "Volume": "mrc",
        "check_in_bounds": "star",
        "create_mrc": "mrc",
        "looks_like_labels": "mrc",
        "points_in_bounds": "star",
        "read_mrc": "mrc",
        "read_star": "star",
        "read_voxel_size": "mrc",
        "write_mrc": "mrc",
        "write_star": "star",
    },
)
del attach
