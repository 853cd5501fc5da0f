"""The batch runner: plans (stems, pairs, shards, output names) and whole batches over small
folders (a truncated tomogram, labels of the wrong shape), their log, resumption, --force,
worker processes and a local Dask cluster."""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from napari_cryolearn.batch.plan import file_stem, match_partner, output_paths, plan_batch, shard
from napari_cryolearn.cli import main
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.io import read_mrc, write_mrc
from napari_cryolearn.stages import get


def make_folder(tmp_path: Path, n: int = 4) -> tuple[Path, Path]:
    """``tomos/TS_00..`` (TS_01 truncated) and ``labels/`` (TS_02's of another shape)."""
    rng = np.random.default_rng(0)
    tomos, labels = tmp_path / "tomos", tmp_path / "labels"
    tomos.mkdir()
    labels.mkdir()
    for i in range(n):
        v = rng.normal(size=(16, 24, 24)).astype(np.float32)
        write_mrc(tomos / f"TS_{i:02d}.mrc", v, voxel_size=10.0)
        write_mrc(labels / f"TS_{i:02d}_labels.mrc", (v > 1).astype(np.uint8), voxel_size=10.0)
    data = (tomos / "TS_01.mrc").read_bytes()
    (tomos / "TS_01.mrc").write_bytes(data[: len(data) // 2])
    write_mrc(labels / "TS_02_labels.mrc", np.zeros((8, 8, 8), np.uint8), voxel_size=10.0)
    return tomos, labels


def digests(folder: Path) -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if not name.startswith("batch_log"):
                out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def log_rows(folder: Path, name: str = "batch_log.csv") -> dict[str, dict]:
    with open(folder / name, newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f)}


# --- plans ------------------------------------------------------------------------------------

def test_shards_cover_every_file_exactly_once():
    items = [f"f{i}" for i in range(11)]
    for n in (1, 2, 3, 5, 11, 13):
        covered = [x for k in range(1, n + 1) for x in shard(items, k, n)]
        assert sorted(covered) == sorted(items) and len(covered) == len(items)
    with pytest.raises(InputError, match="K/N"):
        shard(items, 3, 2)


def test_partners_match_by_stem_exactly_first_then_by_prefix():
    cands = [Path("TS_01.mrc"), Path("TS_010_labels.mrc"), Path("TS_02_labels.mrc")]
    assert match_partner("TS_01", cands) == Path("TS_01.mrc")
    assert match_partner("TS_02", cands) == Path("TS_02_labels.mrc")
    with pytest.raises(LookupError, match="no file"):
        match_partner("TS_03", cands)
    with pytest.raises(LookupError, match="several"):
        match_partner("TS_0", [Path("TS_0_a.mrc"), Path("TS_0-b.mrc")])
    assert file_stem("a/TS_01.rec") == "TS_01"


def test_output_names_follow_the_input_stem(tmp_path):
    out = output_paths(get("prep.distances"), "TS_01", tmp_path, also=["skeleton"])
    assert out == {"output": tmp_path / "TS_01.npy", "skeleton": tmp_path / "TS_01_skeleton.mrc"}
    assert output_paths(get("prep.patches"), "TS_01", tmp_path) == {"output": tmp_path / "TS_01.zarr"}
    with pytest.raises(InputError, match="not an optional output"):
        output_paths(get("prep.scale"), "TS_01", tmp_path, also=["skeleton"])


def test_plan_refuses_what_would_go_wrong_for_every_file(tmp_path):
    tomos, labels = make_folder(tmp_path)
    with pytest.raises(InputError, match="does not work file by file"):
        plan_batch(get("segment.train"), tomos, tmp_path / "out")
    with pytest.raises(InputError, match="outputs could replace inputs"):
        plan_batch(get("prep.scale"), tomos, tomos)
    with pytest.raises(InputError, match="no per-file input 'label'"):
        plan_batch(get("prep.patches"), tomos, tmp_path / "out", pairs={"label": labels})
    with pytest.raises(InputError, match="no tomogram files"):
        plan_batch(get("prep.scale"), labels, tmp_path / "out", pattern=["*.rec"])
    tasks = plan_batch(get("prep.patches"), tomos, tmp_path / "out", pairs={"labels": labels})
    assert [t.inputs["labels"].name for t in tasks] == [f"TS_{i:02d}_labels.mrc" for i in range(4)]
    (labels / "TS_03_labels.mrc").unlink()
    tasks = plan_batch(get("prep.patches"), tomos, tmp_path / "out", pairs={"labels": labels})
    assert "no file matches TS_03" in tasks[3].problem and tasks[0].problem is None


# --- whole batches ------------------------------------------------------------------------------

def test_batch_matches_single_runs_reports_failures_and_resumes(tmp_path, capsys):
    tomos, _ = make_folder(tmp_path)
    before = digests(tomos)
    out = tmp_path / "out"
    assert main(["-q", "batch", "prep.scale", "--input", str(tomos), "--output", str(out),
                 "--upper-percentile", "99.5"]) == 1  # a file failed
    table = capsys.readouterr().out
    assert "3 done, 0 up to date, 1 failed" in table and "truncated" in table
    rows = log_rows(out)
    assert [rows[f]["status"] for f in sorted(rows)] == ["done", "failed", "done", "done"]
    assert "truncated" in rows["TS_01.mrc"]["error"] and "TS_01.mrc" in rows["TS_01.mrc"]["error"]
    assert not (out / "TS_01.mrc").exists()
    # each output is byte for byte the stage's own on that file
    for name in ("TS_00", "TS_02", "TS_03"):
        alone = tmp_path / f"alone_{name}.mrc"
        assert main(["-q", "prep", "scale", str(tomos / f"{name}.mrc"), str(alone), "--upper-percentile", "99.5"]) == 0
        assert (out / f"{name}.mrc").read_bytes() == alone.read_bytes()
    assert digests(tomos) == before  # inputs untouched

    # a second run skips what is done (and tries the failed file again)
    stamp = (out / "TS_00.mrc").stat().st_mtime_ns
    assert main(["-q", "batch", "prep.scale", "--input", str(tomos), "--output", str(out),
                 "--upper-percentile", "99.5"]) == 1
    assert "0 done, 3 up to date, 1 failed" in capsys.readouterr().out
    assert (out / "TS_00.mrc").stat().st_mtime_ns == stamp
    # other settings redo the files; so does --force
    assert main(["-q", "batch", "prep.scale", "--input", str(tomos), "--output", str(out)]) == 1
    assert "3 done, 0 up to date" in capsys.readouterr().out
    assert main(["-q", "batch", "prep.scale", "--input", str(tomos), "--output", str(out), "--force"]) == 1
    assert "3 done, 0 up to date" in capsys.readouterr().out
    # a changed input is redone
    assert main(["-q", "batch", "prep.scale", "--input", str(tomos), "--output", str(out)]) == 1
    assert "0 done, 3 up to date" in capsys.readouterr().out
    os.utime(tomos / "TS_03.mrc", ns=(stamp + 10**10, stamp + 10**10))
    os.utime(out / "TS_03.mrc", ns=(stamp, stamp))
    assert main(["-q", "batch", "prep.scale", "--input", str(tomos), "--output", str(out)]) == 1
    assert log_rows(out)["TS_03.mrc"]["status"] == "done" and log_rows(out)["TS_00.mrc"]["status"] == "skipped"


def test_paired_labels_of_the_wrong_shape_fail_alone(tmp_path, capsys):
    tomos, labels = make_folder(tmp_path)
    out = tmp_path / "patches"
    assert main(["-q", "batch", "prep.patches", "--input", str(tomos), "--output", str(out),
                 "--pair", f"labels={labels}", "--patch-size", "16"]) == 1
    rows = log_rows(out)
    assert rows["TS_02.mrc"]["status"] == "failed" and "shape" in rows["TS_02.mrc"]["error"]
    assert rows["TS_00.mrc"]["status"] == rows["TS_03.mrc"]["status"] == "done"
    alone = tmp_path / "alone.zarr"
    assert main(["-q", "prep", "patches", str(tomos / "TS_03.mrc"), str(alone), "--labels",
                 str(labels / "TS_03_labels.mrc"), "--patch-size", "16"]) == 0
    assert digests(out / "TS_03.zarr") == digests(alone)


def test_foreign_outputs_are_kept_and_bad_settings_write_nothing(tmp_path, capsys):
    tomos, _ = make_folder(tmp_path)
    out = tmp_path / "out"
    assert main(["-q", "batch", "prep.scale", "--input", str(tomos), "--output", str(out),
                 "--upper-percentile", "200"]) == 2
    assert "upper_percentile" in capsys.readouterr().err and not out.exists()
    out.mkdir()
    (out / "TS_00.mrc").write_bytes(b"mine")  # a file of the same name, older than its input: not ours
    os.utime(out / "TS_00.mrc", ns=((tomos / "TS_00.mrc").stat().st_mtime_ns - 10**10,) * 2)
    assert main(["-q", "batch", "prep.scale", "--input", str(tomos), "--output", str(out)]) == 1
    assert (out / "TS_00.mrc").read_bytes() == b"mine"
    assert "--force" in log_rows(out)["TS_00.mrc"]["error"]
    assert main(["-q", "batch", "prep.scale", "--input", str(tomos), "--output", str(out), "--force"]) == 1
    assert (out / "TS_00.mrc").read_bytes() != b"mine"


def test_shards_workers_and_dask_give_the_plain_run(tmp_path, capsys):
    tomos, _ = make_folder(tmp_path, n=5)
    plain, shards, pool, dask = (tmp_path / n for n in ("plain", "shards", "pool", "dask"))
    args = ["-q", "batch", "prep.scale", "--input", str(tomos)]
    assert main([*args, "--output", str(plain)]) == 1
    assert main([*args, "--output", str(shards), "--shard", "1/2"]) == 0  # TS_00, TS_02, TS_04
    assert main([*args, "--output", str(shards), "--shard", "2/2"]) == 1  # TS_01 (truncated), TS_03
    seen = [f for k in (1, 2) for f in log_rows(shards, f"batch_log.shard-{k}-of-2.csv")]
    assert sorted(seen) == [f"TS_{i:02d}.mrc" for i in range(5)]
    assert main([*args, "--output", str(pool), "--workers", "2"]) == 1
    assert main([*args, "--output", str(dask), "--dask", "local:2"]) == 1
    expected = digests(plain)
    assert len(expected) == 4
    assert digests(shards) == digests(pool) == digests(dask) == expected
    assert log_rows(dask)["TS_01.mrc"]["status"] == "failed"
    assert "truncated" in log_rows(pool)["TS_01.mrc"]["error"]


def test_stop_ends_after_the_current_file_and_the_next_run_finishes(tmp_path):
    from napari_cryolearn.batch.job import BatchConfig, batch_job
    from napari_cryolearn.engine.stop import StopFlag

    tomos, _ = make_folder(tmp_path)
    (tomos / "TS_01.mrc").unlink()
    out = tmp_path / "out"
    config = BatchConfig(stage="prep.scale", input=tomos, output=out)
    stop = StopFlag()
    job = batch_job(config, stop)
    try:
        while True:
            event = next(job)
            if event.metrics.get("status") == "done":
                stop.set()  # after the first file
    except StopIteration as end:
        result = end.value
    assert result.stopped and [r.status for r in result.rows] == ["done"]
    assert sorted(p.name for p in out.iterdir()) == ["TS_00.mrc", "batch_log.csv"]
    again = batch_job(config)
    try:
        while True:
            next(again)
    except StopIteration as end:
        result = end.value
    assert [r.status for r in result.rows] == ["skipped", "done", "done"] and result.ok
    with pytest.raises(InputError, match="set per file by the batch"):
        next(batch_job(config.model_copy(update={"settings": {"output": "x.mrc"}})))


def test_segment_predict_over_a_folder_with_one_model(tmp_path, capsys):
    """The main batch of a cluster: one model, a folder of tomograms, an optional output too; a
    newer model redoes every file."""
    from napari_cryolearn.engine.jobs import run_job
    from napari_cryolearn.segmentation.config import BackboneConfig, NetworkConfig, SegmentationTrainConfig
    from napari_cryolearn.segmentation.train_job import train_arrays_job

    rng = np.random.default_rng(0)
    tomos = tmp_path / "tomos"
    tomos.mkdir()
    for i in range(2):
        write_mrc(tomos / f"TS_{i}.mrc", rng.normal(size=(16, 16, 16)).astype(np.float32), voxel_size=12.0)
    image = rng.normal(size=(16, 16, 16)).astype(np.float32)
    network = NetworkConfig(architecture="cryosiam", out_channels=2, filters=(4, 4),
                            backbone=BackboneConfig(num_filters=(4, 4, 4, 4), fpn_channels=4, dense_dim=4))
    config = SegmentationTrainConfig(log_dir=tmp_path / "run", network=network, max_epochs=1, batch_size=1,
                                     device="cpu", validation_ratio=0.0)
    model = run_job(train_arrays_job([image], [(image > 0.5).astype(np.uint8)], config,
                                     patch_size=(16, 16, 16))).last_checkpoint
    out = tmp_path / "pred"
    args = ["-q", "batch", "segment.predict", "--input", str(tomos), "--output", str(out), "--model", str(model),
            "--also", "probabilities", "--device", "cpu"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["TS_0.mrc", "TS_0.mrc.json", "TS_0_probabilities.npy",
                                                     "TS_1.mrc", "TS_1.mrc.json", "TS_1_probabilities.npy",
                                                     "batch_log.csv"]  # .json: the class names
    assert read_mrc(out / "TS_1.mrc").voxel_size[0] == 12.0
    alone = tmp_path / "alone.mrc"
    assert main(["-q", "segment", "predict", str(model), str(tomos / "TS_1.mrc"), str(alone), "--device", "cpu"]) == 0
    assert alone.read_bytes() == (out / "TS_1.mrc").read_bytes()
    assert main(args) == 0 and "0 done, 2 up to date" in capsys.readouterr().out
    later = (out / "TS_0.mrc").stat().st_mtime_ns + 10**10
    os.utime(model, ns=(later, later))
    assert main(args) == 0 and "2 done, 0 up to date" in capsys.readouterr().out


def test_dry_run_lists_partners_outputs_and_problems_and_writes_nothing(tmp_path, capsys):
    tomos, labels = make_folder(tmp_path)
    (labels / "TS_03_labels.mrc").unlink()
    out = tmp_path / "out"
    assert main(["-q", "batch", "prep.patches", "--input", str(tomos), "--output", str(out),
                 "--pair", f"labels={labels}", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert f"labels={labels / 'TS_00_labels.mrc'} → {out / 'TS_00.zarr'}" in text
    assert "no file matches TS_03" in text and "3 to run, 0 up to date, 1 would fail" in text
    assert not out.exists()
