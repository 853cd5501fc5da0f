"""Reading weights into a :class:`~napari_cryolearn.models.heads.SegmentationNet` (2D or 3D).

Three checkpoint layouts are understood (Lightning ``.ckpt`` files, or a bare state dict):

``ours``
    ``state_dict`` keys ``net.backbone.*`` and ``net.heads.*``; ``hyper_parameters.config``
    is the training config of the run (``network.backbone`` its architecture).
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
from napari_cryolearn.engine.lightning import first_non_finite
from napari_cryolearn.models.config import BackboneConfig

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

    A bare state dict (a mapping of names to tensors) is wrapped as ``{"state_dict": ...}``.
    Raises :class:`InputError` naming the file when it is missing, not readable by
    ``torch.load`` (random bytes, truncated), or not a mapping whose ``state_dict`` maps names
    to tensors (e.g. a saved tensor, a dict of other things). Checkpoints are pickles: only
    open files you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path=path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001  (truncated, random bytes, a pickle of unknown classes)
        raise InputError(f"not a readable PyTorch checkpoint ({_short(err)})", path=path) from None
    if (isinstance(ckpt, dict) and ckpt and "state_dict" not in ckpt
            and all(isinstance(v, torch.Tensor) for v in ckpt.values())):
        ckpt = {"state_dict": ckpt}
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        what = type(ckpt).__name__ if not isinstance(ckpt, dict) else f"a dict with keys {_keys(ckpt)}"
        raise InputError(f"no state_dict in checkpoint (it holds {what}); expected a checkpoint written by "
                         "training", path=path)
    odd = next((k for k, v in ckpt["state_dict"].items() if not isinstance(v, torch.Tensor)), None)
    if odd is not None:
        raise InputError(f"state_dict entry {odd!r} is a {type(ckpt['state_dict'][odd]).__name__}, not a tensor",
                         path=path)
    return ckpt


def _short(err: BaseException, limit: int = 160) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _keys(d: dict, limit: int = 4) -> str:
    keys = [str(k) for k in list(d)[:limit]]
    return ", ".join(keys) + (", …" if len(d) > limit else "") if keys else "none"


def _check_finite(ckpt: dict[str, Any], path: str | os.PathLike) -> None:
    """:class:`InputError` naming the checkpoint and its first tensor holding NaN or ±inf."""
    bad = first_non_finite(ckpt["state_dict"])
    if bad is not None:
        raise InputError(f"tensor {bad} holds NaN or infinite values (a diverged training?); use an earlier "
                         "checkpoint", path=path)


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


def _to_net_keys(state: dict[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
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

    Every backbone tensor must be present with the network's shape, and with
    ``require_heads`` every head tensor too; otherwise :class:`InputError` naming the file and
    the first problems (never a partly random network). A checkpoint holding NaN or ±inf is
    refused the same way.

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
    _check_finite(ckpt, path)
    state = ckpt["state_dict"]
    layout = detect_layout(state)
    if layout == "unknown":
        first = ", ".join(list(state)[:3])
        raise InputError(
            f"unknown checkpoint layout (first keys: {first}); expected net.backbone.* (napari-cryolearn), "
            "_model_backbone.* (CryoSiam semantic) or _model.encoder.* (CryoSiam DenseSimSiam)",
            path=path,
        )
    src = _to_net_keys(state, layout)
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


_TRAINING_STATE = ("optimizer_states", "loops", "epoch", "global_step")


def check_resumable(ckpt: dict[str, Any], module: torch.nn.Module, path: str | os.PathLike,
                    config: dict[str, Any] | None = None) -> None:
    """Refuse a checkpoint that Lightning could not continue training ``module`` from.

    :class:`InputError` naming ``path`` when the checkpoint holds no training state (optimizer,
    loops: e.g. a bare state dict or someone else's file), is not in our layout, holds
    non-finite tensors, does not match ``module``'s tensors exactly (names and shapes: another
    ``out_channels``, another network), trains another number of parameters (other
    ``unfreeze_*`` settings), or, given the new run's ``config`` (a dict), was made with
    another ``optimizer`` or ``scheduler``.
    """
    missing = [k for k in _TRAINING_STATE if k not in ckpt]
    if missing:
        raise InputError(f"not a checkpoint of a training run that can be continued (no {', '.join(missing)}); "
                         "to start from its weights, train a new run with pretrained_model", path=path)
    state = ckpt["state_dict"]
    if detect_layout(state) != "ours":
        raise InputError(f"not a napari-cryolearn segmentation checkpoint (first keys: {_keys(state, 3)})",
                         path=path)
    _check_finite(ckpt, path)
    own = module.state_dict()
    problems = [f"missing {k} {tuple(t.shape)}" for k, t in own.items() if k not in state]
    problems += [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(t.shape)}"
                 for k, t in own.items() if k in state and tuple(state[k].shape) != tuple(t.shape)]
    problems += [f"unexpected {k} {tuple(state[k].shape)}" for k in state if k not in own]
    if problems:
        raise InputError(f"does not fit this network: {_describe(problems)}; continue with the settings of the "
                         "stopped run (its config.yaml)", path=path)
    groups = (ckpt["optimizer_states"] or [{}])[0].get("param_groups") or []
    saved = sum(len(g.get("params", [])) for g in groups)
    trained = sum(1 for p in module.parameters() if p.requires_grad)
    if groups and saved != trained:
        raise InputError(f"its optimizer updates {saved} tensors, this network trains {trained} (other "
                         "unfreeze_backbone / unfreeze_decoder / pretrained_model settings?); continue with the "
                         "settings of the stopped run", path=path)
    before = ((ckpt.get("hyper_parameters") or {}).get("config") or {})
    for key in ("optimizer", "scheduler"):
        if config is not None and isinstance(before, dict) and key in before and before[key] != config.get(key):
            raise InputError(f"the stopped run used {key} {before[key]!r}, not {config.get(key)!r}; continue with "
                             f"{key} {before[key]!r}", path=path, field=key)
