"""The one exception type a user is meant to read."""

from __future__ import annotations

from os import PathLike


class InputError(ValueError):
    """Bad input found before anything was written.

    The message names the file (when there is one), the field and what was expected, e.g.
    ``labels.mrc: shape (64, 64, 64) differs from tomogram.mrc (64, 64, 32)``.
    """

    def __init__(self, message: str, path: str | PathLike | None = None, field: str | None = None):
        self.path = None if path is None else str(path)
        self.field = field
        parts = []
        if self.path:
            parts.append(self.path)
        if field:
            parts.append(field)
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)

    def __reduce__(self):
        # pickled whole (to a child process and back): the message as shown, path and field
        return _rebuild, (type(self), str(self), self.path, self.field)


def _rebuild(cls: type, text: str, path: str | None, field: str | None) -> InputError:
    err = cls(text)
    err.path, err.field = path, field
    return err


class OutputError(InputError):
    """An output could not be written: no space left, no permission, a read-only or missing
    folder, another run writing the same output. Nothing partial is left behind.

    A subclass of :class:`InputError`, so that every caller that reports bad input (the CLI's
    exit code 2, a widget's message) reports this the same way.
    """


class OutputExistsError(OutputError, FileExistsError):
    """The output exists and may not be replaced (no overwrite, or a folder we did not write).

    Both an :class:`OutputError` (the CLI's exit code 2, a widget's message) and a
    ``FileExistsError`` (what Python callers of the atomic writers catch).
    """
