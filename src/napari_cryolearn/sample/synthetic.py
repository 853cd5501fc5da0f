"""A synthetic cryo-electron tomogram with ground truth, made from arrays alone.

The scene holds closed vesicles (ellipsoidal lipid bilayers), open curved membrane sheets
(a cap of a large sphere or a patch of a large cylinder), membrane proteins sticking out of
the membranes, and free compact particles, over a low-frequency "ice" background. The image
is formed as in a real reconstruction: density, a point-spread blur that is longer along z
(missing-wedge-like), noise at a chosen SNR, contrast inverted (dense = dark), and
normalised to zero mean and unit standard deviation.

Axis order is (z, y, x) everywhere; coordinates are voxel indices (voxel centres on
integers); physical sizes are in Angstrom and converted to voxels with ``voxel_size``.

Example
-------
>>> tomo = make_synthetic_tomogram(shape=(48, 64, 64), n_vesicles=2, proteins_per_vesicle=4, n_particles=6, seed=3)
>>> tomo.volume.shape, tomo.volume.dtype, tomo.labels.dtype
((48, 64, 64), dtype('float32'), dtype('uint8'))
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from napari_cryolearn.engine.errors import InputError

LABEL_NAMES: dict[int, str] = {0: "background", 1: "membrane", 2: "membrane_protein", 3: "particle"}

BACKGROUND, MEMBRANE, MEMBRANE_PROTEIN, PARTICLE = 0, 1, 2, 3

# Physical sizes, Angstrom.
MEMBRANE_THICKNESS_A = 45.0  # whole bilayer, head group to head group
LEAFLET_OFFSET_A = 15.0  # distance of each dense leaflet from the mid-plane
LEAFLET_SIGMA_A = 6.0  # width of each leaflet's density profile
PROTEIN_LENGTH_A = (60.0, 80.0)  # along the membrane normal
PROTEIN_WIDTH_A = (50.0, 60.0)  # across the normal
PARTICLE_DIAMETER_A = (80.0, 120.0)
RESOLUTION_SIGMA_A = 8.0  # in-plane point-spread sigma

# Relative densities (the membrane's leaflets peak at 1).
PROTEIN_DENSITY = 1.0
PARTICLE_DENSITY = 1.1
ICE_STD = 0.08  # standard deviation of the low-frequency background density
ICE_SIGMA_A = 60.0  # correlation length of the ice background

# Vesicle radii for the default shape, voxels; they scale with min(shape) / 96.
_VESICLE_RADIUS_DEFAULT = (14.0, 30.0)
_DEFAULT_MIN_DIM = 96.0
_MIN_DIM = 16
_MEMBRANE_ATTEMPTS = 60
_MEMBRANE_ROUNDS = 4
_PROTEIN_ATTEMPTS_PER_PROTEIN = 40
_PARTICLE_ATTEMPTS_PER_PARTICLE = 60


@dataclass
class SyntheticTomogram:
    """A synthetic tomogram and its ground truth.

    Attributes
    ----------
    volume : (Z, Y, X) float32
        The noisy image: dense matter is dark (low values); zero mean, unit standard deviation.
    labels : (Z, Y, X) uint8
        Class per voxel, keys of ``label_names``; each object's mask before blur and noise.
    protein_coords : (N, 3) float64
        Centres of the membrane-protein blobs, z, y, x in voxels.
    protein_normals : (N, 3) float64
        Unit outward membrane normal (z, y, x) at each protein: away from a vesicle's lumen,
        towards the convex side of an open sheet; the protein sticks out along it.
    particle_coords : (M, 3) float64
        Centres (mask centroids) of the free particles, z, y, x in voxels.
    voxel_size : float
        Angstrom per voxel, the same along every axis.
    label_names : dict[int, str]
        Class index to class name.
    seed : int
        Seed the tomogram was made from; the same seed gives identical arrays.
    """

    volume: np.ndarray
    labels: np.ndarray
    protein_coords: np.ndarray
    protein_normals: np.ndarray
    particle_coords: np.ndarray
    voxel_size: float
    label_names: dict[int, str] = field(default_factory=lambda: dict(LABEL_NAMES))
    seed: int = 0


# --------------------------------------------------------------------------- geometry


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix; its columns are the body axes in (z, y, x)."""
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, a, b, c = q
    return np.array(
        [
            [1 - 2 * (b * b + c * c), 2 * (a * b - c * w), 2 * (a * c + b * w)],
            [2 * (a * b + c * w), 1 - 2 * (a * a + c * c), 2 * (b * c - a * w)],
            [2 * (a * c - b * w), 2 * (b * c + a * w), 1 - 2 * (a * a + b * b)],
        ]
    )


