"""Training data: patch stores or in-memory arrays → augmented, seeded samples.

A *source* is anything with ``len(src)`` and ``src[i] -> dict(image=(pz, py, px) float,
labels=(pz, py, px) int, distances=(C, pz, py, px) float or None, ...)``: a patch store
(:func:`napari_cryolearn.io.patch_store.open_patch_store`) or an :class:`ArrayPatchSource`.

Every sample's augmentation is seeded from (seed, epoch, index), so a resumed run sees the
same samples as an uninterrupted one, whatever the number of loader workers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.io.patch_grid import patch_grid
from napari_cryolearn.models.augment import ANY_FOREGROUND, CROP_CLASS
from napari_cryolearn.segmentation.config import IntensityConfig

Item = tuple[int, int]  # (source index, patch index)


def open_stores(paths: Sequence[str | os.PathLike], field: str = "patch_stores") -> list[Any]:
    """Open patch stores; a missing or empty one raises :class:`InputError` naming it."""
    from napari_cryolearn.io.patch_store import open_patch_store

    stores = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise InputError("patch store not found", path=p, field=field)
        try:
            store = open_patch_store(p)
        except InputError:
            raise
        except Exception as err:  # noqa: BLE001  (a broken store is the user's input)
            raise InputError(f"not a readable patch store ({err})", path=p, field=field) from None
        if len(store) == 0:
            raise InputError("patch store holds no patches", path=p, field=field)
        stores.append(store)
    return stores


def check_sources(
    sources: Sequence[Any],
    names: Sequence[str],
    num_classes: int,
    ignore_index: int,
    need_distances: bool,
    in_channels: int = 1,
    need_foreground: bool = False,
    counts: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Read every patch's labels once and check them against the network; return, per source,
    an (N, num_classes) bool array: which classes each patch holds (column 0: background;
    ``flags[:, 1:].any(1)`` says whether a patch holds foreground). ``counts`` (optional, a
    (num_classes,) array) gets the labelled voxels of each class added to it.

    Raises :class:`InputError` (naming the store, the patch and the array) when a patch has no
    labels, when its image, labels or distances hold NaN or infinite values (checked by the
    patch's min and max, which NaN and ±inf always reach), when a label is ≥ ``num_classes`` (and is not
    ``ignore_index``), when shapes disagree, when distances are needed but missing or have the
    wrong number of channels, when no patch has any annotation, or (``need_foreground``) when
    every annotated voxel is background (0).
    """
    annotated = foreground = 0
    flags: list[np.ndarray] = []
    for src, name in zip(sources, names):
        flags.append(np.zeros((len(src), num_classes), dtype=bool))
        for i in range(len(src)):
            s = src[i]
            if s.get("labels") is None:
                raise InputError(f"patch {i}: no labels (a store made without labels cannot train)",
                                 path=name, field="labels")
            lab = np.asarray(s["labels"])
            img = np.asarray(s["image"])
            _check_finite(img, i, "image", name)
            _check_finite(lab, i, "labels", name)
            if img.shape != lab.shape:
                raise InputError(f"patch {i}: image shape {img.shape} differs from labels {lab.shape}",
                                 path=name, field="labels")
            if img.ndim != 3 and in_channels == 1:
                raise InputError(f"patch {i}: expected a 3D image (z, y, x), got shape {img.shape}",
                                 path=name, field="image")
            if counts is not None:
                vals, n = np.unique(lab, return_counts=True)
                keep = vals != ignore_index
                if keep.any() and (vals[keep] >= 0).all() and vals[keep].max() < num_classes:
                    np.add.at(counts, vals[keep].astype(np.int64), n[keep])
            else:
                vals = np.unique(lab)
            bad = vals[(vals != ignore_index) & ((vals >= num_classes) | (vals < 0))]
            if bad.size:
                raise InputError(
                    f"patch {i}: label {int(bad[0])} but out_channels is {num_classes} "
                    f"(expected 0..{num_classes - 1}, or {ignore_index} for unannotated voxels)",
                    path=name, field="labels",
                )
            present = vals[vals != ignore_index].astype(np.int64)
            annotated += int(present.size > 0)
            flags[-1][i, present] = True
            foreground += int(flags[-1][i, 1:].any())
            if need_distances:
                dist = s.get("distances")
                if dist is None:
                    raise InputError(f"patch {i}: no distance map, but distance_prediction is on",
                                     path=name, field="distances")
                dist = np.asarray(dist)
                if dist.shape != (num_classes, *lab.shape):
                    raise InputError(
                        f"patch {i}: distances shape {dist.shape}, expected {(num_classes, *lab.shape)}",
                        path=name, field="distances",
                    )
                _check_finite(dist, i, "distances", name)
    if annotated == 0:
        raise InputError("no patch has any annotated voxel", path=names[0] if names else None, field="labels")
    if need_foreground and foreground == 0:
        raise InputError("the labels hold only background (0): nothing to learn (empty label volume?)",
                         path=", ".join(names) or None, field="labels")
    return flags


