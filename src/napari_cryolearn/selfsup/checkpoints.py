"""Strict loading of pretrained weights into a ResNet, :class:`SimSiam` or :class:`SimCLR`.

Five checkpoint layouts are understood (a ``module.`` prefix, as DDP writes it, is stripped
from every key first):

``ours``
    ``{"state_dict": ...}`` (or a bare state dict) with keys ``encoder.<torchvision key>`` and
    the heads as our models name them: ``reducer.*``, ``projector.*``, ``predictor.*``
    (:class:`~napari_cryolearn.selfsup.simsiam.SimSiam`), ``projection_head.*``
    (:class:`~napari_cryolearn.selfsup.simclr.SimCLR`).
``simsiam_official``
    The official SimSiam ImageNet checkpoints, ``{"epoch", "arch", "state_dict", "optimizer"}``
    with ``module.encoder.<torchvision key>``; ``module.encoder.fc.*`` (SimSiam's projector,
    2048-D) and ``module.predictor.*`` are dropped.
``torchvision``
    A torchvision ResNet state dict (the ImageNet weights): ``conv1.weight``, ``layer1.*``, …;
    ``fc.*`` (the ImageNet classifier) loads only into a ResNet with an ``fc`` of that shape.
``prismpyp``
    prismpyp's checkpoints, ``{"epoch", "arch", "state_dict", "optimizer"}`` with
    ``module.backbone.<i>.*``, the torchvision ResNet without ``fc`` as an ``nn.Sequential``
    (``0`` conv1, ``1`` bn1, ``4``–``7`` layer1–layer4), and ``module.reducer.*``,
    ``module.projector.*``, ``module.predictor.*`` named as in our SimSiam.
``simclr``
    The SimCLR trainer's (prism-h), ``{"epoch", "model_state_dict", "optimizer_state_dict",
    "loss", …}`` with ``encoder.<torchvision key>`` (no ``fc``) and
    ``projection_head.projection.{0,2}.*``.

Rules: every encoder tensor of the model must come from the checkpoint with the model's shape
(a 3-channel ``conv1`` into a 1-channel model is summed by
:func:`~napari_cryolearn.models.resnet.adapt_first_conv` first); a head (reducer, projector,
predictor, projection head) that the checkpoint has must fit the model's entirely; a checkpoint
tensor the model's encoder does not have is an error too (e.g. a ResNet-34 into a ResNet-18).
Otherwise :class:`~napari_cryolearn.engine.errors.InputError` names the file and the first
missing or mismatched keys: never a partly random model. Heads the checkpoint lacks keep their
weights and are listed in :attr:`LoadReport.untouched`; checkpoint tensors that are dropped
are listed in :attr:`LoadReport.skipped`. Checkpoints are pickles: only open files you trust.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.lightning import first_non_finite
from napari_cryolearn.models.resnet import ResNet, adapt_first_conv

LAYOUTS = ("ours", "simsiam_official", "torchvision", "prismpyp", "simclr")

# prismpyp's nn.Sequential(*resnet.children()[:-1]): index → torchvision module name
_PRISMPYP_BACKBONE = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}


@dataclass
class LoadReport:
    """What :func:`load_encoder_weights` did.

    Attributes
    ----------
    layout:
        The checkpoint layout (one of :data:`LAYOUTS`).
    loaded:
        The model's keys filled from the checkpoint.
    skipped:
        The checkpoint's keys (as written in it) that were not loaded: dropped heads (SimSiam's
        projector and predictor, an ImageNet classifier), heads the model does not have.
    untouched:
        The model's keys the checkpoint had nothing for (a head it lacks, BatchNorm counters
        absent from old torchvision weights); they keep their values.
    notes:
        Conversions made, e.g. the first convolution summed from 3 channels to 1.
    """

    layout: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    untouched: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _short(err: BaseException, limit: int = 160) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first_keys(d: dict, limit: int = 4) -> str:
    keys = [str(k) for k in list(d)[:limit]]
    return (", ".join(keys) + (", …" if len(d) > limit else "")) if keys else "none"


def read_state_dict(path_or_state: str | os.PathLike | dict[str, Any]) -> tuple[dict[str, torch.Tensor], str | None]:
    """The state dict in a checkpoint file or an already-loaded checkpoint, and its container key.

    The container is ``"model_state_dict"`` (the SimCLR trainer), ``"state_dict"`` (ours,
    SimSiam, prismpyp, Lightning) or ``None`` (a bare state dict). :class:`InputError` naming
    the file when it is missing, unreadable (truncated, not a checkpoint), holds no state dict
    of tensors, or holds NaN or infinite values.
    """
    path = None if isinstance(path_or_state, dict) else Path(path_or_state)
    if path is None:
        ckpt: Any = path_or_state
    elif not path.is_file():
        raise InputError("checkpoint not found", path=path)
    else:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001  (truncated, random bytes, unknown classes)
            raise InputError(f"not a readable PyTorch checkpoint ({_short(err)})", path=path) from None
    container = next((k for k in ("model_state_dict", "state_dict")
                      if isinstance(ckpt, dict) and isinstance(ckpt.get(k), dict)), None)
    state = ckpt[container] if container else ckpt
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        what = f"a dict with keys {_first_keys(ckpt)}" if isinstance(ckpt, dict) else f"a {type(ckpt).__name__}"
        raise InputError(f"no state dict of tensors in the checkpoint (it holds {what}); expected state_dict "
                         "or model_state_dict mapping names to tensors", path=path)
    bad = first_non_finite(state)
    if bad is not None:
        raise InputError(f"tensor {bad} holds NaN or infinite values (a diverged training?); use an earlier "
                         "checkpoint", path=path)
    if all(k.startswith("model.") for k in state):  # a Lightning checkpoint of ssl train: the module's network
        state = {k[len("model."):]: v for k, v in state.items()}
    return dict(state), container


def _strip_module(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """Stripped key → original key (``module.`` removed, as DDP adds it)."""
    return {(k[len("module."):] if k.startswith("module.") else k): k for k in state}


def detect_layout(keys: list[str], container: str | None = None) -> str:
    """The layout of a state dict from its (``module.``-stripped) keys: one of :data:`LAYOUTS`, or
    ``"unknown"``.

    >>> detect_layout(["encoder.conv1.weight", "encoder.fc.0.weight", "predictor.0.weight"])
    'simsiam_official'
    >>> detect_layout(["backbone.0.weight", "reducer.0.weight"]), detect_layout(["conv1.weight"])
    ('prismpyp', 'torchvision')
    """
    if container == "model_state_dict":
        return "simclr"
    if any(k.startswith(("backbone.0.", "backbone.4.")) for k in keys):
        return "prismpyp"
    if "encoder.conv1.weight" in keys:
        return "simsiam_official" if any(k.startswith("encoder.fc.") for k in keys) else "ours"
    if "conv1.weight" in keys:
        return "torchvision"
    return "unknown"


def _canonical(key: str, layout: str) -> str | None:
    """A stripped checkpoint key in our models' names (``encoder.<torchvision key>``, heads as
    named), or ``None`` for a tensor the layout drops."""
    if layout == "simsiam_official" and key.startswith(("encoder.fc.", "predictor.")):
        return None
    if layout == "torchvision":
        return "encoder." + key
    if layout == "prismpyp" and key.startswith("backbone."):
        index, _, rest = key[len("backbone."):].partition(".")
        return f"encoder.{_PRISMPYP_BACKBONE[index]}.{rest}" if index in _PRISMPYP_BACKBONE else key
    return key


def _group(key: str) -> str:
    """``encoder``, ``fc`` (a ResNet's classifier) or the head's name, of a canonical key."""
    return "fc" if key.startswith("encoder.fc.") else key.split(".", 1)[0]


def _describe(problems: list[str], limit: int = 5) -> str:
    more = f" (and {len(problems) - limit} more)" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more


def load_encoder_weights(model: nn.Module, path_or_state: str | os.PathLike | dict[str, Any], *,
                         layout: str = "auto") -> LoadReport:
    """Load pretrained weights into ``model`` in place, strictly; see the module's rules.

    Parameters
    ----------
    model:
        A :class:`~napari_cryolearn.models.resnet.ResNet`, or a model whose ``encoder`` is one
        (:class:`SimSiam`, :class:`SimCLR`).
    path_or_state:
        A checkpoint file (named in errors), or a checkpoint or state dict already loaded.
    layout:
        ``"auto"`` (from the keys) or one of :data:`LAYOUTS`.

    >>> from napari_cryolearn.models.resnet import resnet
    >>> imagenet_like = resnet("resnet18", in_channels=3, num_classes=1000).state_dict()
    >>> report = load_encoder_weights(resnet("resnet18", in_channels=1), imagenet_like)
    >>> report.layout, len(report.loaded), report.skipped, report.notes
    ('torchvision', 120, ['fc.weight', 'fc.bias'], ['conv1.weight: 3 input channels summed into 1'])
    """
    if layout != "auto" and layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected 'auto' or one of {', '.join(LAYOUTS)}")
    path = None if isinstance(path_or_state, dict) else path_or_state
    encoder = model if isinstance(model, ResNet) else getattr(model, "encoder", None)
    if not isinstance(encoder, ResNet):
        raise TypeError(f"{type(model).__name__} is not a ResNet and has no ResNet encoder")
    prefix = "" if encoder is model else "encoder."
    own_state = model.state_dict()
    own = {("encoder." + k if encoder is model else k): k for k in own_state}  # canonical → model key

    state, container = read_state_dict(path_or_state)
    stripped = _strip_module(state)
    if layout == "auto":
        layout = detect_layout(list(stripped), container)
    if layout == "unknown":
        raise InputError(f"unknown checkpoint layout (first keys: {_first_keys(state, 3)}); expected "
                         "encoder.* (napari-cryolearn, SimSiam, SimCLR), backbone.* (prismpyp) or conv1.* "
                         "(torchvision)", path=path)
    report = LoadReport(layout=layout)
    src: dict[str, str] = {}  # canonical → original checkpoint key
    for key, original in stripped.items():
        canon = _canonical(key, layout)
        if canon is None:
            report.skipped.append(original)
        else:
            src[canon] = original
    tensors = {canon: state[original] for canon, original in src.items()}
    conv1 = "encoder.conv1.weight"
    if conv1 in tensors and tensors[conv1].ndim == 4 and tensors[conv1].shape[1] != encoder.in_channels:
        have = tensors[conv1].shape[1]
        if encoder.in_channels == 1 or have == 1:
            tensors = adapt_first_conv(tensors, encoder.in_channels, key=conv1)
            verb = "summed into" if encoder.in_channels == 1 else "repeated to"
            report.notes.append(f"{prefix}conv1.weight: {have} input channels {verb} {encoder.in_channels}")

    problems: list[str] = []
    new_state = dict(own_state)
    groups = dict.fromkeys(_group(k) for k in own)
    for group in groups:
        keys = [k for k in own if _group(k) == group]
        given = [k for k in src if _group(k) == group]
        if group != "encoder" and not given:
            report.untouched += [own[k] for k in keys]
            continue
        if group == "fc" and any(k not in tensors or tensors[k].shape != own_state[own[k]].shape for k in keys):
            # a classifier for other classes is not part of the encoder
            report.skipped += [src[k] for k in given]
            report.untouched += [own[k] for k in keys]
            continue
        for k in keys:
            target = own_state[own[k]]
            if k not in tensors:
                if k.endswith(".num_batches_tracked"):  # absent from old torchvision weights
                    report.untouched.append(own[k])
                else:
                    problems.append(f"missing {own[k]} {tuple(target.shape)}")
            elif tensors[k].shape != target.shape:
                problems.append(f"{own[k]}: checkpoint {src[k]} {tuple(tensors[k].shape)} vs model "
                                f"{tuple(target.shape)}")
            else:
                new_state[own[k]] = tensors[k].to(target.dtype)
                report.loaded.append(own[k])
        problems += [f"unexpected {src[k]} {tuple(tensors[k].shape)}" for k in given if k not in own]
    report.skipped += [original for canon, original in src.items() if _group(canon) not in groups]
    if problems:
        raise InputError(f"checkpoint ({layout} layout) does not fit this {type(model).__name__} "
                         f"({encoder.name}, {encoder.in_channels} channel(s)): {_describe(problems)}", path=path)
    model.load_state_dict(new_state)
    return report
