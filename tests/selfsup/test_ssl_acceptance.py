"""Acceptance of #20: embeddings of held-out synthetic micrographs sort them by quality (k-NN ≥ 0.9
for SimCLR on the power spectra), clearly better than the same network with random weights."""

import numpy as np
import pytest

from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.io import write_mrc
from napari_cryolearn.sample import make_quality_micrographs
from napari_cryolearn.selfsup.config import EmbedConfig, SSLTrainConfig
from napari_cryolearn.selfsup.embed_job import ssl_embed_job
from napari_cryolearn.selfsup.embedding import knn_accuracy
from napari_cryolearn.selfsup.tables import embedding_columns, read_embedding_table
from napari_cryolearn.selfsup.train_job import ssl_train_job


@pytest.mark.slow
def test_held_out_micrographs_are_sorted_by_quality(tmp_path):
    kinds = {}
    for name, seed in (("train", 0), ("test", 1)):
        q = make_quality_micrographs(128, size=256, seed=seed)
        (tmp_path / name).mkdir()
        write_mrc(tmp_path / name / f"{name}.mrcs", q.images, voxel_size=(1.0, q.pixel_size, q.pixel_size))
        kinds[name] = q.kinds
    common = dict(data=tmp_path / "train", method="simclr", fft=True, image_size=64, batch_size=32, device="cpu")
    trained = run_job(ssl_train_job(SSLTrainConfig(log_dir=tmp_path / "run", max_epochs=30, **common)))
    untrained = run_job(ssl_train_job(SSLTrainConfig(log_dir=tmp_path / "random", max_epochs=1, lr=1e-12, **common)))

    def accuracy(model):
        emb = {}
        for name in ("train", "test"):
            out = tmp_path / f"{model.parent.parent.name}_{name}.csv"
            run_job(ssl_embed_job(EmbedConfig(model=model, data=tmp_path / name, output=out, map="pca",
                                              clusters=4, device="cpu")))
            table = read_embedding_table(out)
            emb[name] = table[embedding_columns(table)].to_numpy()
        return knn_accuracy(emb["train"], kinds["train"], emb["test"], kinds["test"], k=5)

    ours, chance = accuracy(trained.outputs["last"]), accuracy(untrained.outputs["last"])
    print(f"k-NN accuracy {ours:.3f}, random encoder {chance:.3f}")
    assert ours >= 0.9 and ours >= chance + 0.1, (ours, chance)
    assert np.isfinite(trained.metrics["train_loss"])
