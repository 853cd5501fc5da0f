"""The reference page of every stage's options, rendered from the registry and the configs.

Each stage's flags are those :func:`~napari_cryolearn.cli_flags.add_config_arguments` gives its
command, and each option's text is its field's ``Field(description=...)``, the same text as the
command's ``--help`` and the widget's tooltip: the page is generated, never written by hand.
``scripts/reference_docs.py`` writes it to ``docs/reference/stages.md``, and a test fails when
the committed page differs from what :func:`render_stage_reference` renders now.

Pure Python: importing this module loads no Qt, napari or torch (the configs are pydantic).
"""

from __future__ import annotations

import argparse
import html
import re
import typing
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import annotated_types
import yaml
from pydantic.fields import FieldInfo

from napari_cryolearn.cli_flags import (
    _unwrap_optional,
    add_config_arguments,
    config_fields,
    dest_name,
    field_is_expert,
    positional_metavar,
    usage,
)
from napari_cryolearn.engine.registry import Port, Stage

#: Where ``scripts/reference_docs.py`` writes the page, relative to the repository root.
PAGE = Path("docs") / "reference" / "stages.md"

#: The Markdown of a code span: a run of backticks, the code, the same run again.
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)

#: ``<`` that would start an HTML tag (``<name>``, ``</b>``, ``<!--``) in Markdown.
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")

#: ``_`` that could open or close emphasis (``class_0`` cannot, ``_here_`` can).
_EMPHASIS_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def cell(text: str) -> str:
    """``text`` as one Markdown table cell that reads as the plain text it is.

    One line; ``|`` escaped; ``<`` that would open an HTML tag, ``*`` and a ``_`` that could
    start emphasis escaped. Code spans (````code````, as the descriptions write them) stay
    code; a ``|`` inside one becomes an HTML code element with ``&#124;`` (some renderers read
    ``|`` in a code span as a column break, and a backslash there would be shown).

    >>> cell("keep map > threshold | below\\n(voxels)")
    'keep map > threshold \\\\| below (voxels)'
    >>> cell("``a|b`` or <name>")
    '<code>a&#124;b</code> or &lt;name>'
    """
    text = " ".join(str(text).split())
    out, start = [], 0
    for match in _CODE_SPAN.finditer(text):
        out.append(_plain(text[start:match.start()]))
        code = match.group(2)
        if "|" in code:
            out.append("<code>" + html.escape(code.strip(), quote=False).replace("|", "&#124;") + "</code>")
        else:
            out.append(match.group(0))
        start = match.end()
    out.append(_plain(text[start:]))
    return "".join(out)


def _plain(text: str) -> str:
    """Text outside code spans: ``|`` escaped, and what Markdown would read as a tag or emphasis."""
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")
    return _EMPHASIS_UNDERSCORE.sub(r"\\_", _TAG_START.sub("&lt;", text))


def _type_name(annotation: Any) -> str:
    ann = _unwrap_optional(annotation)
    if isinstance(ann, list):  # a union of several types
        return " or ".join(_type_name(a) for a in ann)
    origin = typing.get_origin(ann)
    if origin is Literal:
        return "one of " + ", ".join(f"`{c}`" for c in typing.get_args(ann))
    if origin is tuple:
        args = typing.get_args(ann)
        if args and Ellipsis not in args and len(set(args)) == 1:
            return f"{len(args)} × {_type_name(args[0])}"
        return "list of " + _type_name(args[0]) if args else "list"
    if origin is list:
        args = typing.get_args(ann)
        return "list of " + (_type_name(args[0]) if args else "text")
    if ann is str:
        return "text"
    if ann is Path or (isinstance(ann, type) and issubclass(ann, Path)):
        return "path"
    return getattr(ann, "__name__", str(ann))


