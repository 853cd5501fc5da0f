"""prismpyp's outputs of a training run, written beside the harness's.

``checkpoints/model_best.pth.tar``, ``model_lowest_collapse.pth.tar`` and
``model_last.pth.tar`` are ``{epoch, arch, state_dict, optimizer}`` dicts (the network's own
keys, no DDP ``module.`` prefix), made from the run's Lightning checkpoints;
``total_loss.webp`` and ``collapse_level.webp`` plot the epochs' values from the CSV log;
``training_config.yaml`` is the run's config. A SimCLR run also gets the SimCLR trainer's
``checkpoints/best_model.pt`` (``{epoch, model_state_dict, optimizer_state_dict, loss,
best_loss, train_losses, val_losses, lr_history, global_step}``, keys ``encoder.*`` and
``projection_head.projection.{0,2}.*``) and its ``training_history.csv`` (epoch, train_loss,
val_loss, lr). Each file is written atomically.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from napari_cryolearn.engine.atomic import atomic_path

__all__ = ["epoch_values", "export_prismpyp", "prismpyp_checkpoint", "simclr_trainer_checkpoint"]

_MODEL_PREFIX = "model."


def prismpyp_checkpoint(ckpt: dict, arch: str) -> dict:
    """A Lightning checkpoint of :class:`~napari_cryolearn.selfsup.module.SSLModule` as prismpyp's
    dict: the network's state dict (its ``model.`` prefix removed), the epoch, the architecture
    and the optimiser's state."""
    state = {k[len(_MODEL_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(_MODEL_PREFIX)}
    optimizer = (ckpt.get("optimizer_states") or [None])[0]
    return {"epoch": int(ckpt.get("epoch", 0)) + 1, "arch": arch, "state_dict": state, "optimizer": optimizer}


def simclr_trainer_checkpoint(ckpt: dict, *, train_losses: list[float], val_losses: list[float],
                              lr_history: list[float]) -> dict:
    """A Lightning checkpoint of a SimCLR :class:`~napari_cryolearn.selfsup.module.SSLModule` as
    the SimCLR trainer's dict (its ``model.`` prefix removed; the losses are per epoch)."""
    state = {k[len(_MODEL_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(_MODEL_PREFIX)}
    epoch = int(ckpt.get("epoch", 0))
    losses = val_losses or train_losses
    loss = losses[epoch] if epoch < len(losses) else (losses[-1] if losses else float("nan"))
    return {"epoch": epoch, "model_state_dict": state,
            "optimizer_state_dict": (ckpt.get("optimizer_states") or [None])[0],
            "loss": float(loss), "best_loss": float(min(losses)) if losses else float("nan"),
            "train_losses": list(train_losses), "val_losses": list(val_losses), "lr_history": list(lr_history),
            "global_step": int(ckpt.get("global_step", 0))}


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
    if config.method == "simclr":
        written.update(_export_simclr_trainer(run, loss))
    with atomic_path(run / "training_config.yaml", overwrite=True) as tmp:
        shutil.copyfile(run / "config.yaml", tmp)
    written["training_config"] = run / "training_config.yaml"
    return written


def _export_simclr_trainer(run: Path, train_losses: list[float]) -> dict[str, Path]:
    import pandas as pd
    import torch

    source = run / "model" / "model_best.ckpt"
    if not source.is_file():
        return {}
    val, lr = epoch_values(run, "val_loss"), epoch_values(run, "lr")
    ckpt = torch.load(source, map_location="cpu", weights_only=False)
    out = run / "checkpoints" / "best_model.pt"
    with atomic_path(out, overwrite=True) as tmp:
        torch.save(simclr_trainer_checkpoint(ckpt, train_losses=train_losses, val_losses=val, lr_history=lr), tmp)
    n = len(train_losses)
    pad = lambda values: list(values) + [float("nan")] * (n - len(values))  # noqa: E731
    history = pd.DataFrame({"epoch": range(1, n + 1), "train_loss": train_losses, "val_loss": pad(val[:n]),
                            "lr": pad(lr[:n])})
    with atomic_path(run / "training_history.csv", overwrite=True) as tmp:
        history.to_csv(tmp, index=False)
    return {"best_model": out, "training_history": run / "training_history.csv"}
