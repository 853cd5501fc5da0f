"""Precision, recall and F1 of picks against true positions.

Two ways of counting, both offered (MemBrain-pick ships no evaluation; MemBrain v1 does):

- **one-to-one** (:func:`match_picks`, :func:`pick_scores`): every true position can be matched
  by at most one pick and every pick matches at most one true position; the matching is the
  one of least total distance among the pairs closer than ``threshold`` that has the most
  pairs (the Hungarian algorithm on distances, pairs farther than the threshold forbidden).
  Two picks on one protein give one true positive and one false positive.
- **hit-based** (:func:`hit_scores`, MemBrain v1's ``utils/evaluation_metrics.py``): a true
  position is hit if any pick lies within ``threshold`` (recall), a pick is a hit if any true
  position lies within it (precision). Two picks on one protein are both hits.

Positions are ``(n, 3)`` arrays in one unit (Å, or pixels), ``threshold`` in that unit; a pair
counts when its distance is ``<= threshold``.

Empty inputs, by convention: precision is 1.0 when there are no picks (nothing was wrongly
picked) and recall is 1.0 when there is no truth (nothing was missed); F1 is
``2PR / (P + R)``, and 0.0 when P + R is 0. So no picks and no truth give P = R = F1 = 1.0, no
picks with truth give P = 1, R = 0, F1 = 0, and picks without truth give P = 0, R = 1, F1 = 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from napari_cryolearn.engine.errors import InputError

__all__ = ["match_picks", "pick_scores", "hit_scores", "combine", "threshold_sweep", "scores_from_counts"]


def _positions(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return np.zeros((0, 3))
    if a.ndim != 2 or a.shape[1] != 3:
        raise InputError(f"expected an (n, 3) array of positions, got shape {a.shape}", field=name)
    if not np.all(np.isfinite(a)):
        raise InputError("positions must be finite", field=name)
    return a


def _threshold(threshold) -> float:
    t = float(threshold)
    if not (np.isfinite(t) and t >= 0):
        raise InputError(f"must be a finite number >= 0, got {threshold!r}", field="threshold")
    return t


def scores_from_counts(tp: int, fp: int, fn: int) -> dict:
    """Precision, recall and F1 from counts, with the module's conventions for empty inputs.

    Examples
    --------
    >>> round(scores_from_counts(3, 1, 2)["f1"], 4)
    0.6667
    >>> scores_from_counts(0, 0, 0)["f1"]
    1.0
    """
    tp, fp, fn = int(tp), int(fp), int(fn)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


def match_picks(picks, truth, *, threshold: float) -> np.ndarray:
    """One-to-one matching of picks to true positions within ``threshold``.

    Parameters
    ----------
    picks, truth : array_like, shape (n, 3) and (m, 3)
        Positions in one unit.
    threshold : float
        The largest distance of a matched pair (inclusive), same unit.

    Returns
    -------
    numpy.ndarray of int, shape (k, 2)
        Rows ``(pick index, truth index)``, sorted by pick index: as many pairs as can be
        matched, and among those matchings the one of least total distance.

    Examples
    --------
    Greedy nearest matching would pair pick 0 with truth 1 (distance 0.5) and leave pick 1
    unmatched; the Hungarian matching pairs both:

    >>> picks = [[0, 0, 0], [2.5, 0, 0]]
    >>> truth = [[-1.9, 0, 0], [0.5, 0, 0]]
    >>> match_picks(picks, truth, threshold=2.0).tolist()
    [[0, 0], [1, 1]]
    """
    p = _positions(picks, "picks")
    t = _positions(truth, "truth")
    thr = _threshold(threshold)
    if len(p) == 0 or len(t) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    d = cdist(p, t)
    allowed = d <= thr
    # maximise the number of pairs first, then minimise the distance: each allowed pair earns a
    # bonus larger than any possible sum of distances, forbidden pairs cost nothing and are dropped
    big = float(d[allowed].sum()) + 1.0 if allowed.any() else 1.0
    cost = np.where(allowed, d - big, 0.0)
    rows, cols = linear_sum_assignment(cost)
    keep = allowed[rows, cols]
    pairs = np.stack([rows[keep], cols[keep]], axis=1).astype(np.int64)
    return pairs[np.argsort(pairs[:, 0], kind="stable")] if len(pairs) else pairs.reshape(0, 2)


def pick_scores(picks, truth, *, threshold: float) -> dict:
    """One-to-one precision, recall and F1 (the scores this suite prints).

    Returns
    -------
    dict
        ``tp``, ``fp`` (picks left unmatched), ``fn`` (true positions left unmatched),
        ``precision``, ``recall``, ``f1``; empty inputs as in the module's docstring.

    Examples
    --------
    Two picks on one protein, one on nothing:

    >>> s = pick_scores([[0, 0, 0], [1, 0, 0], [50, 0, 0]], [[0.5, 0, 0]], threshold=5)
    >>> s["tp"], s["fp"], s["fn"], round(s["precision"], 3), s["recall"]
    (1, 2, 0, 0.333, 1.0)
    """
    p = _positions(picks, "picks")
    t = _positions(truth, "truth")
    tp = len(match_picks(p, t, threshold=threshold))
    return scores_from_counts(tp, len(p) - tp, len(t) - tp)


def hit_scores(picks, truth, *, threshold: float) -> dict:
    """MemBrain v1's hit-based scores (not one-to-one).

    A true position is hit if any pick lies within ``threshold``; a pick is a hit if any true
    position lies within it. Recall is the fraction of true positions hit, precision the
    fraction of picks that are hits.

    Returns
    -------
    dict
        ``tp`` (true positions hit), ``fn`` (true positions missed), ``tp_picks`` (picks that
        are hits), ``fp`` (picks that are not), ``precision``, ``recall``, ``f1``.

    Examples
    --------
    >>> s = hit_scores([[0, 0, 0], [1, 0, 0], [50, 0, 0]], [[0.5, 0, 0]], threshold=5)
    >>> s["tp"], s["tp_picks"], s["fp"], round(s["precision"], 3), s["recall"]
    (1, 2, 1, 0.667, 1.0)
    """
    p = _positions(picks, "picks")
    t = _positions(truth, "truth")
    thr = _threshold(threshold)
    if len(p) and len(t):
        close = cdist(p, t) <= thr
        truth_hit = int(close.any(axis=0).sum())
        pick_hit = int(close.any(axis=1).sum())
    else:
        truth_hit = pick_hit = 0
    fp = len(p) - pick_hit
    fn = len(t) - truth_hit
    precision = pick_hit / len(p) if len(p) else 1.0
    recall = truth_hit / len(t) if len(t) else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "tp": truth_hit,
        "tp_picks": pick_hit,
        "fp": fp,
        "fn": fn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def combine(scores: Iterable[Mapping]) -> dict:
    """Overall scores of several files: counts summed, then precision, recall and F1.

    Works for both :func:`pick_scores` and :func:`hit_scores` results (for hit scores the
    precision uses the summed ``tp_picks``).

    Examples
    --------
    >>> a = pick_scores([[0, 0, 0]], [[0, 0, 0]], threshold=1)
    >>> b = pick_scores([], [[0, 0, 0]], threshold=1)
    >>> c = combine([a, b])
    >>> c["tp"], c["fn"], c["precision"], c["recall"]
    (1, 1, 1.0, 0.5)
    """
    scores = list(scores)
    tp = sum(int(s["tp"]) for s in scores)
    fp = sum(int(s["fp"]) for s in scores)
    fn = sum(int(s["fn"]) for s in scores)
    if scores and all("tp_picks" in s for s in scores):
        tpp = sum(int(s["tp_picks"]) for s in scores)
        precision = tpp / (tpp + fp) if tpp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"tp": tp, "tp_picks": tpp, "fp": fp, "fn": fn,
                "precision": precision, "recall": recall, "f1": f1}
    return scores_from_counts(tp, fp, fn)


def threshold_sweep(picks, truth, thresholds: Sequence[float], *, hit_based: bool = False) -> list[dict]:
    """Scores at each threshold (one-to-one, or MemBrain v1's hit scores with ``hit_based``).

    Returns
    -------
    list of dict
        One score dict per threshold, with a ``threshold`` key added.

    Examples
    --------
    >>> rows = threshold_sweep([[0, 0, 0]], [[3, 0, 0]], [1, 2, 3, 4])
    >>> [r["f1"] for r in rows]
    [0.0, 0.0, 1.0, 1.0]
    """
    p = _positions(picks, "picks")
    t = _positions(truth, "truth")
    fn = hit_scores if hit_based else pick_scores
    out = []
    for thr in thresholds:
        s = fn(p, t, threshold=thr)
        s["threshold"] = float(thr)
        out.append(s)
    return out