def _number(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _bounds(field: FieldInfo) -> str:
    """The field's bounds as a reader writes them: ``≥ 1``, ``[0, 1)``, ``at least 1 value``."""
    low = high = None
    parts = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            low = f"[{_number(item.ge)}"
        elif isinstance(item, annotated_types.Gt):
            low = f"({_number(item.gt)}"
        elif isinstance(item, annotated_types.Le):
            high = f"{_number(item.le)}]"
        elif isinstance(item, annotated_types.Lt):
            high = f"{_number(item.lt)})"
        elif isinstance(item, annotated_types.MinLen):
            parts.append(f"at least {item.min_length} value{'s' if item.min_length != 1 else ''}")
        elif isinstance(item, annotated_types.MaxLen):
            parts.append(f"at most {item.max_length} values")
    if low and high:
        parts.insert(0, f"{low}, {high}")
    elif low:
        parts.insert(0, ("≥ " if low[0] == "[" else "> ") + low[1:])
    elif high:
        parts.insert(0, ("≤ " if high[-1] == "]" else "< ") + high[:-1])
    return ", ".join(parts)


def type_text(field: FieldInfo) -> str:
    """What a field takes, with its bounds.

    >>> from pydantic import Field
    >>> from napari_cryolearn.engine.config import Config
    >>> class C(Config):
    ...     overlap: float = Field(0.5, ge=0, lt=1)
    ...     size: tuple[int, int, int] | None = None
    ...     blend: Literal["gaussian", "constant"] = "gaussian"
    >>> [type_text(f) for f in C.model_fields.values()]
    ['float in [0, 1)', '3 × int', 'one of `gaussian`, `constant`']
    """
    name = _type_name(field.annotation)
    bounds = _bounds(field)
    if not bounds:
        return name
    return f"{name} in {bounds}" if bounds[0] in "[(" else f"{name}, {bounds}"


def default_text(field: FieldInfo) -> str:
    """A field's default as it is typed on the command line (``required`` when it has none).

    >>> from pydantic import Field
    >>> from napari_cryolearn.engine.config import Config
    >>> class C(Config):
    ...     input: Path = Field(description="tomogram MRC")
    ...     size: tuple[int, int, int] = (96, 128, 128)
    ...     invert: bool = False
    ...     window: tuple[int, int, int] | None = None
    >>> [default_text(f) for f in C.model_fields.values()]
    ['required', '`96 128 128`', '`false`', 'unset']
    """
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (list, tuple)):
        return "empty" if not value else "`" + " ".join(_number(v) for v in value) + "`"
    return f"`{_number(value)}`"


def stage_command(stage: Stage) -> str:
    """``cryolearn prep scale`` for the stage ``prep.scale``."""
    return " ".join(["cryolearn", *stage.name.split(".")])


def _parser(stage: Stage) -> argparse.ArgumentParser:
    """The stage's flags exactly as the command builds them."""
    parser = argparse.ArgumentParser(prog=stage_command(stage), add_help=False)
    add_config_arguments(parser, stage.config_class(), positionals=stage.cli_positionals)
    return parser


def _usage(stage: Stage) -> str:
    """The command's usage line, as its ``--help`` gives it: the positionals, then the flags it
    cannot do without, then the rest (positionals first: a list flag such as ``--keep V [V ...]``
    would take the paths after it)."""
    return f"{stage_command(stage)} {usage(stage.config_class(), stage.cli_positionals)}"


def _option_text(path: tuple[str, ...], action: argparse.Action | None) -> str:
    if action is None:
        return "(YAML only)"
    if not action.option_strings:
        return f"`{positional_metavar(path)}` (positional)"
    return ", ".join(f"`{flag}`" for flag in action.option_strings)


def _port_text(port: Port, names: dict[str, str]) -> str:
    """``--labels`` (labels, ``.mrc``, optional): where the option is, its kind and its file name ending."""
    ending = f"`{port.file_suffix}`" if port.file_suffix else "a folder"
    optional = ", optional" if port.optional else ""
    return f"{names.get(port.field, f'`{port.field}`')} ({port.kind}, {ending}{optional})"


def _option_name(path: tuple[str, ...], action: argparse.Action | None) -> str:
    """How the reader finds an option in the table: ``INPUT``, ``--labels``, or its YAML key."""
    if action is None:
        return f"`{'.'.join(path)}`"
    return f"`{action.option_strings[0]}`" if action.option_strings else f"`{positional_metavar(path)}`"


