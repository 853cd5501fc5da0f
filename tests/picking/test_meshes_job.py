"""cryolearn pick meshes: a segmentation and its tomogram in, one MemBrain-pick container per membrane."""

import warnings

import numpy as np
import pytest

from napari_cryolearn.cli import main
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.io import write_mrc
from napari_cryolearn.io.mesh_container import read_mesh_container
from napari_cryolearn.picking.meshes_job import MeshesConfig, meshes_job
from napari_cryolearn.sample import make_synthetic_tomogram


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("meshes")
    with warnings.catch_warnings():  # fewer proteins fit this small volume: not what is tested here
        warnings.simplefilter("ignore", RuntimeWarning)
        tomo = make_synthetic_tomogram(shape=(48, 64, 64), seed=0)
    write_mrc(root / "tomo.mrc", tomo.volume, voxel_size=10.0)
    write_mrc(root / "seg.mrc", tomo.labels, voxel_size=10.0)
    return root, tomo


def test_every_membrane_becomes_a_container_of_their_layout(sample, tmp_path):
    root, tomo = sample
    cfg = MeshesConfig(segmentation=root / "seg.mrc", tomogram=root / "tomo.mrc", output_dir=tmp_path / "meshes",
                       min_voxels=1000)
    result = run_job(meshes_job(cfg))
    paths = sorted((tmp_path / "meshes").glob("*.h5"))
    assert [p.name for p in paths] == [f"tomo_{k}.h5" for k in range(1, len(paths) + 1)]
    assert result.metrics["membranes"] == len(paths) >= 2
    for path, n in zip(paths, result.metrics["vertices"]):
        mesh = read_mesh_container(path)
        assert mesh.points.shape == (n, 3) and mesh.normal_values.shape == (n, 20)
        assert mesh.voxel_size == 10.0 and mesh.pixel_size == 1.0 and mesh.tomo_file.endswith("tomo.mrc")
        # vertices sit on the membrane (x, y, z voxels): within two voxels of a membrane voxel
        zyx = np.rint(mesh.points[:, ::-1]).astype(int).clip(0, np.array(tomo.labels.shape) - 1)
        near = np.zeros(len(zyx), bool)
        for dz, dy, dx in np.ndindex(5, 5, 5):
            at = (zyx + [dz - 2, dy - 2, dx - 2]).clip(0, np.array(tomo.labels.shape) - 1)
            near |= tomo.labels[at[:, 0], at[:, 1], at[:, 2]] == 1
        assert near.mean() > 0.95
        # the profiles are the tomogram's values around the vertex: dense membrane (dark) at the middle
        middle = mesh.normal_values[:, 8:12].mean()
        ends = np.r_[mesh.normal_values[:, :2].ravel(), mesh.normal_values[:, -2:].ravel()].mean()
        assert middle < ends


def test_bad_input_is_refused_before_anything_is_written(sample, tmp_path, capsys):
    root, tomo = sample
    out = tmp_path / "out"
    write_mrc(tmp_path / "small.mrc", tomo.labels[:, :32], voxel_size=10.0)
    write_mrc(tmp_path / "empty.mrc", np.zeros_like(tomo.labels), voxel_size=10.0)
    cases = [("small.mrc", {}, "differs from the tomogram's"),
             ("empty.mrc", {}, "holds no voxel of the membrane classes"),
             (None, {"min_voxels": 10**7}, "no membrane of at least 10000000 voxels")]
    for seg, extra, problem in cases:
        cfg = MeshesConfig(segmentation=tmp_path / seg if seg else root / "seg.mrc", tomogram=root / "tomo.mrc",
                           output_dir=out, **extra)
        with pytest.raises(InputError, match=problem):
            run_job(meshes_job(cfg))
        assert not out.exists()
    # an existing container is kept unless --overwrite
    argv = ["-q", "pick", "meshes", str(root / "seg.mrc"), str(root / "tomo.mrc"), str(out), "--min-voxels", "1000"]
    assert main(argv) == 0
    before = (out / "tomo_1.h5").read_bytes()
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert (out / "tomo_1.h5").read_bytes() == before
    assert main([*argv, "--overwrite"]) == 0


def test_positions_make_the_folder_training_data(sample, tmp_path):
    from napari_cryolearn.io import read_star, write_star

    root, tomo = sample
    write_star(tmp_path / "proteins.star", tomo.protein_coords, {"rlnClassNumber": [2] * len(tomo.protein_coords)},
               pixel_size=10.0)
    cfg = MeshesConfig(segmentation=root / "seg.mrc", tomogram=root / "tomo.mrc", output_dir=tmp_path / "train",
                       min_voxels=1000, positions=tmp_path / "proteins.star")
    result = run_job(meshes_job(cfg))
    written = read_star(tmp_path / "train" / "tomo.star")
    assert result.outputs["positions"] == tmp_path / "train" / "tomo.star"
    np.testing.assert_allclose(written.coords, tomo.protein_coords)
    assert written.features["rlnClassNumber"].tolist() == [2] * len(tomo.protein_coords)
    # a positions file without coordinates is refused before any container is written
    (tmp_path / "bad.star").write_text("data_\nloop_\n_rlnAngleRot #1\n10\n")
    bad = cfg.model_copy(update={"positions": tmp_path / "bad.star", "output_dir": tmp_path / "other"})
    with pytest.raises(InputError, match="bad.star"):
        run_job(meshes_job(bad))
    assert not (tmp_path / "other").exists()


def test_a_membrane_too_thin_to_mesh_is_skipped_and_reported(tmp_path):
    volume = np.random.default_rng(0).normal(size=(40, 40, 40)).astype(np.float32)
    seg = np.zeros((40, 40, 40), np.uint8)
    seg[10:30, 10:30, 20] = 1  # a one-voxel sheet of 400 voxels
    write_mrc(tmp_path / "tomo.mrc", volume, voxel_size=10.0)
    write_mrc(tmp_path / "seg.mrc", seg, voxel_size=10.0)
    cfg = MeshesConfig(segmentation=tmp_path / "seg.mrc", tomogram=tmp_path / "tomo.mrc", output_dir=tmp_path / "m",
                       min_voxels=100, vertex_area=20000.0)
    with pytest.raises(InputError, match="too thin to mesh"):
        run_job(meshes_job(cfg))
    assert not (tmp_path / "m").exists()


def test_obj_files_beside_the_containers(sample, tmp_path):
    import trimesh

    root, _ = sample
    cfg = MeshesConfig(segmentation=root / "seg.mrc", tomogram=root / "tomo.mrc", output_dir=tmp_path / "m",
                       min_voxels=1000, obj=True)
    run_job(meshes_job(cfg))
    for h5 in sorted((tmp_path / "m").glob("*.h5")):
        c = read_mesh_container(h5)
        mesh = trimesh.load(h5.with_suffix(".obj"), process=False)
        np.testing.assert_allclose(mesh.vertices, c.points, atol=1e-5)
        np.testing.assert_array_equal(mesh.faces, c.faces)
