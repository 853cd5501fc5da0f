"""STAR files that are damaged, incomplete or changed between reads.

Each test states what the user sees: an :class:`InputError` naming the file (and the column),
a warning naming the file, or the right points.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from napari_cryolearn.cli import main
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.io.mrc import write_mrc
from napari_cryolearn.io.star import MissingZWarning, read_star

HEADER_XYZ = "data_particles\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnCoordinateZ\n"
HEADER_XY = "data_particles\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnClassNumber\n"


def _write(folder, text: str, name: str = "picks.star"):
    path = folder / name
    path.write_text(text)
    return path




# ---------------------------------------------------------------------------------------------
# 2D tables: z = 0 with a warning, refused where 3D is needed


def test_table_without_z_warns_naming_the_file(tmp_path):
    path = _write(tmp_path, HEADER_XY + "1 2 3\n4 5 6\n", "flat.star")
    with pytest.warns(MissingZWarning, match=r"flat\.star: data_particles has no rlnCoordinateZ column; "
                                             r"z is taken as 0 for all 2 points"):
        pts = read_star(path)
    np.testing.assert_array_equal(pts.coords, [[0.0, 2.0, 1.0], [0.0, 5.0, 4.0]])
    assert pts.has_z is False
    assert list(pts.features.columns) == ["rlnClassNumber"]


def test_table_with_z_does_not_warn(tmp_path):
    path = _write(tmp_path, HEADER_XYZ + "1 2 3\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pts = read_star(path, require_z=True, require_rows=True)
    assert pts.has_z is True
    np.testing.assert_array_equal(pts.coords, [[3.0, 2.0, 1.0]])


def test_require_z_refuses_a_2d_table(tmp_path):
    path = _write(tmp_path, HEADER_XY + "1 2 3\n", "flat.star")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused, not warned about
        with pytest.raises(InputError, match=r"flat\.star: rlnCoordinateZ: data_particles has rlnCoordinateX/Y "
                                             r"but no z coordinate") as err:
            read_star(path, require_z=True)
    assert err.value.field == "rlnCoordinateZ"


def test_relion5_centred_coordinates_have_z(tmp_path):
    text = ("data_particles\nloop_\n_rlnCenteredCoordinateXAngst\n_rlnCenteredCoordinateYAngst\n"
            "_rlnCenteredCoordinateZAngst\n0 0 10\n")
    pts = read_star(_write(tmp_path, text), pixel_size=10.0, volume_shape=(4, 6, 8), require_z=True)
    assert pts.has_z is True
    np.testing.assert_allclose(pts.coords, [[3.0, 3.0, 4.0]])


# ---------------------------------------------------------------------------------------------
# tables without rows


def test_table_without_rows_gives_no_points(tmp_path):
    """An empty Points layer saved and reopened, or a tomogram without picks: no points."""
    pts = read_star(_write(tmp_path, HEADER_XYZ + "\n"))
    assert pts.coords.shape == (0, 3) and pts.coords.dtype == np.float64
    assert len(pts.features) == 0


def test_require_rows_refuses_a_table_without_rows(tmp_path):
    path = _write(tmp_path, HEADER_XYZ, "none.star")
    with pytest.raises(InputError, match=r"none\.star: data_particles has no rows: "
                                         r"the file holds no coordinates"):
        read_star(path, require_rows=True)


# ---------------------------------------------------------------------------------------------
# a file corrected after a failed read


def test_corrected_file_reads_after_a_failed_read(tmp_path):
    """starfile keeps a file's lines in ``linecache`` after a failed parse; the fixed file, same
    name, must be read afresh."""
    path = tmp_path / "picks.star"
    path.write_text(HEADER_XYZ + "1 2 '3\n")  # an unclosed quote: the parser fails
    with pytest.raises(InputError, match=r"picks\.star: not a readable STAR file"):
        read_star(path)
    path.write_text(HEADER_XYZ + "10 20 30\n40 50 60\n")
    pts = read_star(path)
    np.testing.assert_array_equal(pts.coords, [[30.0, 20.0, 10.0], [60.0, 50.0, 40.0]])


def test_changed_file_of_the_same_length_reads_afresh(tmp_path):
    """Same size and (on a coarse clock) same modification time: the new values are read."""
    path = tmp_path / "picks.star"
    path.write_text(HEADER_XYZ + "1 2 3\n4 5 'x\n")
    stat = path.stat()
    with pytest.raises(InputError):
        read_star(path)
    path.write_text(HEADER_XYZ + "7 8 9\n4 5 6.\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    np.testing.assert_array_equal(read_star(path).coords, [[9.0, 8.0, 7.0], [6.0, 5.0, 4.0]])


# ---------------------------------------------------------------------------------------------
# duplicated columns


@pytest.mark.parametrize(
    "text, column",
    [
        ("data_particles\nloop_\n_rlnCoordinateX\n_rlnCoordinateX\n_rlnCoordinateY\n1 2 3\n", "rlnCoordinateX"),
        (HEADER_XYZ.replace("_rlnCoordinateZ\n", "_rlnCoordinateZ\n_rlnClassNumber\n_rlnClassNumber\n")
         + "1 2 3 4 5\n", "rlnClassNumber"),
        ("data_optics\nloop_\n_rlnOpticsGroup\n_rlnImagePixelSize\n_rlnImagePixelSize\n1 2 3\n\n"
         + HEADER_XYZ + "1 2 3\n", "rlnImagePixelSize"),
    ],
    ids=["coordinate", "feature", "optics"],
)
def test_duplicated_column_names_the_column(tmp_path, text, column):
    path = _write(tmp_path, text, "dup.star")
    with pytest.raises(InputError) as err:
        read_star(path)
    msg = str(err.value)
    assert "dup.star" in msg and f"has the column {column} more than once" in msg
    assert err.value.field == column


# ---------------------------------------------------------------------------------------------
# not UTF-8 text


def test_latin1_star_file_says_it_is_not_utf8(tmp_path):
    """starfile reads a file that is not UTF-8 as empty lines; the message says why."""
    path = tmp_path / "latin.star"
    path.write_bytes((HEADER_XYZ.replace("_rlnCoordinateZ\n", "_rlnCoordinateZ\n_rlnMicrographName\n")
                      + "1 2 3 caf\xe9.mrc\n").encode("latin-1"))
    offset = path.read_bytes().index(b"\xe9")
    with pytest.raises(InputError, match=rf"latin\.star: not a text STAR file: byte {offset} is not UTF-8 text"):
        read_star(path)


# ---------------------------------------------------------------------------------------------
# optics groups in rows cut short


def test_row_cut_short_in_the_optics_group_column(tmp_path):
    """A row with fewer fields leaves rlnOpticsGroup empty: named, not a TypeError."""
    text = ("data_optics\nloop_\n_rlnOpticsGroup\n_rlnImagePixelSize\n1 2.0\n\n"
            + HEADER_XYZ.replace("_rlnCoordinateZ\n", "_rlnCoordinateZ\n_rlnOpticsGroup\n")
            + "1 2 3 1\n4 5 6\n")
    with pytest.raises(InputError, match=r"short\.star: rlnOpticsGroup: missing values in data_particles "
                                         r"\(rows \[1\]\)"):
        read_star(_write(tmp_path, text, "short.star"))


def test_optics_groups_match_as_numbers(tmp_path):
    """``1`` in data_optics and ``1.0`` in the particles (a column made float) are one group."""
    text = ("data_optics\nloop_\n_rlnOpticsGroup\n_rlnImagePixelSize\n1 2.0\n2 4.0\n\n"
            + HEADER_XYZ.replace("_rlnCoordinateZ\n", "_rlnCoordinateZ\n_rlnOpticsGroup\n")
            + "1 2 3 1.0\n4 5 6 2.5e0\n")
    with pytest.raises(InputError, match=r"optics groups \['2\.5'\] are not in data_optics"):
        read_star(_write(tmp_path, text))
    text = text.replace("2.5e0", "2.0")
    assert read_star(_write(tmp_path, text, "ok.star")).pixel_size is None  # rows disagree: 2 and 4 Å


# ---------------------------------------------------------------------------------------------
# files that cannot be read


def test_folder_given_as_star_file(tmp_path):
    folder = tmp_path / "picks.star"
    folder.mkdir()
    with pytest.raises(InputError, match=r"picks\.star: is a folder, not a file"):
        read_star(folder)


def test_fifo_given_as_star_file_is_not_opened(tmp_path):
    fifo = tmp_path / "pipe.star"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"pipe\.star: not a regular file \(a FIFO\)"):
        read_star(fifo)


def test_star_file_without_read_permission(tmp_path, unreadable):
    path = _write(tmp_path, HEADER_XYZ + "1 2 3\n", "locked.star")
    with unreadable(path), pytest.raises(InputError, match=r"locked\.star: cannot be read: permission denied"):
        read_star(path)


# ---------------------------------------------------------------------------------------------
# masks from coordinates: the 3D consumer


@pytest.fixture
def reference(tmp_path):
    return write_mrc(tmp_path / "tomo.mrc", np.zeros((8, 8, 8), np.float32), voxel_size=10.0)


@pytest.mark.parametrize("text, problem", [(HEADER_XY + "1 2 1\n", "no z coordinate"), (HEADER_XYZ, "has no rows")],
                         ids=["2d", "no-rows"])
def test_masks_refuse_2d_and_empty_tables(tmp_path, reference, capsys, text, problem):
    star = _write(tmp_path, text, "picks.star")
    out = tmp_path / "spheres.mrc"
    code = main(["-q", "prep", "masks", str(star), str(reference), str(out), "--radius", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "picks.star" in err and problem in err and "Traceback" not in err
    assert not out.exists()


def test_optics_groups_of_mixed_types_are_an_input_error(tmp_path):
    """Found by the fuzz test: a row cut to one token made the group keys mix text and numbers
    (sorting them for the message raised TypeError)."""
    text = ("data_optics\nloop_\n_rlnOpticsGroup #1\n_rlnOpticsGroupName #2\n_rlnImagePixelSize #3\n"
            "1 opticsGroup1 2.0\n\ndata_particles\nloop_\n_rlnTomoName #1\n_rlnCoordinateX #2\n"
            "_rlnCoordinateY #3\n_rlnCoordinateZ #4\n_rlnOpticsGroup #5\n"
            "TS_01 10.0 20.0 30.0 1\nnan\nTS_01 11.5 21.5 31.5 1\nTS_02 \"5\" 6 7 1\n")
    path = tmp_path / "mixed.star"
    path.write_text(text)
    with pytest.raises(InputError, match="mixed.star"):
        read_star(path, tomo_name="b")
