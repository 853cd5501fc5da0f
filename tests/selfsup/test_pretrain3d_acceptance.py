"""Acceptance of dense 3D pretraining on synthetic tomograms, a small case of
``benchmarks/bench_pretrain3d.py`` (its functions, run here with a tiny network on small volumes).

- Segmentation fine-tuned from the pretrained encoder/decoder on a few labelled patches reaches a
  higher held-out membrane Dice than the same training from scratch (same labels, epochs, rate,
  seed).
- The k-means clusters (k = 2) of ``ssl embed3d`` on the held-out tomogram separate membrane from
  the rest better than k-means of the intensities does, at an adjusted Rand index above a modest
  threshold.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_pretrain3d.py"

#: The small case (CPU, about a minute): see the module docstring.
SMALL = dict(shape=(40, 64, 64), pretrain_epochs=6, labelled=2, finetune_epochs=10, samples=16, patch=32, view=24,
             dim=16, backbone={"num_filters": (4, 8, 8, 16), "fpn_channels": 8, "dense_dim": 8}, lr=0.01,
             include_global_loss=False)


def _bench():
    spec = importlib.util.spec_from_file_location("bench_pretrain3d", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return _bench().compare(tmp_path_factory.mktemp("bench"), seed=0, **SMALL)


def test_pretrained_segmentation_beats_scratch_with_few_labels(figures):
    print(figures)
    assert figures["labelled_patches"] == SMALL["labelled"]
    assert figures["dice_pretrained"] > figures["dice_scratch"]


def test_embedding_clusters_separate_membrane(figures):
    assert figures["ari"] > max(0.03, figures["ari_intensity"])
