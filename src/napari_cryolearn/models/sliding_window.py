"""Sliding-window prediction over a whole image or tomogram, streamed slab by slab.

Windows of ``window`` pixels or voxels cover the image (Y, X) or volume (Z, Y, X) on a grid
(:func:`napari_cryolearn.io.patch_grid.patch_grid`: neighbours share ``overlap``; the last
window of each axis ends flush with the volume, so no padding is needed unless the volume is
smaller than a window). Windows are read from the (memory-mapped) input one at a time,
converted to float32, run through the network in batches, and their class probabilities are
blended with a Gaussian (or constant) weight into a float32 buffer that spans one window
along the first axis: once every window touching a slice has been added, the slice is final:
it is turned into labels and handed to the outputs, and the buffer moves on. Memory is
therefore ``C × window_z × Y × X`` float32 (plus the outputs), whatever the depth of the
tomogram; the input is never loaded whole.

``margin`` voxels at each window face that lies inside the volume get zero weight: with a
margin at least the network's receptive-field radius, the result equals a prediction on
the whole volume at once (for a translation-equivariant network).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np
import torch
from torch import nn

from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.io.patch_grid import patch_grid
from napari_cryolearn.models.heads import distance_from_output


@dataclass
class Prediction:
    """Outputs of :func:`sliding_window_predict`.

    labels: (Z, Y, X) (or (Y, X)) uint8 class map. probabilities: (C, Z, Y, X) float32 or
    ``None``. distances: (C, Z, Y, X) float32 signed distance in voxels (±5 at most) or ``None``.
    """

    labels: np.ndarray
    probabilities: np.ndarray | None = None
    distances: np.ndarray | None = None


def _gaussian_weights(window: Sequence[int], *, sigma_scale: float = 0.125) -> list[np.ndarray]:
    """Per-axis Gaussian profiles (peak 1, sigma ``sigma_scale·size``), floored at 1e-3."""
    out = []
    for w in window:
        x = np.arange(w, dtype=np.float64) - (w - 1) / 2.0
        g = np.exp(-0.5 * (x / max(sigma_scale * w, 1e-6)) ** 2)
        out.append(np.maximum(g / g.max(), 1e-3).astype(np.float32))
    return out


def _window_weight(
    profiles: list[np.ndarray], starts: Sequence[int], sizes: Sequence[int], shape: Sequence[int], margin: int,
    floor: float = 1e-3,
) -> np.ndarray:
    """Weight of one window's voxels: product of the profiles, floored at ``floor`` (as MONAI
    does), zero within ``margin`` of faces inside the volume."""
    ndim = len(sizes)
    wgt = np.ones((1,) * ndim, np.float32)
    for axis, (p, w) in enumerate(zip(profiles, sizes)):
        wgt = wgt * p[:w].reshape([-1 if a == axis else 1 for a in range(ndim)])
    wgt = np.maximum(wgt, floor)
    if margin:
        for axis, (s, w, n) in enumerate(zip(starts, sizes, shape)):
            keep = np.ones(w, np.float32)
            if s > 0:
                keep[:margin] = 0
            if s + w < n:
                keep[w - margin:] = 0
            wgt = wgt * keep.reshape([-1 if a == axis else 1 for a in range(ndim)])
    return wgt.astype(np.float32, copy=False)


def _window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Window starts along one axis (:func:`~napari_cryolearn.io.patch_grid.patch_grid`'s grid;
    one window at 0 when the axis is no longer than the window)."""
    return patch_grid((int(size),), (min(int(window), int(size)),), overlap=float(overlap))[:, 0].tolist()


