"""Progress events that jobs yield, read by the CLI's progress bar and napari's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Progress:
    """One step of a job.

    Attributes
    ----------
    step:
        Steps done so far (0 ≤ step ≤ total).
    total:
        Steps in the whole job, or ``None`` when unknown.
    message:
        What the job is doing now, for a person ("writing labels.mrc", "epoch 3/10").
    stage:
        Name of the stage that yields it ("sample", "scale", ...).
    metrics:
        Numbers worth plotting (e.g. ``{"loss": 0.41, "dice_membrane": 0.82}``).
    """

    step: int
    total: int | None = None
    message: str = ""
    stage: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float | None:
        """Done fraction in [0, 1], or ``None`` when the total is unknown."""
        if not self.total:
            return None
        return min(max(self.step / self.total, 0.0), 1.0)
