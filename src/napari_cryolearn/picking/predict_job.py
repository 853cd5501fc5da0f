"""The picking job: a trained picker and mesh containers in, per-vertex scores and picks out.

Every mesh is cut into the partitions training used, its operators loaded from the cache
(computed once); the network runs on every profile window of each partition and keeps each
vertex's mean prediction (``windows: min``: MemBrain-pick's smallest), the partitions are
stitched by their Gaussian weights, and score-weighted mean shift (:func:`~.meanshift.mean_shift_picks`,
``bandwidth`` in Å) over the vertices predicted within ``score_threshold`` of a protein gives
the picks, each oriented along the membrane normal at its nearest vertex
(:mod:`.orientations`).

Per mesh ``<name>.h5`` it writes ``output_dir/<name>.h5`` (the mesh with ``scores`` per vertex,
the predicted distance in MemBrain-pick's unit of 15 Å, and ``cluster_centers``, the picks in
Å, x, y, z, as MemBrain-pick's prediction files) and ``output_dir/<name>_picks.star``
(``rlnCoordinateX/Y/Z`` in voxels of the tomogram, ``rlnAngleRot/Tilt/Psi``,
``rlnMicrographName``; with ``angstrom``, MemBrain-pick's Å instead). The model, every mesh and
every output name are checked before anything is written; each file is written atomically.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import JobResult, check_stop
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.picking.config import PickerNetworkConfig, PickPredictConfig, default_cache_dir

STAGE = "pick.predict"


# ---------------------------------------------------------------------------------- checkpoints


def _net_state(ckpt: dict[str, Any], path) -> dict[str, Any]:
    state = ckpt["state_dict"]
    if any(k.startswith("net.") for k in state):
        return {k[4:]: v for k, v in state.items() if k.startswith("net.")}
    return dict(state)


def picker_network_config(ckpt: dict[str, Any], path) -> PickerNetworkConfig:
    """The network of a picker checkpoint of ours (``hyper_parameters.config.network``)."""
    hp = ckpt.get("hyper_parameters") or {}
    cfg = hp.get("config") if isinstance(hp, dict) else None
    net = cfg.get("network") if isinstance(cfg, dict) else None
    if not isinstance(net, dict) or "profile_window" not in net:
        raise InputError(f"not a picker checkpoint of cryolearn pick train (first keys: "
                         f"{', '.join(list(ckpt['state_dict'])[:3])})", path=path, field="model")
    return PickerNetworkConfig.from_dict(net)


def _check_fits(net, state: dict[str, Any], path) -> None:
    own = net.state_dict()
    problems = [f"missing {k}" for k in own if k not in state]
    problems += [f"{k}: checkpoint {tuple(state[k].shape)} vs network {tuple(v.shape)}"
                 for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems += [f"unexpected {k}" for k in state if k not in own]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise InputError(f"does not fit the picker network: {shown}", path=path, field="model")


def load_picker_state(net, path, network: PickerNetworkConfig | None = None) -> None:
    """Load a picker checkpoint's weights into ``net`` (shapes must match: an error otherwise)."""
    from napari_cryolearn.models.checkpoints import read_checkpoint

    ckpt = read_checkpoint(path)
    state = _net_state(ckpt, path)
    _check_fits(net, state, path)
    net.load_state_dict(state)


def check_picker_checkpoint(path, net, *, require_training_state: bool = False) -> None:
    """Refuse a checkpoint that does not fit ``net`` (or, for ``continue_training``, holds no
    training state)."""
    from napari_cryolearn.models.checkpoints import read_checkpoint

    ckpt = read_checkpoint(path)
    if require_training_state and not all(k in ckpt for k in ("optimizer_states", "loops")):
        raise InputError("not a checkpoint of a training run that can be continued", path=path,
                         field="continue_training")
    _check_fits(net, _net_state(ckpt, path), path)