def _box(lo: np.ndarray, hi: np.ndarray, shape: tuple[int, ...]) -> tuple[slice, ...] | None:
    """Slices of the voxels between float corners ``lo`` and ``hi`` (inclusive), clipped to
    ``shape``; None when the box is empty."""
    start = np.maximum(np.floor(lo).astype(int), 0)
    stop = np.minimum(np.ceil(hi).astype(int) + 1, np.asarray(shape))
    if np.any(stop <= start):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(start, stop))


def _offsets(box: tuple[slice, ...], centre: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Broadcastable (z, y, x) offsets of the voxels in ``box`` from ``centre``."""
    zz, yy, xx = np.ogrid[box]
    return (
        (zz - centre[0]).astype(np.float32),
        (yy - centre[1]).astype(np.float32),
        (xx - centre[2]).astype(np.float32),
    )


def _body(d: tuple[np.ndarray, ...], rot: np.ndarray) -> list[np.ndarray]:
    """Offsets ``d`` (world z, y, x) expressed along the body axes (columns of ``rot``)."""
    r = rot.astype(np.float32)
    return [d[0] * r[0, i] + d[1] * r[1, i] + d[2] * r[2, i] for i in range(3)]


class _Membrane:
    """A membrane mid-surface with a signed distance (positive on the outer, convex side)."""

    def signed_distance(self, box: tuple[slice, ...], extend: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Signed distance (voxels) to the mid-surface over ``box`` and where the surface
        exists (open sheets are cut; ``extend`` voxels widens the cut)."""
        raise NotImplementedError

    def extent(self) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest (z, y, x) of the mid-surface, voxels."""
        raise NotImplementedError

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A random point on the mid-surface, away from any cut edge, and its outward normal."""
        raise NotImplementedError


class _Vesicle(_Membrane):
    """An ellipsoidal closed membrane with semi-axes ``axes`` along the columns of ``rot``."""

    def __init__(self, centre: np.ndarray, axes: np.ndarray, rot: np.ndarray):
        self.centre, self.axes, self.rot = centre, axes, rot

    def signed_distance(self, box, extend=0.0):
        q = _body(_offsets(box, self.centre), self.rot)
        a = self.axes.astype(np.float32)
        s1 = np.sqrt((q[0] / a[0]) ** 2 + (q[1] / a[1]) ** 2 + (q[2] / a[2]) ** 2)
        s2 = np.sqrt((q[0] / a[0] ** 2) ** 2 + (q[1] / a[1] ** 2) ** 2 + (q[2] / a[2] ** 2) ** 2)
        # First-order distance to the ellipsoid, f / |grad f| with f = s1 - 1; exact for a sphere.
        d = (s1 - 1.0) * s1 / np.maximum(s2, np.float32(1e-6))
        return d, np.ones(d.shape, dtype=bool)

    def extent(self):
        half = np.sqrt(((self.rot * self.axes[None, :]) ** 2).sum(axis=1))
        return self.centre - half, self.centre + half

    def sample(self, rng):
        u = rng.standard_normal(3)
        u /= np.linalg.norm(u)
        p = self.axes * u
        n = p / self.axes**2
        n /= np.linalg.norm(n)
        return self.centre + self.rot @ p, self.rot @ n


class _SphereCap(_Membrane):
    """The part of a sphere of radius ``radius`` within ``half_angle`` of the axis ``rot[:, 0]``."""

    def __init__(self, centre: np.ndarray, radius: float, half_angle: float, rot: np.ndarray):
        self.centre, self.radius, self.half_angle, self.rot = centre, radius, half_angle, rot

    def _point(self, polar, azimuth):
        axis, e1, e2 = self.rot[:, 0], self.rot[:, 1], self.rot[:, 2]
        direction = (
            np.cos(polar)[..., None] * axis
            + (np.sin(polar) * np.cos(azimuth))[..., None] * e1
            + (np.sin(polar) * np.sin(azimuth))[..., None] * e2
        )
        return self.centre + self.radius * direction, direction

    def signed_distance(self, box, extend=0.0):
        q = _body(_offsets(box, self.centre), self.rot)
        r = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2)
        angle = min(self.half_angle + extend / self.radius, math.pi)
        valid = q[0] >= np.float32(math.cos(angle)) * r
        return r - np.float32(self.radius), valid

    def extent(self):
        polar, azimuth = np.meshgrid(np.linspace(0, self.half_angle, 24), np.linspace(0, 2 * np.pi, 48))
        pts, _ = self._point(polar.ravel(), azimuth.ravel())
        return pts.min(axis=0), pts.max(axis=0)

    def sample(self, rng):
        cos_max = math.cos(0.8 * self.half_angle)
        polar = np.arccos(rng.uniform(cos_max, 1.0))
        azimuth = rng.uniform(0, 2 * np.pi)
        p, n = self._point(np.asarray(polar), np.asarray(azimuth))
        return p, n