def _check_finite(a: np.ndarray, i: int, field: str, name: str) -> None:
    """InputError naming store ``name``, patch ``i`` and ``field`` when ``a`` holds NaN or ±inf.

    One min and one max per patch (no temporary array of the patch's size): NaN propagates
    into both, and ±inf is the min or the max.
    """
    if a.size == 0 or a.dtype.kind not in "fc":
        return
    finite = np.isfinite(a).all() if a.dtype.kind == "c" else np.isfinite(a.min()) and np.isfinite(a.max())
    if not finite:
        raise InputError(f"patch {i}: the {field} hold NaN or infinite values" if field in ("labels", "distances")
                         else f"patch {i}: the {field} holds NaN or infinite values", path=name, field=field)


def split_items(
    sizes: Sequence[int],
    val_sizes: Sequence[int] | None = None,
    ratio: float = 0.1,
    seed: int = 0,
) -> tuple[list[Item], list[Item]]:
    """Split patches into training and validation items.

    ``sizes``: patches per training source. ``val_sizes``: patches per explicit validation
    source (numbered after the training sources). Without those: several sources → a
    ``ratio`` of whole sources (at least one, never all); one source → a ``ratio`` of its
    patches (at least one when ratio > 0 and there are two or more patches).
    """
    rng = np.random.default_rng(seed)
    if val_sizes is not None:
        train = [(s, i) for s, n in enumerate(sizes) for i in range(n)]
        off = len(sizes)
        val = [(off + s, i) for s, n in enumerate(val_sizes) for i in range(n)]
        return train, val
    if ratio <= 0:
        return [(s, i) for s, n in enumerate(sizes) for i in range(n)], []
    if len(sizes) > 1:
        n_val = min(max(1, round(ratio * len(sizes))), len(sizes) - 1)
        val_src = set(rng.permutation(len(sizes))[:n_val].tolist())
        train = [(s, i) for s, n in enumerate(sizes) if s not in val_src for i in range(n)]
        val = [(s, i) for s, n in enumerate(sizes) if s in val_src for i in range(n)]
        return train, val
    n = sizes[0]
    if n < 2:
        return [(0, i) for i in range(n)], []
    n_val = min(max(1, round(ratio * n)), n - 1)
    perm = rng.permutation(n)
    val_idx = set(perm[:n_val].tolist())
    return [(0, i) for i in range(n) if i not in val_idx], [(0, i) for i in sorted(val_idx)]


