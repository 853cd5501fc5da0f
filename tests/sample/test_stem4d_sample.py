"""The synthetic 4D-STEM scan: shapes, labels, physics that the phases differ by, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.sample.stem4d import make_4dstem_scan


def test_shapes_labels_and_orientation():
    scan = make_4dstem_scan((16, 12), (20, 24), n_grains=8, phases=2, seed=3)
    assert scan.data.shape == (16, 12, 20, 24) and scan.data.dtype == np.float32
    assert scan.phase.shape == (16, 12) and set(np.unique(scan.phase)) <= {0, 1, 2, 3}
    assert {0, 1}.issubset(np.unique(scan.phase)) and scan.n_phases == 4
    crystal = scan.phase >= 2
    assert np.isnan(scan.orientation[~crystal]).all() and np.isfinite(scan.orientation[crystal]).all()
    assert (scan.grain[scan.phase == 0] == -1).all() and scan.step > 0
    assert (scan.data >= 0).all() and np.array_equal(scan.data, np.round(scan.data))  # counts


def test_same_seed_same_scan_and_noise_differs_by_seed():
    a = make_4dstem_scan((8, 8), (16, 16), seed=1)
    b = make_4dstem_scan((8, 8), (16, 16), seed=1)
    c = make_4dstem_scan((8, 8), (16, 16), seed=2)
    assert np.array_equal(a.data, b.data) and not np.array_equal(a.data, c.data)


def test_physics_vacuum_is_the_direct_beam_and_crystals_scatter_to_discs():
    scan = make_4dstem_scan((24, 24), (32, 32), n_grains=10, seed=0, dose=1e7)
    k = np.hypot(*np.mgrid[-15.5:16.5, -15.5:16.5])
    centre, outside = k < 2, k > 5
    mean = {p: scan.data[scan.phase == p].mean(0) for p in np.unique(scan.phase)}
    frac_out = {p: m[outside].sum() / m.sum() for p, m in mean.items()}
    assert frac_out[0] < frac_out[1] and all(frac_out[0] < frac_out[p] for p in mean if p >= 2)
    assert mean[0][centre].sum() > mean[1][centre].sum()  # the specimen attenuates the beam
    # Bragg discs: a crystalline grain's off-centre intensity is peaked, amorphous rings are smooth
    def peakiness(g):
        ring = scan.data[scan.grain == g].mean(0)[outside]
        return ring.max() / np.median(ring)

    grains = {g: scan.phase[scan.grain == g][0] for g in np.unique(scan.grain[scan.grain >= 0])}
    amorphous = max(peakiness(g) for g, p in grains.items() if p == 1)
    assert all(peakiness(g) > 1.3 * amorphous for g, p in grains.items() if p >= 2)
    # the dose sets the counts of a vacuum pattern
    assert scan.data[scan.phase == 0].sum(axis=(1, 2)).mean() == pytest.approx(1e7, rel=0.1)


def test_orientation_rotates_the_bragg_discs():
    scan = make_4dstem_scan((32, 32), (32, 32), n_grains=16, phases=1, seed=4)
    crystal = scan.phase == 2
    angles = np.unique(scan.orientation[crystal])
    assert len(angles) >= 2
    a, b = (scan.data[crystal & (scan.orientation == t)].mean(0) for t in angles[:2])
    corr = np.corrcoef(np.log(a).ravel(), np.log(b).ravel())[0, 1]
    assert corr < 0.99  # same phase, another orientation: another pattern


@pytest.mark.parametrize("kwargs", [dict(detector_shape=(2, 8)), dict(dose=0.0), dict(phases=0)])
def test_bad_arguments(kwargs):
    with pytest.raises(InputError):
        make_4dstem_scan(**{"scan_shape": (4, 4), **kwargs})
