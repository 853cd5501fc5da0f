import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_cryolearn import __version__
from napari_cryolearn.cli import main
from napari_cryolearn.io import read_mrc, read_star
from napari_cryolearn.io.sidecar import label_names_from, read_sidecar

SMALL = ["--shape", "48", "64", "64", "--n-micrographs", "6", "--micrograph-size", "32"]


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "demo" in out and "sample" in out
    with pytest.raises(SystemExit):
        main(["--version"])
    assert __version__ in capsys.readouterr().out


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "cryolearn"
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert __version__ in result.stdout


def test_sample_writes_files_with_voxel_size(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["-q", "sample", str(out), *SMALL, "--voxel-size", "12.5", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    tomo = read_mrc(out / "tomogram.mrc")
    labels = read_mrc(out / "labels.mrc")
    assert str(out / "tomogram.mrc") in printed
    assert tomo.data.shape == labels.data.shape == (48, 64, 64)
    assert tomo.voxel_size == pytest.approx((12.5, 12.5, 12.5))
    assert tomo.data.dtype == np.float32 and np.issubdtype(labels.data.dtype, np.integer)
    assert labels.is_labels and not tomo.is_labels
    proteins = read_star(out / "proteins.star")
    assert len(proteins.coords) > 0
    idx = np.round(proteins.coords).astype(int)
    assert (labels.data[idx[:, 0], idx[:, 1], idx[:, 2]] == 2).mean() > 0.9
    assert read_mrc(out / "micrographs.mrcs").data.shape == (6, 32, 32)
    assert (out / "labels.mrc.json").exists()


def test_sample_from_yaml_with_flag_override(tmp_path):
    cfg = tmp_path / "sample.yaml"
    cfg.write_text(f"output: {tmp_path / 'from_yaml'}\nshape: [32, 48, 48]\nseed: 1\nn_micrographs: 0\n")
    assert main(["-q", "sample", "--config", str(cfg), "--shape", "40", "48", "48"]) == 0
    assert read_mrc(tmp_path / "from_yaml" / "tomogram.mrc").data.shape == (40, 48, 48)
    assert not (tmp_path / "from_yaml" / "micrographs.mrcs").exists()


def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["-q", "sample", str(out), "--voxel-size", "-3"]) == 2
    err = capsys.readouterr().err
    assert "--voxel-size: Input should be greater than 0" in err  # the flag, not the field
    assert not out.exists()


def test_demo_runs_every_stage(tmp_path, capsys):
    assert main(["-q", "demo", str(tmp_path / "demo"), "--quick"]) == 0
    out = capsys.readouterr().out
    demo = tmp_path / "demo"
    for stage in ["sample", "prep.filter", "prep.masks", "prep.scale", "prep.threshold", "prep.distances",
                  "prep.patches", "ssl.pretrain3d", "ssl.embed3d",
                  "segment.train", "segment.predict", "pick.meshes", "pick.train", "pick.predict",
                  "pick.eval"]:
        assert f"== {stage}:" in out
    tomo = read_mrc(demo / "sample" / "tomogram.mrc")
    predicted = read_mrc(demo / "segmentation" / "tomogram_predicted_labels.mrc")
    assert predicted.data.shape == tomo.data.shape == (48, 64, 64)
    assert predicted.voxel_size == tomo.voxel_size
    assert (demo / "segmentation" / "model" / "last.ckpt").exists()
    assert (demo / "pretrain3d" / "model" / "last.ckpt").is_file()
    assert read_mrc(demo / "pretrain3d" / "embeddings" / "tomogram_scaled_clusters.mrc").voxel_size == tomo.voxel_size
    # the quick demo ends on a visible segmentation: membrane where the membranes are (#18)
    membrane = np.asarray(predicted.data) == 1
    truth = read_mrc(demo / "sample" / "labels.mrc").data == 1
    assert membrane.sum() > 0.2 * truth.sum() and (membrane & truth).sum() > 0.5 * membrane.sum()
    names = label_names_from(read_sidecar(demo / "segmentation" / "tomogram_predicted_labels.mrc"))
    assert names == {0: "background", 1: "membrane", 2: "membrane_protein", 3: "particle"}
    assert "napari " + str(demo / "sample" / "tomogram.mrc") in out
    # the picking chain ran on the predicted membranes: meshes, a picker, scored meshes, scores
    assert sorted((demo / "picking" / "DATA" / "train").glob("tomogram_*.h5"))
    assert (demo / "picking" / "DATA" / "train" / "tomogram.star").is_file()
    assert (demo / "picking" / "run" / "model" / "last.ckpt").is_file()
    assert sorted((demo / "picking" / "picks").glob("tomogram_*_picks.star"))
    assert "f1" in json.loads((demo / "picking" / "pick_scores.json").read_text())
    assert str(demo / "picking" / "picks" / "tomogram_1.h5") in out
    # the printed command runs as printed, also from a venv that is not on PATH
    command = next(line.split()[0] for line in out.splitlines()
                   if line.startswith("  ") and "napari" in line and str(demo / "sample" / "tomogram.mrc") in line)
    assert shutil.which(command) is not None


def test_every_field_of_every_stage_is_described_once_and_its_flag_says_so(capsys):
    """``Field(description=...)`` is the one source of a field's help, tooltip and reference:
    every field of every stage has one, and ``--help`` prints it."""
    import napari_cryolearn.stages as suite
    from napari_cryolearn.cli import main
    from napari_cryolearn.cli_flags import _fields
    from napari_cryolearn.engine.config import plain_text

    for stage in suite.all_stages():
        fields = list(_fields(stage.config_class()))
        missing = [".".join(path) for path, field in fields if not (field.description or "").strip()]
        assert not missing, f"{stage.name}: fields without a description: {missing}"
        with pytest.raises(SystemExit):
            main([*stage.name.split("."), "--help"])
        printed = " ".join(capsys.readouterr().out.split())
        for path, field in fields:
            assert plain_text(field.description)[:30] in printed, (stage.name, path)
