"""Orientations of picks from the membrane normal, as RELION Euler angles.

RELION's ZYZ angles (rot, tilt, psi) put a particle's z axis along
``(cos rot · sin tilt, sin rot · sin tilt, cos tilt)`` in the tomogram's (x, y, z) frame; psi
turns the particle about that axis. A membrane protein's axis is the membrane normal at its
position, so rot and tilt come from the normal and psi, which the normal does not fix, is drawn
at random (MemBrain-pick does the same).
"""

from __future__ import annotations

import numpy as np

__all__ = ["axis_from_angles", "normal_angles"]


def normal_angles(normals_zyx: np.ndarray, *, seed: int | None = 0) -> np.ndarray:
    """``(N, 3)`` degrees (rlnAngleRot, rlnAngleTilt, rlnAnglePsi) whose z axis is each normal.

    Parameters
    ----------
    normals_zyx : (N, 3)
        Normals in (z, y, x) order (normalised here).
    seed : int or None
        Seed of the random psi (uniform in [-180, 180)).

    Examples
    --------
    >>> a = normal_angles(np.array([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]]))
    >>> a[:, :2].round(6).tolist()
    [[0.0, 0.0], [0.0, 90.0], [90.0, 90.0]]
    >>> np.allclose(axis_from_angles(a), [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    True
    """
    n = np.asarray(normals_zyx, np.float64).reshape(-1, 3)
    n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    z, y, x = n[:, 0], n[:, 1], n[:, 2]
    tilt = np.degrees(np.arccos(np.clip(z, -1.0, 1.0)))
    rot = np.degrees(np.arctan2(y, x))
    rot[np.hypot(x, y) < 1e-9] = 0.0
    psi = np.random.default_rng(seed).uniform(-180.0, 180.0, len(n))
    return np.stack([rot, tilt, psi], axis=1)


def axis_from_angles(angles: np.ndarray) -> np.ndarray:
    """The particle z axis, (z, y, x), of RELION angles ``(N, 3)`` degrees (psi does not move it)."""
    a = np.radians(np.asarray(angles, np.float64).reshape(-1, 3))
    rot, tilt = a[:, 0], a[:, 1]
    return np.stack([np.cos(tilt), np.sin(rot) * np.sin(tilt), np.cos(rot) * np.sin(tilt)], axis=1)
