"""Label-free embeddings of micrographs sorted by quality: k-NN accuracy on held-out micrographs.

    .venv/bin/python benchmarks/bench_ssl.py [--epochs 30] [--n 128] [--size 256] [--image-size 64]
        [--methods simsiam simsiam-fft simclr simclr-fft] [--simsiam-lr LR]

Synthetic micrographs of four quality kinds (``make_quality_micrographs``: vitreous,
crystalline ice, carbon, contamination; 256² px of 1.5 Å) — ``--n`` to train on (seed 0),
``--n`` held out (seed 1), written as MRC stacks. For each method ``ssl train`` runs for
``--epochs`` on the training stack, ``ssl embed`` embeds both stacks, and a 5-nearest-neighbour
vote (cosine) labels each held-out micrograph from the training ones: the accuracy (labels used
only to score). The reference, in the same run: the same network with random weights, embedding
the same inputs. Prints accuracy, its ratio to the random encoder's, and seconds per epoch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--methods", nargs="+", default=["simsiam", "simsiam-fft", "simclr", "simclr-fft"])
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--simsiam-lr", type=float, default=None, help="SimSiam's rate (default 0.05 × batch / 256)")
    args = ap.parse_args()

    from napari_cryolearn.engine.jobs import run_job
    from napari_cryolearn.io import write_mrc
    from napari_cryolearn.sample import make_quality_micrographs
    from napari_cryolearn.selfsup.config import EmbedConfig, SSLTrainConfig
    from napari_cryolearn.selfsup.embed_job import ssl_embed_job
    from napari_cryolearn.selfsup.embedding import knn_accuracy
    from napari_cryolearn.selfsup.tables import embedding_columns, read_embedding_table
    from napari_cryolearn.selfsup.train_job import ssl_train_job

    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench_ssl_"))
    stacks = {}
    for name, seed in (("train", 0), ("test", 1)):
        q = make_quality_micrographs(args.n, size=args.size, seed=seed)
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        write_mrc(folder / f"{name}.mrcs", q.images, voxel_size=(1.0, q.pixel_size, q.pixel_size))
        stacks[name] = (folder, np.asarray(q.kinds))
    print(f"{args.n} training and {args.n} held-out micrographs of {args.size}² px, kinds {q.kind_names}")

    def accuracy(model: Path, tag: str) -> float:
        embs = {}
        for name, (folder, _) in stacks.items():
            out = root / f"{tag}_{name}.csv"
            run_job(ssl_embed_job(EmbedConfig(model=model, data=folder, output=out, map="pca", clusters=4,
                                              device="cpu", overwrite=True)))
            table = read_embedding_table(out)
            embs[name] = table[embedding_columns(table)].to_numpy()
        return knn_accuracy(embs["train"], stacks["train"][1], embs["test"], stacks["test"][1], k=5)

    for method in args.methods:
        base, fft = method.removesuffix("-fft"), method.endswith("-fft")
        common = dict(data=stacks["train"][0], method=base, fft=fft, image_size=args.image_size,
                      batch_size=args.batch_size, device="cpu", validation_ratio=0.1)
        random_run = SSLTrainConfig(log_dir=root / f"{method}_random", max_epochs=1, lr=1e-12, **common)
        run_job(ssl_train_job(random_run.model_copy(update={"overwrite": True})))  # weights barely move
        t0 = time.perf_counter()
        lr = args.simsiam_lr if base == "simsiam" else None
        trained = run_job(ssl_train_job(SSLTrainConfig(log_dir=root / method, max_epochs=args.epochs, lr=lr,
                                                       overwrite=True, **common)))
        per_epoch = (time.perf_counter() - t0) / args.epochs
        acc = accuracy(trained.outputs["last"], method)
        ref = accuracy(root / f"{method}_random" / "model" / "last.ckpt", f"{method}_random")
        print(f"{method:>12}: k-NN accuracy {acc:.3f} (random encoder {ref:.3f}, ratio {acc / max(ref, 1e-9):.2f}), "
              f"{per_epoch:.2f} s per epoch, loss {trained.metrics.get('train_loss', float('nan')):.3f}"
              + (f", collapse {trained.metrics['collapse_level']:.2f}" if "collapse_level" in trained.metrics else ""))


if __name__ == "__main__":
    main()
