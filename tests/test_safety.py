"""Bad input on the command line: exit code 2, a message naming the file (or field) and the
problem, and nothing written.

Every case runs ``cryolearn ...`` through :func:`napari_cryolearn.cli.main` and checks the
promise of the design: "bad input gets a clear error naming the file and the problem, before
anything is written" — so the output does not exist afterwards and no temporary ``.part`` file
is left in the output folder.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_cryolearn.cli import main
from napari_cryolearn.io import write_mrc, write_star

SHAPE = (24, 32, 40)  # z, y, x
VOXEL = 10.0  # Angstrom


# ---------------------------------------------------------------------------------------------
# shared, valid inputs (written once; the cases write only into their own tmp_path)


@pytest.fixture(scope="module")
def data(tmp_path_factory, two_class_labels) -> dict[str, Path]:
    """Valid inputs of every kind, and broken copies of them."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    lab = two_class_labels
    assert lab.shape == SHAPE
    tomo = (rng.normal(size=SHAPE) - 2.0 * (lab > 0)).astype(np.float32)
    d = {
        "tomogram": write_mrc(root / "tomogram.mrc", tomo, voxel_size=VOXEL),
        "labels": write_mrc(root / "labels.mrc", lab, voxel_size=VOXEL),
    }
    coords = np.array([[12.0, 16.0, 14.0], [10.0, 12.0, 30.0]])  # z, y, x pixels
    d["star"] = write_star(root / "coords.star", coords, features={"rlnClassNumber": [1, 2]}, pixel_size=VOXEL)

    # broken MRC files
    d["truncated"] = root / "truncated.mrc"
    raw = d["tomogram"].read_bytes()
    d["truncated"].write_bytes(raw[:-100])
    d["text"] = root / "text.mrc"
    d["text"].write_text("this is a text file, not an MRC volume\n" * 40)
    d["missing"] = root / "missing.mrc"
    d["labels_truncated"] = root / "labels_truncated.mrc"
    d["labels_truncated"].write_bytes(d["labels"].read_bytes()[:-7])

    # bad values
    nan = tomo.copy()
    nan[3, 4, 5] = np.nan
    d["nan"] = write_mrc(root / "nan.mrc", nan, voxel_size=VOXEL)
    d["constant"] = write_mrc(root / "constant.mrc", np.full(SHAPE, 3.5, np.float32), voxel_size=VOXEL)
    fractional = lab.astype(np.float32)
    fractional[12, 16, 14] = 0.5
    d["fractional"] = write_mrc(root / "fractional.mrc", fractional, voxel_size=VOXEL)
    d["labels_small"] = write_mrc(root / "labels_small.mrc", lab[:, :, :32], voxel_size=VOXEL)
    d["image2d"] = write_mrc(root / "image2d.mrc", tomo[0], voxel_size=VOXEL)
    d["complex"] = write_mrc(root / "complex.mrc", tomo.astype(np.complex64), voxel_size=VOXEL)
    d["zeros"] = write_mrc(root / "zeros.mrc", np.zeros(SHAPE, np.uint8), voxel_size=VOXEL)
    d["p_class_1"] = write_mrc(root / "p_class_1.mrc", tomo, voxel_size=VOXEL)  # named like a probability map
    np.save(root / "distances_bad.npy", np.zeros((3, SHAPE[0], SHAPE[1], SHAPE[2] - 8), np.float32))
    d["distances_bad"] = root / "distances_bad.npy"

    # STAR files
    d["star_nocoords"] = root / "nocoords.star"
    d["star_nocoords"].write_text(
        "\ndata_particles\n\nloop_\n_rlnAngleRot #1\n_rlnClassNumber #2\n10.0 1\n20.0 2\n"
    )
    far = np.array([[12.0, 16.0, 14.0], [10.0, 12.0, 55.0]])  # x = 55 > 40 voxels
    d["star_outside"] = write_star(root / "outside.star", far, pixel_size=VOXEL)

    # non-checkpoints
    d["not_ckpt"] = root / "model.ckpt"
    d["not_ckpt"].write_text("not a checkpoint\n")
    d["other_arch"] = root / "other_arch.ckpt"
    torch.save({"encoder.layer1.weight": torch.zeros(3, 3), "fc.bias": torch.zeros(3)}, d["other_arch"])
    d["empty_folder"] = root / "empty_store"
    d["empty_folder"].mkdir()
    INPUTS_AS_WRITTEN.update(_signatures(root))
    return d


