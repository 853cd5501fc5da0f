"""Reading weights into a :class:`~napari_cryolearn.segmentation.network.SegmentationNet`.

Three checkpoint layouts are understood (Lightning ``.ckpt`` files, or a bare state dict):

``ours``
    ``state_dict`` keys ``net.backbone.*`` and ``net.heads.*``; ``hyper_parameters.config``
    is the :class:`SegmentationTrainConfig` of the run.
``cryosiam_semantic``
    CryoSiam's semantic model: ``_model_backbone.<DenseSimSiam key>`` and
    ``_model.semantic_head.*`` / ``_model.distance_head.*``; ``hyper_parameters`` holds
    ``config`` (its YAML) and ``backbone_config`` (the pretraining YAML).
``cryosiam_pretrain``
    CryoSiam's DenseSimSiam pretraining: ``_model.encoder.*``, ``_model.decoder.*``,
    ``_model.projector.*`` (+ pretraining-only predictor / global parts, which are dropped).

The backbone must match exactly (else :class:`InputError` naming the file and the first
mismatching keys and shapes). Head tensors load where their shapes match; the others are
reported as skipped (e.g. a different number of classes), except when ``require_heads``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.segmentation.config import BackboneConfig, NetworkConfig

_PRETRAIN_ONLY = ("predictor.", "global_projector.", "global_predictor.", "encoder.fc.", "level_projector",
                  "level_predictor")


@dataclass
class LoadReport:
    """What :func:`load_weights` did: the layout found, tensors loaded, head tensors skipped."""

    layout: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint file onto the CPU (a dict with at least ``state_dict``).

    Checkpoints are pickles: only open files you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path=path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001
        raise InputError(f"not a readable PyTorch checkpoint ({err})", path=path) from None
    if isinstance(ckpt, dict) and "state_dict" not in ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        ckpt = {"state_dict": ckpt}
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise InputError("no state_dict in checkpoint", path=path)
    return ckpt


def detect_layout(state: dict[str, Any]) -> str:
    """``"ours"``, ``"cryosiam_semantic"``, ``"cryosiam_pretrain"``, ``"plain"`` or ``"unknown"``."""
    keys = list(state)
    if any(k.startswith("net.backbone.") for k in keys):
        return "ours"
    if any(k.startswith("_model_backbone.") for k in keys):
        return "cryosiam_semantic"
    if any(k.startswith("_model.encoder.") for k in keys):
        return "cryosiam_pretrain"
    if any(k.startswith("backbone.") for k in keys):
        return "plain"
    return "unknown"


def to_net_keys(state: dict[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """Rename a checkpoint's keys to :class:`SegmentationNet` keys (``backbone.*``, ``heads.*``)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if layout == "ours" and k.startswith("net."):
            out[k[4:]] = v
        elif layout == "plain" and k.startswith(("backbone.", "heads.")):
            out[k] = v
        elif layout == "cryosiam_semantic":
            if k.startswith("_model_backbone."):
                sub = k[len("_model_backbone."):]
                if not sub.startswith(_PRETRAIN_ONLY):
                    out["backbone." + sub] = v
            elif k.startswith("_model."):
                out["heads." + k[len("_model."):]] = v
        elif layout == "cryosiam_pretrain" and k.startswith("_model."):
            sub = k[len("_model."):]
            if not sub.startswith(_PRETRAIN_ONLY):
                out["backbone." + sub] = v
    return out


def _describe(problems: list[str], limit: int = 5) -> str:
    more = f" (and {len(problems) - limit} more)" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more


