"""Mesh containers in MemBrain-pick's .h5 layout: theirs load, ours read back, bad files refused."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from napari_cryolearn.engine.errors import InputError, OutputExistsError
from napari_cryolearn.io.mesh_container import MeshContainer, read_mesh_container, write_mesh_container


def _tetra():
    points = np.array([[0.0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]]) + 5.0  # x, y, z voxels
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], dtype=np.int64)
    normals = points - points.mean(0)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    values = np.arange(4 * 20, dtype=np.float32).reshape(4, 20)
    return points, faces, normals, values


def _write_theirs(path, points, faces, normals, values, tomo="/abs/tomo.mrc"):
    """What MemBrain-pick's convert step writes (h5py directly, their keys only)."""
    with h5py.File(path, "w") as f:
        f.create_dataset("points", data=points)
        f.create_dataset("faces", data=faces)
        f.create_dataset("normals", data=normals)
        f.create_dataset("normal_values", data=values)
        f.create_dataset("tomo_file", data=np.array([tomo], dtype=h5py.string_dtype("utf-8")))
        f.create_dataset("pixel_size", data=1.0)


def test_theirs_loads(tmp_path):
    points, faces, normals, values = _tetra()
    _write_theirs(tmp_path / "mb.h5", points, faces, normals, values)
    c = read_mesh_container(tmp_path / "mb.h5")
    np.testing.assert_array_equal(c.points, points)
    np.testing.assert_array_equal(c.faces, faces)
    np.testing.assert_allclose(c.normals, normals)
    np.testing.assert_array_equal(c.normal_values, values)
    assert c.tomo_file == "/abs/tomo.mrc"
    assert c.pixel_size == 1.0 and c.voxel_size is None and c.scores is None
    # the (z, y, x) views reverse the axes
    np.testing.assert_array_equal(c.verts_zyx(), points[:, ::-1])
    np.testing.assert_array_equal(c.faces_zyx(), faces[:, ::-1])


def test_ours_reads_back_with_their_keys_and_units(tmp_path):
    points, faces, normals, values = _tetra()
    verts_zyx = points[:, ::-1]
    c = MeshContainer.from_zyx(verts_zyx, faces[:, ::-1], normals[:, ::-1], values, tomo_file="/t.mrc",
                               voxel_size=14.08, profile_step=2.5, label=3,
                               scores=np.linspace(0, 10, 4), cluster_centers=np.array([[50.0, 60, 70]]))
    path = write_mesh_container(tmp_path / "ours.h5", c)
    with h5py.File(path, "r") as f:  # their reader's view
        np.testing.assert_array_equal(f["points"][()], points)  # x, y, z voxels
        assert f["points"].dtype == np.float64 and f["faces"].dtype == np.int64
        assert f["normals"].dtype == np.float64 and f["normal_values"].dtype == np.float32
        np.testing.assert_array_equal(f["faces"][()], faces)
        assert f["pixel_size"][()] == 1.0
        assert f["tomo_file"][()].decode() == "/t.mrc"
        assert f["voxel_size"][()] == 14.08 and f["label"][()] == 3
    back = read_mesh_container(path)
    np.testing.assert_array_equal(back.verts_zyx(), verts_zyx)
    np.testing.assert_allclose(back.normals_zyx(), normals[:, ::-1])
    assert (back.voxel_size, back.profile_step, back.label) == (14.08, 2.5, 3)
    np.testing.assert_allclose(back.scores, np.linspace(0, 10, 4))
    np.testing.assert_allclose(back.cluster_centers, [[50.0, 60, 70]])


def test_winding_follows_the_axis_swap():
    # a triangle whose right-hand normal points along +z (in z, y, x): [1, 0, 0]
    verts = np.array([[0.0, 0, 0], [0, 1, 0], [0, 0, 1]])  # z, y, x
    tri = np.array([[0, 1, 2]])
    n_zyx = np.cross(verts[1] - verts[0], verts[2] - verts[0])
    assert n_zyx[0] > 0
    c = MeshContainer.from_zyx(verts, tri, None, None)
    p = c.points[c.faces[0]]
    n_xyz = np.cross(p[1] - p[0], p[2] - p[0])
    np.testing.assert_allclose(n_xyz, n_zyx[::-1])  # same physical direction


def test_prediction_in_angstrom_becomes_voxels(tmp_path):
    points, faces, _, _ = _tetra()
    with h5py.File(tmp_path / "pred.h5", "w") as f:  # MemBrain-pick's predict output
        f.create_dataset("points", data=points * 10.0)
        f.create_dataset("faces", data=faces)
        f.create_dataset("scores", data=np.array([1.0, 2, 3, 4]))
        f.create_dataset("labels", data=np.zeros(4))
        f.create_dataset("cluster_centers", data=np.array([[55.0, 55, 55]]))
        f.create_dataset("tomo_file", data="/x.mrc", dtype=h5py.string_dtype("utf-8"))
        f.create_dataset("pixel_size", data=10.0)
    c = read_mesh_container(tmp_path / "pred.h5")
    np.testing.assert_allclose(c.points, points)
    assert c.pixel_size == 1.0 and c.voxel_size == 10.0
    np.testing.assert_allclose(c.cluster_centers, [[55.0, 55, 55]])  # stays in Å
    assert c.normals is None and c.normal_values is None