class _CylinderPatch(_Membrane):
    """A patch of a cylinder of radius ``radius`` around the axis ``rot[:, 0]`` through
    ``centre``: ``half_length`` voxels either side along the axis and within ``half_angle``
    of the direction ``rot[:, 1]`` around it."""

    def __init__(self, centre, radius, half_length, half_angle, rot):
        self.centre, self.radius, self.rot = centre, radius, rot
        self.half_length, self.half_angle = half_length, half_angle

    def _point(self, along, azimuth):
        axis, e1, e2 = self.rot[:, 0], self.rot[:, 1], self.rot[:, 2]
        radial = np.cos(azimuth)[..., None] * e1 + np.sin(azimuth)[..., None] * e2
        return self.centre + np.asarray(along)[..., None] * axis + self.radius * radial, radial

    def signed_distance(self, box, extend=0.0):
        q = _body(_offsets(box, self.centre), self.rot)
        rho = np.sqrt(q[1] ** 2 + q[2] ** 2)
        angle = min(self.half_angle + extend / self.radius, math.pi)
        valid = (np.abs(q[0]) <= np.float32(self.half_length + extend)) & (q[1] >= np.float32(math.cos(angle)) * rho)
        return rho - np.float32(self.radius), valid

    def extent(self):
        along, azimuth = np.meshgrid(
            np.linspace(-self.half_length, self.half_length, 24), np.linspace(-self.half_angle, self.half_angle, 48)
        )
        pts, _ = self._point(along.ravel(), azimuth.ravel())
        return pts.min(axis=0), pts.max(axis=0)

    def sample(self, rng):
        along = rng.uniform(-0.8, 0.8) * self.half_length
        azimuth = rng.uniform(-0.8, 0.8) * self.half_angle
        p, n = self._point(np.asarray(along), np.asarray(azimuth))
        return p, n


# --------------------------------------------------------------------------- scene building


class _Scene:
    """The noise-free density, the labels and an object-id map, filled object by object."""

    def __init__(self, shape: tuple[int, int, int]):
        self.shape = shape
        self.density = np.zeros(shape, dtype=np.float32)
        self.labels = np.zeros(shape, dtype=np.uint8)
        self.owner = np.zeros(shape, dtype=np.int32)
        self.n_objects = 0

    def free(self, box: tuple[slice, ...], mask: np.ndarray, allowed: int = 0) -> bool:
        """True when no voxel of ``mask`` (inside ``box``) belongs to an object other than ``allowed``."""
        owner = self.owner[box][mask]
        return not np.any((owner != 0) & (owner != allowed))

    def paint(self, box, mask, density, label) -> int:
        """Write one object; its density replaces lower density, its label replaces the old one."""
        self.n_objects += 1
        sub = self.density[box]
        sub[mask] = np.maximum(sub[mask], density)
        self.labels[box][mask] = label
        self.owner[box][mask] = self.n_objects
        return self.n_objects


def _inside(lo: np.ndarray, hi: np.ndarray, shape, pad: float) -> bool:
    return bool(np.all(lo >= pad) and np.all(hi <= np.asarray(shape) - 1 - pad))


