"""The README's quick tour runs as written (its `cryolearn` lines, in an empty folder)."""

import re
import shlex
from pathlib import Path

import numpy as np

from napari_cryolearn.cli import main
from napari_cryolearn.io import read_mrc

README = Path(__file__).resolve().parents[1] / "README.md"


def quick_tour_commands() -> list[list[str]]:
    text = README.read_text()
    section = text.split("## Quick tour", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = []
    for line in block.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("cryolearn "):
            commands.append(shlex.split(line)[1:])
    return commands


def test_quick_tour_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    commands = quick_tour_commands()
    assert [c[0] for c in commands][:2] == ["sample", "prep"] and ["segment", "predict"] == commands[-1][:2]
    for words in commands:
        assert main(["-q", *words]) == 0, words
    predicted = read_mrc(tmp_path / "predicted_labels.mrc")
    scaled = read_mrc(tmp_path / "tomogram_scaled.mrc")
    assert predicted.data.shape == scaled.data.shape and predicted.voxel_size == scaled.voxel_size
    assert np.load(tmp_path / "probabilities.npy", mmap_mode="r").shape[0] == 4
    # the tour ends on a visible segmentation: the membranes are found (#18)
    truth = read_mrc(tmp_path / "s" / "labels.mrc").data == 1
    found = np.asarray(predicted.data) == 1
    dice = 2 * (found & truth).sum() / (found.sum() + truth.sum())
    assert dice >= 0.5, f"membrane Dice {dice:.3f}"
