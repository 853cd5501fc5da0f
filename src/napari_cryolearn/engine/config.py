"""Typed configs that load from and save to YAML.

Every stage has a config class derived from :class:`Config` (a pydantic model). The CLI builds
it from flags or a YAML file, the widget from its form, and both hand the same object to the
same job. Unknown keys are an error, so a typo in a YAML file is caught before any work.

A field's ``Field(description=...)`` is its one help text (the command's ``--help``, the
widget's tooltip, the reference page); :func:`plain_text` renders it for a terminal. A field
most runs leave at its default is marked ``Field(..., json_schema_extra=EXPERT)`` once, and
every front end reads the mark with :func:`is_expert`: ``--help`` lists it under *expert
options*, the reference page in a table of its own, the widget at the end of its form. A
nested config marked expert makes all of its fields expert.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from napari_cryolearn.engine.atomic import atomic_path
from napari_cryolearn.engine.errors import InputError

C = TypeVar("C", bound="Config")

#: ``Field(..., json_schema_extra=EXPERT)`` marks a field as expert (see :func:`is_expert`).
EXPERT: dict[str, Any] = {"expert": True}


def is_expert(field: FieldInfo) -> bool:
    """Whether ``field`` is marked ``json_schema_extra=EXPERT``: a setting most runs leave alone.

    >>> from pydantic import Field
    >>> class C(Config):
    ...     size: int = Field(8, description="voxels")
    ...     chunk_mb: float = Field(64, description="MiB in flight", json_schema_extra=EXPERT)
    >>> [is_expert(f) for f in C.model_fields.values()]
    [False, True]
    """
    extra = field.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("expert"))


#: reST roles (``:class:`~a.b.C```) and inline literals (````x````, ```x```), as docstrings write them.
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`]+)`")
_LITERAL = re.compile(r"(`+)(.+?)\1", re.S)


def plain_text(text: str | None) -> str:
    """A description as a terminal shows it: reST roles and code markup removed, one line.

    ``:class:`~pkg.mod.Name``` becomes ``Name`` (``pkg.mod.Name`` without the ``~``), a code
    span its text; whitespace, new lines included, is folded.

    >>> plain_text('``"npy"`` or ``"cryosiam-npz"``; see :class:`~napari_cryolearn.engine.config.Config`')
    '"npy" or "cryosiam-npz"; see Config'
    >>> plain_text("Channels; ``None`` → the largest\\n   label + 1.")
    'Channels; None → the largest label + 1.'
    """
    if not text:
        return ""

    def role(match: re.Match) -> str:
        target = match.group(1)
        return target.rsplit(".", 1)[-1] if match.group(0).split("`", 1)[1].startswith("~") else target

    text = _LITERAL.sub(lambda m: m.group(2), _ROLE.sub(role, text))
    return " ".join(text.split())


class Config(BaseModel):
    """Base of all stage configs: validated on assignment, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], source: str | os.PathLike | None = None) -> C:
        """Validate ``data``; errors name ``source`` (a file) and each bad field."""
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in err.errors()
            )
            raise InputError(f"invalid {cls.__name__}: {problems}", path=source) from None

    @classmethod
    def from_yaml(cls: type[C], path: str | os.PathLike) -> C:
        """Load a config from a YAML file."""
        return cls.from_dict(read_yaml(path), source=path)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (paths as strings), ready for YAML or a checkpoint."""
        return self.model_dump(mode="json")

    def to_yaml(self, path: str | os.PathLike) -> Path:
        """Write the config to ``path`` atomically; returns the path."""
        import yaml

        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping of text keys; :class:`InputError` naming the file for anything else.

    Refused, before YAML parses anything: a missing path ("config file not found"), a folder or
    other non-file, a file that cannot be read (permission denied), one larger than
    ``_YAML_MAX_BYTES`` (a data file given as a config), one that is not UTF-8 text or holds
    characters YAML does not allow ("not a text YAML file"). Then: invalid YAML; a top level that
    is not a mapping; a key that is not text at any level (``1:``, ``yes:``, ``null:``), named
    with where it is; nesting deeper than ``_YAML_MAX_DEPTH``; a node that contains itself, or
    aliases that expand to more than ``_YAML_MAX_VALUES`` values. An empty file is ``{}``.
    """
    import yaml  # loaded when a YAML file is read, not with every config class

    path = Path(path)
    if not path.exists():
        raise InputError("config file not found", path=path)
    if not path.is_file():
        raise InputError("not a file (a YAML config file is expected)", path=path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_YAML_MAX_BYTES + 1)
    except OSError as err:
        raise InputError(f"cannot be read: {(err.strerror or str(err)).lower()}", path=path) from None
    if len(raw) > _YAML_MAX_BYTES:
        raise InputError(
            f"not a text YAML file: larger than {_YAML_MAX_BYTES // 2**20} MiB (a data file given as the config?)",
            path=path,
        )
    text = _yaml_text(raw, path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(f"not valid YAML ({err})", path=path) from None
    except RecursionError:
        raise InputError(f"not a usable config: nested more than {_YAML_MAX_DEPTH} levels deep", path=path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping at the top level, got {type(data).__name__}", path=path)
    _check_yaml_tree(data, "", {}, set(), path)
    return data


#: Limits of :func:`read_yaml`; configs are a few KiB, nest a few levels and hold hundreds of values.
_YAML_MAX_BYTES = 16 * 2**20
_YAML_MAX_DEPTH = 100
_YAML_MAX_VALUES = 1_000_000


def _yaml_text(raw: bytes, path: Path) -> str:
    """``raw`` as text (UTF-8, a BOM allowed); :class:`InputError` "not a text YAML file" for
    bytes that are not UTF-8 or characters YAML does not allow (NUL and other controls)."""
    import yaml.reader

    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(
            f"not a text YAML file: byte {err.start} (0x{raw[err.start]:02x}) is not UTF-8 text", path=path
        ) from None
    bad = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise InputError(
            f"not a text YAML file: character U+{ord(bad.group()):04X} on line {line} is not allowed in YAML",
            path=path,
        )
    return text


def _check_yaml_tree(node: Any, where: str, sizes: dict[int, int], open_: set[int], path: Path) -> int:
    """Check the keys and shape of loaded YAML; returns the number of values under ``node``.

    ``where`` is the dotted key path of ``node``; ``sizes`` caches the count of each container
    already checked (YAML aliases share them, so each is walked once); ``open_`` holds the
    containers on the current branch, which catches a node inside itself and bounds the depth.
    """
    if not isinstance(node, (dict, list)):
        return 1
    key = id(node)
    if key in sizes:
        return sizes[key]
    here = where or "the top level"
    if key in open_:
        raise InputError(f"{here} contains itself (a YAML alias inside its own anchor)", path=path)
    if len(open_) >= _YAML_MAX_DEPTH:
        raise InputError(f"not a usable config: nested more than {_YAML_MAX_DEPTH} levels deep at {here}", path=path)
    open_.add(key)
    total = 1
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for k, value in items:
        if isinstance(node, dict) and not isinstance(k, str):
            hint = (
                " (YAML reads yes/no/on/off/true/false as booleans, ~ and null as nothing; quote the key)"
                if k is None or isinstance(k, bool)
                else " (quote it)"
            )
            raise InputError(f"key {k!r} ({type(k).__name__}) in {here} is not text{hint}", path=path)
        total += _check_yaml_tree(value, f"{where}.{k}" if where else str(k), sizes, open_, path)
        if total > _YAML_MAX_VALUES:
            raise InputError(
                f"not a usable config: {here} holds more than {_YAML_MAX_VALUES} values (aliases expanding?)",
                path=path,
            )
    open_.discard(key)
    sizes[key] = total
    return total