class ArrayPatchSource:
    """Patches cut from in-memory volumes (for the annotate → train loop).

    Parameters
    ----------
    images, labels:
        Volumes (Z, Y, X), pairwise of equal shape; labels hold ``ignore_index`` where nothing
        was annotated.
    patch_size:
        Patch shape (z, y, x); a volume smaller than it gives one smaller patch.
    overlap:
        Fraction shared by neighbouring patches; the grid always reaches the far edge.
    distances:
        Optional (C, Z, Y, X) signed distance maps, one per volume.
    ignore_index:
        Patches with no annotated voxel are skipped.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        patch_size: Sequence[int],
        overlap: float = 0.5,
        distances: Sequence[np.ndarray] | None = None,
        ignore_index: int = 255,
    ) -> None:
        if len(images) != len(labels):
            raise InputError(f"{len(images)} images but {len(labels)} label volumes", field="labels")
        self.images = [np.asarray(v) for v in images]
        self.labels = [np.asarray(v) for v in labels]
        self.distances = None if distances is None else [np.asarray(d) for d in distances]
        self.patches: list[tuple[int, tuple[slice, ...]]] = []
        for v, (img, lab) in enumerate(zip(self.images, self.labels)):
            if img.shape != lab.shape or img.ndim != 3:
                raise InputError(f"volume {v}: image {img.shape} and labels {lab.shape} must be equal 3D shapes",
                                 field="labels")
            sizes = tuple(min(int(p), s) for p, s in zip(patch_size, img.shape))
            for origin in patch_grid(img.shape, sizes, overlap=float(overlap)).tolist():
                sl = tuple(slice(a, a + p) for a, p in zip(origin, sizes))
                if (lab[sl] != ignore_index).any():
                    self.patches.append((v, sl))

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, i: int) -> dict:
        v, sl = self.patches[i]
        dist = None if self.distances is None else self.distances[v][(slice(None), *sl)]
        return {"image": self.images[v][sl], "labels": self.labels[v][sl], "distances": dist,
                "origin": tuple(s.start for s in sl)}


class SegmentationDataset(Dataset):
    """Samples ``items`` of ``sources`` through ``transform``.

    Indexing with an int, with ``(index, epoch)`` (what :class:`EpochSampler` yields) or with
    ``(index, epoch, slot, class)`` (a patch the sampler drew for place ``slot`` of the epoch for
    its foreground class ``class``: the crop is centred on a voxel of it); the transform is
    re-seeded from ``(seed, epoch, index)`` (and ``slot``) each time,
    so a patch drawn twice in one epoch is augmented differently. Returns a dict of
    tensors: image (1, Z, Y, X), labels (Z, Y, X) int64, distances (C, Z, Y, X) if used.
    """

    def __init__(
        self,
        sources: Sequence[Any],
        items: Sequence[Item],
        transform,
        intensity: IntensityConfig | None = None,
        seed: int = 0,
        with_distances: bool = False,
    ) -> None:
        self.sources = list(sources)
        self.items = list(items)
        self.transform = transform
        self.intensity = intensity or IntensityConfig()
        self.seed = seed
        self.with_distances = with_distances

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, epoch = (key[0], key[1]) if isinstance(key, tuple) else (key, 0)
        slot = key[2] if isinstance(key, tuple) and len(key) > 2 else None
        src, i = self.items[index]
        s = self.sources[src][i]
        image = self.intensity.apply(np.asarray(s["image"], dtype=np.float32))
        sample = {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None],
            "labels": torch.from_numpy(np.asarray(s["labels"]).astype(np.int64)),
        }
        if self.with_distances:
            sample["distances"] = torch.from_numpy(np.asarray(s["distances"], dtype=np.float32))
        if slot is not None:  # drawn for its foreground: the crop is centred on a voxel of this class
            sample[CROP_CLASS] = int(key[3]) if len(key) > 3 else ANY_FOREGROUND
        if hasattr(self.transform, "set_random_state"):
            seed = _mix(self.seed, epoch, index)
            if slot is not None:
                seed = _mix(seed, epoch, slot + 1)
            self.transform.set_random_state(seed=seed)
        out = self.transform(sample)
        out.pop(CROP_CLASS, None)  # a pipeline without a crop step
        return out


def _mix(seed: int, epoch: int, index: int) -> int:
    return int((seed * 1_000_003 + epoch * 7_919 + index * 104_729 + 12_345) % (2**32 - 1))


class EpochSampler(Sampler):
    """Yields ``(index, epoch)``; shuffled per epoch from ``seed``; sharded across DDP ranks.

    Foreground oversampling (nnU-Net's): with ``foreground`` and ``foreground_probability``
    p > 0, each place of the epoch's order is, with probability p, given to a patch drawn for
    its foreground, yielded as ``(index, epoch, place, class)``; the epoch keeps its length.
    ``foreground`` is either one bool per index (the patch holds a foreground label; class
    :data:`~napari_cryolearn.models.augment.ANY_FOREGROUND`) or an (N, C) bool array of the
    classes each patch holds (:func:`check_sources`): then a foreground class is drawn first,
    each class that occurs equally likely, and a patch among those holding it, so a class found
    in few patches is drawn as often as one found in all. The dataset centres the crop on a
    voxel of that class. Which places, classes and patches follow from (seed, epoch), so a
    resumed run draws the same. p = 0 (the default), or no foreground patch: the plain
    shuffled order.

    Lightning calls :meth:`set_epoch` before each epoch. Under DDP every rank takes every
    ``world``-th index of the same permutation (padded to equal length), so ranks see
    different samples and the same number of batches. :meth:`resume` makes the iteration of
    one epoch begin after its first ``start`` samples (of this rank), for a run resumed in
    the middle of that epoch; ``len()`` stays the whole epoch's.
    """

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0, *,
                 foreground: Sequence[bool] | None = None, foreground_probability: float = 0.0) -> None:
        self.n = n
        self.shuffle = shuffle
        self.seed = seed
        if foreground is not None and len(foreground) != n:
            raise ValueError(f"foreground has {len(foreground)} flags for {n} samples")
        self.foreground_probability = float(foreground_probability)
        flags = np.zeros((n, 0), bool) if foreground is None else np.asarray(foreground, dtype=bool)
        if flags.ndim == 1:
            self._by_class = [np.flatnonzero(flags)] if flags.any() else []
            self._classes = [ANY_FOREGROUND] if flags.any() else []
        else:
            self._classes = [c for c in range(1, flags.shape[1]) if flags[:, c].any()]
            self._by_class = [np.flatnonzero(flags[:, c]) for c in self._classes]
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, samples of it already used)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self._resume is not None and self._resume[0] != self.epoch:
            self._resume = None

    def resume(self, epoch: int, start: int) -> None:
        """Continue ``epoch`` after its first ``start`` samples (sets the epoch too)."""
        self.epoch = int(epoch)
        self._resume = (self.epoch, int(start)) if start > 0 else None

    @property
    def start(self) -> int:
        """Samples of the current epoch skipped by the next iteration (0 unless resumed)."""
        return self._resume[1] if self._resume is not None and self._resume[0] == self.epoch else 0

    @staticmethod
    def _rank_world() -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _indices(self) -> list[int | tuple[int, int]]:
        if self.shuffle:
            order = np.random.default_rng(_mix(self.seed, self.epoch, 0)).permutation(self.n).tolist()
        else:
            order = list(range(self.n))
        if self.foreground_probability > 0 and self._classes:
            rng = np.random.default_rng(_mix(self.seed, self.epoch, 1))
            swap = rng.random(len(order)) < self.foreground_probability
            if len(self._classes) == 1:
                picks = [(int(f), self._classes[0]) for f in rng.choice(self._by_class[0], size=len(order))]
            else:
                which = rng.integers(len(self._classes), size=len(order))
                picks = [(int(rng.choice(self._by_class[k])), self._classes[k]) for k in which]
            order = [(f, place, c) if sw else o for place, (o, sw, (f, c)) in enumerate(zip(order, swap, picks))]
        rank, world = self._rank_world()
        if world > 1:
            per = math.ceil(self.n / world)
            order = (order * world)[: per * world]
            order = order[rank::world]
        return order

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(i[0], self.epoch, i[1], i[2]) if isinstance(i, tuple) else (i, self.epoch)
                     for i in self._indices()[self.start:]])

    def __len__(self) -> int:
        rank, world = self._rank_world()
        return math.ceil(self.n / world) if world > 1 else self.n


class ResumableLoader(DataLoader):
    """A :class:`DataLoader` over an :class:`EpochSampler` that resumes in the middle of an epoch.

    ``state_dict()`` → ``{"epoch": e, "batches": b}``: ``b`` batches of epoch ``e`` were handed
    out. Lightning stores it in every checkpoint (a loader with ``state_dict`` /
    ``load_state_dict`` is "stateful" to it) and fetches no batch ahead when the loader has a
    length, so at a batch end ``b`` is the number of batches trained on.
    ``load_state_dict(state)`` makes the next iteration continue after those ``b`` batches (or
    start epoch ``e + 1`` when ``e`` was complete). Call it before ``trainer.fit`` too: the
    sampler's epoch is then right even for loader workers started before Lightning's
    ``set_epoch``. Every sample's augmentation is seeded from (seed, epoch, index), so the
    resumed batches are those an uninterrupted run trains on.
    """

    def __init__(self, dataset, *, sampler: EpochSampler, **kwargs: Any) -> None:
        super().__init__(dataset, sampler=sampler, **kwargs)
        self._position = (sampler.epoch, 0)

    def __iter__(self):
        return self._counted(super().__iter__())

    def _counted(self, batches):
        # runs at the first next(): after Lightning's set_epoch
        sampler = self.sampler
        epoch, done = sampler.epoch, sampler.start // (self.batch_size or 1)
        self._position = (epoch, done)
        for batch in batches:
            done += 1
            self._position = (epoch, done)
            yield batch

    def state_dict(self) -> dict[str, int]:
        epoch, done = self._position
        return {"epoch": int(epoch), "batches": int(done)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        epoch, done = int(state["epoch"]), int(state["batches"])
        if done >= len(self):
            self.sampler.set_epoch(epoch + 1)
            self._position = (epoch + 1, 0)
        else:
            self.sampler.resume(epoch, done * (self.batch_size or 1))
            self._position = (epoch, done)


def collate(batch: list[dict]) -> dict:
    """Stack a list of samples into a batch dict (keys present in all samples)."""
    keys = [k for k in batch[0] if all(b.get(k) is not None for b in batch)]
    return {k: torch.stack([b[k] for b in batch]) for k in keys}