def load_weights(
    net: torch.nn.Module,
    path: str | os.PathLike,
    *,
    require_heads: bool = False,
    ckpt: dict[str, Any] | None = None,
) -> LoadReport:
    """Load the weights at ``path`` (any layout above) into ``net`` in place.

    Parameters
    ----------
    net:
        A :class:`SegmentationNet`.
    path:
        The checkpoint file (named in errors).
    require_heads:
        Heads must be present and match too (for prediction).
    ckpt:
        The already-read checkpoint, to avoid reading it twice.
    """
    ckpt = read_checkpoint(path) if ckpt is None else ckpt
    state = ckpt["state_dict"]
    layout = detect_layout(state)
    if layout == "unknown":
        first = ", ".join(list(state)[:3])
        raise InputError(
            f"unknown checkpoint layout (first keys: {first}); expected net.backbone.* (napari-cryolearn), "
            "_model_backbone.* (CryoSiam semantic) or _model.encoder.* (CryoSiam DenseSimSiam)",
            path=path,
        )
    src = to_net_keys(state, layout)
    own = net.state_dict()
    problems: list[str] = []
    report = LoadReport(layout=layout)
    new_state = dict(own)
    for k, t in own.items():
        is_head = k.startswith("heads.")
        if k not in src:
            if is_head and not require_heads:
                if layout in ("ours", "cryosiam_semantic", "plain"):
                    report.skipped.append(f"{k} (missing)")
                continue
            problems.append(f"missing {k} {tuple(t.shape)}")
            continue
        if tuple(src[k].shape) != tuple(t.shape):
            msg = f"{k}: checkpoint {tuple(src[k].shape)} vs model {tuple(t.shape)}"
            if is_head and not require_heads:
                report.skipped.append(msg)
                continue
            problems.append(msg)
            continue
        new_state[k] = src[k].to(t.dtype)
        report.loaded.append(k)
    unexpected = [k for k in src if k not in own and k.startswith("backbone.")]
    problems += [f"unexpected {k} {tuple(src[k].shape)}" for k in unexpected]
    if problems:
        raise InputError(f"checkpoint ({layout} layout) does not fit this network: {_describe(problems)}", path=path)
    net.load_state_dict(new_state)
    return report


def _cryosiam_backbone(net: dict[str, Any], path) -> dict[str, Any]:
    if net.get("decoder_type", "fpn") != "fpn":
        raise InputError(f"decoder_type {net['decoder_type']!r} is not supported (only 'fpn')", path=path,
                         field="hyper_parameters.config.parameters.network.decoder_type")
    out = {}
    for ours, theirs in (("block_type", "block_type"), ("in_channels", "in_channels"), ("num_layers", "num_layers"),
                         ("num_filters", "num_filters"), ("fpn_channels", "fpn_channels"),
                         ("dense_dim", "dense_dim"), ("no_max_pool", "no_max_pool"),
                         ("add_later_conv", "add_fpn_later_conv")):
        if net.get(theirs) is not None:
            out[ours] = net[theirs]
    return out


def backbone_config_from_checkpoint(ckpt: dict[str, Any], path=None) -> BackboneConfig | None:
    """The backbone architecture a checkpoint describes in its hyper-parameters, if any."""
    hp = ckpt.get("hyper_parameters") or {}
    layout = detect_layout(ckpt["state_dict"])
    try:
        if layout == "ours":
            return BackboneConfig.from_dict(hp["config"]["network"]["backbone"], source=path)
        if layout == "cryosiam_semantic":
            return BackboneConfig.from_dict(
                _cryosiam_backbone(hp["backbone_config"]["parameters"]["network"], path), source=path)
        if layout == "cryosiam_pretrain":
            return BackboneConfig.from_dict(_cryosiam_backbone(hp["config"]["parameters"]["network"], path),
                                            source=path)
    except (KeyError, TypeError):
        return None
    return None


def network_config_from_checkpoint(ckpt: dict[str, Any], path=None) -> NetworkConfig:
    """The full network (backbone and heads) a trained checkpoint needs, for prediction."""
    hp = ckpt.get("hyper_parameters") or {}
    layout = detect_layout(ckpt["state_dict"])
    try:
        if layout == "ours":
            return NetworkConfig.from_dict(hp["config"]["network"], source=path)
        if layout == "cryosiam_semantic":
            backbone = backbone_config_from_checkpoint(ckpt, path) or BackboneConfig()
            net = hp["config"]["parameters"]["network"]
            fields = {k: net[k] for k in ("out_channels", "filters", "kernel_size", "padding",
                                          "distance_prediction") if k in net}
            return NetworkConfig.from_dict({**fields, "backbone": backbone.to_dict()}, source=path)
    except (KeyError, TypeError):
        pass
    raise InputError("checkpoint does not describe a segmentation network (no hyper_parameters.config); "
                     "pass a checkpoint written by segmentation training", path=path)
