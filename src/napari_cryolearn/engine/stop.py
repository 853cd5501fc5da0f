"""A stop flag shared between a running job and whoever may stop it (a Stop button, Ctrl-C)."""

from __future__ import annotations

import threading


class StopFlag:
    """Thread-safe flag a job polls between steps.

    A job that sees the flag set finishes its current step, leaves a usable result (a
    checkpoint, or nothing at all) and returns; it never leaves a half-written file.
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        """Ask the job to stop at its next check."""
        self._event.set()

    def is_set(self) -> bool:
        """True once :meth:`set` was called."""
        return self._event.is_set()

    def __bool__(self) -> bool:
        return self.is_set()
