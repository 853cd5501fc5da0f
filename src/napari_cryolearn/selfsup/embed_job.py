"""The embedding job: a trained encoder and micrographs in, a table of embeddings, a 2D map and
clusters out.

The model is one ``ssl train`` wrote: a Lightning checkpoint (``model/*.ckpt``, its config
inside) or prismpyp's ``checkpoints/*.pth.tar`` of the same run (the config read from the run's
``training_config.yaml``). It loads strictly: a checkpoint that does not fit the network is an
error naming the missing keys, never an embedding by random weights. Each micrograph (or its
power spectrum, for a ``fft`` model) is prepared as in training, without augmentation, and
embedded before the projector; the table gets a 2D map (UMAP, PCA or t-SNE) and k-means
clusters (k given, or the best silhouette score of 2–10), and the silhouette score is
reported.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import JobResult, check_stop
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.selfsup.config import EmbedConfig, SSLTrainConfig

STAGE = "ssl.embed"


def _config_of(ckpt: dict[str, Any], path: Path) -> SSLTrainConfig:
    hp = ckpt.get("hyper_parameters") or {}
    cfg = hp.get("config") if isinstance(hp, dict) else None
    if isinstance(cfg, dict) and "method" in cfg:
        return SSLTrainConfig.from_dict(cfg)
    for folder in (path.parent, path.parent.parent):
        yaml = folder / "training_config.yaml"
        if yaml.is_file():
            return SSLTrainConfig.from_yaml(yaml)
    raise InputError("not a checkpoint of cryolearn ssl train (no config inside, no training_config.yaml beside "
                     "it or in the folder above)", path=path, field="model")


def load_ssl_model(path: str | Path, *, device=None):
    """``(network, SSLTrainConfig)`` of a training run's checkpoint, in eval mode, loaded strictly."""
    from napari_cryolearn.models.checkpoints import read_checkpoint
    from napari_cryolearn.selfsup.module import build_model

    path = Path(path)
    ckpt = read_checkpoint(path)
    cfg = _config_of(ckpt, path)
    state = ckpt["state_dict"]
    if any(k.startswith("model.") for k in state):
        state = {k[6:]: v for k, v in state.items() if k.startswith("model.")}
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    model = build_model(cfg)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or wrong:
        shown = ", ".join((missing + wrong)[:4])
        raise InputError(f"does not fit a {cfg.method} {cfg.backbone} network: {len(missing)} missing and "
                         f"{len(wrong)} mismatched tensors ({shown}, ...)", path=path, field="model")
    model.load_state_dict({k: state[k] for k in own})
    return model.to(device).eval(), cfg


def ssl_embed_job(config: EmbedConfig, stop=None) -> Generator[Progress, None, JobResult]:
    """Embed every micrograph of ``config.data`` (see the module docstring). Returns a
    :class:`JobResult` with output ``output`` and metrics ``micrographs``, ``clusters``,
    ``silhouette``."""
    import torch
    from torch.utils.data import DataLoader

    from napari_cryolearn.engine.lightning import torch_device
    from napari_cryolearn.engine.outputs import check_output
    from napari_cryolearn.selfsup.data import embedding_dataset
    from napari_cryolearn.selfsup.embedding import cluster_embeddings, map_2d
    from napari_cryolearn.selfsup.images import check_micrographs, list_micrographs
    from napari_cryolearn.selfsup.module import embed
    from napari_cryolearn.selfsup.tables import TABLE_SUFFIXES, write_embedding_table

    check_output([config.data, config.model], config.output, config.overwrite, suffixes=TABLE_SUFFIXES,
                 what="embedding table")
    device = torch_device(config.device)
    model, cfg = load_ssl_model(config.model, device=device)
    refs = list_micrographs(config.data)
    check_micrographs(refs)
    if config.clusters is not None and config.clusters > len(refs):
        raise InputError(f"{config.clusters} clusters of {len(refs)} micrographs", field="clusters")
    dataset = embedding_dataset(cfg, refs, pixel_size=config.pixel_size)
    loader = DataLoader(dataset, batch_size=config.batch_size)
    chunks, done = [], 0
    yield Progress(0, len(refs), f"embedding {len(refs)} {'power spectra' if cfg.fft else 'micrographs'}", STAGE)
    with torch.no_grad():
        for images, _ in loader:
            chunks.append(embed(model, images.to(device)).float().cpu().numpy())
            done += len(chunks[-1])
            yield Progress(done, len(refs), f"embedded {done}/{len(refs)}", STAGE)
            if check_stop(stop):
                return JobResult(stopped=True)
    emb = np.concatenate(chunks)
    yield Progress(done, len(refs), f"{config.map} map and clusters", STAGE)
    xy = map_2d(emb, method=config.map, seed=config.seed)
    clusters = cluster_embeddings(emb, k=config.clusters, seed=config.seed)
    write_embedding_table(config.output, [str(r.path) for r in refs], [int(r.index or 0) for r in refs], emb, xy,
                          clusters.labels, overwrite=config.overwrite)
    return JobResult({"output": Path(config.output)},
                     metrics={"micrographs": len(refs), "clusters": clusters.k, "silhouette": clusters.silhouette})


def ssl_intersect_job(config, stop=None) -> Generator[Progress, None, JobResult]:
    """prismpyp's intersection: the micrographs whose clusters are good in both the real-space and
    the Fourier-space tables, written one per line (``path`` or ``path#index`` for a slice of a
    stack). Returns a :class:`JobResult` with output ``output`` and metrics ``kept``, ``of``."""
    from napari_cryolearn.engine.atomic import atomic_path
    from napari_cryolearn.engine.outputs import check_output
    from napari_cryolearn.selfsup.tables import intersect, micrograph_lines, read_embedding_table

    check_output([config.real, config.fft], config.output, config.overwrite, what="list of micrographs")
    real, fft = read_embedding_table(config.real), read_embedding_table(config.fft)
    for name, table, good in (("good_real", real, config.good_real), ("good_fft", fft, config.good_fft)):
        unknown = sorted(set(good) - set(table["cluster"].tolist()))
        if unknown:
            raise InputError(f"clusters {unknown} are not in the table (it has {sorted(set(table['cluster']))})",
                             path=config.real if name == "good_real" else config.fft, field=name)
    kept = intersect(real, fft, config.good_real, config.good_fft)
    rows = real.reset_index(drop=True).merge(kept.assign(_kept=True), on=["file", "index"], how="left")
    lines = micrograph_lines(real.reset_index(drop=True), rows.index[rows["_kept"].fillna(False).astype(bool)])
    yield Progress(1, 1, f"{len(lines)} of {len(real)} micrographs kept", "ssl.intersect")
    with atomic_path(config.output, overwrite=config.overwrite) as tmp:
        Path(tmp).write_text("".join(f"{line}\n" for line in lines))
    return JobResult({"output": Path(config.output)}, metrics={"kept": len(lines), "of": len(real)})
