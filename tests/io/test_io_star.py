"""STAR reading and writing: RELION 3.1 and 5 tables, z-y-x order, features, filtering, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.io import StarPoints, check_in_bounds, points_in_bounds, read_star, write_star

#: Valid STAR files, shared with the fuzzers (tests/faults/test_fuzz_readers.py), which start from them.
STAR_DATA = Path(__file__).parents[1] / "data" / "star"
# RELION 3.1: optics + particles, x/y/z all different, Angstrom origins, two tomograms.
RELION31 = (STAR_DATA / "relion31.star").read_text()
# RELION 5: general + optics + particles with centred Angstrom coordinates.
RELION5 = (STAR_DATA / "relion5.star").read_text()


def _write(tmp_path: Path, text: str, name: str = "in.star") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_relion31_coordinates_come_out_zyx_with_origins_applied(tmp_path):
    pts = read_star(_write(tmp_path, RELION31))
    assert isinstance(pts, StarPoints)
    assert pts.table == "particles"
    # true position = coordinate - origin / pixel size (group 1: 2 A, group 2: 4 A)
    expected = np.array(
        [
            [30.0, 200.0 + 2.0, 100.0 - 1.0],
            [31.0 - 4.0, 210.0, 110.0],
            [32.0, 220.0, 120.0 - 1.0],
        ]
    )
    np.testing.assert_array_equal(pts.coords, expected)
    assert pts.coords.dtype == np.float64
    assert pts.pixel_size is None  # two optics groups with different pixel sizes
    assert list(pts.features.columns) == ["rlnTomoName", "rlnAngleRot", "rlnOpticsGroup", "rlnClassNumber"]
    assert pts.features["rlnAngleRot"].tolist() == [10.5, 20.5, 30.5]
    assert pts.features["rlnClassNumber"].tolist() == [1, 2, 1]
    assert pts.tomo_names.tolist() == ["TS_01", "TS_01", "TS_02"]


def test_relion31_without_origin_shift_keeps_origins_as_features(tmp_path):
    pts = read_star(_write(tmp_path, RELION31), apply_origin=False)
    np.testing.assert_array_equal(pts.coords[:, 2], [100.0, 110.0, 120.0])
    np.testing.assert_array_equal(pts.coords[:, 0], [30.0, 31.0, 32.0])
    assert pts.features["rlnOriginXAngst"].tolist() == [2.0, 0.0, 4.0]


def test_tomo_name_filters_rows(tmp_path):
    path = _write(tmp_path, RELION31)
    pts = read_star(path, tomo_name="TS_02")
    np.testing.assert_array_equal(pts.coords, [[32.0, 220.0, 119.0]])
    assert pts.pixel_size == 4.0  # one optics group left
    assert pts.tomo_names.tolist() == ["TS_02"]
    assert list(pts.features.index) == [0]
    with pytest.raises(InputError, match=r"in\.star.*'TS_99' not found.*TS_01, TS_02"):
        read_star(path, tomo_name="TS_99")


def test_pixel_size_argument_overrides_the_file(tmp_path):
    pts = read_star(_write(tmp_path, RELION31), pixel_size=1.0, tomo_name="TS_01")
    assert pts.pixel_size == 1.0
    np.testing.assert_array_equal(pts.coords[0], [30.0, 204.0, 98.0])


def test_relion5_centred_angstrom_coordinates(tmp_path):
    path = _write(tmp_path, RELION5)
    shape = (100, 300, 400)  # z, y, x pixels
    pts = read_star(path, volume_shape=shape)
    assert pts.pixel_size == 2.5  # rlnTomoTiltSeriesPixelSize from the optics table
    # pixels = angstrom / pixel_size + size / 2; origin 10 A in x -> 4 px
    expected = np.array(
        [
            [50.0 / 2.5 + 50.0, -200.0 / 2.5 + 150.0, 100.0 / 2.5 + 200.0],
            [-50.0 / 2.5 + 50.0, 0.0 + 150.0, -100.0 / 2.5 + 200.0 - 4.0],
        ]
    )
    np.testing.assert_allclose(pts.coords, expected, rtol=0, atol=1e-12)
    assert "rlnCenteredCoordinateXAngst" not in pts.features.columns
    assert pts.features["rlnAnglePsi"].tolist() == [45.0, 90.0]

    binned = read_star(path, volume_shape=(50, 150, 200), pixel_size=5.0)
    np.testing.assert_allclose(binned.coords[0], [35.0, 35.0, 120.0], rtol=0, atol=1e-12)


def test_relion5_pixel_size_from_the_particles_table_and_quoted_numbers():
    """No optics table: rlnTomoTiltSeriesPixelSize on every particle; "0" is the number 0."""
    pts = read_star(STAR_DATA / "relion5_pixel_size_per_particle.star", volume_shape=(10, 20, 30))
    assert pts.pixel_size == 10.0
    # pixels = angstrom / 10 + size / 2
    np.testing.assert_allclose(pts.coords, [[0.0 + 5.0, -2.0 + 10.0, 1.0 + 15.0], [5.0, 10.0, 15.0]],
                               rtol=0, atol=1e-12)
    assert pts.tomo_names.tolist() == ["TS_01", "TS_01"]


def test_relion5_needs_volume_shape_and_pixel_size(tmp_path):
    path = _write(tmp_path, RELION5)
    with pytest.raises(InputError, match="volume_shape"):
        read_star(path)
    no_optics = RELION5.split("data_particles")[1]
    path2 = _write(tmp_path, "data_particles" + no_optics, "no_optics.star")
    with pytest.raises(InputError, match=r"no_optics\.star.*pixel_size"):
        read_star(path2, volume_shape=(10, 10, 10))


def test_pixel_coordinates_win_over_centred_ones(tmp_path):
    text = """
