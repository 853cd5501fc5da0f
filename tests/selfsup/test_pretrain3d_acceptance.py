"""Acceptance of dense 3D pretraining on synthetic tomograms: ``benchmarks/bench_pretrain3d.py``'s
case (its functions), at seed 0. About two minutes on 2 CPU cores.

- Segmentation fine-tuned from the pretrained encoder and decoder on **2 labelled 32³ patches**
  (20 epochs) reaches a higher held-out membrane Dice than the same training from scratch (same
  labels, epochs, rate and seed), on the mean of three draws of labelled patches and in at least
  two of them. One draw alone is not a stable case: with two patches the fine-tuning itself
  varies by up to 0.4 in Dice between draws, which is why the test averages them.
- The k-means clusters (k = 2) of ``ssl embed3d`` on the held-out tomogram separate membrane from
  the rest: adjusted Rand index above 0.1 and above that of k-means of the voxel intensities.

The figures over pretraining seeds 0-3 are in docs/stages/pretrain3d.md.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_pretrain3d.py"

#: The benchmark's case (see docs/stages/pretrain3d.md).
CASE = dict(shape=(64, 96, 96), pretrain_epochs=10, samples=48, labelled=2, finetune_epochs=20, draws=3)

pytestmark = pytest.mark.slow


def _bench():
    spec = importlib.util.spec_from_file_location("bench_pretrain3d", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    try:
        return _bench().compare(tmp_path_factory.mktemp("bench"), seed=0, **CASE)
    finally:
        torch.set_num_threads(threads)


def test_pretrained_segmentation_beats_scratch_with_two_labelled_patches(figures):
    print(figures)
    assert figures["labelled_patches"] == CASE["labelled"]
    assert figures["dice_pretrained"] > figures["dice_scratch"] + 0.1
    assert figures["wins"] >= 2


def test_embedding_clusters_separate_membrane(figures):
    assert figures["ari"] > max(0.1, figures["ari_intensity"])
