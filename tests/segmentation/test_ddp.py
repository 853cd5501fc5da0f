"""Two CPU processes with DDP (gloo), run in a subprocess so that this process stays clean."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from napari_cryolearn.segmentation.predict_job import load_model

SCRIPT = textwrap.dedent("""
    import os, sys
    from napari_cryolearn.engine.jobs import run_job
    from napari_cryolearn.segmentation.config import SegmentationTrainConfig
    from napari_cryolearn.segmentation.train_job import train_job

    cfg = SegmentationTrainConfig.from_yaml(sys.argv[1])
    result = run_job(train_job(cfg))
    # one file per rank: the two processes share stdout, where their lines can interleave
    rank = os.environ.get("LOCAL_RANK", "0")
    with open(f"rank{rank}.done", "w") as f:
        f.write(str(result.epochs))
""")


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_ddp_two_cpu_processes(tmp_path, blob_store, make_config):
    cfg = make_config([blob_store], tmp_path / "run", max_epochs=2, gpu_devices=2, batch_size=2)
    cfg.to_yaml(tmp_path / "cfg.yaml")
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "cfg.yaml")], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    done = {p.name: p.read_text() for p in tmp_path.glob("rank*.done")}
    assert done == {"rank0.done": "2", "rank1.done": "2"}, out[-4000:]
    ckpts = sorted(p.name for p in (tmp_path / "run" / "model").iterdir())
    assert ckpts == ["last.ckpt", "model_best.ckpt"]
    ck = torch.load(tmp_path / "run" / "model" / "last.ckpt", weights_only=False)
    # 14 training patches over 2 ranks: 7 each, batches of 2 (last partial one dropped): 3 steps per epoch
    assert ck["global_step"] == 6 and ck["epoch"] == 1
    model = load_model(tmp_path / "run" / "model" / "model_best.ckpt")
    assert model.network.out_channels == 3
