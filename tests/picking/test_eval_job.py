"""cryolearn pick eval: picks against true positions from STAR files, by file and overall."""

import json

import numpy as np
import pytest

from napari_cryolearn.cli import main
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.io.star import write_star
from napari_cryolearn.picking.eval_job import PickEvalConfig, pair_files, pick_eval_job

TRUTH_A = np.array([[10, 10, 10], [10, 30, 30], [20, 50, 10]], float)  # pixels (z, y, x), 10 Å each


@pytest.fixture
def files(tmp_path):
    # membrane a: two picks within 3 px (30 Å) of truth, one 20 px (200 Å) off; membrane b: no picks
    write_star(tmp_path / "a.star", TRUTH_A, pixel_size=10.0)
    write_star(tmp_path / "a_picks.star", TRUTH_A[:2] + [0, 3, 0], pixel_size=10.0)
    write_star(tmp_path / "b.star", np.array([[5.0, 5.0, 5.0]]), pixel_size=10.0)
    write_star(tmp_path / "b_picks.star", np.zeros((0, 3)), pixel_size=10.0)
    return tmp_path


def test_scores_per_file_and_overall(files):
    cfg = PickEvalConfig(picks=[files / "b_picks.star", files / "a_picks.star"],
                         truth=[files / "a.star", files / "b.star"], threshold=60, sweep=[20, 40],
                         output=files / "scores.json")
    result = run_job(pick_eval_job(cfg))
    a, b = result.metrics["per_file"]["a_picks.star"], result.metrics["per_file"]["b_picks.star"]
    assert (a["tp"], a["fp"], a["fn"]) == (2, 0, 1) and a["precision"] == 1.0 and a["recall"] == pytest.approx(2 / 3)
    assert (b["tp"], b["fp"], b["fn"], b["picks"]) == (0, 0, 1, 0)
    # overall: 2 found of 4, no false pick
    assert result.metrics["recall"] == pytest.approx(0.5) and result.metrics["precision"] == 1.0
    assert result.metrics["f1"] == pytest.approx(2 / 3) and result.metrics["pixel_size"] == 10.0
    # at 20 Å the 30 Å offsets are misses
    assert result.metrics["sweep"]["20.0"]["tp"] == 0 and result.metrics["sweep"]["40.0"]["tp"] == 2
    saved = json.loads((files / "scores.json").read_text())
    assert saved["f1"] == pytest.approx(2 / 3) and set(saved["per_file"]) == {"a_picks.star", "b_picks.star"}


def test_the_command_prints_the_scores_and_refuses_what_it_cannot_pair(files, capsys):
    assert main(["-q", "pick", "eval", str(files / "a_picks.star"), "--truth", str(files / "a.star"),
                 "--threshold", "60"]) == 0
    out = capsys.readouterr().out
    assert "f1: 0.8" in out and "recall: 0.6667" in out
    with pytest.raises(InputError, match="do not pair"):
        pair_files([files / "a_picks.star", files / "b_picks.star"], [files / "a.star"])
    assert main(["-q", "pick", "eval", str(files / "a_picks.star"), "--truth", str(files / "missing.star")]) == 2
    assert "missing.star" in capsys.readouterr().err


def test_without_a_pixel_size_the_command_asks_for_one(tmp_path, capsys):
    write_star(tmp_path / "t.star", TRUTH_A)
    write_star(tmp_path / "t_picks.star", TRUTH_A)
    assert main(["-q", "pick", "eval", str(tmp_path / "t_picks.star"), "--truth", str(tmp_path / "t.star")]) == 2
    assert "--pixel-size" in capsys.readouterr().err
    assert main(["-q", "pick", "eval", str(tmp_path / "t_picks.star"), "--truth", str(tmp_path / "t.star"),
                 "--pixel-size", "10"]) == 0
