"""napari sample data: the synthetic tomogram with its labels and picks, the micrographs, and a 4D-STEM scan."""

from __future__ import annotations

import pandas as pd

from napari_cryolearn.sample import make_micrographs, make_synthetic_tomogram
from napari_cryolearn.ui.layers import points_kwargs, units_of


def tomogram_layers(shape=(96, 128, 128), voxel_size: float = 10.0, seed: int = 0) -> list:
    """Layer data for a synthetic tomogram: Image, Labels, membrane proteins and particles as Points."""
    tomo = make_synthetic_tomogram(shape=tuple(shape), voxel_size=voxel_size, seed=seed)
    scale = (tomo.voxel_size,) * 3
    meta = {"voxel_size": scale, "origin": (0.0, 0.0, 0.0), "seed": seed}
    normals = pd.DataFrame(tomo.protein_normals, columns=["normal_z", "normal_y", "normal_x"])
    return [
        (tomo.volume, {"name": "synthetic tomogram", "scale": scale, "units": units_of(scale), "metadata": meta},
         "image"),
        (
            tomo.labels,
            {"name": "synthetic labels", "scale": scale, "units": units_of(scale), "metadata": {**meta, "label_names": tomo.label_names},
             "opacity": 0.5},
            "labels",
        ),
        (tomo.protein_coords, points_kwargs("membrane proteins", scale, features=normals), "points"),
        (tomo.particle_coords, {**points_kwargs("particles", scale), "face_color": "cyan"}, "points"),
    ]


def make_sample_tomogram() -> list:
    """The default synthetic tomogram (96×128×128 voxels of 10 Å, seed 0)."""
    return tomogram_layers()


def make_sample_micrographs() -> list:
    """A stack of 2D synthetic micrographs of a few kinds (for self-supervised learning)."""
    stack = make_micrographs()
    kinds = [stack.kind_names[k] for k in stack.kinds]
    meta = {"kinds": kinds, "pixel_size": stack.pixel_size}
    scale = (1.0, stack.pixel_size, stack.pixel_size)
    units = ("pixel", "angstrom", "angstrom")  # the first axis counts micrographs
    return [(stack.images, {"name": "synthetic micrographs", "scale": scale, "units": units, "metadata": meta}, "image")]


def make_sample_scan4d() -> list:
    """A synthetic 4D-STEM scan (32 × 32 positions of 32 × 32 pixel patterns: vacuum, amorphous
    and crystal grains of three phases) as a 4D Image layer; its phase map is in the metadata."""
    from napari_cryolearn.sample.stem4d import make_4dstem_scan

    scan = make_4dstem_scan((32, 32), (32, 32), seed=0)
    meta = {"step_nm": scan.step, "phase": scan.phase}
    return [(scan.data, {"name": "synthetic 4D-STEM scan", "scale": (scan.step, scan.step, 1.0, 1.0),
                         "units": ("nm", "nm", "pixel", "pixel"), "axis_labels": ("scan y", "scan x", "k y", "k x"),
                         "metadata": meta, "gamma": 0.3}, "image")]
