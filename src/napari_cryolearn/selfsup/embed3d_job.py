"""A label-free first look at a tomogram (``ssl.embed3d``): per-voxel embeddings of a pretrained
DenseSimSiam reduced to 3 PCA components (RGB) and clustered by k-means.

The model loads strictly (:func:`~napari_cryolearn.selfsup.pretrain3d_module.load_dense_model`:
a segmentation model or another network is refused, naming the file), the tomogram must be a
3D MRC free of NaN and infinite values, and every output path is checked, before anything is
written. The tomogram is embedded window by window (:func:`~napari_cryolearn.models.
sliding_window.iter_sliding_window`, the embeddings blended, then L2-normalised per voxel), twice:

1. a sample of ``fit_voxels`` voxels (spread over the slabs as they are finished) fits the PCA
   (3 components, each scaled to [0, 1] between its 1st and 99th percentile over the sample) and
   the spherical k-means (clusters numbered by size, 1 the largest);
2. each finished slab is projected and assigned, and written into memory-mapped MRC files.

Memory is one window-deep slab of embeddings, whatever the size of the tomogram. Outputs, in
``output_dir``, with the tomogram's voxel size and origin: ``<name>_pca_{r,g,b}.mrc`` (float32),
``<name>_clusters.mrc`` (uint8, 1..k) and ``<name>_embed3d.json`` (the model, k, explained
variance, cluster sizes).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Generator
from pathlib import Path

import numpy as np

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import JobResult
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.selfsup.pretrain3d_config import Embed3DConfig

STAGE = "ssl.embed3d"
CHANNELS = ("r", "g", "b")

__all__ = ["Embed3DFit", "embed3d_job", "output_paths"]


def output_paths(config: Embed3DConfig) -> dict[str, Path]:
    """``pca_r``, ``pca_g``, ``pca_b``, ``clusters``, ``summary`` → the files written."""
    name = Path(config.tomogram).name.split(".")[0]
    out = Path(config.output_dir)
    paths = {f"pca_{c}": out / f"{name}_pca_{c}.mrc" for c in CHANNELS}
    paths["clusters"] = out / f"{name}_clusters.mrc"
    paths["summary"] = out / f"{name}_embed3d.json"
    return paths


class _Discard:
    """A labels sink that keeps nothing (the embeddings' argmax is not wanted)."""

    def __setitem__(self, key, value) -> None:
        pass


def _unit(slab: np.ndarray) -> np.ndarray:
    """(D, …) embeddings → (n, D) rows, L2-normalised."""
    rows = slab.reshape(slab.shape[0], -1).T
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


class _Sampler:
    """Pass 1: keeps a random sample of voxels of every finished slab (about ``n`` in all)."""

    def __init__(self, n: int, depth: int, rng: np.random.Generator) -> None:
        self.n, self.depth, self.rng = n, depth, rng
        self.rows: list[np.ndarray] = []

    def __setitem__(self, key, value: np.ndarray) -> None:
        rows = _unit(value)
        take = min(len(rows), max(1, int(np.ceil(self.n * value.shape[1] / self.depth))))
        self.rows.append(rows[self.rng.choice(len(rows), take, replace=False)])


class Embed3DFit:
    """The PCA (3 components, scaled to [0, 1]) and k-means fitted on sampled unit embeddings."""

    def __init__(self, rows: np.ndarray, k: int, seed: int) -> None:
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA

        self.pca = PCA(n_components=min(3, rows.shape[1]), random_state=seed).fit(rows)
        comps = self.pca.transform(rows)
        self.lo = np.percentile(comps, 1, axis=0)
        self.hi = np.percentile(comps, 99, axis=0)
        self.kmeans = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(rows)
        sizes = np.bincount(self.kmeans.labels_, minlength=k)
        order = np.argsort(-sizes, kind="stable")
        self.rank = np.empty(k, np.int64)
        self.rank[order] = np.arange(k)  # cluster → 0 the largest
        self.sizes = sizes[order]

    def rgb(self, rows: np.ndarray) -> np.ndarray:
        """(n, 3) in [0, 1]."""
        comps = self.pca.transform(rows)
        out = np.clip((comps - self.lo) / np.maximum(self.hi - self.lo, 1e-12), 0, 1)
        if out.shape[1] < 3:
            out = np.pad(out, ((0, 0), (0, 3 - out.shape[1])))
        return out.astype(np.float32)

    def labels(self, rows: np.ndarray) -> np.ndarray:
        """(n,) uint8 clusters 1..k (1 the largest in the sample)."""
        return (self.rank[self.kmeans.predict(rows)] + 1).astype(np.uint8)


class _Writer:
    """Pass 2: projects and clusters every finished slab into the output memory maps."""

    def __init__(self, fit: Embed3DFit, rgb: list[np.ndarray], labels: np.ndarray) -> None:
        self.fit, self.rgb, self.labels = fit, rgb, labels

    def __setitem__(self, key, value: np.ndarray) -> None:
        zs = key[1]
        rows = _unit(value)
        shape = value.shape[1:]
        colours = self.fit.rgb(rows)
        for c in range(3):
            self.rgb[c][zs] = colours[:, c].reshape(shape)
        self.labels[zs] = self.fit.labels(rows).reshape(shape)


class _Embedder:
    """The network as :func:`iter_sliding_window` wants it: (N, 1, …) → per-voxel unit embeddings."""

    def __init__(self, model) -> None:
        self.model = model

    def __call__(self, x):
        return self.model.embed(x)


def _intensity(hp_config: dict):
    from napari_cryolearn.segmentation.config import IntensityConfig

    ours = hp_config.get("cryolearn")
    if isinstance(ours, dict) and isinstance(ours.get("intensity"), dict):
        return IntensityConfig.from_dict(ours["intensity"])
    data = ((hp_config.get("parameters") or {}).get("data") or {})
    return IntensityConfig.from_dict({k: data.get(k) for k in ("min", "max", "mean", "std")})


def _window(config: Embed3DConfig, hp_config: dict, shape, divisor: int) -> tuple[int, int, int]:
    from napari_cryolearn.models.sliding_window import fit_window

    window = config.window
    if window is None:
        data = ((hp_config.get("parameters") or {}).get("data") or {})
        window = data.get("view_size") or (64, 64, 64)
        window = [window] * 3 if isinstance(window, int) else window
    if any(int(w) % divisor for w in window):
        raise InputError(f"window {tuple(window)} must be a multiple of {divisor} along every axis", field="window")
    return fit_window(window, shape, divisor=divisor)


def embed3d_job(config: Embed3DConfig, stop: StopFlag | None = None) -> Generator[Progress, None, JobResult]:
    """Embed (see the module docstring). Returns a :class:`JobResult` with outputs ``pca_r``,
    ``pca_g``, ``pca_b``, ``clusters``, ``summary`` and metrics ``clusters``,
    ``explained_variance``; a stopped job writes nothing."""
    from napari_cryolearn.engine.atomic import atomic_path
    from napari_cryolearn.engine.lightning import torch_device
    from napari_cryolearn.engine.outputs import check_output
    from napari_cryolearn.io.mrc import create_mrc, read_mrc_3d
    from napari_cryolearn.models.sliding_window import iter_sliding_window
    from napari_cryolearn.selfsup.pretrain3d_job import _check_finite_slabs
    from napari_cryolearn.selfsup.pretrain3d_module import load_dense_model

    out_dir = Path(config.output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("is a file; expected a folder", path=out_dir, field="output_dir")
    targets = output_paths(config)
    for target in targets.values():
        check_output([config.tomogram, config.model], target, config.overwrite, field="output_dir")
    device = torch_device(config.device)
    model, hp_config = load_dense_model(config.model, device=device)
    vol = read_mrc_3d(config.tomogram, field="tomogram", what="tomogram")
    _check_finite_slabs(vol.data, Path(config.tomogram), "tomogram")
    shape = tuple(int(s) for s in vol.data.shape)
    if min(shape) < model.size_divisor:
        raise InputError(f"the tomogram {shape} is smaller than the network's {model.size_divisor} voxels along an "
                         "axis", path=config.tomogram, field="tomogram")
    window = _window(config, hp_config, shape, model.size_divisor)
    intensity = _intensity(hp_config)
    embedder = _Embedder(model)
    common = dict(num_classes=model.dense_dim, overlap=config.overlap, batch_size=config.batch_size, device=device,
                  preprocess=intensity.apply, labels_out=_Discard(), raw=True, stop=stop, stage=STAGE)
    rng = np.random.default_rng(config.seed)
    sampler = _Sampler(config.fit_voxels, shape[0], rng)
    yield Progress(0, None, f"embedding {config.tomogram} ({shape}) in windows of {window}: sampling voxels", STAGE)
    done = yield from iter_sliding_window(embedder, vol.data, window, probabilities_out=sampler, **common)
    if done is None:
        return JobResult(stopped=True)
    rows = np.concatenate(sampler.rows)
    if len(rows) < config.clusters:
        raise InputError(f"{len(rows)} voxels sampled, fewer than {config.clusters} clusters", field="clusters")
    yield Progress(0, None, f"fitting PCA and {config.clusters}-means on {len(rows)} voxels", STAGE)
    fit = Embed3DFit(rows, config.clusters, config.seed)
    geometry = dict(voxel_size=vol.voxel_size, origin=vol.origin, overwrite=config.overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.ExitStack() as stack:
            rgb = [stack.enter_context(create_mrc(targets[f"pca_{c}"], shape, np.float32, **geometry))
                   for c in CHANNELS]
            labels = stack.enter_context(create_mrc(targets["clusters"], shape, np.uint8, **geometry))
            done = yield from iter_sliding_window(embedder, vol.data, window, probabilities_out=_Writer(fit, rgb, labels),
                                                  **common)
            if done is None:
                raise _Stopped
            summary = {"model": str(config.model), "tomogram": str(config.tomogram), "clusters": config.clusters,
                       "window": list(window), "fit_voxels": int(len(rows)),
                       "explained_variance_ratio": [float(v) for v in fit.pca.explained_variance_ratio_],
                       "cluster_fractions": [float(s) / float(fit.sizes.sum()) for s in fit.sizes],
                       "voxel_size": list(vol.voxel_size)}
            with atomic_path(targets["summary"], overwrite=config.overwrite) as tmp:
                Path(tmp).write_text(json.dumps(summary, indent=1))
    except _Stopped:
        return JobResult(stopped=True)
    metrics = {"clusters": config.clusters, "explained_variance": float(sum(summary["explained_variance_ratio"]))}
    yield Progress(1, 1, f"{config.clusters} clusters; the 3 components explain "
                   f"{100 * metrics['explained_variance']:.0f} % of the variance", STAGE, metrics)
    return JobResult(dict(targets), metrics=metrics)


class _Stopped(Exception):
    """Raised inside the writers to discard their temporaries."""