def _membrane_profile(d: np.ndarray, voxel_size: float) -> np.ndarray:
    """Bilayer density at signed distance ``d`` (voxels) from the mid-plane: two dense
    leaflets over a weaker hydrophobic core; peaks near 1."""
    off = LEAFLET_OFFSET_A / voxel_size
    two_s2 = 2.0 * (LEAFLET_SIGMA_A / voxel_size) ** 2
    leaflets = np.exp(-((d - off) ** 2) / two_s2) + np.exp(-((d + off) ** 2) / two_s2)
    return (0.45 + 0.55 * np.minimum(leaflets, 1.0)).astype(np.float32)


def _make_membrane(kind: str, rng: np.random.Generator, shape, radius_range, half_t: float, shrink: float) -> _Membrane:
    """A random membrane of ``kind`` placed uniformly in the volume (not yet checked);
    ``shrink`` in [0, 1] narrows the size range towards its lower end."""
    dims = np.asarray(shape, dtype=float)
    rot = _random_rotation(rng)
    if kind == "vesicle":
        r_lo, r_hi = radius_range
        r = rng.uniform(r_lo, r_hi - shrink * (r_hi - r_lo))
        axes = r * rng.uniform(0.85, 1.15, size=3)
        half = np.sqrt(((rot * axes[None, :]) ** 2).sum(axis=1))
        lo = half + half_t + 1
        hi = dims - 1 - lo
        centre = rng.uniform(np.minimum(lo, hi), np.maximum(lo, hi))
        return _Vesicle(centre, axes, rot)
    span = min(shape)
    point = rng.uniform(0.2 * dims, 0.8 * dims)
    radius = rng.uniform(1.2, 2.5) * span
    half_width = rng.uniform(0.25, 0.38) * span * (1 - 0.5 * shrink)
    half_angle = math.asin(min(half_width / radius, 1.0))
    if kind == "sphere_cap":
        return _SphereCap(point - radius * rot[:, 0], radius, half_angle, rot)
    half_length = rng.uniform(0.25, 0.38) * span * (1 - 0.5 * shrink)
    return _CylinderPatch(point - radius * rot[:, 1], radius, half_length, half_angle, rot)


def _place_membranes(
    shape, rng, kinds: list[str], radius_range, half_t: float, gap: float, voxel_size: float
) -> tuple[_Scene, list[tuple[_Membrane, int]]]:
    """Place membranes of the given kinds without overlap, each keeping ``gap`` voxels of free
    space on both sides of its bilayer. Rounds that cannot place them all start again with
    smaller membranes; the fullest round is kept. Returns the scene and the placed membranes
    with their object ids."""
    best: tuple[_Scene, list] | None = None
    for round_ in range(_MEMBRANE_ROUNDS):
        shrink = round_ / max(_MEMBRANE_ROUNDS - 1, 1)
        scene = _Scene(shape)
        placed: list[tuple[_Membrane, int]] = []
        spheres: list[tuple[np.ndarray, float]] = []
        for kind in kinds:
            for _ in range(_MEMBRANE_ATTEMPTS):
                mem = _make_membrane(kind, rng, shape, radius_range, half_t, shrink)
                lo, hi = mem.extent()
                if not _inside(lo, hi, shape, half_t + 1):
                    continue
                centre, reach = (lo + hi) / 2, float(np.linalg.norm(hi - lo)) / 2 + half_t + gap
                box = _box(lo - half_t - gap, hi + half_t + gap, shape)
                if any(np.linalg.norm(centre - c) < reach + r for c, r in spheres):
                    # Checked on every second voxel: the gap is several voxels wide.
                    coarse = tuple(slice(b.start, b.stop, 2) for b in box)
                    d, valid = mem.signed_distance(coarse, extend=gap)
                    if not scene.free(coarse, valid & (np.abs(d) <= half_t + gap)):
                        continue
                d, valid = mem.signed_distance(box)
                mask = valid & (np.abs(d) <= half_t)
                oid = scene.paint(box, mask, _membrane_profile(d[mask], voxel_size), MEMBRANE)
                placed.append((mem, oid))
                spheres.append((centre, reach - gap))
                break
        if best is None or len(placed) > len(best[1]):
            best = (scene, placed)
        if len(placed) == len(kinds):
            break
    scene, placed = best
    if len(placed) < len(kinds):
        warnings.warn(
            f"synthetic tomogram: room for only {len(placed)} of {len(kinds)} membranes in shape {shape}",
            RuntimeWarning,
            stacklevel=3,
        )
    return scene, placed


