"""Start-up time of the ``cryolearn`` command, per command, against ``python -c pass``.

    .venv/bin/python benchmarks/cli_startup.py [--repeats N] [--only REGEX] [--imports]

Every command runs ``--repeats`` times in a fresh process (the venv's ``cryolearn`` entry point,
run by this interpreter), interleaved with the reference ``python -c pass`` so that both see
the same load; the table gives the median CPU seconds (user + system, from
``getrusage(RUSAGE_CHILDREN)``) and median wall seconds of each, and the command's CPU over the
reference's: the start-up cost. The commands:

- ``cryolearn --help``, ``cryolearn stages`` and each stage's ``--help``;
- each ``prep`` command run on tiny real inputs (a 16×24×24 tomogram, labels, a STAR file)
  in a temporary folder, each run writing a new output;
- each stage given a missing input path (``segment predict missing.ckpt missing.mrc out.mrc``):
  it must exit with code 2 and say "not found".

Goals (issue 17, item 7), on CPU time over the reference: a prep command within 0.3 s of
``python -c pass``; any bad-path error within 1 s. Each line says PASS or MISS; commands without
a goal say ``-``. A second reference line, the floor, is a process that imports numpy, mrcfile
and pydantic and validates one model: what every prep command loads whatever we do. ``--imports`` adds, per command, the packages that took the most import time
(one more run with ``python -X importtime``, wall-clock, self time summed per top-level package).
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

PREP_GOAL = 0.3  # s of CPU over `python -c pass`
BAD_PATH_GOAL = 1.0

#: What no prep command can do without: numpy, mrcfile and one pydantic model (a stage's config),
#: built and validated. Shown as a second reference: the part of a command's start-up that is ours.
FLOOR = ("import numpy, mrcfile\nfrom pydantic import BaseModel\n"
         "class Config(BaseModel):\n    input: str\nConfig(input='x')")


@dataclass
class Command:
    argv: list[str]  # "{n}" is replaced by the run's number (a new output each run)
    goal: float | None  # seconds of CPU over the reference; None: no goal
    exit_code: int = 0
    expect: str | None = None  # text the output must hold

    @property
    def text(self) -> str:
        return "cryolearn " + " ".join(a.replace("{n}", "N") for a in self.argv)


def commands() -> list[Command]:
    """The measured commands: help and listing, each prep command on real input, each stage with
    a missing input."""
    from napari_cryolearn.stages import all_stages

    out = [Command(["--help"], None), Command(["stages"], None)]
    out += [Command([*stage.name.split("."), "--help"], None) for stage in all_stages()]
    runs = {
        "prep.filter": ["prep", "filter", "labels.mrc", "filtered_{n}.mrc", "--keep", "1"],
        "prep.masks": ["prep", "masks", "coords.star", "tomogram.mrc", "spheres_{n}.mrc", "--radius", "2"],
        "prep.scale": ["prep", "scale", "tomogram.mrc", "scaled_{n}.mrc"],
        "prep.threshold": ["prep", "threshold", "tomogram.mrc", "mask_{n}.mrc", "--threshold", "0.5"],
        "prep.distances": ["prep", "distances", "labels.mrc", "distances_{n}.npy"],
        "prep.patches": ["prep", "patches", "tomogram.mrc", "store_{n}.zarr", "--labels", "labels.mrc",
                         "--patch-size", "8"],
    }
    missing = {
        "prep.filter": ["prep", "filter", "missing.mrc", "out.mrc", "--keep", "1"],
        "prep.masks": ["prep", "masks", "missing.star", "tomogram.mrc", "out.mrc", "--radius", "2"],
        "prep.scale": ["prep", "scale", "missing.mrc", "out.mrc"],
        "prep.threshold": ["prep", "threshold", "missing.mrc", "out.mrc", "--threshold", "0.5"],
        "prep.distances": ["prep", "distances", "missing.mrc", "out.npy"],
        "prep.patches": ["prep", "patches", "missing.mrc", "out.zarr"],
        "segment.train": ["segment", "train", "missing.zarr", "--log-dir", "run"],
        "segment.predict": ["segment", "predict", "missing.ckpt", "missing.mrc", "out.mrc"],
    }
    for stage in all_stages():
        if stage.name.startswith("prep."):
            if stage.name not in runs:
                print(f"note: no run of {stage.name} is measured (add it to `runs`)")
            else:
                out.append(Command(runs[stage.name], PREP_GOAL))
    for stage in all_stages():
        if stage.inputs and stage.name not in missing:
            print(f"note: no missing-input command of {stage.name} is measured (add it to `missing`)")
        elif stage.name in missing:
            out.append(Command(missing[stage.name], BAD_PATH_GOAL, exit_code=2, expect="not found"))
    return out


def write_inputs(folder: Path) -> None:
    """A tiny tomogram, labels 0..2 and a STAR file of three points inside them."""
    shape = (16, 24, 24)
    rng = np.random.default_rng(0)
    with mrcfile.new(folder / "tomogram.mrc") as m:
        m.set_data(rng.standard_normal(shape).astype(np.float32) * 0.2 + 0.5)
        m.voxel_size = 10.0
    labels = np.zeros(shape, np.uint8)
    labels[4:12, 4:12, 4:12] = 1
    labels[6:10, 14:20, 14:20] = 2
    with mrcfile.new(folder / "labels.mrc") as m:
        m.set_data(labels)
        m.voxel_size = 10.0
    (folder / "coords.star").write_text(
        "data_particles\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnCoordinateZ #3\n"
        "6 6 4\n12 12 8\n18 18 10\n"
    )


def cryolearn_command() -> list[str]:
    """This interpreter running the venv's ``cryolearn`` entry point (or the same code by -c)."""
    script = Path(sys.executable).with_name("cryolearn")
    if script.is_file():
        return [sys.executable, str(script)]
    return [sys.executable, "-c", "import sys; from napari_cryolearn.cli import main; sys.exit(main())"]