data_particles
loop_
_rlnCoordinateX
_rlnCoordinateY
_rlnCoordinateZ
_rlnCenteredCoordinateXAngst
_rlnCenteredCoordinateYAngst
_rlnCenteredCoordinateZAngst
1.0 2.0 3.0 999.0 999.0 999.0
"""
    pts = read_star(_write(tmp_path, text))
    np.testing.assert_array_equal(pts.coords, [[3.0, 2.0, 1.0]])
    assert list(pts.features.columns) == []


def test_2d_table_gives_z_zero_and_picks_a_block_with_coordinates(tmp_path):
    text = """
data_info
loop_
_rlnSomething
7

data_coords
loop_
_rlnCoordinateX
_rlnCoordinateY
_rlnAutopickFigureOfMerit
11.0 22.0 0.5
33.0 44.0 0.25
"""
    pts = read_star(_write(tmp_path, text))
    assert pts.table == "coords"
    np.testing.assert_array_equal(pts.coords, [[0.0, 22.0, 11.0], [0.0, 44.0, 33.0]])
    assert pts.features["rlnAutopickFigureOfMerit"].tolist() == [0.5, 0.25]
    assert pts.tomo_names is None and pts.pixel_size is None


def test_micrograph_name_filter_matches_the_stem(tmp_path):
    text = """
