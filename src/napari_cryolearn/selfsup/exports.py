"""prismpyp's outputs of a training run, written beside the harness's.

``checkpoints/model_best.pth.tar``, ``model_lowest_collapse.pth.tar`` and
``model_last.pth.tar`` are ``{epoch, arch, state_dict, optimizer}`` dicts (the network's own
keys, no DDP ``module.`` prefix), made from the run's Lightning checkpoints;
``total_loss.webp`` and ``collapse_level.webp`` plot the epochs' values from the CSV log;
``training_config.yaml`` is the run's config. Each file is written atomically.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from napari_cryolearn.engine.atomic import atomic_path

__all__ = ["epoch_values", "export_prismpyp", "prismpyp_checkpoint"]

_MODEL_PREFIX = "model."


def prismpyp_checkpoint(ckpt: dict, arch: str) -> dict:
    """A Lightning checkpoint of :class:`~napari_cryolearn.selfsup.module.SSLModule` as prismpyp's
    dict: the network's state dict (its ``model.`` prefix removed), the epoch, the architecture
    and the optimiser's state."""
    state = {k[len(_MODEL_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(_MODEL_PREFIX)}
    optimizer = (ckpt.get("optimizer_states") or [None])[0]
    return {"epoch": int(ckpt.get("epoch", 0)) + 1, "arch": arch, "state_dict": state, "optimizer": optimizer}


def epoch_values(log_dir: str | Path, metric: str) -> list[float]:
    """The per-epoch values of ``metric`` in the run's newest CSV log (``csv_logs/version_*``)."""
    import pandas as pd

    logs = sorted(Path(log_dir).glob("csv_logs/version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    frames = [pd.read_csv(p) for p in logs]
    frames = [f for f in frames if metric in f.columns and "epoch" in f.columns]
    if not frames:
        return []
    table = pd.concat(frames).dropna(subset=[metric])
    return table.groupby("epoch")[metric].last().sort_index().astype(float).tolist()


def export_prismpyp(config, result) -> dict[str, Path]:
    """Write prismpyp's files into ``config.log_dir`` (see the module docstring); returns them."""
    import torch

    from napari_cryolearn.selfsup.curves import plot_curve

    run = Path(config.log_dir)
    out = run / "checkpoints"
    out.mkdir(parents=True, exist_ok=True)
    arch = f"{config.method}_{config.backbone}"
    written: dict[str, Path] = {}
    for name, source in (("model_best", run / "model" / "model_best.ckpt"),
                         ("model_lowest_collapse", run / "model" / "model_lowest_collapse.ckpt"),
                         ("model_last", run / "model" / "last.ckpt")):
        if source.is_file():
            ckpt = torch.load(source, map_location="cpu", weights_only=False)
            with atomic_path(out / f"{name}.pth.tar", overwrite=True) as tmp:
                torch.save(prismpyp_checkpoint(ckpt, arch), tmp)
            written[name] = out / f"{name}.pth.tar"
    loss = epoch_values(run, "train_loss")
    written["total_loss"] = plot_curve(run / "total_loss.webp", loss, title=f"{config.method} training loss")
    collapse = epoch_values(run, "collapse_level")
    if collapse:
        written["collapse_level"] = plot_curve(run / "collapse_level.webp", collapse,
                                               title="collapse level (0 healthy, 1 collapsed)")
    with atomic_path(run / "training_config.yaml", overwrite=True) as tmp:
        shutil.copyfile(run / "config.yaml", tmp)
    written["training_config"] = run / "training_config.yaml"
    return written