def _ellipsoid_mask(box, centre, normal, half_len, half_wid) -> np.ndarray:
    """Voxels of an ellipsoid of revolution: semi-axis ``half_len`` along ``normal``,
    ``half_wid`` across it (voxels)."""
    d = _offsets(box, centre)
    along = d[0] * np.float32(normal[0]) + d[1] * np.float32(normal[1]) + d[2] * np.float32(normal[2])
    across2 = d[0] ** 2 + d[1] ** 2 + d[2] ** 2 - along**2
    return (along / np.float32(half_len)) ** 2 + across2 / np.float32(half_wid) ** 2 <= 1.0


def _place_proteins(scene: _Scene, rng, membranes, per_membrane: int, half_t: float, voxel_size: float):
    """Proteins on the outer side of each membrane, overlapping its outer leaflet, well apart.
    Returns centres and outward normals, (N, 3) each."""
    coords, normals = [], []
    clearance = 1.5
    for mem, oid in membranes:
        own: list[np.ndarray] = []
        for _ in range(_PROTEIN_ATTEMPTS_PER_PROTEIN * per_membrane):
            if len(own) >= per_membrane:
                break
            half_len = rng.uniform(*PROTEIN_LENGTH_A) / voxel_size / 2
            half_wid = rng.uniform(*PROTEIN_WIDTH_A) / voxel_size / 2
            point, normal = mem.sample(rng)
            # The inner end of the blob reaches one voxel into the outer leaflet.
            centre = point + normal * (half_t + half_len - 1.0)
            reach = max(half_len, half_wid)
            if not _inside(centre - reach, centre + reach, scene.shape, 1.0):
                continue
            if any(np.linalg.norm(centre - c) < 2 * half_wid + 3.0 for c in coords):
                continue
            box = _box(centre - reach - clearance - 1, centre + reach + clearance + 1, scene.shape)
            halo = _ellipsoid_mask(box, centre, normal, half_len + clearance, half_wid + clearance)
            if not scene.free(box, halo, allowed=oid):
                continue
            mask = _ellipsoid_mask(box, centre, normal, half_len, half_wid)
            scene.paint(box, mask, np.float32(PROTEIN_DENSITY), MEMBRANE_PROTEIN)
            own.append(centre)
            coords.append(centre)
            normals.append(normal)
    wanted = per_membrane * len(membranes)
    if len(coords) < wanted:
        warnings.warn(
            f"synthetic tomogram: room for only {len(coords)} of {wanted} membrane proteins in shape {scene.shape}",
            RuntimeWarning,
            stacklevel=3,
        )
    return np.asarray(coords, dtype=np.float64).reshape(-1, 3), np.asarray(normals, dtype=np.float64).reshape(-1, 3)


def _place_particles(scene: _Scene, rng, n: int, voxel_size: float) -> np.ndarray:
    """Compact particles (one sphere or a few merged spheres) clear of every other object.
    Returns their mask centroids, (M, 3)."""
    coords = []
    clearance = 2.0
    dims = np.asarray(scene.shape, dtype=float)
    for _ in range(_PARTICLE_ATTEMPTS_PER_PARTICLE * n):
        if len(coords) >= n:
            break
        radius = rng.uniform(*PARTICLE_DIAMETER_A) / voxel_size / 2
        n_lobes = int(rng.integers(0, 3))
        lobes = [(np.zeros(3), radius)]
        for _ in range(n_lobes):
            u = rng.standard_normal(3)
            u /= np.linalg.norm(u)
            lobes.append((u * radius * rng.uniform(0.5, 0.7), radius * rng.uniform(0.5, 0.7)))
        reach = max(np.linalg.norm(o) + r for o, r in lobes)
        if np.any(dims - 3 - 2 * reach < 0):
            continue
        centre = rng.uniform(reach + 1, dims - 2 - reach)
        box = _box(centre - reach - clearance - 1, centre + reach + clearance + 1, scene.shape)
        mask = np.zeros(tuple(s.stop - s.start for s in box), dtype=bool)
        halo = mask.copy()
        for offset, r in lobes:
            dz, dy, dx = _offsets(box, centre + offset)
            r2 = dz**2 + dy**2 + dx**2
            mask |= r2 <= r**2
            halo |= r2 <= (r + clearance) ** 2
        if not scene.free(box, halo):
            continue
        scene.paint(box, mask, np.float32(PARTICLE_DENSITY), PARTICLE)
        idx = np.argwhere(mask)
        coords.append(idx.mean(axis=0) + np.array([s.start for s in box]))
    if len(coords) < n:
        warnings.warn(
            f"synthetic tomogram: room for only {len(coords)} of {n} particles in shape {scene.shape}",
            RuntimeWarning,
            stacklevel=3,
        )
    return np.asarray(coords, dtype=np.float64).reshape(-1, 3)


