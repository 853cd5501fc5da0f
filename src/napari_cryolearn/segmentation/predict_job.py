"""Segmentation prediction job: one tomogram (MRC) and a checkpoint → label MRC (+ extras).

The tomogram is read memory-mapped; labels are written straight into a memory-mapped MRC
(uint8, the input's voxel size and origin) as slabs become final; every output is written
under a temporary name and renamed at the end, so a stopped or failed job leaves nothing.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_cryolearn.engine.atomic import atomic_path
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import JobResult
from napari_cryolearn.engine.lightning import torch_device
from napari_cryolearn.engine.outputs import check_suffix
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.models.checkpoints import (
    backbone_config_from_checkpoint,
    detect_layout,
    load_weights,
    read_checkpoint,
)
from napari_cryolearn.models.config import BackboneConfig
from napari_cryolearn.models.heads import SegmentationNet
from napari_cryolearn.models.sliding_window import fit_window, iter_sliding_window
from napari_cryolearn.segmentation.config import IntensityConfig, NetworkConfig, SegmentationPredictConfig
from napari_cryolearn.segmentation.network import architecture_of, build_network

STAGE = "segment.predict"
_DEFAULT_WINDOW = (64, 64, 64)


@dataclass
class LoadedModel:
    """A network ready for prediction and what it was trained with."""

    net: SegmentationNet  # or a UNetSegmentationNet (architecture unet): the same output contract
    network: NetworkConfig
    intensity: IntensityConfig
    patch_shape: tuple[int, int, int] | None
    hyper_parameters: dict[str, Any] = field(default_factory=dict)


def network_config_from_checkpoint(ckpt: dict[str, Any], path=None) -> NetworkConfig:
    """The full network (backbone and heads) a trained checkpoint needs, for prediction."""
    hp = ckpt.get("hyper_parameters") or {}
    layout = detect_layout(ckpt["state_dict"])
    try:
        if layout == "ours":
            net = dict(hp["config"]["network"])
            if net.get("architecture", "auto") == "auto":  # written before the field existed
                net["architecture"] = architecture_of(ckpt["state_dict"])
            return NetworkConfig.from_dict(net, source=path)
        if layout == "cryosiam_semantic":
            backbone = backbone_config_from_checkpoint(ckpt, path) or BackboneConfig()
            net = hp["config"]["parameters"]["network"]
            fields = {k: net[k] for k in ("out_channels", "filters", "kernel_size", "padding",
                                          "distance_prediction") if k in net}
            return NetworkConfig.from_dict({**fields, "backbone": backbone.to_dict(), "architecture": "cryosiam"},
                                           source=path)
    except (KeyError, TypeError):
        pass
    raise InputError("checkpoint does not describe a segmentation network (no hyper_parameters.config); "
                     "pass a checkpoint written by segmentation training", path=path)


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> LoadedModel:
    """Build the network a checkpoint describes (ours or CryoSiam semantic), load it, eval mode.

    Raises :class:`InputError` naming the checkpoint when it cannot be read (random bytes,
    truncated), holds no segmentation network (a bare tensor, someone else's state dict),
    does not fit the network its own config describes (every tensor must match: no part of
    the model is left random), or holds NaN or infinite weights.
    """
    ckpt = read_checkpoint(path)
    net_cfg = network_config_from_checkpoint(ckpt, path)
    net = build_network(net_cfg)
    load_weights(net, path, require_heads=True, ckpt=ckpt)
    net.eval().to(device)
    hp = ckpt.get("hyper_parameters") or {}
    hp = hp if isinstance(hp, dict) else {}
    cfg = hp.get("config") or {}
    intensity = IntensityConfig()
    patch = hp.get("patch_shape")
    if isinstance(cfg, dict):
        if isinstance(cfg.get("intensity"), dict):
            intensity = IntensityConfig.from_dict(cfg["intensity"], source=path)
        if isinstance(cfg.get("parameters"), dict):  # CryoSiam
            data = cfg["parameters"].get("data") or {}
            data = data if isinstance(data, dict) else {}
            intensity = IntensityConfig.from_dict({k: data.get(k) for k in ("min", "max", "mean", "std")}, source=path)
            patch = patch or data.get("patch_size")
        patch = cfg.get("patch_size") or patch
    return LoadedModel(net, net_cfg, intensity, _shape_or_none(patch), hp)


def _shape_or_none(patch: Any) -> tuple[int, int, int] | None:
    """A checkpoint's training patch shape as three ints, or ``None`` when it has none (or a bad one)."""
    try:
        shape = tuple(int(v) for v in patch) if patch else None
    except (TypeError, ValueError):
        return None
    return shape if shape is not None and len(shape) == 3 and min(shape) > 0 else None  # type: ignore[return-value]


def window_for(window: Sequence[int] | None, model: LoadedModel, shape: Sequence[int]
               ) -> tuple[tuple[int, int, int], str | None]:
    """The prediction window for a volume of ``shape`` and a note when it was clamped.

    ``window`` (default: the model's training patch, else 64³) must be three positive
    multiples of the network's size divisor (:class:`InputError`, field ``window``). An axis
    larger than the volume is cut to the volume's extent rounded up to that divisor (the
    window is zero-padded as at any volume edge): a larger window adds only padding and time.
    """
    div = model.net.size_divisor
    asked = tuple(int(w) for w in (window or model.patch_shape or _DEFAULT_WINDOW))
    if len(asked) != 3 or any(w <= 0 or w % div for w in asked):
        raise InputError(f"window {asked} must be 3 positive multiples of {div} (the network's stride)",
                         field="window")
    used = fit_window(asked, shape, divisor=div)
    note = None
    if used != asked:
        note = (f"window {asked} is larger than the volume {tuple(int(s) for s in shape)}: using {used} "
                f"(the volume rounded up to a multiple of {div})")
    return used, note  # type: ignore[return-value]


class _PerClassFiles:
    """(C, Z, Y, X) write target spread over C memory-mapped (Z, Y, X) volumes."""

    def __init__(self, maps: Sequence[np.ndarray]) -> None:
        self.maps = list(maps)

    def __setitem__(self, key, value) -> None:
        for c, m in enumerate(self.maps):
            m[key[1:]] = value[c]


def _class_paths(path: Path, names: Sequence[str]) -> list[Path]:
    """``<stem>_<class name><suffix>`` per class: one distinct file each. A name that is empty,
    holds a path separator or repeats another (case-insensitively) gets its class number
    instead, so no class's file replaces another's.

    >>> [p.name for p in _class_paths(Path("p.mrc"), ["bg", "membrane", "Membrane", "a/b", ""])]
    ['p_bg.mrc', 'p_membrane.mrc', 'p_class_2.mrc', 'p_class_3.mrc', 'p_class_4.mrc']
    """
    seen: set[str] = set()
    words = []
    for i, name in enumerate(names):
        word = str(name)
        if not word.strip() or "/" in word or "\\" in word or word.lower() in seen:
            word = f"class_{i}"
        seen.add(word.lower())
        words.append(word)
    return [path.with_name(f"{path.stem}_{w}{path.suffix}") for w in words]


def _open_output(stack: ExitStack, path: Path, shape, names, voxel_size, origin, overwrite: bool):
    """A (C, Z, Y, X) float32 target: one .npy memory map, or one MRC per class."""
    from napari_cryolearn.io import create_mrc
    from napari_cryolearn.io.npy import create_npy

    if path.suffix.lower() == ".npy":
        tmp = stack.enter_context(atomic_path(path, overwrite=overwrite))
        return create_npy(tmp, (len(names), *shape), np.float32, target=path)
    maps = [stack.enter_context(create_mrc(p, shape, np.float32, voxel_size, origin, overwrite))
            for p in _class_paths(path, names)]
    return _PerClassFiles(maps)


def _check_path(path: Path | None, field: str, overwrite: bool, suffixes: tuple[str, ...]) -> None:
    if path is None:
        return
    check_suffix(path, suffixes, field=field)
    if path.exists() and not overwrite:
        raise InputError("exists (set overwrite to replace it)", path=path, field=field)


def _output_targets(config: SegmentationPredictConfig, names: Sequence[str]) -> list[tuple[str, Path]]:
    """(field, file) for every file the run writes: labels, and each per-class map (or .npy)."""
    out = []
    for field in ("output", "probabilities", "distances"):
        path = getattr(config, field)
        if path is None:
            continue
        path = Path(path)
        targets = [path] if field == "output" or path.suffix.lower() == ".npy" else _class_paths(path, names)
        out += [(field, t) for t in targets]
    return out


def _check_not_an_input(config: SegmentationPredictConfig, names: Sequence[str]) -> None:
    """Refuse outputs (per-class MRC files included) that would replace the tomogram or the model,
    or that coincide with another output of the same run (e.g. labels ``o_class_0.mrc`` beside
    ``--probabilities o.mrc``, whose class-0 map has that name)."""
    inputs = {Path(config.input).resolve(), Path(config.model).resolve()}
    seen: dict[Path, tuple[str, Path]] = {}
    for field, target in _output_targets(config, names):
        key = target.resolve()
        if key in inputs:
            raise InputError("would replace an input (the tomogram or the model); choose another name",
                             path=target, field=field)
        if key in seen:
            other, first = seen[key]
            what = "the labels" if other == "output" else f"a {other} map ({first.name})"
            raise InputError(f"is also the file of {what}: one run would write it twice; choose another name",
                             path=target, field=field)
        seen[key] = (field, target)


def predict_job(config: SegmentationPredictConfig, stop: StopFlag | None = None
                ) -> Generator[Progress, None, JobResult]:
    """Predict ``config.input`` with ``config.model``; returns a :class:`JobResult` whose outputs
    are ``output`` (the labels) and, when asked, ``probabilities`` / ``distances`` (a ``.npy``)
    or ``probabilities_<class>`` / ``distances_<class>`` (one MRC per class). Stopped: a result
    with ``stopped`` and no outputs (nothing is left on disk).

    Yields a :class:`Progress` (stage ``"segment.predict"``) after each batch of windows.
    Raises :class:`InputError` before writing anything when the input is not a 3D MRC of real
    values, the checkpoint is not a segmentation model (or holds non-finite weights), the
    window is not a multiple of the network's stride, distances are asked of a model without a
    distance head, an output would replace an input or another output of the run, or the
    device does not exist. A window larger than the volume is clamped to it (see
    :func:`window_for`; a progress message says so). NaN or infinite values are found window by window: the
    error then comes during the run, and the outputs begun are removed.
    """
    from napari_cryolearn.io.mrc import create_mrc, read_mrc_3d
    from napari_cryolearn.io.sidecar import write_sidecar

    device = torch_device(config.device)
    vol = read_mrc_3d(config.input, what="tomogram")
    model = load_model(config.model, device)
    shape = tuple(int(s) for s in vol.data.shape)
    window, note = window_for(config.window, model, shape)
    if 2 * config.margin >= min(window):
        raise InputError(f"a margin of {config.margin} voxels at each face leaves nothing of the window {tuple(window)}"
                         f" (at most {(min(window) - 1) // 2})", field="margin")
    if config.distances is not None and not model.net.has_distance_head:
        raise InputError("this model has no distance head (trained without distance_prediction)",
                         path=config.model, field="distances")
    names = model.network.names()
    _check_not_an_input(config, names)
    _check_path(config.output, "output", config.overwrite, (".mrc", ".rec", ".map"))
    _check_path(config.probabilities, "probabilities", config.overwrite, (".npy", ".mrc"))
    _check_path(config.distances, "distances", config.overwrite, (".npy", ".mrc"))

    def preprocess(win: np.ndarray) -> np.ndarray:
        if not np.isfinite(win).all():  # NaN would spread through the blending, silently
            raise InputError("the tomogram holds NaN or infinite values", path=config.input, field="input")
        return model.intensity.apply(win)

    if note is not None:
        yield Progress(0, None, note, STAGE, {"window": list(window)})
    yield Progress(0, None, f"predicting {Path(config.input).name} {shape} on {device.type}, window {window}",
                   STAGE, {"window": list(window)})

    try:
        with ExitStack() as stack:
            labels_out = stack.enter_context(
                create_mrc(config.output, shape, np.uint8, vol.voxel_size, vol.origin, config.overwrite))
            probs_out = dist_out = None
            if config.probabilities is not None:
                probs_out = _open_output(stack, Path(config.probabilities), shape, names, vol.voxel_size,
                                         vol.origin, config.overwrite)
            if config.distances is not None:
                dist_out = _open_output(stack, Path(config.distances), shape, names, vol.voxel_size, vol.origin,
                                        config.overwrite)
            prediction = yield from iter_sliding_window(
                model.net, vol.data, window, num_classes=model.network.out_channels, overlap=config.overlap,
                blend=config.blend, margin=config.margin, batch_size=config.batch_size,
                tta_flips=config.tta_flips, threshold=config.threshold, device=device,
                preprocess=preprocess, probabilities_out=probs_out, distances_out=dist_out,
                labels_out=labels_out, stop=stop, stage=STAGE,
            )
            if prediction is None:
                raise _Stopped  # leaves the with-block: temporaries are removed
            for m in [*getattr(probs_out, "maps", [probs_out]), *getattr(dist_out, "maps", [dist_out])]:
                if isinstance(m, np.memmap):
                    m.flush()
    except _Stopped:
        yield Progress(0, None, "stopped: nothing written", STAGE)
        return JobResult(stopped=True)
    write_sidecar(config.output, {"label_names": dict(enumerate(names)), "model": str(config.model),
                                  "source": str(config.input)})
    yield Progress(1, 1, f"wrote {Path(config.output).name}", STAGE)
    return JobResult(outputs=_result_outputs(config, names), metrics={"classes": len(names),
                                                                     "window": list(window)})


def _result_outputs(config: SegmentationPredictConfig, names: Sequence[str]) -> dict[str, Path]:
    """Role → file written: ``output``, ``probabilities`` / ``distances`` (a ``.npy``), or one
    ``probabilities_<class>`` / ``distances_<class>`` per class (MRC files)."""
    out: dict[str, Path] = {"output": Path(config.output)}
    for field in ("probabilities", "distances"):
        path = getattr(config, field)
        if path is None:
            continue
        if Path(path).suffix.lower() == ".npy":
            out[field] = Path(path)
        else:
            out.update({f"{field}_{n}": p for n, p in zip(names, _class_paths(Path(path), names))})
    return out


class _Stopped(Exception):
    pass
