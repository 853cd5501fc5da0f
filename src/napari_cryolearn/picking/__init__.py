"""Membrane-protein picking on membrane meshes (MemBrain-pick's workflow, #19).

A membrane segmentation becomes one surface mesh per membrane, with the tomogram sampled along
each vertex normal; a DiffusionNet predicts every vertex's distance to the nearest protein,
and score-weighted mean shift turns low-distance vertices into picks. Modules:

- :mod:`.meshes`: membranes → meshes, normals, normal profiles (operations on arrays);
- :mod:`.targets`: per-vertex distance targets from protein positions;
- :mod:`.partitions`: overlapping geodesic patches and their stitching;
- :mod:`.operators`: Laplacian, mass, eigenpairs and gradients per partition, cached on disk;
- :mod:`.diffusionnet`: the picker network (torch);
- :mod:`.meanshift`: picks from vertex scores;
- :mod:`.evaluation`: precision, recall and F1 of picks against true positions.

The containers are :mod:`napari_cryolearn.io.mesh_container`. Nothing here imports Qt or
napari; importing the package imports none of its modules.
"""

from napari_cryolearn._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "MembraneComponent": "meshes",
        "membrane_components": "meshes",
        "mesh_from_mask": "meshes",
        "vertex_normals": "meshes",
        "normal_profiles": "meshes",
        "distance_targets": "targets",
        "assign_positions": "targets",
        "Partition": "partitions",
        "partition_mesh": "partitions",
        "stitch": "partitions",
        "MeshOperators": "operators",
        "compute_operators": "operators",
        "cached_operators": "operators",
        "operators_key": "operators",
        "DiffusionNetPicker": "diffusionnet",
        "weighted_mse": "diffusionnet",
        "mean_shift_picks": "meanshift",
        "match_picks": "evaluation",
        "pick_scores": "evaluation",
        "hit_scores": "evaluation",
    },
)
del attach
