"""The ``cryolearn`` command: every stage of the suite, headless, with a terminal progress bar.

``cryolearn STAGE [ACTION] ...`` runs the same job, with the same config object, as the stage's
napari widget. ``cryolearn demo OUTDIR`` runs every stage in pipeline order on the synthetic
sample data. Ctrl-C once asks the running job to stop cleanly (it keeps what it finished, e.g.
a resumable checkpoint); twice aborts.

While a command runs, a warning of the suite (raised in a ``napari_cryolearn`` module) is one
line on stderr, ``cryolearn: warning: <message>``, written above the progress bar; warnings
of other libraries and their information lines (Lightning's device report and tips) are left
out unless ``-v``/``--verbose`` (see :func:`terminal_warnings`).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from napari_cryolearn import __version__
from napari_cryolearn.cli_flags import FlagError, add_config_arguments, configs_from_args
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.inputs import check_inputs
from napari_cryolearn.engine.jobs import JobResult, run_job
from napari_cryolearn.engine.progress import Progress, nested
from napari_cryolearn.engine.registry import Stage
from napari_cryolearn.stages import all_stages as stages
from napari_cryolearn.engine.stop import StopFlag


def _drive(job_fn, config, *, desc: str, quiet: bool = False,
          event: Callable[[Progress], Progress] | None = None) -> Any:
    """Run ``job_fn(config, stop)`` to the end with a tqdm progress bar on stderr.

    ``event`` maps each progress event before it is shown (e.g. :func:`nested`). The first
    Ctrl-C sets the job's stop flag; a second one raises ``KeyboardInterrupt``. Returns the
    job's result.
    """
    from tqdm.std import tqdm  # a terminal bar; tqdm.auto would load asyncio too (start-up)

    map_event = event
    stop = StopFlag()
    bar = tqdm(total=None, desc=desc, disable=quiet, file=sys.stderr, dynamic_ncols=True)

    def on_progress(event: Progress) -> None:
        if map_event is not None:
            event = map_event(event)
        if event.total is not None and bar.total != event.total:
            bar.total = event.total
        bar.n = event.step
        if event.message:
            bar.set_postfix_str(event.message[-60:], refresh=False)
        bar.refresh()

    def on_sigint(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        tqdm.write("stopping after the current step (Ctrl-C again to abort)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint) if _in_main_thread() else None
    try:
        return run_job(job_fn(config, stop=stop), on_progress)
    finally:
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


#: Modules whose warnings are the suite's own (shown as one line); any other module's are not.
OWN_MODULES = "napari_cryolearn"


@contextmanager
def terminal_warnings(verbose: bool = False) -> Iterator[None]:
    """The scope of one command: how warnings and log lines reach the terminal while it runs.

    - A warning raised in a module of the suite (a ``warnings.warn`` whose caller is a
      ``napari_cryolearn`` module, e.g. a kept label value absent from the file) is written as
      ``cryolearn: warning: <message>``, one line without the source line, through
      ``tqdm.write`` so that the progress bar stays whole; each distinct warning once.
    - Warnings of other libraries (deprecations of Lightning, torch, ...) are left out, and
      log records below WARNING (Lightning's device report, its tips) are not emitted, unless
      ``verbose``: then they are shown as Python shows them.
    - When something records warnings around the command (``pytest.warns``,
      ``warnings.catch_warnings(record=True)``), it still receives every one.

    Filters, the hook and the logging level are restored when the scope ends.
    """
    import logging
    import warnings

    recorder = warnings._showwarnmsg_impl
    if getattr(recorder, "__module__", None) == "warnings":  # Python's own printer: nobody records
        recorder = None

    def show(message, category, filename, lineno, file=None, line=None):
        if recorder is not None:
            recorder(warnings.WarningMessage(message, category, filename, lineno, file, line))
        if _issuer(sys._getframe(1)).partition(".")[0] == OWN_MODULES:
            _write("cryolearn: warning: " + " ".join(str(message).split()))
        elif verbose:
            _write(warnings.formatwarning(message, category, filename, lineno, line).rstrip())

    disabled = logging.root.manager.disable
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # each distinct warning once; the hook decides what shows
        warnings.showwarning = show
        if not verbose:
            logging.disable(logging.INFO)
        try:
            yield
        finally:
            logging.disable(disabled)


def _issuer(frame) -> str:
    """The module that called ``warnings.warn``: the first frame, from ``frame`` outwards, that
    is not the ``warnings`` module's own."""
    while frame is not None and frame.f_globals.get("__name__") == "warnings":
        frame = frame.f_back
    return "" if frame is None else str(frame.f_globals.get("__name__", ""))


def _write(text: str) -> None:
    """A line on stderr above the progress bar (which is redrawn below it)."""
    from tqdm.auto import tqdm

    tqdm.write(text, file=sys.stderr)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _job_result(result: Any, stage: Stage) -> JobResult:
    """``result``, checked: every job returns a :class:`JobResult`."""
    if not isinstance(result, JobResult):
        raise TypeError(f"the job of stage {stage.name!r} returned {type(result).__name__}, not a JobResult")
    return result


def _run_stage(stage: Stage, args: argparse.Namespace) -> int:
    """Run the stage once per config the arguments give (a CryoSiam YAML may name many files);
    several share one progress bar, each its part of it."""
    config_cls = stage.config_class()
    configs = list(configs_from_args(args, config_cls, positionals=stage.cli_positionals))
    for config in configs:  # before the job's module (torch, for the segment stages) is imported
        check_inputs(stage, config)
    job_fn = stage.job_function()
    for i, config in enumerate(configs):
        name = _first_input_name(stage, config)
        def event(e: Progress, i=i, name=name) -> Progress:
            return nested(e, index=i, count=len(configs), name=name)
        result = _drive(job_fn, config, desc=stage.name, quiet=args.quiet, event=event if len(configs) > 1 else None)
        result = _job_result(result, stage)
        if len(configs) > 1:
            print(f"[{i + 1}/{len(configs)}] {name}")
        for line in result.lines():
            print(line)
    return 0


def _first_input_name(stage: Stage, config: Any) -> str:
    """The file name of the stage's first input in ``config`` (for progress messages)."""
    for port in stage.inputs:
        value = getattr(config, port.field, None)
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if value is not None:
            return Path(value).name
    return ""


def run_demo(
    outdir: Path,
    quiet: bool = False,
    quick: bool = False,
    before: Callable[[Stage, Any], None] | None = None,
    after: Callable[[Stage, Any, Any], None] | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Run every registered stage that has a demo, in pipeline order, inside ``outdir``.

    ``quick`` makes a smoke run (small volume, one epoch). ``before(stage, config)`` and
    ``after(stage, config, result)`` are called around each stage (for checks). A folder that
    is not empty is refused unless ``overwrite`` (then each stage replaces its own outputs).
    Returns the paths the stages wrote, by role ("tomogram", "scaled", "model", ...).
    """
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise InputError("is a file; expected a folder for the demo", path=outdir, field="outdir")
    if outdir.is_dir() and any(outdir.iterdir()) and not overwrite:
        raise InputError("is not empty; choose a new folder or pass --overwrite to run the demo again in it",
                         path=outdir, field="outdir")
    outputs: dict[str, Path] = {}
    for stage in stages():
        build = stage.demo_function()
        if build is None:
            continue
        config = build(outputs, outdir, quick)
        if config is None:
            continue
        if overwrite and "overwrite" in type(config).model_fields:
            config = config.model_copy(update={"overwrite": True})
        print(f"== {stage.name}: {stage.summary}", flush=True)
        if before is not None:
            before(stage, config)
        result = _drive(stage.job_function(), config, desc=stage.name, quiet=quiet)
        if after is not None:
            after(stage, config, result)
        result = _job_result(result, stage)
        for role, path in result.outputs.items():
            outputs.setdefault(role, Path(path))
        for line in result.lines():
            print(f"   {line}")
    return outputs


def _demo_command(args: argparse.Namespace) -> int:
    outputs = run_demo(args.outdir, quiet=args.quiet, quick=args.quick, overwrite=args.overwrite)
    # the volumes, the STAR files and the scored meshes (the unscored ones, mesh_<k>, are their copies)
    volumes = list(dict.fromkeys(str(p) for role, p in outputs.items() if role != "latent_maps" and (
        p.suffix in {".mrc", ".star"} or (p.suffix == ".h5" and not role.startswith("mesh_")))))
    print()
    napari = napari_command()
    print("Done. Open the volumes, masks, predictions and picks together in napari:")
    print(f"  {napari} " + " ".join(volumes))
    if "micrographs" in outputs:
        print(f"and the 2D micrographs:  {napari} " + str(outputs["micrographs"]))
    if "scan4d" in outputs:
        maps = f" {outputs['latent_maps']}" if "latent_maps" in outputs else ""
        print(f"and the 4D-STEM scan (with its latent maps):  {napari} {outputs['scan4d']}{maps}")
    print(f"or start napari with the plugin's widgets:  {napari} -w napari-cryolearn")
    return 0


def napari_command() -> str:
    """How to start napari from here: the ``napari`` beside this Python (a venv's, which need
    not be on ``PATH``), else ``napari``."""
    import shutil

    beside = Path(sys.executable).parent / "napari"
    if beside.is_file():
        return str(beside) if shutil.which("napari") != str(beside) else "napari"
    return "napari"


def _stages_command(args: argparse.Namespace) -> int:
    for stage in stages():
        print(f"{stage.name:24s} {stage.summary}")
    return 0


def _build_parser() -> argparse.ArgumentParser:
    """The full ``cryolearn`` parser, with one subcommand per registered stage."""
    parser = argparse.ArgumentParser(
        prog="cryolearn",
        description="napari-cryolearn on the command line: the same jobs as the napari widgets.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show other libraries' warnings and log lines (e.g. Lightning's)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    demo = commands.add_parser("demo", help="generate the sample data and run every stage on it")
    demo.add_argument("outdir", type=Path, help="folder for all outputs")
    demo.add_argument("--quick", action="store_true", help="a smoke run: small volume, one training epoch")
    demo.add_argument("--overwrite", action="store_true", help="run again in a folder that holds an earlier demo")
    demo.set_defaults(handler=_demo_command)
    listing = commands.add_parser("stages", help="list the stages")
    listing.set_defaults(handler=_stages_command)
    _add_batch_parser(commands)

    groups: dict[str, argparse._SubParsersAction] = {}
    for stage in stages():
        head, _, tail = stage.name.partition(".")
        if tail:
            if head not in groups:
                group = commands.add_parser(head, help=f"{head} stages")
                groups[head] = group.add_subparsers(dest="action", metavar="ACTION")
                groups[head].required = True
            sub = groups[head].add_parser(tail, help=stage.summary, description=stage.summary)
        else:
            sub = commands.add_parser(head, help=stage.summary, description=stage.summary)
        sub.set_defaults(handler=None, stage=stage)
        sub.set_defaults(_stage_parser=sub)
        _LAZY_PARSERS[id(sub)] = (sub, stage)
    return parser


_LAZY_PARSERS: dict[int, tuple[argparse.ArgumentParser, Stage]] = {}
_BATCH_PARSER: list[argparse.ArgumentParser] = []

BATCH_USAGE = ("%(prog)s STAGE --input DIR --output DIR [--pattern GLOB ...] [--pair FIELD=DIR ...] "
               "[--also FIELD ...] [--config YAML] [--workers N] [--shard K/N] [--dask ADDRESS | local:N] "
               "[--force] [--dry-run] [the stage's options]")


def _add_batch_parser(commands) -> None:
    """``cryolearn batch STAGE …``: its own options here; the stage's are added once the command
    line names the stage (:func:`_complete_batch_parser`)."""
    from napari_cryolearn.cli_flags import HelpFormatter

    batch = commands.add_parser(
        "batch", help="run a file-level stage on every file of a folder (resumable; workers, Slurm shards, Dask)",
        usage=BATCH_USAGE, formatter_class=HelpFormatter,
        description="Run STAGE once per file of --input, outputs named after each file in --output, with a "
                    "run log (batch_log.csv); a second run skips the files that are up to date. STAGE is "
                    "one of the file-level stages (cryolearn stages; e.g. prep.scale, segment.predict); "
                    "`cryolearn batch STAGE --help` lists its options too.")
    batch.add_argument("batch_stage", metavar="STAGE", help="the stage, e.g. prep.scale")
    batch.add_argument("--input", dest="batch_input", type=Path, required=True, metavar="DIR",
                       help="folder of the input files (the stage's main input)")
    batch.add_argument("--output", dest="batch_output", type=Path, required=True, metavar="DIR",
                       help="folder for the outputs and the run log")
    batch.add_argument("--pattern", dest="batch_pattern", nargs="+", metavar="GLOB",
                       help="glob(s) of the input files (default: the usual suffixes of the stage's input)")
    batch.add_argument("--pair", dest="batch_pair", action="append", default=[], metavar="FIELD=DIR",
                       help="another per-file input of the stage from a folder, matched by file stem "
                            "(e.g. --pair labels=labels/); repeat for more")
    batch.add_argument("--also", dest="batch_also", action="append", default=[], metavar="FIELD",
                       help="also write this optional output of the stage (<stem>_<field><suffix>)")
    batch.add_argument("--workers", dest="batch_workers", type=int, default=1, metavar="N",
                       help="files processed at once, each in its own process (a GPU stage: at most one per GPU)")
    batch.add_argument("--shard", dest="batch_shard", metavar="K/N",
                       help="only the K-th of N shares of the files, e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT")
    batch.add_argument("--dask", dest="batch_dask", metavar="ADDRESS",
                       help="run the files on a Dask cluster: its scheduler address, or local:N (N local workers)")
    batch.add_argument("--force", dest="batch_force", action="store_true",
                       help="redo files that are up to date (and replace outputs no batch here wrote)")
    batch.add_argument("--dry-run", dest="batch_dry_run", action="store_true",
                       help="list what would run, be skipped or fail, with the partners and outputs; run nothing")
    batch.set_defaults(handler=_batch_command, _stage_parser=batch)
    _BATCH_PARSER[:] = [batch]


def _batch_stage(name: str) -> Stage:
    from napari_cryolearn.batch.plan import batch_stage_names
    from napari_cryolearn.stages import get

    names = batch_stage_names()
    if name not in names:
        raise InputError(f"batch runs a file-level stage: {', '.join(names)}; not {name!r}", field="STAGE")
    return get(name)


def _complete_batch_parser(argv: Sequence[str]) -> None:
    """Add the named stage's flags (less those a batch sets per file) to ``cryolearn batch``."""
    from napari_cryolearn.batch.plan import batch_stage_names

    words = [a for a in argv if not a.startswith("-")]
    if not words or words[0] != "batch" or not _BATCH_PARSER:
        return
    named = [w for w in words[1:] if w in batch_stage_names()]
    if not named:
        return  # the handler says what is wrong
    stage = _batch_stage(named[0])
    from napari_cryolearn.batch.plan import per_file_ports

    add_config_arguments(_BATCH_PARSER[0], stage.config_class(), exclude=per_file_ports(stage) | {"overwrite"})


def _batch_command(args: argparse.Namespace) -> int:
    from napari_cryolearn.batch.job import BatchConfig, batch_job
    from napari_cryolearn.cli_flags import _given

    stage = _batch_stage(args.batch_stage)
    pairs = {}
    for item in args.batch_pair:
        field, sep, folder = item.partition("=")
        if not sep or not field or not folder:
            raise FlagError(f"--pair {item!r}: expected FIELD=DIR, e.g. labels=labels/")
        pairs[field.strip()] = Path(folder)
    config = BatchConfig(stage=stage.name, input=args.batch_input, output=args.batch_output,
                         pattern=args.batch_pattern, pairs=pairs, also=args.batch_also,
                         stage_config=getattr(args, "config", None), settings=_given(args, stage.config_class()),
                         workers=args.batch_workers, shard=args.batch_shard, dask=args.batch_dask,
                         force=args.batch_force, dry_run=args.batch_dry_run)
    result = _drive(batch_job, config, desc=f"batch {stage.name}", quiet=args.quiet)
    width = max([len(r.file) for r in result.rows] + [4])
    m = result.metrics
    if config.dry_run:
        print(f"{'file':{width}s}  {'would be':8s}  inputs paired → outputs, or why it would fail")
        for row in result.rows:
            print(f"{row.file:{width}s}  {row.status:8s}  {row.error or row.outputs.replace(';', ' ')}")
        print(f"{m['to run']} to run, {m['skipped']} up to date, {m['failed']} would fail; nothing was run")
        return 0
    print(f"{'file':{width}s}  {'status':8s} {'seconds':>8s}  error")
    for row in result.rows:
        print(f"{row.file:{width}s}  {row.status:8s} {row.seconds:8.1f}  {row.error}")
    print(f"{m['done']} done, {m['skipped']} up to date, {m['failed']} failed"
          + (f", {m['stopped']} stopped" if m["stopped"] else "") + f"; log: {result['log']}")
    return 0 if result.ok and not result.stopped else 1


def _complete_stage_parsers(argv: Sequence[str]) -> None:
    """Add the config flags to the one stage parser the command line names.

    Building every stage's flags needs every config class; loading only the named one keeps
    ``cryolearn --help`` and each stage's start fast.
    """
    words = [a for a in argv if not a.startswith("-")]
    for sub, stage in _LAZY_PARSERS.values():
        head, _, tail = stage.name.partition(".")
        wanted = [head, tail] if tail else [head]
        if words[: len(wanted)] == wanted:
            add_config_arguments(sub, stage.config_class(), positionals=stage.cli_positionals)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cryolearn`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _LAZY_PARSERS.clear()
    parser = _build_parser()
    _complete_stage_parsers(argv)
    _complete_batch_parser(argv)
    args = parser.parse_args(argv)
    try:
        with terminal_warnings(verbose=args.verbose):
            if args.handler is not None:
                return args.handler(args)
            return _run_stage(args.stage, args)
    except FlagError as err:  # as argparse says what is wrong with the arguments: under the usage line
        stage_parser = args._stage_parser
        print(stage_parser.format_usage(), end="", file=sys.stderr)
        print(f"{stage_parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except InputError as err:
        print(f"cryolearn: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cryolearn: aborted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
