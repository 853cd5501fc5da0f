"""The picking page's quick start runs as written, in an empty folder, and picks proteins."""

import re
import shlex
from pathlib import Path

import pytest

from napari_cryolearn.cli import main

PAGE = Path(__file__).resolve().parents[2] / "docs" / "stages" / "picking.md"


def quick_start() -> list[list[str]]:
    section = PAGE.read_text().split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line)[1:] for line in block.splitlines() if line.startswith("cryolearn ")]


@pytest.mark.slow
def test_the_quick_start_runs_as_written(tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the operators' default cache
    commands = quick_start()
    assert [c[:2] for c in commands][-3:] == [["pick", "meshes"], ["pick", "predict"], ["pick", "eval"]]
    for words in commands:
        extra = ["--output", "scores.json"] if words[:2] == ["pick", "eval"] else []
        assert main(["-q", *words, *extra]) == 0, words
    assert (tmp_path / "run" / "model" / "model_best.ckpt").is_file()
    assert any((tmp_path / "cache" / "napari-cryolearn" / "operators").iterdir())
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["per_file"]["tomogram.star"]["truth"] > 10
    assert scores["f1"] > 0.5  # one training tomogram, 100 epochs: a usable picker, not the acceptance figure
