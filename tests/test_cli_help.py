"""What a user reads from ``cryolearn`` (#17 items 4-6): every stage's ``--help``, the message of
a missing or bad argument, and the warnings and log lines a command lets through."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

import napari_cryolearn.stages as suite
from napari_cryolearn.cli import main
from napari_cryolearn.cli_flags import config_fields, dest_name, field_is_expert, flag_name
from napari_cryolearn.engine.config import is_expert
from napari_cryolearn.io import write_mrc
from napari_cryolearn.stage_reference import render_stage

STAGES = [stage.name for stage in suite.all_stages()]


def _help(stage_name: str, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*stage_name.split("."), "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def _section(text: str, title: str) -> str:
    """The lines of one ``title:`` section of argparse's help (up to the next blank line and heading)."""
    match = re.search(rf"^{re.escape(title)}:\n(.*?)(?=^\S|\Z)", text, re.S | re.M)
    return match.group(1) if match else ""


# -- item 4: --help -----------------------------------------------------------------------------


@pytest.mark.parametrize("stage_name", STAGES)
def test_help_names_no_internals_and_shows_what_is_required(stage_name, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    stage = suite.get(stage_name)
    config_cls = stage.config_class()
    text = _help(stage_name, capsys)
    usage = " ".join(text.split("\n\n")[0].split())
    # no internal names as placeholders, no reST or Markdown code markup
    assert "__" not in text, [line for line in text.splitlines() if "__" in line]
    assert "``" not in text and ":class:" not in text and ":func:" not in text
    assert not re.search(r"--no-[\w-]*-no-|--no-no-", text), "a no_* boolean got a double negative"
    # the positionals, required as they are, first; then the flags the command needs
    command = "cryolearn " + " ".join(stage_name.split("."))
    positionals = [name.upper() for name in stage.cli_positionals]
    assert usage.startswith(f"usage: {command} {positionals[0]}"), usage
    for meta in positionals:
        assert f"[{meta.lower()}]" not in text and f"[{meta}]" not in text
        assert re.search(rf"^  {meta}\s+\S", text, re.M), f"{meta} has no description"
    assert "(default: [])" not in text
    fields = dict(config_fields(config_cls))
    for path, field in fields.items():
        if dest_name(path) in stage.cli_positionals:
            continue
        if field.is_required():
            assert f"{flag_name(path)} " in usage, (usage, path)
            entry = re.search(rf"^  {re.escape(flag_name(path))}\b.*?(?=^  -|\Z)", text, re.S | re.M).group(0)
            assert "(required)" in " ".join(entry.split()), entry
    # every option has a line of help that is more than its default
    entries = re.findall(r"^  (-[^\n]*?)(?:  +(\S[^\n]*))?\n((?:                        [^\n]*\n)*)", text, re.M)
    assert entries
    for invocation, first, rest in entries:
        words = " ".join(f"{first} {rest}".split())
        assert words and not words.startswith("(default"), (stage_name, invocation)
    # the options a user changes daily come first, the expert ones after their heading
    experts = [flag_name(path) for path in fields if field_is_expert(config_cls, path)
               and dest_name(path) not in stage.cli_positionals]
    daily = [flag_name(path) for path in fields if path not in experts and dest_name(path) not in stage.cli_positionals
             and not field_is_expert(config_cls, path)]
    if experts:
        assert "\nexpert options:\n" in text
        expert_part = _section(text, "expert options")
        options_part = _section(text, "options")
        for flag in experts:
            assert re.search(rf"^  {re.escape(flag)}\b", expert_part, re.M), flag
            assert not re.search(rf"^  {re.escape(flag)}\b", options_part, re.M), flag
        for flag in daily:
            assert re.search(rf"^  {re.escape(flag)}\b", options_part, re.M), flag


def test_segment_train_help_reads_as_written_for_a_user(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    text = _help("segment.train", capsys)
    assert text.startswith(
        "usage: cryolearn segment train PATCH_STORES [PATCH_STORES ...] --log-dir PATH [--config YAML] [OPTIONS]\n")
    assert re.search(r"^  --log-dir PATH\s+run folder", text, re.M)
    assert re.search(r"^  --patch-size Z Y X\s", text, re.M)
    assert re.search(r"^  --network-backbone-in-channels N\n", text, re.M)
    assert re.search(r"^  --transforms-zoom MIN MAX\n", text, re.M)
    assert "--network-backbone-no-max-pool, --network-backbone-max-pool" in text
    assert text.index("--max-epochs") < text.index("expert options:") < text.index("--num-workers")
    assert text.index("expert options:") < text.index("--network-backbone-dense-dim")


def test_the_help_shown_on_the_command_line_page_is_current(capsys, monkeypatch):
    page = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    shown = re.search(r"```text\n\$ cryolearn prep scale --help\n(.*?)```", page, re.S).group(1)
    monkeypatch.setenv("COLUMNS", "96")
    assert _help("prep.scale", capsys) == shown, "docs/cli.md shows another --help of prep scale"


def test_the_no_boolean_keeps_its_yaml_key_and_reads_both_ways(tmp_path):
    import argparse

    from napari_cryolearn.cli_flags import add_config_arguments, configs_from_args
    from napari_cryolearn.segmentation.config import SegmentationTrainConfig

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, SegmentationTrainConfig, positionals=("patch_stores",))
    base = ["s.zarr", "--log-dir", str(tmp_path / "run")]
    for flags, expected in ((["--network-backbone-no-max-pool"], True), (["--network-backbone-max-pool"], False),
                            (["--no-network-backbone-no-max-pool"], False), ([], True)):
        (config,) = configs_from_args(parser.parse_args([*base, *flags]), SegmentationTrainConfig)
        assert config.network.backbone.no_max_pool is expected, flags
        assert config.to_dict()["network"]["backbone"]["no_max_pool"] is expected


def test_one_expert_mark_is_read_by_help_reference_and_widget_order():
    """``json_schema_extra=EXPERT`` on the Field, nothing else: the reference page puts the field
    in its stage's expert table, as ``--help`` does (the widget test checks the form's order)."""
    from napari_cryolearn.prep.scale_job import ScaleConfig

    assert is_expert(ScaleConfig.model_fields["chunk_mb"]) and not is_expert(ScaleConfig.model_fields["invert"])
    page = render_stage(suite.get("prep.scale"), menu="cryolearn")
    daily, expert = page.split("Expert options of `cryolearn prep scale`")
    assert "`--chunk-mb`" in expert and "`--chunk-mb`" not in daily
    assert "`--invert`" in daily and "`--invert`" not in expert
    # a nested config marked expert makes all its fields expert
    from napari_cryolearn.segmentation.config import SegmentationTrainConfig

    assert field_is_expert(SegmentationTrainConfig, ("network", "backbone", "dense_dim"))
    assert not field_is_expert(SegmentationTrainConfig, ("network", "out_channels"))


# -- item 5: missing and bad arguments in the command's words ------------------------------------


@pytest.fixture
def labels(tmp_path):
    lab = np.zeros((8, 16, 16), np.uint8)
    lab[2:6, 4:12, 4:12] = 1
    return write_mrc(tmp_path / "labels.mrc", lab, voxel_size=10.0)


@pytest.mark.parametrize(("argv", "message"), [
    (["prep", "scale", "{labels}"], "cryolearn prep scale: error: missing OUTPUT (positional argument)"),
    (["prep", "scale"], "cryolearn prep scale: error: missing INPUT and OUTPUT (positional arguments)"),
    (["prep", "filter", "{labels}", "{out}/f.mrc"], "cryolearn prep filter: error: missing --keep (required option)"),
    (["segment", "train", "{out}/s.zarr"], "cryolearn segment train: error: missing --log-dir (required option)"),
    (["segment", "train"], "cryolearn segment train: error: missing PATCH_STORES (positional argument) and --log-dir (required option)"),
    (["segment", "train", "--log-dir", "{out}/run"], "cryolearn segment train: error: missing PATCH_STORES"),
    (["segment", "predict", "m.ckpt", "{labels}"], "cryolearn segment predict: error: missing OUTPUT"),
    (["sample", "{out}/s", "--voxel-size", "-3"], "cryolearn sample: error: --voxel-size: Input should be greater than 0"),
    (["prep", "patches", "{labels}", "{out}/p.zarr", "--overlap", "1.5", "--patch-size", "8"],
     "cryolearn prep patches: error: --overlap fraction must be in [0, 1), got 1.5"),
    (["prep", "scale", "{labels}", "{out}/s.mrc", "--lower-percentile", "60", "--upper-percentile", "40"],
     "cryolearn prep scale: error: --lower-percentile (60.0) must be below --upper-percentile (40.0)"),
    (["prep", "distances", "{labels}", "{out}/d.npy", "--normalize"],
     "cryolearn prep distances: error: --normalize needs --clip"),
    (["segment", "train", "{out}/s.zarr", "--log-dir", "{out}/run", "--network-class-names", "a", "b", "c"],
     "cryolearn segment train: error: --network-class-names has 3 names, --network-out-channels is 2"),
])
def test_a_missing_or_bad_argument_is_named_as_the_command_line_names_it(argv, message, labels, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["-q", *[a.format(labels=labels, out=out) for a in argv]])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err, err
    assert err.startswith("usage: cryolearn "), err
    assert "Traceback" not in err and "Field required" not in err and "invalid " not in err, err
    assert not out.exists()


def test_with_a_config_file_the_message_names_its_keys_and_file(labels, tmp_path, capsys):
    config = tmp_path / "scale.yaml"
    config.write_text(yaml.safe_dump({"input": str(labels), "lower_percentile": 300}))
    assert main(["-q", "prep", "scale", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"missing OUTPUT (positional argument), or output in {config}" in err, err
    assert f"lower_percentile in {config}: Input should be less than or equal to 100" in err, err
    assert main(["-q", "prep", "scale", "--config", str(config), str(labels), str(tmp_path / "o.mrc"),
                 "--lower-percentile", "400"]) == 2
    err = capsys.readouterr().err
    assert "--lower-percentile: Input should be less than or equal to 100" in err and "missing" not in err, err
    config.write_text(yaml.safe_dump({"input": str(labels), "output": str(tmp_path / "o.mrc"), "invrt": True}))
    assert main(["-q", "prep", "scale", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"invrt in {config}: Extra inputs are not permitted (no such setting)" in err, err


# -- item 6: warnings and log lines -------------------------------------------------------------


def _library_function():
    """A function of a module that is not the suite's (``somelib``) that warns and logs."""
    namespace = {"__name__": "somelib", "warnings": warnings, "logging": logging}
    exec(compile(
        "def noisy():\n"
        "    warnings.warn('somelib.old() is deprecated', DeprecationWarning)\n"
        "    logging.getLogger('somelib').info('Tip: try somelib cloud')\n",
        "/site-packages/somelib/__init__.py", "exec"), namespace)
    return namespace["noisy"]


@pytest.fixture
def noisy_sample_job(monkeypatch):
    """The sample job, calling a noisy library first (as training calls Lightning)."""
    import io

    import napari_cryolearn.sample.job as sample_job

    original, noisy = sample_job.sample_job, _library_function()

    def job(config, stop=None):
        noisy()
        return (yield from original(config, stop=stop))

    monkeypatch.setattr(sample_job, "sample_job", job)
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    logger = logging.getLogger("somelib")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield log
    logger.removeHandler(handler)


def test_a_warning_of_the_suite_is_one_line_without_its_source(tmp_path, capsys, noisy_sample_job):
    """``sample`` of a small shape warns (room for fewer particles); the library's deprecation
    warning and its log line are left out."""
    code = main(["-q", "sample", str(tmp_path / "s"), "--shape", "16", "24", "24", "--n-micrographs", "0"])
    assert code == 0
    err = capsys.readouterr().err
    lines = err.splitlines()
    ours = [line for line in lines if line.startswith("cryolearn: warning: ")]
    assert "cryolearn: warning: synthetic tomogram: room for only 0 of 8 particles in shape (16, 24, 24)" in ours
    assert len(ours) == len(set(ours)) == len(lines), err  # one line each, nothing else
    assert "RuntimeWarning" not in err and ".py:" not in err and "make_synthetic_tomogram(" not in err
    assert "somelib" not in err and "deprecated" not in err
    assert noisy_sample_job.getvalue() == ""


def test_a_job_warning_from_the_engine_is_shown_once(labels, tmp_path, capsys):
    """The filter's warning about an absent value used to show ``engine/jobs.py:...: UserWarning``
    and the source line ``event = next(job)``."""
    assert main(["-q", "prep", "filter", str(labels), str(tmp_path / "f.mrc"), "--keep", "1", "9"]) == 0
    err = capsys.readouterr().err
    assert err == f"cryolearn: warning: label value(s) [9] selected but absent from {labels}\n", err


def test_verbose_shows_other_libraries_warnings_and_log_lines(tmp_path, capsys, noisy_sample_job):
    code = main(["-q", "-v", "sample", str(tmp_path / "s"), "--shape", "16", "24", "24", "--n-micrographs", "0"])
    assert code == 0
    err = capsys.readouterr().err
    assert "DeprecationWarning: somelib.old() is deprecated" in err
    assert "cryolearn: warning: synthetic tomogram" in err
    assert "Tip: try somelib cloud" in noisy_sample_job.getvalue()


def test_the_scope_ends_with_the_command(tmp_path):
    """Filters, the warning hook and the logging level are the caller's again afterwards."""
    before = (warnings.showwarning, list(warnings.filters), logging.root.manager.disable)
    assert main(["-q", "sample", str(tmp_path / "s"), "--shape", "16", "24", "24", "--n-micrographs", "0"]) == 0
    assert (warnings.showwarning, list(warnings.filters), logging.root.manager.disable) == before


@pytest.mark.slow
def test_training_prints_no_lightning_noise(tmp_path):
    """A real ``segment train`` (a child process, as a user runs it): the progress bar and the
    results, none of Lightning's device report, tips or deprecation warnings."""
    exe = str(Path(sys.executable).parent / "cryolearn")
    run = lambda *argv: subprocess.run([exe, *argv], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert run("-q", "sample", "s", "--shape", "32", "48", "48", "--n-micrographs", "0").returncode == 0
    assert run("-q", "prep", "patches", "s/tomogram.mrc", "p.zarr", "--labels", "s/labels.mrc",
               "--patch-size", "32").returncode == 0
    done = run("segment", "train", "p.zarr", "--log-dir", "run", "--max-epochs", "1", "--device", "cpu",
               "--network-out-channels", "4")
    assert done.returncode == 0, done.stderr
    err = done.stderr.replace("\r", "\n")
    noise = [line for line in err.splitlines() if line.strip() and not line.startswith("segment.train")]
    assert noise == [], noise
    assert "model: " in done.stdout