def _menu_name() -> str:
    """The plugin's name in napari's *Plugins* menu (its manifest's ``display_name``)."""
    manifest = resources.files("napari_cryolearn").joinpath("napari.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(manifest)["display_name"]


def _anchor(stage: Stage) -> str:
    return stage_command(stage).replace(" ", "-")


def render_stage(stage: Stage, menu: str | None = None) -> str:
    """The Markdown section of one stage: heading, summary, usage, options table, inputs and outputs."""
    parser = _parser(stage)
    actions = {action.dest: action for action in parser._actions if action.help != argparse.SUPPRESS}
    rows = [(path, field, actions.get(dest_name(path))) for path, field in config_fields(stage.config_class())]
    title = f" — {stage.title}" if stage.title else ""
    lines = [f"## {stage_command(stage)}{title} {{#{_anchor(stage)}}}", ""]
    summary = stage.summary[:1].upper() + stage.summary[1:]
    lines.append(cell(summary.rstrip(".") + "."))
    if stage.title:
        lines += ["", f"In napari: *Plugins ▸ {menu or _menu_name()} ▸ {stage.title}*."]
    lines += ["", "```text", _usage(stage), "```", ""]
    table = ["| Option | YAML key | Type | Default | Description |", "|---|---|---|---|---|"]
    lines += table
    config = actions["config"]
    lines.append(f"| `{config.option_strings[0]} {config.metavar}` | | path | unset | {cell(config.help)} |")
    config_cls = stage.config_class()
    daily = [row for row in rows if not field_is_expert(config_cls, row[0])]
    expert = [row for row in rows if field_is_expert(config_cls, row[0])]
    for part in (daily, expert):
        if part is expert and expert:
            lines += ["", f"Expert options of `{stage_command(stage)}` (most runs leave them at their defaults):",
                      "", *table]
        for path, field, action in part:
            lines.append(
                f"| {_option_text(path, action)} | `{'.'.join(path)}` | {cell(type_text(field))} "
                f"| {cell(default_text(field))} | {cell(field.description or '')} |"
            )
    names = {dest_name(path): _option_name(path, action) for path, field, action in rows}
    for label, ports in (("Reads", stage.inputs), ("Writes", stage.outputs)):
        if ports:
            lines += ["", f"{label}: " + "; ".join(_port_text(port, names) for port in ports) + "."]
    return "\n".join(lines) + "\n"


HEADER = """\
# Stage options

<!-- Generated by scripts/reference_docs.py from the stage registry and each config's
Field(description=...); do not edit by hand: edit the description, then run the script. -->

Every option of every stage, as `cryolearn` takes it and as the stage's napari widget shows it:
the description column is the field's description, which is also the command's `--help` text
and the widget's tooltip. Booleans come in pairs (`--invert`, `--no-invert`; one named `no_*`
is cleared without the `no`: `--network-backbone-no-max-pool`, `--network-backbone-max-pool`),
a list takes several values, and one value given to a fixed-length option is repeated
(`--patch-size 32` is 32³). The options most runs leave at their defaults are in a second
table, *Expert options*, as `--help` lists them under *expert options* and a stage's widget
at the end of its form. The *YAML key* is the same setting in a `--config` file, nested
options as mappings (`network.backbone.dense_dim` is `dense_dim` under `backbone` under
`network`). *Unset* means the option is left empty (in YAML: `null`); the description says
what that does. See [Command line](../cli.md) for how flags and YAML files combine.

"""


def render_stage_reference(stages: Iterable[Stage] | None = None) -> str:
    """The whole reference page, one section per stage (default: every registered stage, in pipeline order)."""
    if stages is None:
        from napari_cryolearn.stages import all_stages

        stages = all_stages()
    stages = list(stages)
    menu = _menu_name()
    contents = "".join(f"- [`{stage_command(s)}`](#{_anchor(s)}): {cell(s.summary)}\n" for s in stages)
    return HEADER + contents + "\n" + "\n".join(render_stage(stage, menu) for stage in stages)