def fit_window(window: Sequence[int], shape: Sequence[int], *, divisor: int = 1) -> tuple[int, ...]:
    """``window`` with each axis cut to at most ``shape``'s, rounded up to a multiple of ``divisor``.

    A window larger than the volume only adds zero padding (and time: a 512³ window on a
    48×64×64 volume is ~700 times the work); the cut window keeps the network's stride.
    """
    d = max(1, int(divisor))
    return tuple(min(int(w), -(-int(s) // d) * d) for w, s in zip(window, shape))


def _run(model: nn.Module, x: torch.Tensor, flips: Sequence[tuple[int, ...]], sigmoid: bool, as_is: bool = False):
    probs = None
    dist = None
    for f in flips:
        xin = torch.flip(x, f) if f else x
        out = model(xin)
        logits, raw = (out if isinstance(out, (tuple, list)) else (out, None))
        p = logits.float() if as_is else torch.sigmoid(logits) if sigmoid else torch.softmax(logits.float(), 1)
        if f:
            p = torch.flip(p, f)
        probs = p if probs is None else probs + p
        if raw is not None:
            d = distance_from_output(raw.float())
            if f:
                d = torch.flip(d, f)
            dist = d if dist is None else dist + d
    n = len(flips)
    return probs / n, (None if dist is None else dist / n)


def sliding_window_predict(*args, on_progress: Callable[[int, int], None] | None = None,
                           stop: StopFlag | Callable[[], bool] | None = None, **kwargs) -> Prediction | None:
    """Predict an image or volume window by window; arguments as :func:`iter_sliding_window`.

    on_progress:
        Called with (windows done, windows in all) after each batch.
    stop:
        A :class:`StopFlag` or a callable polled after each batch; when set (or it returns
        True), prediction ends and ``None`` is returned.
    """
    from napari_cryolearn.engine.jobs import run_job

    report = None if on_progress is None else (lambda e: on_progress(e.step, e.total))
    return run_job(iter_sliding_window(*args, stop=stop, **kwargs), report)


def iter_sliding_window(
    model: nn.Module,
    volume: np.ndarray,
    window: Sequence[int],
    *,
    num_classes: int,
    overlap: float = 0.5,
    blend: str = "gaussian",
    sigma_scale: float = 0.125,
    margin: int = 0,
    batch_size: int = 2,
    tta_flips: bool = False,
    threshold: float | None = None,
    device: torch.device | str = "cpu",
    preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
    probabilities_out: np.ndarray | None | bool = None,
    distances_out: np.ndarray | None | bool = None,
    labels_out: np.ndarray | None = None,
    stop: StopFlag | Callable[[], bool] | None = None,
    stage: str = "",
    raw: bool = False,
) -> Generator[Progress, None, Prediction | None]:
    """Predict a (Z, Y, X) volume or a (Y, X) image window by window: a job generator that
    yields a :class:`Progress` (windows done out of all, stage ``stage``) after each batch and
    returns a :class:`Prediction`, or ``None`` when ``stop`` was set.

    Parameters
    ----------
    model:
        Maps (N, 1, *window) to logits (N, C, ...) or ``(logits, distance_raw)``; put it in
        eval mode and on ``device`` first.
    volume:
        (Z, Y, X) or (Y, X) array of any dtype, typically a read-only ``np.memmap``.
    window:
        Window size, one value per axis (a multiple of the network's size divisor).
    num_classes:
        C, the network's output channels (1: sigmoid, else softmax).
    overlap:
        Fraction of a window shared with its neighbour along each axis.
    blend:
        ``"gaussian"`` (centre weighted, sigma ``sigma_scale`` × window) or ``"constant"``.
    margin:
        Voxels at each inner window face that get no weight (see module docstring).
    batch_size:
        Windows per forward pass.
    tta_flips:
        Also predict the window flipped along each axis and average (4 passes in 3D, 3 in 2D).
    threshold:
        Softmax probability below which a voxel is labelled 0 (sigmoid cut with one class).
    preprocess:
        Applied to each float32 window before the network (intensity scaling).
    probabilities_out, distances_out:
        ``True`` to return in-memory (C, *shape) float32 arrays, or a writable array of that
        shape (e.g. a memory map) to fill; ``None`` for none. Distances need a model with a
        distance head.
    labels_out:
        A writable array of ``volume``'s shape to fill instead of a new uint8 array.
    stop:
        A :class:`StopFlag` or a callable, checked after each batch.
    raw:
        Blend the model's outputs as they are (no softmax or sigmoid): ``num_classes`` channels
        of features, e.g. per-voxel embeddings, into ``probabilities_out`` (labels are then
        the argmax channel).
    """
    if volume.ndim not in (2, 3):
        raise ValueError(f"expected a (Z, Y, X) volume or a (Y, X) image, got shape {volume.shape}")
    ndim = volume.ndim
    shape = tuple(int(s) for s in volume.shape)
    window = tuple(int(w) for w in window)
    if len(window) != ndim:
        raise ValueError(f"window {window} has {len(window)} axes, the input {ndim}")
    should_stop = (stop.is_set if isinstance(stop, StopFlag) else stop) or (lambda: False)
    sizes = tuple(min(w, s) for w, s in zip(window, shape))  # part of each window inside the volume
    for w, s in zip(window, sizes):
        step = max(1, int(round(w * (1.0 - overlap))))
        if s == w and w > step and 2 * margin > w - step:
            raise ValueError(f"margin {margin} leaves gaps: it must be at most (window - step) / 2 = {(w - step) // 2}")
    starts = [_window_starts(s, w, overlap) for s, w in zip(shape, window)]
    zs, rest = starts[0], starts[1:]
    profiles = _gaussian_weights(window, sigma_scale=sigma_scale) if blend == "gaussian" else [
        np.ones(w, np.float32) for w in window]
    sigmoid = num_classes == 1 and not raw
    n_prob = max(num_classes, 1)
    flips: list[tuple[int, ...]] = [()] + ([(a,) for a in range(2, 2 + ndim)] if tta_flips else [])
    device = torch.device(device)

    Z, plane = shape[0], shape[1:]
    wz = sizes[0]
    # accumulators live on the compute device: blending is as fast as the network's output
    acc = torch.zeros((n_prob, wz, *plane), dtype=torch.float32, device=device)
    wacc = torch.zeros((wz, *plane), dtype=torch.float32, device=device)
    dacc = None
    labels = labels_out if labels_out is not None else np.zeros(shape, np.uint8)
    probs_arr = np.zeros((n_prob, *shape), np.float32) if probabilities_out is True else probabilities_out
    dist_arr = np.zeros((n_prob, *shape), np.float32) if distances_out is True else distances_out
    with_distances = dist_arr is not None and dist_arr is not False
    total = int(np.prod([len(a) for a in starts]))
    done = 0
    weights: dict[tuple, torch.Tensor] = {}

    def weight(start: tuple[int, ...]) -> torch.Tensor:
        # depends only on which faces are inside the volume (the margin), not on the position
        key = tuple((s > 0, s + w < n) for s, w, n in zip(start, sizes, shape)) if margin else ()
        if key not in weights:
            weights[key] = torch.from_numpy(_window_weight(profiles, start, sizes, shape, margin)).to(device)
        return weights[key]

    def flush(z0: int, z1: int, base: int) -> None:
        a, b = z0 - base, z1 - base
        w = wacc[a:b].clamp_min(1e-12)
        p = acc[:, a:b] / w
        if sigmoid:
            lab = p[0] > (0.5 if threshold is None else threshold)
        else:
            best, lab = p.max(0)
            if threshold is not None:
                lab[best < threshold] = 0
        labels[z0:z1] = lab.to(torch.uint8).cpu().numpy()
        if probs_arr is not None and probs_arr is not False:
            probs_arr[:, z0:z1] = p.cpu().numpy()
        if dacc is not None and dist_arr is not None and dist_arr is not False:
            dist_arr[:, z0:z1] = (dacc[:, a:b] / w).cpu().numpy()

    crop = (slice(None), *(slice(0, s) for s in sizes))
    inside = tuple(slice(0, s) for s in sizes)
    for zi, z in enumerate(zs):
        # the buffers cover [z, z + wz)
        boxes = [(z, *r) for r in product(*rest)]
        for b0 in range(0, len(boxes), batch_size):
            chunk = boxes[b0:b0 + batch_size]
            batch = np.zeros((len(chunk), 1, *window), np.float32)
            for i, box in enumerate(chunk):
                win = np.asarray(volume[tuple(slice(o, o + s) for o, s in zip(box, sizes))], dtype=np.float32)
                if preprocess is not None:
                    win = preprocess(win)
                batch[(i, 0, *inside)] = win
            with torch.no_grad():
                probs, dist = _run(model, torch.from_numpy(batch).to(device), flips, sigmoid, raw)
                probs = probs.float()
                if with_distances and dist is not None and dacc is None:
                    dacc = torch.zeros((dist.shape[1], wz, *plane), dtype=torch.float32, device=device)
                if dacc is None:
                    dist = None
                for i, box in enumerate(chunk):
                    wgt = weight(box)
                    sl = (slice(box[0] - z, box[0] - z + sizes[0]),
                          *(slice(o, o + s) for o, s in zip(box[1:], sizes[1:])))
                    acc[(slice(None), *sl)].addcmul_(probs[i][crop], wgt)
                    wacc[sl] += wgt
                    if dist is not None:
                        dacc[(slice(None), *sl)].addcmul_(dist[i][crop].float(), wgt)
            done += len(chunk)
            yield Progress(done, total, f"window {done}/{total}", stage)
            if should_stop():
                return None
        z_next = zs[zi + 1] if zi + 1 < len(zs) else Z
        flush(z, min(z_next, z + wz) if zi + 1 < len(zs) else Z, z)
        if zi + 1 < len(zs):
            shift = z_next - z
            keep = wz - shift
            for buf in (acc, dacc):
                if buf is not None:
                    buf[:, :keep] = buf[:, shift:].clone()
                    buf[:, keep:] = 0
            wacc[:keep] = wacc[shift:].clone()
            wacc[keep:] = 0

    return Prediction(
        labels=labels,
        probabilities=probs_arr if isinstance(probs_arr, np.ndarray) else None,
        distances=dist_arr if isinstance(dist_arr, np.ndarray) else None,
    )
