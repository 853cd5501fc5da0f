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


#: Steps of one item in a :func:`nested` event: fine enough for a bar, whatever the item's own total.
ITEM_STEPS = 1000


def nested(event: Progress, *, index: int, count: int, name: str = "") -> Progress:
    """``event`` of item ``index`` (0-based) of ``count`` as a step of the whole run.

    A batch of ``count`` files (or a sweep of runs) shows one bar: each item takes
    :data:`ITEM_STEPS` steps of it, filled by the item's own fraction done (none while its
    total is unknown), and the message says which item: ``"[2/5] tomo_b.mrc: epoch 3/10"``.
    The stage and metrics are the item's.

    Examples
    --------
    >>> e = nested(Progress(3, 4, "writing"), index=1, count=2, name="b.mrc")
    >>> e.step, e.total, e.message
    (1750, 2000, '[2/2] b.mrc: writing')
    """
    if not 0 <= index < count:
        raise ValueError(f"index {index} is not in 0..{count - 1}")
    done = event.fraction or 0.0
    label = f"[{index + 1}/{count}]" + (f" {name}" if name else "")
    message = f"{label}: {event.message}" if event.message else label
    return Progress(index * ITEM_STEPS + round(done * ITEM_STEPS), count * ITEM_STEPS, message,
                    stage=event.stage, metrics=event.metrics)