def load_picker(path, *, device=None):
    """``(network, PickerNetworkConfig, profile_step)`` of a picker checkpoint, in eval mode on
    ``device``; ``profile_step``: Å between the training meshes' profile samples (None when not
    recorded)."""
    from napari_cryolearn.models.checkpoints import read_checkpoint
    from napari_cryolearn.picking.module import build_picker

    ckpt = read_checkpoint(path)
    network = picker_network_config(ckpt, path)
    net = build_picker(network)
    state = _net_state(ckpt, path)
    _check_fits(net, state, path)
    net.load_state_dict(state)
    hp = ckpt.get("hyper_parameters") or {}
    step = hp.get("profile_step") if isinstance(hp, dict) else None
    return net.to(device).eval(), network, (None if step is None else float(step))


# ----------------------------------------------------------------------------------- operation


def predict_scores(net, items, n_vertices: int, *, device=None, windows: str = "mean") -> np.ndarray:
    """Per-vertex predicted distance (units of 15 Å) of a mesh from its partitions: every profile
    window run, their predictions averaged (``windows="mean"``) or the smallest kept
    (``"min"``, MemBrain-pick's rule, which lowers every score and adds false picks), the
    partitions stitched by their weights."""
    import torch

    from napari_cryolearn.picking.diffusionnet import operators_to_torch
    from napari_cryolearn.picking.partitions import stitch
    from napari_cryolearn.picking.training_data import profile_windows

    window = net.profile_length
    outputs = []
    with torch.no_grad():
        for item in items:
            ops = operators_to_torch(item.operators, device=device)
            runs = []
            for start in profile_windows(item.profiles.shape[1], window):
                x = torch.from_numpy(np.ascontiguousarray(item.profiles[:, start:start + window])).to(device)
                runs.append(net(x, *ops))
            stacked = torch.stack(runs)
            combined = stacked.min(0).values if windows == "min" else stacked.mean(0)
            outputs.append(combined.float().cpu().numpy())
    return stitch(n_vertices, items, outputs)


