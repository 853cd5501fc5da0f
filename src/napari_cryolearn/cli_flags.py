"""Command-line flags from a config class, and a config from parsed flags.

Every field of a stage's :class:`~napari_cryolearn.engine.config.Config` becomes a flag named
after it (``lower_percentile`` → ``--lower-percentile``); fields listed as positionals become
positional arguments. ``--config FILE.yaml`` loads a whole config (ours, or a CryoSiam YAML
when the config class knows how to read one), and flags given next to it override its values.

The help of each flag is its field's description (as plain text), then ``(required)`` or the
default as it is typed; its placeholder says what it takes (``N``, ``FLOAT``, ``PATH``,
``Z Y X``, the choices). Flags of expert fields (:func:`~napari_cryolearn.engine.config.is_expert`)
are listed after the others, under *expert options*. A config that cannot be built from the
flags is reported in the command's words (:class:`FlagError`: ``missing OUTPUT``,
``--patch-size: ...``), not as the config's field paths.
"""

from __future__ import annotations

import argparse
import inspect
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from napari_cryolearn.engine.config import Config, is_expert, plain_text, read_yaml
from napari_cryolearn.engine.errors import InputError

C = TypeVar("C", bound=Config)

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


def _word_or(words: tuple[str, ...], kind: Any):
    """An argparse type: one of ``words`` as it is, anything else through ``kind``."""

    def convert(text: str):
        return text if text in words else kind(text)

    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert


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
        words = [w for a in ann if typing.get_origin(a) is Literal for w in typing.get_args(a)]
        if words and sequences:  # list[float] | Literal["auto"]: numbers, or one of the words
            items = [a for a in typing.get_args(sequences[0]) if a is not Ellipsis]
            return {"nargs": "+", "type": _word_or(tuple(words), items[0] if items else str),
                    "_sequence_or_scalar": True}
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


def field_is_expert(config_cls: type[Config], path: tuple[str, ...]) -> bool:
    """Whether the field at ``path`` is expert, or lies in a nested config marked expert."""
    cls: Any = config_cls
    for name in path:
        field = cls.model_fields[name]
        if is_expert(field):
            return True
        cls = _unwrap_optional(field.annotation)
    return False


def _is_negative(path: tuple[str, ...]) -> bool:
    """Whether a boolean is named ``no_*`` (``no_max_pool``)."""
    return path[-1].startswith("no_") and len(path[-1]) > 3


def bool_flags(path: tuple[str, ...]) -> tuple[str, str]:
    """(the flag that sets the boolean at ``path``, the one that clears it).

    A boolean named ``no_*`` keeps its own flag, and the one that clears it drops the ``no``
    (not ``--no-...-no-max-pool``); its YAML key is unchanged.

    >>> bool_flags(("invert",))
    ('--invert', '--no-invert')
    >>> bool_flags(("network", "backbone", "no_max_pool"))
    ('--network-backbone-no-max-pool', '--network-backbone-max-pool')
    """
    if _is_negative(path):
        return flag_name(path), flag_name((*path[:-1], path[-1][3:]))
    return flag_name(path), "--no-" + flag_name(path)[2:]


class _BoolFlags(argparse.Action):
    """A pair of flags for one boolean: the first sets it, the second clears it."""

    def __init__(self, option_strings, dest, on: str = "", **kwargs):
        self.on = on
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, option_string == self.on)

    def format_usage(self) -> str:
        return " | ".join(self.option_strings)


#: Placeholder of one value of each type (argparse lists the choices of a Literal itself).
_WORDS = {int: "N", float: "FLOAT", str: "TEXT", Path: "PATH"}


def _word(kind: Any) -> str:
    if kind is _number:
        return "NUMBER"
    return _WORDS.get(kind, "VALUE")


def metavar(annotation: Any) -> str | None:
    """The placeholder of a flag for a field of type ``annotation``, as ``--help`` shows it.

    One value: ``N`` (int), ``FLOAT``, ``NUMBER`` (int or float), ``TEXT``, ``PATH``; choices
    are listed by argparse (``None`` here). A list: ``N [N ...]``; a fixed-length tuple: its
    values, ``Z Y X`` for three (the suite's triples are z, y, x) and ``MIN MAX`` for a range of
    two floats.

    >>> [metavar(a) for a in (int, float, Path, tuple[int, int, int], list[int], tuple[float, float])]
    ['N', 'FLOAT', 'PATH', 'Z Y X', 'N [N ...]', 'MIN MAX']
    """
    spec = _flag_spec(annotation)
    if spec is None or "choices" in spec or spec.get("action") is not None:
        return None
    word = _word(spec.get("type"))
    if spec.get("nargs") != "+":
        return word
    n = _fixed_length(annotation)
    if n is None or spec.get("_sequence_or_scalar"):
        return f"{word} [{word} ...]"
    if n == 3:
        return "Z Y X"
    if n == 2 and word == "FLOAT":
        return "MIN MAX"
    return " ".join([word] * n)


def positional_metavar(path: tuple[str, ...]) -> str:
    """A positional's name in usage and messages: ``INPUT``."""
    return path[-1].upper()


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, with a flag's placeholder as :func:`metavar` gives it (``Z Y X``
    for a flag that takes one or three values) and no internal names."""

    def _format_args(self, action: argparse.Action, default_metavar: str) -> str:
        shown = getattr(action, "shown_metavar", None)
        return shown if shown is not None else super()._format_args(action, default_metavar)


def default_words(field: FieldInfo) -> str | None:
    """A field's default as it is typed on the command line; ``None`` for no default worth
    showing (required, unset or empty: the description says what that means).

    >>> from pydantic import Field
    >>> class C(Config):
    ...     size: tuple[int, int, int] = (96, 128, 128)
    ...     invert: bool = False
    ...     window: tuple[int, int, int] | None = None
    ...     lr: float = 1e-3
    >>> [default_words(f) for f in C.model_fields.values()]
    ['96 128 128', 'no', None, '0.001']
    """
    if field.is_required():
        return None
    value = field.get_default(call_default_factory=True)
    if value is None or (isinstance(value, (list, tuple)) and not value):
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def help_text(field: FieldInfo, positional: bool = False) -> str:
    """A flag's one line of help: the description as plain text, then ``(required)`` or the default."""
    text = plain_text(field.description)
    if positional:
        return text
    if field.is_required():
        return f"{text} (required)".strip()
    default = default_words(field)
    return f"{text} (default: {default})".strip() if default is not None else text


def usage(config_cls: type[Config], positionals: Sequence[str] = ()) -> str:
    """What follows the command in its usage line: the positionals, then the flags the command
    cannot do without, then ``[--config YAML] [OPTIONS]``.

    Positionals come first: a list flag (``--keep N [N ...]``) would take the paths after it.
    Every positional shows as required (``--config`` may give it instead).
    """
    fields = {dest_name(path): (path, field) for path, field in config_fields(config_cls)}
    words = []
    for name in positionals:
        path, field = fields[name]
        meta = positional_metavar(path)
        words.append(f"{meta} [{meta} ...]" if (_flag_spec(field.annotation) or {}).get("nargs") == "+" else meta)
    for name, (path, field) in fields.items():
        if name in positionals or not field.is_required() or _flag_spec(field.annotation) is None:
            continue
        words.append(f"{flag_name(path)} {metavar(field.annotation)}".rstrip())
    return " ".join([*words, "[--config YAML]", "[OPTIONS]"])


def epilog(config_cls: type[Config], positionals: Sequence[str] = ()) -> str:
    """What ``--help`` says after the options: how booleans, repeated values and ``--config``
    work, with this command's own options as the examples.

    >>> from napari_cryolearn.sample.job import SampleConfig
    >>> print(epilog(SampleConfig, ("output",)))
    A yes/no option has a flag for each (--overwrite, --no-overwrite). One value given to an option that takes a fixed number repeats (--shape 96 is 96 96 96). --config FILE.yaml reads the settings from a YAML file whose keys are the option names with underscores (voxel_size: 10.0); options given with it override the file.
    """
    fields = [(path, field) for path, field in config_fields(config_cls)
              if dest_name(path) not in positionals and _flag_spec(field.annotation) is not None]
    fields.sort(key=lambda item: field_is_expert(config_cls, item[0]))  # examples of daily options first
    sentences = []
    flags = next((bool_flags(path) for path, field in fields if _unwrap_optional(field.annotation) is bool), None)
    if flags:
        sentences.append(f"A yes/no option has a flag for each ({flags[0]}, {flags[1]}).")
    fixed = next(((path, field, n) for path, field in fields if (n := _fixed_length(field.annotation))), None)
    if fixed:
        path, field, n = fixed
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        item = _unwrap_optional(typing.get_args(_unwrap_optional(field.annotation))[0])
        first = default[0] if default else (32 if item is int else 0.5)
        sentences.append(f"One value given to an option that takes a fixed number repeats "
                         f"({flag_name(path)} {first} is {' '.join([str(first)] * n)}).")
    scalar = [(path, field) for path, field in fields if not field.is_required()
              and isinstance(field.get_default(call_default_factory=True), (bool, int, float, str))]
    nested = next(((path, field) for path, field in scalar if len(path) > 1), None)
    path, field = nested or (scalar[0] if scalar else (None, None))
    if path is None:
        example = ""
    else:
        value = field.get_default(call_default_factory=True)
        value = str(value).lower() if isinstance(value, bool) else value
        example = f"{path[-1]}: {value}"
        for key in reversed(path[:-1]):
            example = f"{key}: {{{example}}}"
        example = f" ({example})"
    how = "nested ones as mappings" if nested else ""
    sentences.append(f"--config FILE.yaml reads the settings from a YAML file whose keys are the option names "
                     f"with underscores{', ' + how if how else ''}{example}; options given with it override the file.")
    return " ".join(sentences)


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type[Config], positionals=(),
                         exclude=()) -> None:
    """Add ``--config`` and one flag (or positional) per field of ``config_cls`` (except the
    top-level fields named in ``exclude``: a batch sets those per file).

    Fields of nested configs get prefixed flags: ``network.out_channels`` is
    ``--network-out-channels``. Positionals are added in the order of ``positionals``, the
    flags of expert fields in an *expert options* group after the others. The parser's usage
    line becomes :func:`usage`'s (unless it has one) and its formatter :class:`HelpFormatter`.
    """
    parser.formatter_class = HelpFormatter
    if parser.usage is None:
        parser.usage = "%(prog)s " + usage(config_cls, positionals).replace("%", "%%")
    if parser.epilog is None:
        parser.epilog = epilog(config_cls, positionals).replace("%", "%%")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="YAML",
        help="read the settings from a YAML file (ours, or a CryoSiam config); options given with it override it",
    )
    fields = [(path, field) for path, field in config_fields(config_cls)
              if _flag_spec(field.annotation) is not None and path[0] not in exclude]
    by_dest = {dest_name(path): (path, field) for path, field in fields}
    for name in positionals:
        path, field = by_dest[name]
        spec = _flag_spec(field.annotation)
        nargs = "*" if spec.get("nargs") == "+" else "?"
        parser.add_argument(name, nargs=nargs, default=None, type=spec.get("type"),
                            metavar=positional_metavar(path), help=help_text(field, positional=True).replace("%", "%%"))
    expert = None
    for path, field in fields:
        name = dest_name(path)
        if name in positionals:
            continue
        group: Any = parser
        if field_is_expert(config_cls, path):
            if expert is None:
                expert = parser.add_argument_group("expert options", "settings most runs leave at their defaults")
            group = expert
        spec = _flag_spec(field.annotation)
        spec.pop("_sequence_or_scalar", None)
        text = help_text(field).replace("%", "%%")
        if spec.get("action") is argparse.BooleanOptionalAction:
            on, off = bool_flags(path)
            group.add_argument(on, off, dest=name, default=argparse.SUPPRESS, action=_BoolFlags, on=on, help=text)
            if _is_negative(path):  # the pair argparse made before: still accepted, not shown
                parser.add_argument("--no-" + on[2:], dest=name, default=argparse.SUPPRESS, action="store_false",
                                    help=argparse.SUPPRESS)
            continue
        action = group.add_argument(flag_name(path), dest=name, default=argparse.SUPPRESS, help=text, **spec)
        shown = metavar(field.annotation)
        if shown is not None:
            action.shown_metavar = shown


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


class FlagError(InputError):
    """A config the command line could not build, said in the command's words: ``missing
    OUTPUT (positional argument)``, ``missing --log-dir (required option)``, ``--patch-size:
    ...``, or the YAML key and file for a value the ``--config`` file gave. The CLI prints it
    under the command's usage line (exit status 2)."""


def _find_field(loc: tuple[str, ...], leaves: dict[tuple[str, ...], FieldInfo]) -> tuple[str, ...] | None:
    """The field an error location is in: its longest prefix that is a field (``("keep", 0)``
    is ``keep``)."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in leaves:
            return loc[:n]
    return None


def _given_at(given: dict[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = given
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def _in_flags(message: str, section: tuple[str, ...], leaves: dict[tuple[str, ...], FieldInfo],
              positionals: Sequence[str]) -> str:
    """A message of a check of a whole (nested) config, its field names replaced by the command's
    words: ``lower_percentile (99.0) must be below ...`` → ``--lower-percentile (99.0) must be below ...``.
    """
    names = {path[-1]: path for path in leaves if path[:-1] == section}

    def word(match: re.Match) -> str:
        path = names.get(match.group(0))
        if path is None:
            return match.group(0)
        return positional_metavar(path) if dest_name(path) in positionals else flag_name(path)

    replaced = re.sub(r"\b[a-z][a-z0-9_]*\b", word, message)
    if replaced == message and section:
        return f"{'.'.join(section)}: {message}"
    return replaced


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def flag_problems(
    config_cls: type[Config],
    err: ValidationError,
    *,
    given: dict[str, Any],
    positionals: Sequence[str] = (),
    source: str | Path | None = None,
) -> str:
    """The problems of ``err`` in the command's words (see :class:`FlagError`).

    ``given`` holds the values the flags gave (nested like the config), ``source`` the
    ``--config`` file the other values came from.
    """
    leaves = dict(config_fields(config_cls))
    missing_positionals: list[str] = []
    missing_flags: list[tuple[str, str]] = []
    problems: list[str] = []
    for error in err.errors():
        loc = tuple(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        path = _find_field(loc, leaves)
        if path is None:  # a check of a whole section, or a key that is no field (from the YAML)
            where = ".".join(loc)
            if error["type"] == "extra_forbidden":  # flags give no such key: the YAML did
                problems.append(f"{where}{f' in {source}' if source else ''}: {message} (no such setting)")
            else:
                problems.append(_in_flags(message, loc, leaves, positionals))
            continue
        name = dest_name(path)
        if error["type"] == "missing":
            if name in positionals:
                missing_positionals.append(positional_metavar(path))
            else:
                missing_flags.append((flag_name(path), ".".join(path)))
            continue
        if source is not None and not _given_at(given, path):
            where = f"{'.'.join(path)} in {source}"
        else:
            where = positional_metavar(path) if name in positionals else flag_name(path)
        problems.append(f"{where}: {message}")
    if missing_positionals or missing_flags:
        words = []
        if missing_positionals:
            kind = "positional argument" if len(missing_positionals) == 1 else "positional arguments"
            words.append(f"{_and(missing_positionals)} ({kind})")
        if missing_flags:
            kind = "required option" if len(missing_flags) == 1 else "required options"
            words.append(f"{_and([flag for flag, _ in missing_flags])} ({kind})")
        missing = "missing " + _and(words)
        if source is not None:
            keys = [name.lower() for name in missing_positionals] + [key for _, key in missing_flags]
            missing += f", or {_and(keys)} in {source}"
        problems.insert(0, missing)
    return "; ".join(problems)


def build_config(
    config_cls: type[C],
    data: dict[str, Any],
    *,
    given: dict[str, Any] | None = None,
    positionals: Sequence[str] = (),
    source: str | Path | None = None,
) -> C:
    """``config_cls`` validated from ``data``; a :class:`FlagError` in the command's words.

    >>> from napari_cryolearn.prep.scale_job import ScaleConfig
    >>> build_config(ScaleConfig, {"input": "t.mrc", "lower_percentile": 200},
    ...              given={"lower_percentile": 200}, positionals=("input", "output"))
    Traceback (most recent call last):
    ...
    napari_cryolearn.cli_flags.FlagError: missing OUTPUT (positional argument); --lower-percentile: Input should be less than or equal to 100
    """
    try:
        return config_cls.model_validate(data)
    except ValidationError as err:
        problems = flag_problems(config_cls, err, given=data if given is None else given,
                                 positionals=positionals, source=source)
        raise FlagError(problems) from None


def configs_from_args(
    args: argparse.Namespace, config_cls: type[Config], positionals: Sequence[str] = ()
) -> list[Config]:
    """Build the config(s) a command asked for; ``positionals`` are the command's positional
    fields (for the messages of :class:`FlagError`).

    A CryoSiam YAML may describe several files (a folder); it then gives one config per file.
    """
    overrides = _given(args, config_cls)
    path = getattr(args, "config", None)
    if path is None:
        # a list positional (PATCH_STORES ...) is required too, though its field defaults to []
        fields = dict(config_fields(config_cls))
        empty = [name for name in positionals if name not in overrides
                 and (_flag_spec(fields[(name,)].annotation) or {}).get("nargs") == "+"]
        try:
            config = build_config(config_cls, overrides, given=overrides, positionals=positionals)
        except FlagError as err:
            if not empty:
                raise
            config, problems = None, str(err)
        else:
            problems = ""
        if empty:
            kind = "positional argument" if len(empty) == 1 else "positional arguments"
            missing = f"missing {_and([n.upper() for n in empty])} ({kind})"
            if problems.startswith("missing "):
                missing, problems = f"{missing} and {problems[len('missing '):]}", ""
            raise FlagError("; ".join(p for p in (missing, problems) if p))
        return [config]
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
        return [build_config(config_cls, _deep_merge(c.to_dict(), rest), given=rest, positionals=positionals,
                             source=path) for c in configs]
    return [build_config(config_cls, _deep_merge(data, overrides), given=overrides, positionals=positionals,
                         source=path)]


def _is_path(annotation: Any) -> bool:
    ann = _unwrap_optional(annotation)
    if typing.get_origin(ann) in (list, tuple):
        ann = _unwrap_optional(typing.get_args(ann)[0])
    return ann is Path
