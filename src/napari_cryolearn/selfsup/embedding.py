"""Operations on embeddings: 2D maps, clusters, k-nearest-neighbour accuracy.

Embeddings are ``(N, D)`` float arrays, one row per micrograph. Distances are cosine (the
encoders' embeddings are compared by direction; SimSiam's are L2-normalised). scikit-learn
and umap-learn do the work; nothing here reads or writes files.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from napari_cryolearn.engine.errors import InputError

__all__ = ["Clusters", "cluster_embeddings", "knn_accuracy", "map_2d", "normalise_rows"]


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero).

    >>> normalise_rows(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    x = np.asarray(x, np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def _check(embeddings) -> np.ndarray:
    x = np.asarray(embeddings, np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise InputError(f"expected (N, D) embeddings with N >= 1, got shape {x.shape}", field="embeddings")
    if not np.isfinite(x).all():
        raise InputError("embeddings hold NaN or infinite values", field="embeddings")
    return x


def map_2d(embeddings: np.ndarray, *, method: str = "umap", seed: int = 0) -> np.ndarray:
    """A 2D map ``(N, 2)`` of the embeddings: ``"umap"`` (cosine, 30 neighbours or fewer, min_dist
    0.1), ``"pca"`` or ``"tsne"`` (cosine; perplexity below N). Fewer than 4 rows: PCA's.

    >>> rng = np.random.default_rng(0)
    >>> map_2d(rng.normal(size=(20, 8)), method="pca").shape
    (20, 2)
    """
    x = normalise_rows(_check(embeddings))
    n = len(x)
    if method not in ("umap", "pca", "tsne"):
        raise InputError(f"unknown map {method!r}; expected umap, pca or tsne", field="map")
    if n < 4 or method == "pca":
        if n == 1:
            return np.zeros((1, 2))
        from sklearn.decomposition import PCA

        out = PCA(n_components=min(2, x.shape[1], n), random_state=seed).fit_transform(x)
        return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(n_components=2, metric="cosine", perplexity=min(30.0, (n - 1) / 3), init="pca",
                    random_state=seed).fit_transform(x)
    with warnings.catch_warnings():  # umap warns that a seed disables its parallelism: intended
        warnings.simplefilter("ignore")
        import umap

        reducer = umap.UMAP(n_components=2, n_neighbors=min(30, n - 1), min_dist=0.1, metric="cosine",
                            random_state=seed)
        return np.asarray(reducer.fit_transform(x), np.float64)


@dataclass
class Clusters:
    """k-means clusters of embeddings: ``labels`` (N,), ``k``, ``silhouette`` (cosine; NaN when
    undefined), and the silhouette of each k tried (``scores``, k → score)."""

    labels: np.ndarray
    k: int
    silhouette: float
    scores: dict[int, float]


def cluster_embeddings(embeddings: np.ndarray, *, k: int | None = None, k_range: tuple[int, int] = (2, 10),
                       seed: int = 0) -> Clusters:
    """k-means on the unit-normalised embeddings (spherical k-means, as prismpyp's faiss one).
    ``k`` given: that many clusters; else each k of ``k_range`` (inclusive, below N) is tried and
    the best silhouette score (cosine) wins.

    >>> rng = np.random.default_rng(0)
    >>> x = np.r_[rng.normal([5, 0, 0], 0.1, (10, 3)), rng.normal([0, 5, 0], 0.1, (10, 3))]
    >>> c = cluster_embeddings(x)
    >>> c.k, c.silhouette > 0.95, len(set(c.labels[:10])), len(set(c.labels[10:]))
    (2, True, 1, 1)
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    x = normalise_rows(_check(embeddings))
    n = len(x)
    if k is not None:
        if not 1 <= int(k) <= n:
            raise InputError(f"{k} clusters of {n} micrographs: choose at most {n}", field="clusters")
        candidates = [int(k)]
    else:
        lo, hi = k_range
        candidates = [c for c in range(max(2, lo), min(hi, n - 1) + 1)] or [1]
    best: Clusters | None = None
    scores: dict[int, float] = {}
    for c in candidates:
        labels = KMeans(n_clusters=c, n_init=10, random_state=seed).fit_predict(x)
        ok = 1 < len(set(labels.tolist())) < n
        score = float(silhouette_score(x, labels, metric="cosine")) if ok else float("nan")
        scores[c] = score
        if best is None or (not np.isnan(score) and (np.isnan(best.silhouette) or score > best.silhouette)):
            best = Clusters(labels.astype(np.int64), c, score, scores)
    assert best is not None
    best.scores = scores
    return best


def knn_accuracy(train: np.ndarray, train_labels, test: np.ndarray, test_labels, *, k: int = 5) -> float:
    """Accuracy of a ``k``-nearest-neighbour vote (cosine similarity) that labels each ``test`` row
    from the ``train`` rows: how well the embedding separates the classes (labels used only to
    score).

    >>> a = np.array([[1.0, 0], [0.9, 0.1], [0, 1.0], [0.1, 0.9]])
    >>> knn_accuracy(a, [0, 0, 1, 1], np.array([[1.0, 0.05], [0.0, 1.0]]), [0, 1], k=1)
    1.0
    """
    tr, te = normalise_rows(_check(train)), normalise_rows(_check(test))
    ytr, yte = np.asarray(train_labels), np.asarray(test_labels)
    k = max(1, min(int(k), len(tr)))
    sim = te @ tr.T
    nearest = np.argsort(-sim, axis=1)[:, :k]
    votes = ytr[nearest]
    predicted = np.array([np.bincount(v).argmax() if np.issubdtype(v.dtype, np.integer) and v.min() >= 0
                          else max(set(v.tolist()), key=v.tolist().count) for v in votes])
    return float(np.mean(predicted == yte))
