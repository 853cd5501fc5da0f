"""Command-line flags from a config class, and a config from parsed flags.

Every field of a stage's :class:`~napari_cryolearn.engine.config.Config` becomes a flag named
after it (``lower_percentile`` → ``--lower-percentile``); fields listed as positionals become
positional arguments. ``--config FILE.yaml`` loads a whole config (ours, or a CryoSiam YAML
when the config class knows how to read one), and flags given next to it override its values.
"""

from __future__ import annotations

import argparse
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Literal

from napari_cryolearn.engine.config import Config, read_yaml
from napari_cryolearn.engine.errors import InputError

#: Top-level keys that mark a YAML file as a CryoSiam config rather than ours.
_CRYOSIAM_KEYS = {"data_folder", "labels_folder", "patches_folder", "parameters", "hyper_parameters", "log_dir"}


def _unwrap_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
        return args
    return annotation


def _number(text: str) -> int | float:
    """``"3"`` → 3, ``"0.5"`` → 0.5: for fields that mean different things as int and float."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def _fixed_length(annotation: Any) -> int | None:
    """N for ``tuple[int, int, int]``-like annotations (one flag value is then repeated N times)."""
    ann = _unwrap_optional(annotation)
    if typing.get_origin(ann) is tuple:
        args = typing.get_args(ann)
        if args and Ellipsis not in args:
            return len(args)
    return None


def _flag_spec(annotation: Any) -> dict[str, Any] | None:
    """argparse keyword arguments for a field's type, or None for types flags cannot express."""
    ann = _unwrap_optional(annotation)
    if isinstance(ann, list):  # a union such as int | tuple[int, int, int] or int | float
        scalars = [a for a in ann if a in (int, float, str)]
        sequences = [a for a in ann if typing.get_origin(a) in (tuple, list)]
        kind = _number if set(scalars) == {int, float} else (scalars[0] if scalars else None)
        if kind and sequences:
            return {"nargs": "+", "type": kind, "_sequence_or_scalar": True}
        if kind:
            return {"type": kind}
        return None
    origin = typing.get_origin(ann)
    if ann is bool:
        return {"action": argparse.BooleanOptionalAction}
    if ann in (int, float, str):
        return {"type": ann}
    if ann is Path or (isinstance(ann, type) and issubclass(ann, Path)):
        return {"type": Path}
    if origin is Literal:
        choices = typing.get_args(ann)
        return {"choices": choices, "type": type(choices[0])}
    if origin in (tuple, list):
        args = [a for a in typing.get_args(ann) if a is not Ellipsis]
        item = _unwrap_optional(args[0]) if args else str
        if item not in (int, float, str, Path):
            return None
        return {"nargs": "+", "type": item}
    return None


def _is_config(annotation: Any) -> bool:
    ann = _unwrap_optional(annotation)
    return isinstance(ann, type) and issubclass(ann, Config)


def config_fields(config_cls: type[Config], prefix: tuple[str, ...] = ()):
    """(path, field) for every field, nested configs flattened: ``("network", "out_channels")``."""
    for name, field in config_cls.model_fields.items():
        if _is_config(field.annotation):
            yield from config_fields(_unwrap_optional(field.annotation), (*prefix, name))
        else:
            yield (*prefix, name), field


#: Its earlier, private name (kept for the callers that use it).
_fields = config_fields


def flag_name(path: tuple[str, ...]) -> str:
    """The flag of the field at ``path``: ``("network", "out_channels")`` → ``--network-out-channels``.

    >>> flag_name(("lower_percentile",))
    '--lower-percentile'
    """
    return "--" + "-".join(path).replace("_", "-")