INPUTS_AS_WRITTEN: dict[str, tuple[str, int, int]] = {}


def _signatures(root: Path) -> dict[str, tuple[str, int, int]]:
    """(sha256, size, mtime_ns) of every file and folder under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.stat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        out[str(p.relative_to(root))] = (digest, st.st_size if p.is_file() else 0, st.st_mtime_ns)
    return out


@pytest.fixture(autouse=True)
def inputs_untouched(data):
    """After every case, the shared inputs (broken ones included) are byte for byte and time for
    time what the fixture wrote, and nothing was added beside them."""
    yield
    assert _signatures(data["tomogram"].parent) == INPUTS_AS_WRITTEN


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory, train_argv) -> dict[str, Path]:
    """A patch store of the valid inputs and a tiny network trained on it for one epoch."""
    root = tmp_path_factory.mktemp("trained")
    store = root / "tomogram.zarr"
    assert main(["-q", "prep", "patches", str(data["tomogram"]), str(store), "--labels", str(data["labels"]),
                 "--patch-size", "16"]) == 0
    run = root / "run"
    assert main(["-q", *train_argv(store, run)]) == 0
    model = run / "model" / "last.ckpt"
    assert model.is_file()
    return {"store": store, "model": model, "run": run}


# ---------------------------------------------------------------------------------------------
# the check every case makes


def refused(argv: list[str], capsys, *, names: list[str], problem: str, outputs: list[Path]) -> str:
    """Run ``cryolearn argv``; assert it is refused cleanly and return stderr.

    ``names``: strings the message must contain (file names, fields); ``problem``: a regular
    expression (case-insensitive) for the problem in words; ``outputs``: paths that must not
    exist afterwards (their folders must hold no temporary files).
    """
    capsys.readouterr()
    code = main(["-q", *argv])
    err = capsys.readouterr().err
    assert code == 2, f"exit code {code}, stderr:\n{err}"
    # "cryolearn: error:" (a job refused), or "cryolearn prep scale: error:" (its arguments refused)
    lines = [line for line in err.splitlines() if re.match(r"cryolearn( [a-z ]+)?: error:", line)]
    assert len(lines) == 1, err
    message = lines[0]
    assert "Traceback" not in err
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"
    assert re.search(problem, message, re.IGNORECASE), f"{problem!r} not in {message!r}"
    for out in outputs:
        assert not out.exists(), f"{out} was written"
        folder = out.parent
        if folder.is_dir():
            left = [p.name for p in folder.rglob("*") if ".part" in p.name or p.name.endswith(".old")]
            assert not left, f"temporary files left in {folder}: {left}"
    return message


# ---------------------------------------------------------------------------------------------
# broken MRC files, for every stage that reads one

BROKEN = {
    "truncated": r"truncated",
    "text": r"not an MRC file",
    "missing": r"not found",
}


def _stage_argv(stage: str, bad: Path, d: dict[str, Path], out: Path, model: Path | None) -> tuple[list[str], Path]:
    """(argv, output path) of ``stage`` with ``bad`` as the MRC under test."""
    if stage == "scale":
        o = out / "scaled.mrc"
        return ["prep", "scale", str(bad), str(o)], o
    if stage == "filter":
        o = out / "filtered.mrc"
        return ["prep", "filter", str(bad), str(o), "--keep", "1"], o
    if stage == "distances":
        o = out / "distances.npy"
        return ["prep", "distances", str(bad), str(o)], o
    if stage == "patches-image":
        o = out / "store.zarr"
        return ["prep", "patches", str(bad), str(o), "--labels", str(d["labels"]), "--patch-size", "16"], o
    if stage == "patches-labels":
        o = out / "store.zarr"
        return ["prep", "patches", str(d["tomogram"]), str(o), "--labels", str(bad), "--patch-size", "16"], o
    if stage == "threshold":
        o = out / "mask.mrc"
        return ["prep", "threshold", str(bad), str(o), "--threshold", "0.5"], o
    if stage == "masks-reference":
        o = out / "spheres.mrc"
        return ["prep", "masks", str(d["star"]), str(bad), str(o), "--radius", "2"], o
    if stage == "predict":
        o = out / "predicted.mrc"
        return ["segment", "predict", str(model), str(bad), str(o), "--device", "cpu", "--window", "16"], o
    raise AssertionError(stage)


STAGES = ["scale", "filter", "distances", "patches-image", "patches-labels", "threshold", "masks-reference",
          "predict"]


@pytest.mark.parametrize("kind", list(BROKEN))
@pytest.mark.parametrize("stage", STAGES)
def test_broken_mrc_is_refused(stage, kind, data, tmp_path, capsys):
    bad = data[kind]
    if stage == "patches-labels" and kind == "truncated":
        bad = data["labels_truncated"]
    # predict reads the input before the model: any existing file will do as the model here
    argv, out = _stage_argv(stage, bad, data, tmp_path / "out", model=data["not_ckpt"])
    refused(argv, capsys, names=[bad.name], problem=BROKEN[kind], outputs=[out])


def test_truncated_message_gives_sizes(data, tmp_path, capsys):
    out = tmp_path / "scaled.mrc"
    msg = refused(["prep", "scale", str(data["truncated"]), str(out)], capsys,
                  names=["truncated.mrc"], problem="truncated", outputs=[out])
    expected = SHAPE[0] * SHAPE[1] * SHAPE[2] * 4
    assert f"{expected} bytes" in msg and f"file has {expected - 100}" in msg


# ---------------------------------------------------------------------------------------------
# bad values


def test_scale_refuses_nan(data, tmp_path, capsys):
    out = tmp_path / "scaled.mrc"
    refused(["prep", "scale", str(data["nan"]), str(out)], capsys,
            names=["nan.mrc"], problem=r"NaN|non-finite|infinite", outputs=[out])


@pytest.mark.parametrize("method", ["exact", "histogram"])
def test_scale_refuses_nan_streamed_or_not(method, data, tmp_path, capsys):
    out = tmp_path / "scaled.mrc"
    refused(["prep", "scale", str(data["nan"]), str(out), "--method", method], capsys,
            names=["nan.mrc"], problem=r"NaN", outputs=[out])


def test_scale_refuses_constant_volume(data, tmp_path, capsys):
    out = tmp_path / "scaled.mrc"
    refused(["prep", "scale", str(data["constant"]), str(out)], capsys,
            names=["constant.mrc"], problem=r"constant", outputs=[out])


@pytest.mark.parametrize("stage", ["filter", "distances", "patches-labels"])
def test_fractional_labels_are_refused(stage, data, tmp_path, capsys):
    argv, out = _stage_argv(stage, data["fractional"], data, tmp_path / "out", None)
    refused(argv, capsys, names=["fractional.mrc"], problem=r"whole numbers|integer", outputs=[out])


def test_patches_labels_of_another_shape(data, tmp_path, capsys):
    out = tmp_path / "store.zarr"
    msg = refused(["prep", "patches", str(data["tomogram"]), str(out), "--labels", str(data["labels_small"]),
                   "--patch-size", "16"], capsys, names=["labels_small.mrc"], problem=r"shape", outputs=[out])
    assert "(24, 32, 32)" in msg and "(24, 32, 40)" in msg


def test_patch_larger_than_volume(data, tmp_path, capsys):
    out = tmp_path / "store.zarr"
    msg = refused(["prep", "patches", str(data["tomogram"]), str(out), "--patch-size", "32"], capsys,
                  names=["tomogram.mrc", "patch_size"], problem=r"larger than the volume", outputs=[out])
    assert "(24, 32, 40)" in msg


@pytest.mark.parametrize("fmt", ["zarr", "cryosiam"])
def test_patches_distances_of_wrong_shape(fmt, data, tmp_path, capsys):
    out = tmp_path / ("store.zarr" if fmt == "zarr" else "patches")
    refused(["prep", "patches", str(data["tomogram"]), str(out), "--labels", str(data["labels"]),
             "--distances", str(data["distances_bad"]), "--patch-size", "16", "--format", fmt], capsys,
            names=["distances_bad.npy"], problem=r"does not match", outputs=[out])


def test_patches_distances_not_an_array(data, tmp_path, capsys):
    out = tmp_path / "store.zarr"
    refused(["prep", "patches", str(data["tomogram"]), str(out), "--distances", str(data["star"]),
             "--patch-size", "16"], capsys, names=["coords.star"], problem=r"not a \.npy", outputs=[out])


@pytest.mark.parametrize("fmt", ["zarr", "cryosiam"])
def test_patches_refuse_nan_tomogram(fmt, data, tmp_path, capsys):
    out = tmp_path / ("store.zarr" if fmt == "zarr" else "patches")
    msg = refused(["prep", "patches", str(data["nan"]), str(out), "--patch-size", "16", "--format", fmt], capsys,
                  names=["nan.mrc"], problem=r"NaN", outputs=[out])
    assert "(0, 0, 0)" in msg  # the origin of the first patch that holds the NaN


def test_distances_too_few_classes(data, tmp_path, capsys):
    out = tmp_path / "distances.npy"
    refused(["prep", "distances", str(data["labels"]), str(out), "--n-classes", "2"], capsys,
            names=["labels.mrc", "n_classes"], problem=r"labels go up to 2", outputs=[out])


# ---------------------------------------------------------------------------------------------
# STAR coordinates


def test_masks_star_without_coordinates(data, tmp_path, capsys):
    out = tmp_path / "spheres.mrc"
    refused(["prep", "masks", str(data["star_nocoords"]), str(data["tomogram"]), str(out), "--radius", "2"],
            capsys, names=["nocoords.star", "rlnCoordinateX"], problem=r"no data block with coordinate",
            outputs=[out])


def test_masks_coordinates_outside_the_reference(data, tmp_path, capsys):
    out = tmp_path / "spheres.mrc"
    msg = refused(["prep", "masks", str(data["star_outside"]), str(data["tomogram"]), str(out), "--radius", "2"],
                  capsys, names=["outside.star", "coordinates"], problem=r"1 of 2 points lie outside",
                  outputs=[out])
    assert "(24, 32, 40)" in msg and "#1" in msg


def test_masks_missing_class_column(data, tmp_path, capsys):
    out = tmp_path / "spheres.mrc"
    refused(["prep", "masks", str(data["star"]), str(data["tomogram"]), str(out), "--radius", "2",
             "--class-column", "rlnHelicalTubeID"], capsys,
            names=["coords.star", "class_column", "rlnHelicalTubeID"], problem=r"not found", outputs=[out])


def test_masks_missing_star_file(data, tmp_path, capsys):
    out = tmp_path / "spheres.mrc"
    refused(["prep", "masks", str(tmp_path / "nowhere.star"), str(data["tomogram"]), str(out), "--radius", "2"],
            capsys, names=["nowhere.star"], problem=r"not found", outputs=[out])


# ---------------------------------------------------------------------------------------------
# segment train


def test_train_missing_store(data, tmp_path, capsys, train_argv):
    run = tmp_path / "run"
    refused(train_argv(tmp_path / "nowhere.zarr", run), capsys,
            names=["nowhere.zarr", "patch_stores"], problem=r"not found", outputs=[run])


def test_train_empty_folder_as_store(data, tmp_path, capsys, train_argv):
    run = tmp_path / "run"
    refused(train_argv(data["empty_folder"], run), capsys,
            names=["empty_store"], problem=r"not a zarr group|patch store", outputs=[run])


def test_train_labels_beyond_out_channels(data, trained, tmp_path, capsys, train_argv):
    run = tmp_path / "run"
    refused(train_argv(trained["store"], run, out_channels=2), capsys,
            names=["tomogram.zarr", "labels"], problem=r"label 2 but out_channels is 2", outputs=[run])


def test_train_on_a_missing_cuda(data, trained, tmp_path, capsys, monkeypatch, train_argv):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a machine with a GPU
    run = tmp_path / "run"
    refused(train_argv(trained["store"], run, "--device", "cuda"), capsys, names=["device"], problem=r"CUDA .*not available|no CUDA device", outputs=[run])


@pytest.mark.parametrize("which, problem", [
    ("not_ckpt", r"not a readable PyTorch checkpoint"),
    ("other_arch", r"unknown checkpoint layout"),
])
def test_train_bad_pretrained_model(which, problem, data, trained, tmp_path, capsys, train_argv):
    run = tmp_path / "run"
    refused(train_argv(trained["store"], run, "--pretrained-model", str(data[which])), capsys,
            names=[data[which].name], problem=problem, outputs=[run])


def test_train_pretrained_of_other_shapes(data, trained, tmp_path, capsys, train_argv):
    """A checkpoint in our layout whose backbone has other sizes (and no config to say so)."""
    state = torch.load(trained["model"], map_location="cpu", weights_only=False)["state_dict"]
    key = next(k for k in state if k.startswith("net.backbone.") and state[k].ndim == 5)
    changed = dict(state)
    changed[key] = torch.zeros(state[key].shape[0] + 1, *state[key].shape[1:])
    ckpt = tmp_path / "in" / "resized.ckpt"
    ckpt.parent.mkdir()
    torch.save({"state_dict": changed}, ckpt)
    run = tmp_path / "run"
    msg = refused(train_argv(trained["store"], run, "--pretrained-model", str(ckpt)), capsys,
                  names=["resized.ckpt"], problem=r"does not fit this network", outputs=[run])
    assert key[len("net."):] in msg


def test_train_continue_without_previous_run(data, trained, tmp_path, capsys, train_argv):
    run = tmp_path / "run"
    refused(train_argv(trained["store"], run, "--continue-training"), capsys,
            names=["last.ckpt", "continue_training"], problem=r"no checkpoint to continue from", outputs=[run])


# ---------------------------------------------------------------------------------------------
# segment predict


@pytest.mark.parametrize("which, problem", [
    ("not_ckpt", r"not a readable PyTorch checkpoint"),
    ("other_arch", r"does not describe a segmentation network"),
])
def test_predict_model_not_a_checkpoint(which, problem, data, tmp_path, capsys):
    out = tmp_path / "predicted.mrc"
    refused(["segment", "predict", str(data[which]), str(data["tomogram"]), str(out), "--device", "cpu"], capsys,
            names=[data[which].name], problem=problem, outputs=[out])


def test_predict_2d_input(data, trained, tmp_path, capsys):
    out = tmp_path / "predicted.mrc"
    refused(["segment", "predict", str(trained["model"]), str(data["image2d"]), str(out), "--device", "cpu"],
            capsys, names=["image2d.mrc"], problem=r"expected a 3D tomogram.*\(32, 40\)", outputs=[out])


def test_predict_window_not_a_multiple_of_the_stride(data, trained, tmp_path, capsys):
    out = tmp_path / "predicted.mrc"
    probs = tmp_path / "probabilities.npy"
    refused(["segment", "predict", str(trained["model"]), str(data["tomogram"]), str(out), "--device", "cpu",
             "--window", "12", "--probabilities", str(probs)], capsys,
            names=["window"], problem=r"multiples of 16|multiple", outputs=[out, probs])


def test_predict_cuda_missing(data, trained, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "predicted.mrc"
    refused(["segment", "predict", str(trained["model"]), str(data["tomogram"]), str(out), "--device", "cuda"],
            capsys, names=["device"], problem=r"CUDA", outputs=[out])


def test_predict_distances_without_distance_head(data, trained, tmp_path, capsys):
    out = tmp_path / "predicted.mrc"
    dist = tmp_path / "distances.npy"
    refused(["segment", "predict", str(trained["model"]), str(data["tomogram"]), str(out), "--device", "cpu",
             "--window", "16", "--distances", str(dist)], capsys,
            names=["last.ckpt", "distances"], problem=r"no distance head", outputs=[out, dist])


def test_predict_nan_tomogram(data, trained, tmp_path, capsys):
    out = tmp_path / "predicted.mrc"
    probs = tmp_path / "probabilities.npy"
    refused(["segment", "predict", str(trained["model"]), str(data["nan"]), str(out), "--device", "cpu",
             "--window", "16", "--probabilities", str(probs)], capsys,
            names=["nan.mrc"], problem=r"NaN", outputs=[out, probs])


@pytest.mark.parametrize("stage", ["patches-image", "predict"])
def test_complex_tomogram_is_refused(stage, data, trained, tmp_path, capsys):
    argv, out = _stage_argv(stage, data["complex"], data, tmp_path / "out", trained["model"])
    refused(argv, capsys, names=["complex.mrc"], problem=r"real values.*complex64", outputs=[out])


# ---------------------------------------------------------------------------------------------
# training on stores that cannot train


@pytest.fixture(scope="module")
def bad_stores(data, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad_stores")
    stores = {k: root / f"{k}.zarr" for k in ("nan_image", "no_labels", "background_only")}
    # prep patches refuses NaN itself, so the NaN store is a good one damaged afterwards (another tool)
    assert main(["-q", "prep", "patches", str(data["tomogram"]), str(stores["nan_image"]), "--labels",
                 str(data["labels"]), "--patch-size", "16"]) == 0
    import zarr

    zarr.open_group(str(stores["nan_image"]), mode="r+")["image"][0, 0, 0, 0] = np.nan
    assert main(["-q", "prep", "patches", str(data["tomogram"]), str(stores["no_labels"]),
                 "--patch-size", "16"]) == 0
    assert main(["-q", "prep", "patches", str(data["tomogram"]), str(stores["background_only"]), "--labels",
                 str(data["zeros"]), "--patch-size", "16"]) == 0
    return stores


@pytest.mark.parametrize("which, field, problem", [
    ("nan_image", "image", r"NaN"),
    ("no_labels", "labels", r"no labels"),
    ("background_only", "labels", r"only background"),
])
def test_train_refuses_store(which, field, problem, bad_stores, tmp_path, capsys, train_argv):
    run = tmp_path / "run"
    refused(train_argv(bad_stores[which], run), capsys, names=[f"{which}.zarr", field], problem=problem,
            outputs=[run])


def test_train_log_dir_is_a_file(data, trained, tmp_path, capsys, train_argv):
    log = tmp_path / "run.txt"
    log.write_text("my notes\n")
    capsys.readouterr()
    assert main(["-q", *train_argv(trained["store"], log)]) == 2
    err = capsys.readouterr().err
    assert "run.txt" in err and "log_dir" in err and "is a file" in err
    assert log.read_text() == "my notes\n"


# ---------------------------------------------------------------------------------------------
# an output named like an input is refused, and the input is left as it was


def _same_as_input(stage: str, d: dict[str, Path], model: Path) -> tuple[list[str], Path]:
    """(argv, the input file the argv also names as an output)."""
    t, lab, star = d["tomogram"], d["labels"], d["star"]
    return {
        "scale": (["prep", "scale", str(t), str(t)], t),
        "filter": (["prep", "filter", str(lab), str(lab), "--keep", "1"], lab),
        "threshold": (["prep", "threshold", str(t), str(t), "--threshold", "0"], t),
        "masks-star": (["prep", "masks", str(star), str(t), str(star), "--radius", "2"], star),
        "masks-reference": (["prep", "masks", str(star), str(t), str(t), "--radius", "2"], t),
        "patches-image": (["prep", "patches", str(t), str(t), "--patch-size", "16"], t),
        "patches-labels": (["prep", "patches", str(t), str(lab), "--labels", str(lab), "--patch-size", "16"], lab),
        "patches-cryosiam": (["prep", "patches", str(t), str(t), "--format", "cryosiam", "--patch-size", "16"], t),
        "predict": (["segment", "predict", str(model), str(t), str(t), "--device", "cpu", "--window", "16"], t),
        "predict-probabilities": (["segment", "predict", str(model), str(d["p_class_1"]), str(t.parent / "l.mrc"),
                                   "--probabilities", str(t.parent / "p.mrc"), "--device", "cpu", "--window", "16"],
                                  d["p_class_1"]),
    }[stage]


@pytest.mark.parametrize("stage", ["scale", "filter", "threshold", "masks-star", "masks-reference",
                                   "patches-image", "patches-labels", "patches-cryosiam", "predict",
                                   "predict-probabilities"])
def test_output_named_like_an_input(stage, data, trained, capsys):
    argv, victim = _same_as_input(stage, data, trained["model"])
    before = (victim.read_bytes(), victim.stat().st_mtime_ns)
    siblings = sorted(p.name for p in victim.parent.iterdir())
    capsys.readouterr()
    code = main(["-q", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert victim.name in err and re.search(r"overwrite the input|replace (the \w+ input|an input)", err), err
    assert victim.is_file() and (victim.read_bytes(), victim.stat().st_mtime_ns) == before
    assert sorted(p.name for p in victim.parent.iterdir()) == siblings  # no .old, .part or new file


def test_patches_output_is_an_existing_file(data, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me\n")
    capsys.readouterr()
    assert main(["-q", "prep", "patches", str(data["tomogram"]), str(notes), "--patch-size", "16"]) == 2
    err = capsys.readouterr().err
    assert "notes.txt" in err and "is a file" in err
    assert notes.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# ---------------------------------------------------------------------------------------------
# YAML configs


def test_yaml_syntax_error(data, tmp_path, capsys):
    cfg = tmp_path / "broken.yaml"
    out = tmp_path / "scaled.mrc"
    cfg.write_text(f"input: {data['tomogram']}\noutput: {out}\ninvert: [true\n")
    refused(["prep", "scale", "--config", str(cfg)], capsys, names=["broken.yaml"], problem=r"not valid YAML",
            outputs=[out])


@pytest.mark.parametrize("stage, body, key", [
    ("prep scale", "input: {tomo}\noutput: {out}\ninvrt: true\n", "invrt"),
    ("prep filter", "input: {labels}\noutput: {out}\nkeep: [1]\nexpnd: 1\n", "expnd"),
    ("segment train", "patch_stores: [{tomo}]\nlog_dir: {out}\nnetwork:\n  out_chanels: 3\n", "network.out_chanels"),
])
def test_yaml_unknown_key(stage, body, key, data, tmp_path, capsys):
    cfg = tmp_path / "typo.yaml"
    out = tmp_path / "result"
    cfg.write_text(body.format(tomo=data["tomogram"], labels=data["labels"], out=out))
    refused([*stage.split(), "--config", str(cfg)], capsys, names=["typo.yaml", key],
            problem=r"extra inputs are not permitted", outputs=[out])


def test_yaml_missing_file(tmp_path, capsys):
    out = tmp_path / "scaled.mrc"
    refused(["prep", "scale", "--config", str(tmp_path / "nowhere.yaml"), "in.mrc", str(out)], capsys,
            names=["nowhere.yaml"], problem=r"not found", outputs=[out])


def test_missing_required_field(data, tmp_path, capsys):
    refused(["prep", "masks", str(data["star"]), str(data["tomogram"]), str(tmp_path / "o.mrc")], capsys,
            names=["radius"], problem=r"required", outputs=[tmp_path / "o.mrc"])


# ---------------------------------------------------------------------------------------------
# an existing output is kept when a later run is refused


def test_refused_run_keeps_the_previous_output(data, tmp_path, capsys):
    out = tmp_path / "scaled.mrc"
    assert main(["-q", "prep", "scale", str(data["tomogram"]), str(out)]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert main(["-q", "prep", "scale", str(data["nan"]), str(out)]) == 2
    assert out.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_broken_inputs_are_still_broken(data):
    """No stage 'repaired' or removed a broken input."""
    size = SHAPE[0] * SHAPE[1] * SHAPE[2] * 4 + 1024
    assert data["truncated"].stat().st_size == size - 100
    assert data["text"].read_text().startswith("this is a text file")
    assert not data["missing"].exists()
    assert not any(data["empty_folder"].iterdir())


def test_threshold_refuses_nan(data, tmp_path, capsys):
    out = tmp_path / "mask.mrc"
    refused(["prep", "threshold", str(data["nan"]), str(out), "--threshold", "0.5"], capsys,
            names=["nan.mrc", "input"], problem=r"NaN", outputs=[out])


def test_train_refuses_a_run_folder_inside_its_store(trained, capsys, train_argv):
    store = trained["store"]
    run = store / "run"
    refused(train_argv(store, run), capsys, names=["log_dir"], problem=r"inside the patch store", outputs=[run])