# --------------------------------------------------------------------------- image formation


def form_image(
    density: np.ndarray,
    rng: np.random.Generator,
    *,
    voxel_size: float = 10.0,
    snr: float = 0.5,
    missing_wedge_blur: float = 1.5,
) -> np.ndarray:
    """Turn a noise-free density (Z, Y, X) into a tomogram-like image.

    The density is blurred with a gaussian of sigma ``RESOLUTION_SIGMA_A / voxel_size``
    voxels in y and x and ``missing_wedge_blur`` times that in z; gaussian noise (slightly
    correlated, as after reconstruction) is added with std = signal std / ``snr``; the
    contrast is inverted so dense matter is dark; the result is float32, zero mean, unit std.
    """
    sigma_xy = max(0.5, RESOLUTION_SIGMA_A / voxel_size)
    signal = ndimage.gaussian_filter(density, sigma=(sigma_xy * missing_wedge_blur, sigma_xy, sigma_xy))
    noise = ndimage.gaussian_filter(rng.standard_normal(density.shape, dtype=np.float32), 0.5)
    noise *= np.float32(float(signal.std()) / snr / max(float(noise.std()), 1e-12))
    image = -(signal + noise)
    image -= image.mean(dtype=np.float64)
    image /= max(float(image.std(dtype=np.float64)), 1e-12)
    return image.astype(np.float32, copy=False)


def _ice(shape, rng: np.random.Generator, voxel_size: float) -> np.ndarray:
    """Low-frequency background density with std ``ICE_STD``, made on a coarse grid and
    interpolated up."""
    step = 4
    coarse_shape = tuple(-(-s // step) + 3 for s in shape)
    coarse = ndimage.gaussian_filter(
        rng.standard_normal(coarse_shape, dtype=np.float32), sigma=ICE_SIGMA_A / voxel_size / step, mode="wrap"
    )
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    coords = [(g.astype(np.float32) + 0.5) / step + 1.0 for g in grid]
    full = ndimage.map_coordinates(coarse, np.broadcast_arrays(*coords), order=1)
    full -= full.mean()
    full *= np.float32(ICE_STD / max(float(full.std()), 1e-12))
    return full


# --------------------------------------------------------------------------- public entry point


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"expected an integer >= {minimum}, got {value!r}", field=name)
    return int(value)


def _check_float(value, name: str, minimum: float, strict: bool) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"expected a number, got {value!r}", field=name) from None
    if not math.isfinite(v) or v < minimum or (strict and v == minimum):
        relation = ">" if strict else ">="
        raise InputError(f"expected a finite number {relation} {minimum}, got {value!r}", field=name)
    return v


