import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Literal

import pytest
import yaml

from napari_cryolearn.engine import Config, InputError, Progress, StopFlag, atomic_dir, atomic_path, run_job
from napari_cryolearn.engine.registry import Port, Stage, get_stage, register_stage, resolve, stages


class DemoConfig(Config):
    output: Path
    size: int = 3
    mode: Literal["a", "b"] = "a"
    shape: tuple[int, int, int] = (1, 2, 3)


def test_atomic_path_renames_on_success(tmp_path):
    target = tmp_path / "sub" / "out.mrc"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".mrc" and tmp != target
        tmp.write_text("hello")
        assert not target.exists()
    assert target.read_text() == "hello"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.mrc"]


def test_atomic_path_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_path_no_overwrite(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(FileExistsError):
        with atomic_path(target, overwrite=False) as tmp:
            tmp.write_text("new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_dir_replaces_folder_whole(tmp_path):
    target = tmp_path / "store.zarr"
    target.mkdir()
    (target / "old").write_text("1")
    ours = {"overwrite": True, "replaceable": lambda p: True}
    with atomic_dir(target, **ours) as tmp:
        (tmp / "new").write_text("2")
    assert sorted(os.listdir(target)) == ["new"]
    assert sorted(os.listdir(tmp_path)) == ["store.zarr"]
    with pytest.raises(ValueError):
        with atomic_dir(target, **ours) as tmp:
            (tmp / "partial").write_text("3")
            raise ValueError
    assert sorted(os.listdir(target)) == ["new"]
    assert sorted(os.listdir(tmp_path)) == ["store.zarr"]


def test_config_yaml_round_trip(tmp_path):
    cfg = DemoConfig(output=tmp_path / "x", size=5, mode="b", shape=(4, 5, 6))
    path = cfg.to_yaml(tmp_path / "c.yaml")
    assert yaml.safe_load(path.read_text())["shape"] == [4, 5, 6]
    again = DemoConfig.from_yaml(path)
    assert again == cfg


def test_config_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("output: x\nsize: many\nextra_key: 1\n")
    with pytest.raises(InputError) as err:
        DemoConfig.from_yaml(bad)
    msg = str(err.value)
    assert str(bad) in msg and "size" in msg and "extra_key" in msg
    with pytest.raises(InputError, match="not found"):
        DemoConfig.from_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="mapping"):
        DemoConfig.from_yaml(tmp_path / "list.yaml")


def _counting_job(n, stop=None, closed=None):
    try:
        for i in range(n):
            if stop is not None and stop.is_set():
                return ("stopped", i)
            yield Progress(i + 1, n, f"step {i + 1}")
        return ("done", n)
    finally:
        if closed is not None:
            closed.append(True)


def test_run_job_returns_result_and_reports_progress():
    seen = []
    assert run_job(_counting_job(4), seen.append) == ("done", 4)
    assert [e.step for e in seen] == [1, 2, 3, 4]
    assert seen[-1].fraction == 1.0 and Progress(1).fraction is None


def test_stop_flag_ends_job_early():
    stop = StopFlag()

    def stop_at_two(event):
        if event.step == 2:
            stop.set()

    assert run_job(_counting_job(10, stop), stop_at_two) == ("stopped", 2)
    assert bool(stop)


def test_run_job_closes_generator_on_error():
    closed = []

    def boom(event):
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError):
        run_job(_counting_job(3, closed=closed), boom)
    assert closed == [True]


def test_stop_flag_set_in_one_thread_stops_a_job_running_in_another():
    """A Stop button sets the flag on the GUI thread while the job runs on a worker: the job sees
    it at its next check and returns what it finished (3 steps), neither sooner nor later."""
    stop = StopFlag()
    paused, resume = threading.Event(), threading.Event()
    steps, outcome = [], []

    def on_progress(event):
        steps.append(event.step)
        if event.step == 3:  # hold the job between steps 3 and 4 until the other thread has set the flag
            paused.set()
            resume.wait(10)

    worker = threading.Thread(target=lambda: outcome.append(run_job(_counting_job(100, stop), on_progress)))
    worker.start()
    try:
        assert paused.wait(10), "the job never reached step 3"
        assert not stop.is_set() and not stop and steps == [1, 2, 3]
        stop.set()
    finally:
        resume.set()
        worker.join(10)
    assert not worker.is_alive()
    assert outcome == [("stopped", 3)] and steps == [1, 2, 3]
    assert stop.is_set()


def test_input_error_message():
    err = InputError("shape differs", path="a.mrc", field="labels")
    assert str(err) == "a.mrc: labels: shape differs" and err.path == "a.mrc"
    assert isinstance(err, ValueError)


def test_registry_lazy_and_ordered():
    import napari_cryolearn.stages  # noqa: F401  (registers the suite's stages)

    names = [s.name for s in stages()]
    assert names[0] == "sample"
    assert names.index("prep.patches") < names.index("segment.train") < names.index("segment.predict")
    assert get_stage("sample").config_class().__name__ == "SampleConfig"
    with pytest.raises(KeyError, match="known"):
        get_stage("no-such-stage")
    assert resolve("os.path:join") is os.path.join
    stage = Stage(name="sample", config="x:y", job="x:z", summary="other")
    with pytest.raises(ValueError):
        register_stage(stage)
    with pytest.raises(ValueError, match="unknown kind"):
        Port("input", "volume")


def test_every_port_is_a_field_of_its_config():
    import napari_cryolearn.stages  # noqa: F401

    for stage in stages():
        fields = stage.config_class().model_fields
        for port in (*stage.inputs, *stage.outputs):
            assert port.field in fields, f"{stage.name}: {port.field} is not a field of {stage.config}"


def test_the_engine_imports_no_stage():
    """engine/registry.py used to import napari_cryolearn.stages (and stages.py imported it)."""
    code = ("import sys, napari_cryolearn.engine.registry as r; "
            "print(r.stages() == [], 'napari_cryolearn.stages' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False"]


def test_atomic_dir_never_replaces_a_file(tmp_path):
    target = tmp_path / "tomo.mrc"
    target.write_text("data")
    with pytest.raises(FileExistsError, match="not a folder"):
        with atomic_dir(target):
            pass
    assert target.read_text() == "data"
    assert sorted(os.listdir(tmp_path)) == ["tomo.mrc"]
