"""A synthetic 4D-STEM scan: a diffraction pattern at every probe position of a 2D scan.

The specimen is a map of phases over the scan: ``0`` vacuum (beyond a straight sample edge),
``1`` amorphous (e.g. a carbon support) and ``2 ..`` crystalline phases, laid out as Voronoi
grains, one orientation per crystalline grain. Each pattern is the expected intensity on the
detector, then Poisson counts at ``dose``:

- every pattern has the central (direct) beam disc of radius ``disc_radius`` with a soft edge,
  and the detector's point-spread tail around it (a Lorentzian-squared halo, so that no pixel
  expects zero counts);
- in the specimen, the direct beam is attenuated by the local thickness (smooth across the
  scan), and the scattered part appears as
  - amorphous: diffuse rings (two Gaussian rings at fixed radii) on a diffuse background;
  - crystalline: a lattice of Bragg discs (the same radius as the direct beam) whose reciprocal
    lattice constant and symmetry depend on the phase (hexagonal, square, rectangular, then
    repeating with other constants) and that rotate with the grain's orientation, fading with
    the scattering angle (a Debye-Waller-like envelope), on a weaker diffuse background.

Axis order: (scan y, scan x, detector y, detector x).

Example
-------
>>> scan = make_4dstem_scan((8, 8), (16, 16), seed=0)
>>> scan.data.shape, scan.data.dtype, scan.phase.shape
((8, 8, 16, 16), dtype('float32'), (8, 8))
>>> bool(np.isnan(scan.orientation[scan.phase < 2]).all())
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from napari_cryolearn.engine.errors import InputError

__all__ = ["Stem4DScan", "make_4dstem_scan", "PHASE_NAMES"]

#: Names of the first labels of :attr:`Stem4DScan.phase`.
PHASE_NAMES: tuple[str, ...] = ("vacuum", "amorphous")

#: (symmetry angle between the two reciprocal lattice vectors in degrees, |a2| / |a1|,
#: reciprocal lattice constant as a fraction of the detector half-width) per crystalline phase.
_LATTICES = ((60.0, 1.0, 0.42), (90.0, 1.0, 0.55), (90.0, 1.45, 0.36), (60.0, 1.0, 0.68), (90.0, 1.0, 0.30))


@dataclass
class Stem4DScan:
    """A generated 4D-STEM scan.

    Attributes
    ----------
    data
        float32 counts, (Sy, Sx, Ky, Kx).
    phase
        int (Sy, Sx): 0 vacuum, 1 amorphous, 2 .. crystalline phases.
    orientation
        float (Sy, Sx), radians of each crystalline grain's lattice; NaN elsewhere.
    grain
        int (Sy, Sx): the Voronoi grain of each probe position (-1 in vacuum).
    step
        nm per scan step.
    """

    data: np.ndarray
    phase: np.ndarray
    orientation: np.ndarray
    grain: np.ndarray
    step: float

    @property
    def n_phases(self) -> int:
        """Labels in :attr:`phase` (vacuum, amorphous and the crystalline phases)."""
        return int(self.phase.max()) + 1


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise InputError(f"expected a positive integer, got {value!r}", field=name)
    return int(value)


def make_4dstem_scan(
    scan_shape: tuple[int, int] = (32, 32),
    detector_shape: tuple[int, int] = (32, 32),
    *,
    n_grains: int = 12,
    phases: int = 3,
    seed: int = 0,
    dose: float = 1e7,
    step: float = 2.0,
    disc_radius: float | None = None,
    vacuum_fraction: float = 0.15,
) -> Stem4DScan:
    """Generate a scan (see the module docstring).

    Parameters
    ----------
    scan_shape, detector_shape
        (Sy, Sx) probe positions and (Ky, Kx) detector pixels (each side ≥ 4).
    n_grains
        Voronoi grains of the specimen; each is amorphous or one of the crystalline phases (every
        kind appears at least once when there are enough grains).
    phases
        Crystalline phases (labels 2 .. phases + 1).
    seed
        Seed of the layout, orientations and noise.
    dose
        Electrons per pattern in vacuum (the mean total counts of a vacuum pattern).
    step
        nm per scan step (recorded, and sets the thickness variation's length scale).
    disc_radius
        Radius of the direct beam and Bragg discs in pixels (default: 1/14 of the detector's
        smaller side, at least 1.2).
    vacuum_fraction
        About this fraction of the scan lies beyond the sample edge.
    """
    sy, sx = (_positive_int(s, "scan_shape") for s in scan_shape)
    ky, kx = (_positive_int(s, "detector_shape") for s in detector_shape)
    if min(ky, kx) < 4:
        raise InputError(f"detector sides must be at least 4 pixels, got {(ky, kx)}", field="detector_shape")
    n_grains = _positive_int(n_grains, "n_grains")
    phases = _positive_int(phases, "phases")
    if not (dose > 0 and math.isfinite(dose)):
        raise InputError(f"expected a positive dose, got {dose!r}", field="dose")
    rng = np.random.default_rng(seed)

    # --- the specimen: vacuum beyond an edge, Voronoi grains of amorphous / crystalline phases
    yy, xx = np.mgrid[0:sy, 0:sx].astype(np.float64)
    angle = rng.uniform(0, 2 * np.pi)
    u = (yy - sy / 2) * math.sin(angle) + (xx - sx / 2) * math.cos(angle)
    edge = np.quantile(u, 1.0 - vacuum_fraction) if vacuum_fraction > 0 else np.inf
    vacuum = u > edge
    seeds = rng.uniform((0, 0), (sy, sx), size=(n_grains, 2))
    d2 = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    grain = np.argmin(d2, axis=-1)
    kinds = np.arange(n_grains) % (phases + 1) + 1  # 1 amorphous, 2.. crystalline
    kinds = rng.permutation(kinds)
    theta = rng.uniform(0, np.pi, size=n_grains)
    phase = np.where(vacuum, 0, kinds[grain]).astype(np.int64)
    grain = np.where(vacuum, -1, grain).astype(np.int64)
    orientation = np.where(phase >= 2, theta[np.maximum(grain, 0)], np.nan)
    # smooth thickness (relative): low near the edge, varying a little across the scan
    fy, fx = rng.uniform(0.5, 1.5, 2) * 2 * np.pi / max(sy, sx)
    thickness = 0.75 + 0.15 * np.sin(fy * yy + rng.uniform(0, 6)) * np.cos(fx * xx + rng.uniform(0, 6))
    thickness *= np.clip((edge - u) / max(2.0, 0.1 * max(sy, sx)), 0.3, 1.0) if np.isfinite(edge) else 1.0

    # --- detector geometry
    cy, cx = (ky - 1) / 2, (kx - 1) / 2
    qy, qx = np.mgrid[0:ky, 0:kx].astype(np.float64)
    qy, qx = qy - cy, qx - cx
    half = min(ky, kx) / 2
    r0 = disc_radius if disc_radius is not None else max(1.2, min(ky, kx) / 14)

    def disc(py, px):
        r = np.hypot(qy[None] - np.asarray(py)[:, None, None], qx[None] - np.asarray(px)[:, None, None])
        return 1.0 / (1.0 + np.exp((r - r0) / 0.35))

    r = np.hypot(qy, qx)
    beam = disc([0.0], [0.0])[0]
    beam /= beam.sum()
    tail = 1.0 / (1.0 + (r / (2 * r0)) ** 2) ** 0.75
    tail /= tail.sum() / 0.15  # 15% of the beam in the detector's halo
    diffuse = np.exp(-r / (0.8 * half))
    diffuse /= diffuse.sum()

    # one scattered-intensity template per grain (unit total)
    templates = np.zeros((n_grains, ky, kx))
    for g in range(n_grains):
        kind = kinds[g]
        if kind == 1:
            rings = (np.exp(-((r - 0.45 * half) ** 2) / (2 * (0.07 * half) ** 2))
                     + 0.5 * np.exp(-((r - 0.8 * half) ** 2) / (2 * (0.09 * half) ** 2)))
            t = 0.55 * rings / rings.sum() + 0.45 * diffuse
        else:
            sym, ratio, frac = _LATTICES[(kind - 2) % len(_LATTICES)]
            frac *= 1.0 + 0.15 * ((kind - 2) // len(_LATTICES))
            g1 = frac * half
            a1 = g1 * np.array([math.cos(theta[g]), math.sin(theta[g])])
            a2 = g1 * ratio * np.array([math.cos(theta[g] + math.radians(sym)), math.sin(theta[g] + math.radians(sym))])
            n = np.arange(-4, 5)
            n1, n2 = (a.ravel() for a in np.meshgrid(n, n))
            spots = n1[:, None] * a1 + n2[:, None] * a2
            keep = (np.hypot(*spots.T) > 0) & (np.abs(spots[:, 0]) < cx + r0) & (np.abs(spots[:, 1]) < cy + r0)
            spots = spots[keep]
            weight = np.exp(-(np.hypot(*spots.T) / (0.9 * half)) ** 2)
            bragg = (disc(spots[:, 1], spots[:, 0]) * weight[:, None, None]).sum(0) if len(spots) else np.zeros_like(r)
            t = 0.7 * bragg / max(bragg.sum(), 1e-12) + 0.3 * diffuse
        templates[g] = t

    # --- expected counts: attenuated beam + scattered part + the detector's halo
    t_flat = thickness.reshape(-1)
    scattered = 1.0 - np.exp(-1.2 * t_flat)  # fraction scattered out of the direct beam
    vac = vacuum.reshape(-1)
    scattered[vac] = 0.0
    g_flat = np.maximum(grain.reshape(-1), 0)
    expected = ((1.0 - scattered)[:, None, None] * beam[None] + scattered[:, None, None] * templates[g_flat]
                + tail[None])
    expected *= dose / (1.0 + tail.sum())  # a vacuum pattern holds `dose` electrons
    counts = rng.poisson(expected).astype(np.float32)
    return Stem4DScan(data=counts.reshape(sy, sx, ky, kx), phase=phase, orientation=orientation, grain=grain,
                      step=float(step))