def make_synthetic_tomogram(
    shape: tuple[int, int, int] = (96, 128, 128),
    *,
    voxel_size: float = 10.0,
    seed: int = 0,
    n_vesicles: int = 3,
    n_open_membranes: int = 1,
    proteins_per_vesicle: int = 6,
    n_particles: int = 8,
    snr: float = 0.5,
    missing_wedge_blur: float = 1.5,
) -> SyntheticTomogram:
    """Make a noisy synthetic tomogram with membranes, membrane proteins and particles.

    Parameters
    ----------
    shape : (Z, Y, X) ints, each >= 16
        Volume size in voxels. Vesicle radii are 14-30 voxels for the default shape and scale
        with ``min(shape) / 96``; other sizes are physical (membrane ~45 A thick, proteins
        ~60-80 A long and ~50-60 A wide, particles ~80-120 A across).
    voxel_size : float
        Angstrom per voxel.
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives identical arrays.
    n_vesicles, n_open_membranes : int
        Closed ellipsoidal vesicles and open curved sheets (sphere caps or cylinder patches).
    proteins_per_vesicle : int
        Membrane proteins on each membrane, vesicles and open sheets alike.
    n_particles : int
        Free particles, in vesicle lumens or outside, never touching another object.
    snr : float
        Standard deviation of the blurred noise-free signal over that of the noise.
    missing_wedge_blur : float
        Ratio of the point-spread sigma along z to that along y and x.

    Returns
    -------
    SyntheticTomogram
        ``volume`` (float32, dense = dark, zero mean, unit std), ``labels`` (uint8, object
        masks before blur), protein centres and normals and particle centres (voxels, z, y, x).
        Objects that find no room (too small a shape for the counts asked) are left out with
        a ``RuntimeWarning``.

    Raises
    ------
    InputError
        For a shape that is not three integers >= 16 or a parameter out of range.
    """
    try:
        shape = tuple(shape)
    except TypeError:
        raise InputError(f"expected three integers (z, y, x), got {shape!r}", field="shape") from None
    if len(shape) != 3 or any(
        isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < _MIN_DIM for s in shape
    ):
        raise InputError(f"expected three integers (z, y, x), each >= {_MIN_DIM}, got {shape!r}", field="shape")
    shape = tuple(int(s) for s in shape)
    voxel_size = _check_float(voxel_size, "voxel_size", 0.0, strict=True)
    seed = _check_int(seed, "seed", 0)
    n_vesicles = _check_int(n_vesicles, "n_vesicles", 0)
    n_open_membranes = _check_int(n_open_membranes, "n_open_membranes", 0)
    proteins_per_vesicle = _check_int(proteins_per_vesicle, "proteins_per_vesicle", 0)
    n_particles = _check_int(n_particles, "n_particles", 0)
    snr = _check_float(snr, "snr", 0.0, strict=True)
    missing_wedge_blur = _check_float(missing_wedge_blur, "missing_wedge_blur", 0.0, strict=False)

    rng = np.random.default_rng(seed)
    half_t = MEMBRANE_THICKNESS_A / voxel_size / 2
    protein_height = PROTEIN_LENGTH_A[1] / voxel_size
    scale = min(shape) / _DEFAULT_MIN_DIM
    r_min = max(_VESICLE_RADIUS_DEFAULT[0] * scale, 2 * half_t + 4)
    # Leave each membrane about a cube of its own: small volumes get smaller vesicles.
    gap = protein_height / 2 + 3.0
    share = (math.prod(shape) / max(n_vesicles + n_open_membranes, 1)) ** (1 / 3)
    r_max = max(min(_VESICLE_RADIUS_DEFAULT[1] * scale, share / 2 - half_t - gap / 2), r_min + 1)

    open_kinds = [("sphere_cap", "cylinder_patch")[int(rng.integers(0, 2))] for _ in range(n_open_membranes)]
    scene, membranes = _place_membranes(
        shape, rng, ["vesicle"] * n_vesicles + open_kinds, (r_min, r_max), half_t, gap, voxel_size
    )
    protein_coords, protein_normals = _place_proteins(scene, rng, membranes, proteins_per_vesicle, half_t, voxel_size)
    particle_coords = _place_particles(scene, rng, n_particles, voxel_size)

    density = scene.density
    density += _ice(shape, rng, voxel_size)
    volume = form_image(density, rng, voxel_size=voxel_size, snr=snr, missing_wedge_blur=missing_wedge_blur)
    return SyntheticTomogram(
        volume=volume,
        labels=scene.labels,
        protein_coords=protein_coords,
        protein_normals=protein_normals,
        particle_coords=particle_coords,
        voxel_size=voxel_size,
        label_names=dict(LABEL_NAMES),
        seed=seed,
    )
