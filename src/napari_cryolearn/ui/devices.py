"""Which compute devices this machine offers, for the widgets' device choice."""

from __future__ import annotations


def available_devices() -> list[str]:
    """``["auto", "cpu"]`` plus ``"cuda"`` and ``"mps"`` where present."""
    import torch

    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices
