"""The generated reference page, docs/reference/stages.md: committed up to date, and every field's
description on it, in the row of the field's flag, as a reader sees the rendered page."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import markdown
from pydantic import Field

import napari_cryolearn.stages as suite
from napari_cryolearn.cli_flags import config_fields, dest_name, flag_name
from napari_cryolearn.engine.config import Config
from napari_cryolearn.engine.registry import Port, Stage
from napari_cryolearn.stage_reference import PAGE, render_stage, render_stage_reference, stage_command

ROOT = Path(__file__).resolve().parents[1]


class _Tables(HTMLParser):
    """Per ``<h2 id>`` section: its heading text, and its table rows as lists of cell texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, dict] = {}
        self._section: dict | None = None
        self._text: list[str] | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "h2":
            self._section = {"heading": "", "rows": []}
            self.sections[dict(attrs)["id"]] = self._section
            self._text = []
        elif tag == "tr" and self._section is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._text = []

    def handle_endtag(self, tag):
        if tag == "h2" and self._section is not None:
            self._section["heading"] = " ".join("".join(self._text).split())
            self._text = None
        elif tag in ("td", "th") and self._row is not None:
            self._row.append(" ".join("".join(self._text).split()))
            self._text = None
        elif tag == "tr" and self._row is not None:
            self._section["rows"].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


def _rendered(page: str) -> dict[str, dict]:
    """The page as mkdocs renders it (its Markdown extensions), read back as sections of table rows."""
    parser = _Tables()
    parser.feed(markdown.markdown(page, extensions=["tables", "attr_list", "toc"]))
    return parser.sections


def _as_read(description: str) -> str:
    """A description as its reader sees it: code spans (````x````) shown as code, whitespace folded."""
    return " ".join(re.sub(r"(`+)(.+?)\1", r"\2", description, flags=re.S).split())


def _option(stage: Stage, path: tuple[str, ...]) -> str:
    """How the field is given on the command line: its flag, or its positional's name."""
    return path[-1].upper() if dest_name(path) in stage.cli_positionals else flag_name(path)


def test_the_committed_reference_page_is_up_to_date():
    committed = (ROOT / PAGE).read_text(encoding="utf-8")
    assert committed == render_stage_reference(), f"{PAGE} is out of date: run python scripts/reference_docs.py"


def test_every_field_of_every_stage_is_on_the_page_with_its_flag_and_description():
    sections = _rendered(render_stage_reference())
    stages = suite.all_stages()
    assert len(sections) == len(stages)
    for stage in stages:
        anchor = stage_command(stage).replace(" ", "-")
        assert anchor in sections, f"no section for {stage.name}"
        section = sections[anchor]
        assert stage_command(stage) in section["heading"]
        if stage.title:
            assert stage.title in section["heading"]
        header, config_row, *rows = section["rows"]
        assert header == ["Option", "YAML key", "Type", "Default", "Description"]
        assert config_row[0] == "--config YAML"
        rows = [row for row in rows if row != header]  # the expert options' table has one too
        by_option = {row[0].split(",")[0].split(" (")[0]: row for row in rows}
        fields = list(config_fields(stage.config_class()))
        assert len(rows) == len(fields), f"{stage.name}: {len(rows)} rows for {len(fields)} fields"
        for path, field in fields:
            option = _option(stage, path)
            assert option in by_option, f"{stage.name}: no row for {option} ({'.'.join(path)})"
            row = by_option[option]
            assert len(row) == 5, f"{stage.name} {option}: a cell broke the row into {row}"
            assert row[1] == ".".join(path), (stage.name, option, row)
            assert (row[3] == "required") == field.is_required(), (stage.name, option, row)
            assert (field.description or "").strip(), f"{stage.name}: {'.'.join(path)} has no description"
            assert row[4] == _as_read(field.description), (
                f"{stage.name} {option}: the page says {row[4]!r}, the field {field.description!r}"
            )


class _Awkward(Config):
    """A config whose descriptions hold what a Markdown table cell must not break on."""

    input: Path = Field(description="tomogram | or map\nover two lines, see <name>.mrc")
    mode: str = Field("a", description="``a|b`` picks the branch; *not* emphasis _here_")
    sizes: tuple[int, int] = Field((1, 2), ge=1, description="two sizes [0, 1] (voxels)")


def test_a_description_with_pipes_newlines_and_markup_stays_in_its_cell():
    stage = Stage(name="example.awkward", config=_Awkward, job=None, summary="a | b", cli_positionals=("input",),
                  inputs=(Port("input", "tomogram"),), title="Awkward")
    sections = _rendered(render_stage(stage, menu="cryolearn"))
    header, _config, *rows = sections["cryolearn-example-awkward"]["rows"]
    assert [len(row) for row in rows] == [5, 5, 5]
    assert rows[0][0] == "INPUT (positional)"
    assert rows[0][4] == "tomogram | or map over two lines, see <name>.mrc"
    assert rows[1][4] == "a|b picks the branch; *not* emphasis _here_"
    assert rows[2][2:4] == ["2 × int, ≥ 1", "1 2"]
    assert rows[2][4] == "two sizes [0, 1] (voxels)"


def test_every_usage_line_is_a_command_that_parses_into_its_config():
    """The usage line, its placeholders filled in, gives the stage's config (positionals first:
    a list flag would take the paths after it)."""
    import argparse

    from napari_cryolearn.cli_flags import add_config_arguments, configs_from_args

    page = render_stage_reference()
    for stage in suite.all_stages():
        (usage,) = [line for line in page.splitlines() if line.startswith(stage_command(stage) + " ")]
        assert usage.endswith(" [--config YAML] [OPTIONS]"), usage
        # one value for each placeholder: what is in brackets is optional or a repetition
        words = re.sub(r"\[[^\]]*\]", "", usage[len(stage_command(stage)):]).split()
        parser = argparse.ArgumentParser(prog=stage_command(stage), exit_on_error=False)
        add_config_arguments(parser, stage.config_class(), positionals=stage.cli_positionals)
        samples = {"N": "1", "FLOAT": "0.5", "NUMBER": "1"}
        argv = [w if w.startswith("--") else samples.get(w, f"{w.lower()}.file") for w in words]
        (config,) = configs_from_args(parser.parse_args(argv), stage.config_class())
        for name in stage.cli_positionals:
            assert getattr(config, name), f"{stage.name}: {usage!r} did not set {name}"
