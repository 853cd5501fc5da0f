"""Pick orientations: RELION angles whose particle z axis is the membrane normal."""

import numpy as np

from napari_cryolearn.picking.orientations import axis_from_angles, normal_angles


def _relion_matrix(rot, tilt, psi):
    """RELION's Euler_angles2matrix (degrees)."""
    a, b, g = np.radians([rot, tilt, psi])
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array([[cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
                     [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
                     [sc, ss, cb]])


def test_the_particle_z_axis_is_the_normal_in_relion_convention():
    rng = np.random.default_rng(0)
    normals = rng.normal(size=(50, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    angles = normal_angles(normals, seed=3)
    for n_zyx, (rot, tilt, psi) in zip(normals, angles):
        a = _relion_matrix(rot, tilt, psi)
        # the reference z axis rotated into the tomogram (A transposed) is the normal, in x, y, z
        np.testing.assert_allclose(a.T @ [0, 0, 1], n_zyx[::-1], atol=1e-9)
    np.testing.assert_allclose(axis_from_angles(angles), normals, atol=1e-9)


def test_psi_is_random_but_seeded_and_poles_are_defined():
    n = np.array([[1.0, 0, 0], [-2.0, 0, 0], [0, 3.0, 0]])
    a, b = normal_angles(n, seed=1), normal_angles(n, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[:, 2], normal_angles(n, seed=2)[:, 2])
    assert a[:2, :2].tolist() == [[0.0, 0.0], [0.0, 180.0]]
    assert np.all((a[:, 2] >= -180) & (a[:, 2] < 180))
