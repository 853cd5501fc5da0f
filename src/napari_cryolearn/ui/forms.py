"""Form widgets built from a config's fields: one widget per field, the field's default shown,
its description as the tooltip (plain text: no code markup), and no validation of their own.

A form only turns what the user typed into plain values (:func:`form_values`); the config
class validates them, so a field has one default and one set of rules, the config's, and the
error a user sees in napari is the message the command line prints. Number widgets therefore
accept any number (the config says which are allowed); fields without a default and optional
fields are text boxes whose empty value means "not given".

Supported field types: ``bool``, ``bool | None`` (auto / yes / no), ``int`` and ``float``
(``| None`` too), ``str`` (``| None`` too), ``Literal[...]``, ``Path`` (``| None`` too), and
lists or tuples of numbers or text, typed as words (``"96 128 128"`` or ``"1, 3"``). A stage
whose config holds anything else (nested configs, lists of paths) needs a custom widget:
:func:`field_widget` raises :class:`TypeError` naming the field.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal

from magicgui.widgets import CheckBox, ComboBox, FileEdit, Label, LineEdit, SpinBox, Widget
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from napari_cryolearn.engine.config import plain_text

#: Text of the choices of a ``bool | None`` field.
_AUTO_BOOL = {"auto": None, "yes": True, "no": False}
#: A range wide enough not to be a rule of its own (the config's bounds are the rules).
_INT_RANGE = (-(2**31) + 1, 2**31 - 1)


def _parts(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without ``None``, whether ``None`` is allowed)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), optional
    return annotation, False


def _is_sequence(annotation: Any) -> bool:
    if typing.get_origin(annotation) in (list, tuple):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_sequence(a) for a in typing.get_args(annotation))
    return False


def _accepts_scalar(annotation: Any) -> bool:
    """Whether a sequence field also takes one number or word (``int | tuple[int, int, int]``,
    ``list[float] | Literal["auto"]``)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(a in (int, float) or typing.get_origin(a) is Literal for a in typing.get_args(annotation))
    return False


def _fixed_length(annotation: Any) -> int | None:
    """N for ``tuple[int, int, int]``-like annotations."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is tuple and args and Ellipsis not in args:
        return len(args)
    return None


def _label(name: str) -> str:
    return name.replace("_", " ")


def _default(field: FieldInfo) -> Any:
    if field.default is PydanticUndefined:
        return None if field.default_factory is None else field.default_factory()
    return field.default


def _words(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def note(text: str, *, name: str = "") -> Label:
    """A line of explanation in a form that wraps to the dock's width (it never widens the dock)."""
    label = Label(name=name, value=text)
    label.native.setWordWrap(True)
    return label


def field_widget(name: str, field: FieldInfo) -> Widget:
    """The form widget of config field ``name``; ``widget.name`` is the field's name.

    Examples
    --------
    >>> from pydantic import Field
    >>> from napari_cryolearn.engine.config import Config
    >>> class C(Config):
    ...     size: tuple[int, int, int] = Field((8, 8, 8), description="voxels")
    >>> w = field_widget("size", C.model_fields["size"])
    >>> w.value, w.tooltip
    ('8 8 8', 'voxels')
    """
    annotation, optional = _parts(field.annotation)
    default = _default(field)
    common = {"name": name, "label": _label(name), "tooltip": plain_text(field.description) or None}
    if annotation is bool and not optional:
        return CheckBox(value=bool(default), **common)
    if annotation is bool:
        choice = next(k for k, v in _AUTO_BOOL.items() if v is default)
        return ComboBox(choices=list(_AUTO_BOOL), value=choice, **common)
    if typing.get_origin(annotation) is Literal:
        choices = list(typing.get_args(annotation))
        return ComboBox(choices=choices, value=default if default in choices else choices[0], **common)
    if annotation is int and not optional and default is not None:
        return SpinBox(value=int(default), min=_INT_RANGE[0], max=_INT_RANGE[1], **common)
    if annotation is Path or (isinstance(annotation, type) and issubclass(annotation, Path)):
        return FileEdit(mode="r", value=str(default or ""), **common)
    if _is_sequence(annotation):
        if any(item not in (int, float, str) for item in _sequence_items(annotation)):
            raise TypeError(f"field {name!r} ({field.annotation}) has no form widget: give its stage a custom widget")
        return LineEdit(value=_words(default), **common)
    if annotation in (int, float, str) or _accepts_scalar(annotation):
        return LineEdit(value=_words(default), **common)
    raise TypeError(f"field {name!r} ({field.annotation}) has no form widget: give its stage a custom widget")


def _sequence_items(annotation: Any) -> list[Any]:
    """The item types of the list/tuple parts of ``annotation``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [i for a in typing.get_args(annotation) for i in _sequence_items(a)]
    if typing.get_origin(annotation) in (list, tuple):
        return [a for a in typing.get_args(annotation) if a is not Ellipsis]
    return []


def _number(word: str) -> int | float | str:
    """``"3"`` → 3, ``"0.5"`` → 0.5, anything else stays text (for the config to refuse)."""
    for kind in (int, float):
        try:
            return kind(word)
        except ValueError:
            pass
    return word


def widget_value(widget: Widget, field: FieldInfo) -> Any:
    """What the user gave for ``field`` as a plain value, or :data:`PydanticUndefined` when the
    field was left empty (the config then uses its default, or says the field is required).

    Text is not checked here: ``"abc"`` for a number reaches the config as text, and the
    config's message says what is wrong with it.
    """
    annotation, optional = _parts(field.annotation)
    value = widget.value
    if isinstance(widget, CheckBox):
        return bool(value)
    if isinstance(widget, ComboBox):
        return _AUTO_BOOL[value] if annotation is bool else value
    if isinstance(widget, SpinBox):
        return int(value)
    if isinstance(widget, FileEdit):
        text = str(value).strip()
        return PydanticUndefined if text in ("", ".") else Path(text)
    text = str(value).strip()
    if not text:
        return None if optional else PydanticUndefined
    if _is_sequence(annotation):
        words = [_number(w) for w in text.replace(",", " ").split()]
        if len(words) == 1 and _accepts_scalar(annotation):
            return words[0]
        n = _fixed_length(annotation)
        return words * n if len(words) == 1 and n else words  # as on the command line: 16 -> 16 16 16
    if annotation is str:
        return text
    return _number(text)


def form_values(widgets: dict[str, Widget], fields: dict[str, FieldInfo]) -> dict[str, Any]:
    """``{field: value}`` for every widget whose field was given (see :func:`widget_value`)."""
    values = {}
    for name, widget in widgets.items():
        value = widget_value(widget, fields[name])
        if value is not PydanticUndefined:
            values[name] = value
    return values