def measure(cmd: list[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    """(CPU seconds, wall seconds, the finished process) of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, proc


def import_summary(cmd: list[str], cwd: Path, top: int = 6) -> str:
    """The packages with the most import time in one ``-X importtime`` run of ``cmd``."""
    proc = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], cwd=cwd, capture_output=True, text=True)
    per_package: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if m:
            name = m.group(2).split(".")[0]
            per_package[name] = per_package.get(name, 0.0) + int(m.group(1)) / 1e6
    total = sum(per_package.values())
    best = sorted(per_package.items(), key=lambda kv: -kv[1])[:top]
    return f"imports {total:.2f} s: " + ", ".join(f"{name} {t:.2f}" for name, t in best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command (medians are shown)")
    parser.add_argument("--only", metavar="REGEX", help="measure only the commands that match")
    parser.add_argument("--imports", action="store_true", help="also list what each command spends importing")
    args = parser.parse_args()

    todo = commands()
    if args.only:
        todo = [c for c in todo if re.search(args.only, c.text)]
    base = cryolearn_command()
    reference = [sys.executable, "-c", "pass"]
    with tempfile.TemporaryDirectory(prefix="cli_startup_") as tmp:
        folder = Path(tmp)
        write_inputs(folder)
        ref_cpu: list[float] = []
        ref_wall: list[float] = []
        floor_cpu: list[float] = []
        floor_wall: list[float] = []
        times: dict[int, tuple[list[float], list[float]]] = {i: ([], []) for i in range(len(todo))}
        failures: dict[int, str] = {}
        for n in range(args.repeats):
            cpu, wall, _ = measure([sys.executable, "-c", FLOOR], folder)
            floor_cpu.append(cpu)
            floor_wall.append(wall)
            for i, command in enumerate(todo):
                cpu, wall, _ = measure(reference, folder)
                ref_cpu.append(cpu)
                ref_wall.append(wall)
                argv = [a.replace("{n}", str(n)) for a in command.argv]
                cpu, wall, proc = measure(base + argv, folder)
                times[i][0].append(cpu)
                times[i][1].append(wall)
                said = proc.stdout + proc.stderr
                if proc.returncode != command.exit_code or (command.expect and command.expect not in said):
                    tail = said.strip().splitlines()[-1:] or [""]
                    failures[i] = f"exit {proc.returncode} (expected {command.exit_code}): {tail[0][:100]}"
        r_cpu, r_wall = statistics.median(ref_cpu), statistics.median(ref_wall)
        width = max(len(c.text) for c in todo) + 2
        print(f"{args.repeats} runs each, medians; CPU = user + system; +CPU = CPU over `python -c pass`")
        print(f"{'command':{width}s} {'CPU s':>7s} {'wall s':>7s} {'+CPU s':>7s}  goal")
        print(f"{'python -c pass (reference)':{width}s} {r_cpu:7.3f} {r_wall:7.3f} {'':>7s}  -")
        f_cpu, f_wall = statistics.median(floor_cpu), statistics.median(floor_wall)
        print(f"{'floor: numpy + mrcfile + a pydantic model':{width}s} {f_cpu:7.3f} {f_wall:7.3f} "
              f"{f_cpu - r_cpu:+7.3f}  -")
        missed = 0
        for i, command in enumerate(todo):
            cpu, wall = statistics.median(times[i][0]), statistics.median(times[i][1])
            extra = cpu - r_cpu
            if i in failures:
                verdict = f"FAILED: {failures[i]}"
            elif command.goal is None:
                verdict = "-"
            else:
                ok = extra <= command.goal
                missed += not ok
                verdict = f"<= +{command.goal:.1f} s  {'PASS' if ok else 'MISS'}"
            print(f"{command.text:{width}s} {cpu:7.3f} {wall:7.3f} {extra:+7.3f}  {verdict}", flush=True)
        goals = [c for c in todo if c.goal is not None]
        print(f"goals met: {len(goals) - missed - sum(1 for i in failures if todo[i].goal is not None)}"
              f" of {len(goals)}; failed commands: {len(failures)}")
        if args.imports:
            print()
            for command in todo:
                argv = [a.replace("{n}", "imports") for a in command.argv]
                print(f"{command.text}\n    {import_summary(base + argv, folder)}", flush=True)


if __name__ == "__main__":
    main()
