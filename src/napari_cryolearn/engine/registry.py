"""The registry of stages: one place that the CLI, the demo and the batch runner read.

A stage is registered once, with its config class and its job function. File-level stages
(those that map input files to output files) are what the batch runner iterates over folders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from napari_cryolearn.engine.config import Config


@dataclass(frozen=True)
class Stage:
    """One stage of the suite.

    Attributes
    ----------
    name:
        Short name, also the CLI's word for it ("sample", "prep.scale", ...).
    config:
        Its :class:`Config` class.
    job:
        ``job(config, stop=None) -> Generator[Progress, None, result]``.
    summary:
        One line for ``--help`` and the batch widget.
    per_file:
        True when the job maps input files to output files (batch-able).
    """

    name: str
    config: type[Config]
    job: Callable
    summary: str
    per_file: bool = False


_STAGES: dict[str, Stage] = {}


def register_stage(stage: Stage) -> Stage:
    """Add ``stage`` (a name may be registered once)."""
    if stage.name in _STAGES and _STAGES[stage.name] is not stage:
        raise ValueError(f"stage {stage.name!r} is already registered")
    _STAGES[stage.name] = stage
    return stage


def get_stage(name: str) -> Stage:
    """The stage called ``name``; ``KeyError`` lists the known names."""
    load_builtin_stages()
    try:
        return _STAGES[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; known: {', '.join(sorted(_STAGES))}") from None


def stages() -> list[Stage]:
    """All registered stages, by name."""
    load_builtin_stages()
    return [_STAGES[k] for k in sorted(_STAGES)]


def load_builtin_stages() -> None:
    """Import the modules that register the suite's own stages."""
    import napari_cryolearn.stages  # noqa: F401  (registers on import)
