"""The synthetic tomogram: its arrays, its ground truth and how the two agree."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.sample import LABEL_NAMES, SyntheticTomogram, make_synthetic_tomogram
from napari_cryolearn.sample.synthetic import form_image

SMALL = dict(shape=(48, 64, 64), seed=3, n_vesicles=2, n_open_membranes=1, proteins_per_vesicle=4, n_particles=6)
N_MEMBRANES = SMALL["n_vesicles"] + SMALL["n_open_membranes"]
FULL = np.ones((3, 3, 3), dtype=bool)


def _make(**kwargs) -> SyntheticTomogram:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every object asked for must find room
        return make_synthetic_tomogram(**kwargs)


@pytest.fixture(scope="module")
def tomo() -> SyntheticTomogram:
    return _make(**SMALL)


def test_arrays_have_the_documented_shapes_types_and_values(tomo):
    assert tomo.volume.shape == tomo.labels.shape == SMALL["shape"]
    assert tomo.volume.dtype == np.float32 and tomo.labels.dtype == np.uint8
    assert tomo.volume.mean() == pytest.approx(0.0, abs=1e-4)
    assert tomo.volume.std() == pytest.approx(1.0, abs=1e-4)
    assert set(np.unique(tomo.labels)) == {0, 1, 2, 3}
    assert tomo.label_names == LABEL_NAMES == {0: "background", 1: "membrane", 2: "membrane_protein", 3: "particle"}
    assert tomo.protein_coords.shape == tomo.protein_normals.shape == (N_MEMBRANES * SMALL["proteins_per_vesicle"], 3)
    assert tomo.particle_coords.shape == (SMALL["n_particles"], 3)
    assert tomo.protein_coords.dtype == tomo.particle_coords.dtype == np.float64
    assert tomo.voxel_size == 10.0 and tomo.seed == SMALL["seed"]


def test_same_seed_gives_identical_arrays_and_another_seed_differs(tomo):
    again = _make(**SMALL)
    for name in ("volume", "labels", "protein_coords", "protein_normals", "particle_coords"):
        assert np.array_equal(getattr(tomo, name), getattr(again, name)), name
    other = make_synthetic_tomogram(**{**SMALL, "seed": SMALL["seed"] + 1})
    assert not np.array_equal(tomo.labels, other.labels)
    assert not np.array_equal(tomo.volume, other.volume)


def test_dense_objects_are_dark(tomo):
    background = tomo.volume[tomo.labels == 0].mean()
    for label in (1, 2, 3):
        assert tomo.volume[tomo.labels == label].mean() < background - 0.5, LABEL_NAMES[label]


def test_labels_are_where_the_density_is():
    clean = make_synthetic_tomogram(**{**SMALL, "snr": 1e4, "missing_wedge_blur": 1.0})
    objects = clean.labels > 0
    # The darkest voxels, as many as there are object voxels, are the object voxels.
    darkest = clean.volume <= np.quantile(clean.volume, objects.mean())
    dice = 2 * np.sum(darkest & objects) / (darkest.sum() + objects.sum())
    assert dice > 0.95
    # ...and the same geometry is used whatever the SNR and blur.
    noisy = make_synthetic_tomogram(**SMALL)
    assert np.array_equal(clean.labels, noisy.labels)


def test_nothing_touches_the_faces_of_the_volume(tomo):
    lab = tomo.labels
    for face in (lab[0], lab[-1], lab[:, 0], lab[:, -1], lab[:, :, 0], lab[:, :, -1]):
        assert not face.any()


def test_membranes_are_separate_and_vesicles_are_closed(tomo):
    # Membranes with their proteins: one connected piece per membrane, even counting diagonals.
    _, n_pieces = ndimage.label(np.isin(tomo.labels, (1, 2)), structure=FULL)
    assert n_pieces == N_MEMBRANES
    # Each closed vesicle seals off a lumen from the outside.
    lumen_ids, _ = ndimage.label(np.isin(tomo.labels, (0, 3)))
    sizes = np.bincount(lumen_ids.ravel())[1:]
    assert np.sum(sizes >= 27) == 1 + SMALL["n_vesicles"]


def test_membrane_thickness_is_about_four_to_five_nanometres(tomo):
    depth = ndimage.distance_transform_edt(tomo.labels == 1)
    ridge = (depth > 0) & (depth == ndimage.maximum_filter(depth, size=3))
    thickness = np.median(2 * depth[ridge] - 1)
    assert 3.0 <= thickness <= 7.0


def test_proteins_sit_on_the_outside_of_membranes(tomo):
    lab = tomo.labels
    shape = np.asarray(lab.shape)
    proteins, _ = ndimage.label(lab == 2)
    membrane = lab == 1
    seen = set()
    for centre, normal in zip(tomo.protein_coords, tomo.protein_normals):
        assert np.all(centre >= 0) and np.all(centre <= shape - 1)
        assert np.linalg.norm(normal) == pytest.approx(1.0)
        voxel = tuple(np.round(centre).astype(int))
        assert lab[voxel] == 2
        blob = proteins == proteins[voxel]
        seen.add(proteins[voxel])
        # The blob touches membrane voxels.
        assert (ndimage.binary_dilation(blob, iterations=2) & membrane).any()

        def label_at(distance):
            p = np.clip(np.round(centre + distance * normal).astype(int), 0, shape - 1)
            return lab[tuple(p)]

        # Membrane lies inward along the normal, within the blob's length and the bilayer...
        assert any(label_at(-t) == 1 for t in np.arange(2.0, 9.0, 0.5))
        # ...and no membrane just beyond its outer end.
        assert all(label_at(t) != 1 for t in np.arange(5.0, 8.0, 0.5))
    assert len(seen) == len(tomo.protein_coords), "two protein centres on one blob"
    gaps = np.linalg.norm(tomo.protein_coords[:, None] - tomo.protein_coords[None], axis=-1)
    assert gaps[~np.eye(len(gaps), dtype=bool)].min() > 6.0


def test_particles_are_free_and_labelled(tomo):
    lab = tomo.labels
    particles, n = ndimage.label(lab == 3, structure=FULL)
    assert n == SMALL["n_particles"]
    for centre in tomo.particle_coords:
        assert lab[tuple(np.round(centre).astype(int))] == 3
    near = ndimage.binary_dilation(lab == 3, structure=FULL, iterations=1)
    assert not np.isin(lab[near], (1, 2)).any()
    extents = [np.ptp(np.argwhere(particles == i), axis=0).max() + 1 for i in range(1, n + 1)]
    assert 6 <= min(extents) and max(extents) <= 16  # ~ 8-12 nm at 10 A, merged lobes a little more


def test_default_tomogram():
    tomo = _make()
    assert tomo.volume.shape == (96, 128, 128)
    _, n_pieces = ndimage.label(np.isin(tomo.labels, (1, 2)), structure=FULL)
    assert n_pieces == 4
    assert len(tomo.protein_coords) == 24 and len(tomo.particle_coords) == 8
    background = tomo.volume[tomo.labels == 0].mean()
    assert tomo.volume[tomo.labels == 1].mean() < background - 1.0
    # Vesicle radii for this shape are 14-30 voxels: a lumen wider than 20 voxels exists.
    lumen_ids, _ = ndimage.label(np.isin(tomo.labels, (0, 3)))
    sizes = np.bincount(lumen_ids.ravel())[1:]
    assert np.sort(sizes)[-2] > (4 / 3) * np.pi * 10**3


def test_blur_is_longer_along_z_by_the_missing_wedge_factor():
    density = np.zeros((33, 33, 33), dtype=np.float32)
    density[16, 16, 16] = 1.0
    image = -form_image(density, np.random.default_rng(0), voxel_size=5.0, snr=1e6, missing_wedge_blur=2.0)
    image -= image.min()
    offsets = np.arange(33) - 16.0
    var_z = np.sum(image.sum(axis=(1, 2)) * offsets**2) / image.sum()
    var_y = np.sum(image.sum(axis=(0, 2)) * offsets**2) / image.sum()
    assert np.sqrt(var_z / var_y) == pytest.approx(2.0, rel=0.05)
    assert np.sqrt(var_y) == pytest.approx(8.0 / 5.0, rel=0.05)  # 8 A sigma at 5 A per voxel


def test_noise_level_follows_snr():
    def background_std(snr):
        t = make_synthetic_tomogram(**{**SMALL, "snr": snr})
        far = ndimage.distance_transform_edt(t.labels == 0) > 5
        return t.volume[far].std()

    assert background_std(0.25) > 1.5 * background_std(2.0)


def test_too_many_objects_warn_and_leave_a_consistent_scene():
    with pytest.warns(RuntimeWarning, match="room for only"):
        tomo = make_synthetic_tomogram(shape=(32, 32, 32), n_vesicles=6, n_particles=40)
    proteins, n = ndimage.label(tomo.labels == 2)
    assert n == len(tomo.protein_coords)
    assert all(tomo.labels[tuple(np.round(c).astype(int))] == 3 for c in tomo.particle_coords)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"shape": (8, 64, 64)}, "shape"),
        ({"shape": (64, 64)}, "shape"),
        ({"shape": (32.5, 64, 64)}, "shape"),
        ({"voxel_size": 0}, "voxel_size"),
        ({"snr": -1}, "snr"),
        ({"snr": float("nan")}, "snr"),
        ({"n_vesicles": -1}, "n_vesicles"),
        ({"seed": 1.5}, "seed"),
        ({"missing_wedge_blur": -0.1}, "missing_wedge_blur"),
    ],
)
def test_bad_parameters_raise_input_error_naming_the_field(kwargs, field):
    with pytest.raises(InputError) as info:
        make_synthetic_tomogram(**kwargs)
    assert info.value.field == field and field in str(info.value)