def test_refuses_existing_unless_overwrite(tmp_path):
    points, faces, normals, values = _tetra()
    c = MeshContainer(points, faces, normals, values)
    write_mesh_container(tmp_path / "m.h5", c)
    with pytest.raises(OutputExistsError):
        write_mesh_container(tmp_path / "m.h5", c)
    c.label = 7
    write_mesh_container(tmp_path / "m.h5", c, overwrite=True)
    assert read_mesh_container(tmp_path / "m.h5").label == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5"]  # no temporaries left


def test_bad_files_name_the_file(tmp_path):
    points, faces, normals, values = _tetra()
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(InputError, match="notes.h5.*not an HDF5"):
        read_mesh_container(text)
    with pytest.raises(InputError, match="absent.h5"):
        read_mesh_container(tmp_path / "absent.h5")

    with h5py.File(tmp_path / "nofaces.h5", "w") as f:
        f.create_dataset("points", data=points)
        f.create_dataset("pixel_size", data=1.0)
    with pytest.raises(InputError, match="nofaces.h5.*faces") as err:
        read_mesh_container(tmp_path / "nofaces.h5")
    assert err.value.path.endswith("nofaces.h5")

    _write_theirs(tmp_path / "range.h5", points, faces + 1, normals, values)
    with pytest.raises(InputError, match="range.h5: faces: .*outside 0..3"):
        read_mesh_container(tmp_path / "range.h5")

    _write_theirs(tmp_path / "shape.h5", points[:, :2], faces, normals, values)
    with pytest.raises(InputError, match="shape.h5: points: expected shape"):
        read_mesh_container(tmp_path / "shape.h5")

    _write_theirs(tmp_path / "rows.h5", points, faces, normals[:3], values)
    with pytest.raises(InputError, match="rows.h5: normals: expected 4 rows"):
        read_mesh_container(tmp_path / "rows.h5")


def test_write_checks_before_writing(tmp_path):
    points, faces, normals, values = _tetra()
    with pytest.raises(InputError, match="faces"):
        write_mesh_container(tmp_path / "bad.h5", MeshContainer(points, faces + 4, normals, values))
    assert not (tmp_path / "bad.h5").exists()


def test_a_mesh_of_ours_goes_through_the_container(tmp_path):
    from napari_cryolearn.picking.meshes import mesh_from_mask, normal_profiles, vertex_normals

    z, y, x = np.indices((40, 40, 40))
    ball = (z - 20) ** 2 + (y - 21) ** 2 + (x - 19) ** 2 < 12**2
    verts, faces = mesh_from_mask(ball, voxel_size=10.0)
    normals = vertex_normals(verts, faces)
    volume = (x * 1.0 + 2 * z).astype(np.float32)  # value = x + 2 z
    prof = normal_profiles(volume, verts, normals, voxel_size=10.0)
    c = MeshContainer.from_zyx(verts, faces, normals, prof, tomo_file=tmp_path / "t.mrc", voxel_size=10.0,
                               profile_step=2.5, label=1)
    back = read_mesh_container(write_mesh_container(tmp_path / "ball.h5", c))
    # in the file: x, y, z; the centre of the ball is (19, 21, 20) in x, y, z
    np.testing.assert_allclose((back.points.min(0) + back.points.max(0)) / 2, [19, 21, 20], atol=0.15)
    np.testing.assert_allclose(back.verts_zyx(), verts)
    np.testing.assert_array_equal(back.faces_zyx(), faces)
    # the normals in the file still point away from the centre, in x, y, z
    radial = back.points - np.array([19.0, 21, 20])
    assert np.all(np.einsum("ij,ij->i", back.normals, radial) > 0)
    # the file's winding gives the file's normals by the right-hand rule
    tri = back.points[back.faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert np.all(np.einsum("ij,ij->i", face_n, tri.mean(1) - np.array([19.0, 21, 20])) > 0)
    np.testing.assert_array_equal(back.normal_values, prof)
    assert back.tomo_file == str(tmp_path / "t.mrc")


def test_groups_of_newer_membrain_pick(tmp_path):
    points, faces, normals, values = _tetra()
    with h5py.File(tmp_path / "many.h5", "w") as f:
        for name, shift in (("mb1", 0.0), ("mb2", 100.0)):
            g = f.create_group(name)
            g.create_dataset("points", data=points + shift)
            g.create_dataset("faces", data=faces)
            g.create_dataset("normals", data=normals)
            g.create_dataset("normal_values", data=values)
            g.create_dataset("tomo_file", data="/t.mrc", dtype=h5py.string_dtype("utf-8"))
            g.create_dataset("pixel_size", data=1.0)
    np.testing.assert_array_equal(read_mesh_container(tmp_path / "many.h5", group="mb2").points, points + 100)
    with pytest.raises(InputError, match=r"many.h5: points: .*groups \['mb1', 'mb2'\]: pass group="):
        read_mesh_container(tmp_path / "many.h5")
    with pytest.raises(InputError, match=r"many.h5: group: no group 'mb3'"):
        read_mesh_container(tmp_path / "many.h5", group="mb3")