def picks_from_scores(verts: np.ndarray, normals: np.ndarray, scores: np.ndarray, *, voxel_size: float,
                      bandwidth: float, score_threshold: float, min_samples: int = 5,
                      weighting: str = "threshold", seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Picks (K, 3) z, y, x voxels and their RELION angles (K, 3) degrees from per-vertex scores;
    ``bandwidth`` in Å."""
    from scipy.spatial import cKDTree

    from napari_cryolearn.picking.meanshift import mean_shift_picks
    from napari_cryolearn.picking.orientations import normal_angles

    centres = mean_shift_picks(verts * voxel_size, scores, bandwidth=bandwidth, score_threshold=score_threshold,
                               min_samples=min_samples, weighting=weighting) / voxel_size
    if not len(centres):
        return np.zeros((0, 3)), np.zeros((0, 3))
    _, idx = cKDTree(verts).query(centres, k=1)
    return centres, normal_angles(normals[idx], seed=seed)


# ------------------------------------------------------------------------------------------ job


def mesh_files(given) -> list[Path]:
    """The containers named: files as given, folders as the ``.h5`` files in them (sorted)."""
    out: list[Path] = []
    for p in (Path(g) for g in given):
        if p.is_dir():
            found = sorted(q for q in p.glob("*.h5") if q.is_file())
            if not found:
                raise InputError("holds no mesh container (.h5)", path=p, field="meshes")
            out += found
        elif not p.is_file():
            raise InputError("not found", path=p, field="meshes")
        else:
            out.append(p)
    return out


def output_paths(config: PickPredictConfig, mesh: Path) -> tuple[Path, Path]:
    from napari_cryolearn.picking.train_job import mesh_stem

    stem = mesh_stem(Path(mesh))
    return Path(config.output_dir) / f"{stem}.h5", Path(config.output_dir) / f"{stem}_picks.star"


def _check_outputs(config: PickPredictConfig) -> None:
    from napari_cryolearn.engine.outputs import check_output

    out = Path(config.output_dir)
    if out.exists() and not out.is_dir():
        raise InputError("is a file; expected a folder", path=out, field="output_dir")
    seen: dict[Path, Path] = {}
    for mesh in config.meshes:
        for path in output_paths(config, mesh):
            if path in seen:
                raise InputError(f"two meshes would write {path.name} ({seen[path]} and {mesh}); predict them into "
                                 "separate folders", path=mesh, field="meshes")
            seen[path] = Path(mesh)
            check_output([*config.meshes, config.model], path, config.overwrite, field="output_dir")


def pick_predict_job(config: PickPredictConfig, stop=None) -> Generator[Progress, None, JobResult]:
    """Score and pick every mesh of ``config.meshes`` (see the module docstring). Returns a
    :class:`JobResult` with outputs ``<name>`` (the scored mesh) and ``<name>_picks`` (the STAR
    file) per mesh, and metrics ``picks`` (per mesh) and ``vertices``."""
    from napari_cryolearn.engine.lightning import torch_device
    from napari_cryolearn.io.mesh_container import MeshContainer, write_mesh_container
    from napari_cryolearn.io.star import write_star
    from napari_cryolearn.picking.train_job import load_mesh, mesh_stem
    from napari_cryolearn.picking.training_data import partition_items

    device = torch_device(config.device)
    net, network, step = load_picker(config.model, device=device)
    config = config.model_copy(update={"meshes": mesh_files(config.meshes)})
    _check_outputs(config)
    meshes = [load_mesh(Path(p), window=network.profile_window, pixel_size=config.pixel_size) for p in config.meshes]
    for m in meshes:
        if step is not None and m.profile_step is not None and abs(m.profile_step - step) > 1e-6:
            raise InputError(f"its profiles were sampled {m.profile_step:g} Å apart; the picker learnt profiles "
                             f"{step:g} Å apart (remake the mesh with --profile-step {step:g})", path=m.path,
                             field="meshes")
    cache = Path(config.cache_dir) if config.cache_dir is not None else default_cache_dir()
    results = []
    for n, m in enumerate(meshes, start=1):
        yield Progress(n - 1, len(meshes), f"{m.path.name}: operators and scores of {len(m.verts)} vertices", STAGE)
        items = partition_items(n - 1, m.verts, m.faces, m.normals, m.profiles, None,
                                size=network.partition_size, k=network.eigenpairs, cache_dir=cache)
        if check_stop(stop):
            return JobResult(stopped=True)
        scores = predict_scores(net, items, len(m.verts), device=device, windows=config.windows)
        picks, angles = picks_from_scores(m.verts, m.normals, scores, voxel_size=m.voxel_size,
                                          bandwidth=config.bandwidth, score_threshold=config.score_threshold,
                                          min_samples=config.min_samples, weighting=config.weighting,
                                          seed=config.seed + n - 1)
        results.append((m, scores, picks, angles))
        yield Progress(n, len(meshes), f"{m.path.name}: {len(picks)} picks", STAGE)
        if check_stop(stop):
            return JobResult(stopped=True)
    Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    outputs: dict[str, Path] = {}
    for m, scores, picks, angles in results:
        h5, star = output_paths(config, m.path)
        scored = MeshContainer.from_zyx(
            m.verts, m.faces, m.normals, m.profiles, tomo_file=m.tomo_file or "", voxel_size=m.voxel_size,
            profile_step=m.profile_step, label=m.label, scores=scores.astype(np.float32),
            cluster_centers=picks[:, ::-1] * m.voxel_size)
        write_mesh_container(h5, scored, overwrite=config.overwrite)
        micrograph = Path(str(m.tomo_file).replace("\\", "/")).name if m.tomo_file else m.path.name
        features = {"rlnAngleRot": angles[:, 0], "rlnAngleTilt": angles[:, 1], "rlnAnglePsi": angles[:, 2],
                    "rlnMicrographName": [micrograph] * len(picks)}
        if config.angstrom:
            write_star(star, picks * m.voxel_size, features, overwrite=config.overwrite)
        else:
            write_star(star, picks, features, pixel_size=m.voxel_size, overwrite=config.overwrite)
        stem = mesh_stem(m.path)
        outputs[stem] = h5
        outputs[f"{stem}_picks"] = star
    return JobResult(outputs, metrics={"picks": [len(r[2]) for r in results],
                                       "vertices": [len(r[0].verts) for r in results]})