def dest_name(path: tuple[str, ...]) -> str:
    """The argparse ``dest`` (and positional name) of the field at ``path``: ``network__out_channels``."""
    return "__".join(path)


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type[Config], positionals=()) -> None:
    """Add ``--config`` and one flag (or positional) per field of ``config_cls``.

    Fields of nested configs get prefixed flags: ``network.out_channels`` is
    ``--network-out-channels``.
    """
    parser.add_argument(
        "--config",
        type=Path,
        metavar="YAML",
        help="read the settings from a YAML file (ours, or a CryoSiam config); flags override it",
    )
    for path, field in config_fields(config_cls):
        spec = _flag_spec(field.annotation)
        if spec is None:
            continue
        spec.pop("_sequence_or_scalar", None)
        help_text = (field.description or "").replace("%", "%%")
        if not field.is_required():
            default = field.get_default(call_default_factory=True)
            help_text = f"{help_text} (default: {default})".strip()
        name = dest_name(path)
        if name in positionals:
            nargs = "*" if spec.get("nargs") == "+" else "?"
            parser.add_argument(name, nargs=nargs, default=None, type=spec.get("type"), help=help_text)
        else:
            parser.add_argument(flag_name(path), dest=name, default=argparse.SUPPRESS, help=help_text, **spec)


def _given(args: argparse.Namespace, config_cls: type[Config]) -> dict[str, Any]:
    """The values given on the command line, as a (nested) dict of config fields."""
    given: dict[str, Any] = {}
    for path, field in config_fields(config_cls):
        name = dest_name(path)
        if not hasattr(args, name):
            continue
        value = getattr(args, name)
        if value is None or value == []:
            continue
        spec = _flag_spec(field.annotation) or {}
        if isinstance(value, list) and len(value) == 1:
            if spec.get("_sequence_or_scalar"):
                value = value[0]
            elif (n := _fixed_length(field.annotation)) is not None:
                value = value * n
        target = given
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    return given


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` laid over it, nested mappings merged key by key."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _from_cryosiam(config_cls: type[Config], data: dict, path: Path, overrides: dict[str, Any]) -> list[Config]:
    """Call ``config_cls.from_cryosiam`` with the file as ``source`` and the flags it takes by name."""
    params = inspect.signature(config_cls.from_cryosiam).parameters
    kwargs = {k: v for k, v in overrides.items() if k in params}
    if "source" in params:
        kwargs["source"] = path
    missing = [
        name for name, p in list(params.items())[1:]
        if p.default is inspect.Parameter.empty and name not in kwargs
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if missing:
        flags = ", ".join("--" + m.replace("_", "-") for m in missing)
        raise InputError(f"with a CryoSiam config this command also needs {flags}", path=path)
    configs = config_cls.from_cryosiam(data, **kwargs)
    return [configs] if isinstance(configs, Config) else list(configs)


def configs_from_args(args: argparse.Namespace, config_cls: type[Config]) -> list[Config]:
    """Build the config(s) a command asked for.

    A CryoSiam YAML may describe several files (a folder); it then gives one config per file.
    """
    overrides = _given(args, config_cls)
    path = getattr(args, "config", None)
    if path is None:
        return [config_cls.from_dict(overrides)]
    data = read_yaml(path)
    # a CryoSiam file has keys of theirs that are not ours (our own run config.yaml has log_dir)
    if (_CRYOSIAM_KEYS & set(data)) - set(config_cls.model_fields) and hasattr(config_cls, "from_cryosiam"):
        configs = _from_cryosiam(config_cls, data, path, overrides)
        if not configs:
            raise InputError("the CryoSiam config selects no files", path=path)
        # the CryoSiam file decides every file's paths; the other flags apply to each file
        consumed = set(inspect.signature(config_cls.from_cryosiam).parameters)
        rest = {
            k: v for k, v in overrides.items()
            if k not in consumed and not _is_path(config_cls.model_fields[k].annotation)
        }
        return [config_cls.from_dict(_deep_merge(c.to_dict(), rest), source=path) for c in configs]
    return [config_cls.from_dict(_deep_merge(data, overrides), source=path)]


def _is_path(annotation: Any) -> bool:
    ann = _unwrap_optional(annotation)
    if typing.get_origin(ann) in (list, tuple):
        ann = _unwrap_optional(typing.get_args(ann)[0])
    return ann is Path
