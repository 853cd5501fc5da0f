"""Precision, recall and F1 of picks on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.picking.evaluation import (
    combine,
    hit_scores,
    match_picks,
    pick_scores,
    threshold_sweep,
)


def test_duplicates_one_to_one_vs_hits():
    truth = [[0, 0, 0], [100, 0, 0]]
    picks = [[1, 0, 0], [-1, 0, 0], [100, 2, 0]]  # two on the first protein
    s = pick_scores(picks, truth, threshold=5)
    assert (s["tp"], s["fp"], s["fn"]) == (2, 1, 0)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == 1.0
    assert s["f1"] == pytest.approx(0.8)
    h = hit_scores(picks, truth, threshold=5)
    assert h["precision"] == 1.0 and h["recall"] == 1.0 and h["f1"] == 1.0
    assert (h["tp"], h["tp_picks"], h["fp"], h["fn"]) == (2, 3, 0, 0)


def test_two_picks_one_protein():
    s = pick_scores([[0, 0, 0], [1, 0, 0]], [[0.5, 0, 0]], threshold=2)
    assert (s["tp"], s["fp"], s["fn"]) == (1, 1, 0)
    assert hit_scores([[0, 0, 0], [1, 0, 0]], [[0.5, 0, 0]], threshold=2)["precision"] == 1.0


def test_hungarian_beats_greedy():
    # greedy nearest: pick 0 takes truth 1 (0.5), pick 1 is left with truth 0 at 4.4 > 2
    picks = np.array([[0.0, 0, 0], [2.5, 0, 0]])
    truth = np.array([[-1.9, 0, 0], [0.5, 0, 0]])
    pairs = match_picks(picks, truth, threshold=2.0)
    assert pairs.tolist() == [[0, 0], [1, 1]]
    assert pick_scores(picks, truth, threshold=2.0)["f1"] == 1.0


def test_hungarian_prefers_smaller_total_distance():
    picks = [[0, 0, 0], [1, 0, 0]]
    truth = [[0.1, 0, 0], [1.1, 0, 0]]
    assert match_picks(picks, truth, threshold=5).tolist() == [[0, 0], [1, 1]]


def test_threshold_inclusive_and_forbidden_pairs():
    assert len(match_picks([[0, 0, 0]], [[3, 0, 0]], threshold=3)) == 1
    assert len(match_picks([[0, 0, 0]], [[3, 0, 0]], threshold=2.99)) == 0


def test_empty_files():
    e = np.zeros((0, 3))
    s = pick_scores(e, e, threshold=5)
    assert (s["precision"], s["recall"], s["f1"]) == (1.0, 1.0, 1.0)
    s = pick_scores(e, [[0, 0, 0]], threshold=5)
    assert (s["tp"], s["fp"], s["fn"], s["precision"], s["recall"], s["f1"]) == (0, 0, 1, 1.0, 0.0, 0.0)
    s = pick_scores([[0, 0, 0]], [], threshold=5)
    assert (s["tp"], s["fp"], s["fn"], s["precision"], s["recall"], s["f1"]) == (0, 1, 0, 0.0, 1.0, 0.0)
    h = hit_scores([], [[0, 0, 0]], threshold=5)
    assert (h["precision"], h["recall"], h["f1"]) == (1.0, 0.0, 0.0)
    assert match_picks([], [], threshold=1).shape == (0, 2)


def test_combine_sums_counts():
    a = pick_scores([[0, 0, 0], [10, 0, 0]], [[0, 0, 0]], threshold=1)  # 1 tp, 1 fp
    b = pick_scores([], [[0, 0, 0], [5, 0, 0]], threshold=1)  # 2 fn
    c = combine([a, b])
    assert (c["tp"], c["fp"], c["fn"]) == (1, 1, 2)
    assert c["precision"] == 0.5 and c["recall"] == pytest.approx(1 / 3)
    assert c["f1"] == pytest.approx(0.4)
    h = combine([hit_scores([[0, 0, 0], [0.5, 0, 0]], [[0, 0, 0]], threshold=1),
                 hit_scores([[9, 9, 9]], [[0, 0, 0]], threshold=1)])
    assert h["tp_picks"] == 2 and h["fp"] == 1 and h["precision"] == pytest.approx(2 / 3)
    assert h["recall"] == 0.5
    assert combine([])["f1"] == 1.0


def test_threshold_sweep_monotone_recall():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 100, (20, 3))
    picks = truth + rng.normal(0, 2, truth.shape)
    rows = threshold_sweep(picks, truth, [0.5, 2, 5, 10, 20])
    rec = [r["recall"] for r in rows]
    assert rec == sorted(rec) and rec[-1] == 1.0
    assert [r["threshold"] for r in rows] == [0.5, 2.0, 5.0, 10.0, 20.0]
    hrows = threshold_sweep(picks, truth, [20], hit_based=True)
    assert hrows[0]["f1"] == 1.0


def test_bad_input():
    with pytest.raises(InputError, match="picks"):
        pick_scores(np.zeros((3, 2)), np.zeros((1, 3)), threshold=1)
    with pytest.raises(InputError, match="threshold"):
        pick_scores(np.zeros((1, 3)), np.zeros((1, 3)), threshold=-1)
