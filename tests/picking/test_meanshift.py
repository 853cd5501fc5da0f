"""Mean-shift picks from synthetic score blobs."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.picking.meanshift import density_clusters, mean_shift_picks, mean_shift_seeds

CENTRES = np.array([[20.0, 20.0, 0.0], [60.0, 25.0, 0.0], [40.0, 70.0, 0.0]])


def _plane(spacing=1.0, size=90.0):
    g = np.arange(0, size + 1e-9, spacing)
    yy, xx = np.meshgrid(g, g, indexing="ij")
    return np.c_[xx.ravel(), yy.ravel(), np.zeros(xx.size)]


def _scores(pts, centres):
    d = np.linalg.norm(pts[:, None, :] - centres[None], axis=2).min(axis=1)
    return np.minimum(d, 10.0)


@pytest.mark.parametrize("bandwidth", [7.0, 12.0])
def test_recovers_three_centres(bandwidth):
    pts = _plane()
    rng = np.random.default_rng(1)
    scores = _scores(pts, CENTRES) + rng.normal(0, 0.3, len(pts))
    picks = mean_shift_picks(pts, scores, bandwidth=bandwidth)
    assert picks.shape == (3, 3)
    d = np.linalg.norm(picks[:, None] - CENTRES[None], axis=2)
    assert np.all(d.min(axis=0) < bandwidth / 4)
    assert np.all(d.min(axis=1) < bandwidth / 4)


def test_units_scale_with_points():
    pts = _plane(spacing=2.0, size=180.0)
    scores = _scores(pts / 2.0, CENTRES)  # same scores, points in units twice as small
    picks = mean_shift_picks(pts, scores, bandwidth=14.0)
    d = np.linalg.norm(picks[:, None] - 2 * CENTRES[None], axis=2)
    assert picks.shape == (3, 3) and np.all(d.min(axis=0) < 14.0 / 4)


def test_nothing_under_threshold():
    pts = _plane(spacing=3.0)
    assert mean_shift_picks(pts, np.full(len(pts), 9.5), bandwidth=7).shape == (0, 3)
    assert mean_shift_picks(np.zeros((0, 3)), np.zeros(0), bandwidth=7).shape == (0, 3)


def test_too_few_seeds_is_noise():
    pts = np.array([[0.0, 0, 0], [0.5, 0, 0]])
    assert mean_shift_picks(pts, [1.0, 1.0], bandwidth=7, min_samples=5).shape == (0, 3)
    picks = mean_shift_picks(pts, [1.0, 1.0], bandwidth=7, min_samples=2)
    assert np.allclose(picks, [[0.25, 0, 0]])


def test_seeds_converge_to_weighted_mode():
    pts = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    x = mean_shift_seeds(pts, np.array([1.0, 3.0]), bandwidth=100, tol=1e-9, max_iter=1000)
    # both seeds meet at the fixed point of the kernel-weighted mean
    assert np.allclose(x[0], x[1], atol=1e-6) and 0.5 < x[0, 0] < 1.0


def test_density_clusters_border_and_noise():
    pts = np.array([[0, 0, 0], [0.3, 0, 0], [0.6, 0, 0], [1.0, 0, 0], [3, 0, 0]], dtype=float)
    labels = density_clusters(pts, eps=0.45, min_samples=3)
    assert labels.tolist() == [0, 0, 0, 0, -1]  # 0 and 1.0 are border points of the core 0.3, 0.6


def test_bad_input():
    with pytest.raises(InputError, match="scores"):
        mean_shift_picks(np.zeros((3, 3)), np.zeros(2), bandwidth=7)
    with pytest.raises(InputError, match="bandwidth"):
        mean_shift_picks(np.zeros((3, 3)), np.zeros(3), bandwidth=0)