data_particles
loop_
_rlnMicrographName
_rlnCoordinateX
_rlnCoordinateY
_rlnCoordinateZ
tomograms/TS_001/TS_001_aligned.st:mrc 1 2 3
tomograms/TS_002/TS_002_aligned.st:mrc 4 5 6
"""
    pts = read_star(_write(tmp_path, text), tomo_name="TS_002_aligned")
    np.testing.assert_array_equal(pts.coords, [[6.0, 5.0, 4.0]])


def test_numeric_looking_tomo_names_stay_strings(tmp_path):
    text = (
        "data_particles\nloop_\n_rlnTomoName\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnCoordinateZ\n"
        "01 1 2 3\n02 4 5 6\n"
    )
    pts = read_star(_write(tmp_path, text), tomo_name="01")
    assert pts.tomo_names.tolist() == ["01"]
    np.testing.assert_array_equal(pts.coords, [[3.0, 2.0, 1.0]])


def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    coords = rng.uniform(0, 500, size=(25, 3))
    features = pd.DataFrame(
        {
            "rlnClassNumber": rng.integers(1, 4, 25),
            "rlnAutopickFigureOfMerit": rng.random(25),
            "rlnAngleRot": rng.uniform(-180, 180, 25),
            "cryolearnLabel": [f"class {i % 3}" for i in range(25)],
        }
    )
    path = write_star(tmp_path / "out.star", coords, features)
    assert path == tmp_path / "out.star"
    pts = read_star(path)
    np.testing.assert_array_equal(pts.coords, coords)
    pd.testing.assert_frame_equal(pts.features, features, check_dtype=False)
    assert pts.features["rlnClassNumber"].dtype.kind == "i"
    assert pts.pixel_size is None

    # the file says x, y, z
    text = path.read_text()
    assert text.index("_rlnCoordinateX") < text.index("_rlnCoordinateY") < text.index("_rlnCoordinateZ")
    first_row = next(line for line in text.splitlines() if line and line[0].isdigit())
    assert [float(v) for v in first_row.split()[:3]] == coords[0, ::-1].tolist()


def test_write_with_pixel_size_and_tomo_name(tmp_path):
    coords = np.array([[1.0, 2.0, 3.0]])
    path = write_star(tmp_path / "p.star", coords, {"score": [0.5]}, pixel_size=13.5, tomo_name="TS_07")
    pts = read_star(path)
    assert pts.pixel_size == 13.5
    assert pts.tomo_names.tolist() == ["TS_07"]
    assert list(pts.features.columns) == ["rlnTomoName", "score"]
    again = write_star(tmp_path / "again.star", pts.coords, pts.features, pixel_size=pts.pixel_size)
    pts2 = read_star(again)
    np.testing.assert_array_equal(pts2.coords, coords)
    pd.testing.assert_frame_equal(pts2.features, pts.features)


def test_read_write_read_does_not_apply_origins_twice(tmp_path):
    first = read_star(_write(tmp_path, RELION31), tomo_name="TS_01")
    second = read_star(write_star(tmp_path / "again.star", first.coords, first.features, pixel_size=2.0))
    np.testing.assert_array_equal(second.coords, first.coords)


def test_2d_write_round_trip(tmp_path):
    path = write_star(tmp_path / "2d.star", np.array([[5.0, 6.0], [7.0, 8.0]]))
    assert "_rlnCoordinateZ" not in path.read_text()
    with pytest.warns(UserWarning, match="z is taken as 0"):
        points = read_star(path)
    np.testing.assert_array_equal(points.coords, [[0.0, 5.0, 6.0], [0.0, 7.0, 8.0]])
    assert not points.has_z


def test_empty_table_round_trip(tmp_path):
    pts = read_star(write_star(tmp_path / "none.star", np.zeros((0, 3))))
    assert pts.coords.shape == (0, 3)


def test_missing_coordinate_columns_lists_what_was_found(tmp_path):
    text = "data_particles\nloop_\n_rlnAngleRot\n_rlnClassNumber\n1.0 2\n"
    with pytest.raises(InputError) as err:
        read_star(_write(tmp_path, text, "nocoords.star"))
    msg = str(err.value)
    assert "nocoords.star" in msg and "no data block with coordinate columns" in msg
    assert "rlnAngleRot" in msg and "rlnClassNumber" in msg


def test_non_numeric_and_nan_coordinates(tmp_path):
    text = "data_particles\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnCoordinateZ\n1 2 3\n4 abc 6\n"
    with pytest.raises(InputError, match=r"rlnCoordinateY.*non-numeric.*'abc'"):
        read_star(_write(tmp_path, text))
    text = "data_particles\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnCoordinateZ\n1 2 3\n4 5 nan\n"
    with pytest.raises(InputError, match=r"nan\.star.*rlnCoordinateZ.*1 missing or non-finite.*rows \[1\]"):
        read_star(_write(tmp_path, text, "nan.star"))


@pytest.mark.parametrize(
    "content",
    [b"just some text\nwithout any blocks\n", np.random.default_rng(2).bytes(2000)],
    ids=["text", "binary"],
)
def test_not_a_star_file(tmp_path, content):
    path = tmp_path / "bad.star"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"bad\.star"):
        read_star(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"gone\.star.*not found"):
        read_star(tmp_path / "gone.star")


def test_write_errors_leave_no_file(tmp_path):
    with pytest.raises(InputError, match="coords_zyx"):
        write_star(tmp_path / "a.star", np.zeros((3, 4)))
    with pytest.raises(InputError, match="NaN"):
        write_star(tmp_path / "a.star", np.array([[1.0, np.nan, 2.0]]))
    with pytest.raises(InputError, match="2 feature rows for 3 points"):
        write_star(tmp_path / "a.star", np.zeros((3, 3)), {"a": [1, 2]})
    with pytest.raises(InputError, match="'name'"):
        write_star(tmp_path / "a.star", np.zeros((1, 3)), {"name": ["x"]})
    assert list(tmp_path.iterdir()) == []
    target = write_star(tmp_path / "a.star", np.zeros((1, 3)))
    before = target.read_text()
    with pytest.raises(InputError, match="exists"):
        write_star(target, np.ones((2, 3)), overwrite=False)
    assert target.read_text() == before


def test_points_in_bounds_and_check_in_bounds():
    shape = (10, 20, 30)
    coords = np.array(
        [
            [0.0, 0.0, 0.0],
            [9.4, 19.4, 29.4],  # rounds to the last voxel
            [9.5, 0.0, 0.0],  # rounds to z = 10: outside
            [0.0, -0.6, 0.0],
            [5.0, 5.0, 30.0],
        ]
    )
    np.testing.assert_array_equal(points_in_bounds(coords, shape), [True, True, False, False, False])
    check_in_bounds(coords[:2], shape)
    with pytest.raises(InputError, match=r"picks\.star.*3 of 5 points.*\(10, 20, 30\).*#2") as err:
        check_in_bounds(coords, shape, path="picks.star")
    assert "#4" in str(err.value)
