"""Day-to-day operation: ``runs list|show``, ``tuning show``, ``models list|approve|reject|rollback``
and ``watch``, each on a local work folder (``--workdir``) or a deployed stack (``--stack``) with the
same output (docs/operations.md)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline_code.cli import views
from pipeline_code.cli.watch import settle_seconds
from pipeline_code.serving.cli import plot_file, port_number, positive_int


def add_ops_commands(sub) -> None:
    runs = sub.add_parser("runs", help="what ran: state, data, timing, model, metrics, the gate's reason")
    rsub = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    listing = rsub.add_parser("list", help="one line per run, newest first")
    _target(listing)
    listing.add_argument("--limit", type=positive_int, default=100, help="at most this many runs (default 100)")
    listing.set_defaults(func=_guarded(cmd_runs_list))
    show = rsub.add_parser("show", help="one run: timings per stage, evaluation, reports and plots")
    _target(show)
    show.add_argument("run", help="run id (locally a unique prefix is enough)")
    show.set_defaults(func=_guarded(cmd_runs_show))

    tuning = sub.add_parser("tuning", help="how tuning went: every candidate's objective, table and plot")
    tsub = tuning.add_subparsers(dest="tuning_command", required=True, metavar="ACTION")
    tshow = tsub.add_parser("show", help="candidates sorted by objective; a PNG over trial order and parameters")
    _target(tshow)
    tshow.add_argument("run")
    tshow.add_argument("--plot", type=new_plot_file, help="plot file (default: tuning-<run>.png in the current folder)")
    tshow.set_defaults(func=_guarded(cmd_tuning_show))

    models = sub.add_parser("models", help="list, approve, reject or roll back model versions")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    mlist = msub.add_parser("list", help="versions, status, metrics, the version served, the last decision")
    _target(mlist)
    mlist.set_defaults(func=_guarded(cmd_models_list))
    for action, text in (("approve", "approve a pending (or rejected) version: it is deployed"),
                         ("reject", "reject a version: it stays undeployed"),
                         ("rollback", "serve an earlier approved version again")):
        parser = msub.add_parser(action, help=text)
        _target(parser)
        parser.add_argument("version", help="v0003 (or 3)")
        parser.add_argument("--reason", help="why (recorded with who and when)")
        parser.set_defaults(func=_guarded(cmd_models_decide), action=action)

    watch = sub.add_parser("watch", help="run the pipeline on each CSV dropped into a folder (the S3 trigger's twin)")
    watch.add_argument("folder", type=Path, help="the folder to watch")
    watch.add_argument("--workdir", type=Path, default=None, help="work folder (default: FOLDER/.forecast-mlops)")
    watch.add_argument("--serve", action="store_true", help="also serve the approved model (it reloads on approval)")
    watch.add_argument("--port", type=port_number, default=8080, help="serving port with --serve (default 8080)")
    watch.add_argument("--jobs", type=positive_int, default=None, help="tuning workers (default: all cores)")
    watch.add_argument("--settle", type=settle_seconds, default=1.0,
                       help="seconds a file must stay unchanged and closed before it starts a run, 0 < S <= 3600"
                            " (default 1)")
    watch.add_argument("--quiet", action="store_true", help="no progress bar")
    watch.set_defaults(func=_guarded(cmd_watch))


def _target(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--workdir", type=Path, help="a local work folder")
    group.add_argument("--stack", help="a deployed stack's name")
    parser.add_argument("--region", help="AWS region of --stack (default: the environment's)")


def new_plot_file(text: str) -> Path:
    """A plot file to write, in a folder that exists (nothing is created but the file)."""
    path = plot_file(text)
    if not path.parent.is_dir():
        what = "is not a folder" if path.parent.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{text}: the folder {path.parent} {what}")
    return path


def version_argument(text: str) -> str:
    """``v0003`` or ``3``, in ASCII digits (``int`` would also read "٣" as 3); RegistryError otherwise."""
    from pipeline_code.pipeline.registry import RegistryError

    if not re.fullmatch(r"v?[0-9]+", text):
        raise RegistryError(f"{text!r} is not a version name: versions are named v0001 (or 1), v0002, ...")
    return text


def _ops(args: argparse.Namespace):
    if args.stack:
        from pipeline_code.cli.cloud import StackOps

        return StackOps(args.stack, args.region)
    from pipeline_code.cli.local_ops import LocalOps

    return LocalOps(args.workdir)


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Every expected failure is one line on stderr and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        from pipeline_code.cli.cloud import StackError
        from pipeline_code.pipeline.registry import RegistryError
        from pipeline_code.pipeline.runs import RecordError, RunNotFound

        try:
            return command(args)
        except (RunNotFound, RecordError, RegistryError, StackError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

    return run


def cmd_runs_list(args: argparse.Namespace) -> int:
    print(views.runs_table(_ops(args).runs(limit=args.limit)))
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    print(views.run_detail(_ops(args).run(args.run)))
    return 0


def cmd_tuning_show(args: argparse.Namespace) -> int:
    run_id, trials = _ops(args).trials(args.run)
    print(views.trials_table(trials))
    path = args.plot or Path(f"tuning-{run_id}.png")
    views.plot_trials(trials, path, f"tuning of run {run_id}: {len(trials)} candidates")
    print(f"plot: {path}")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    print(views.models_table(_ops(args).models()))
    return 0


def cmd_models_decide(args: argparse.Namespace) -> int:
    version = version_argument(args.version)  # checked before the registry (or the stack) is opened
    print(_ops(args).decide(args.action, version, args.reason))
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from pipeline_code.cli.watch import watch_folder

    return watch_folder(args)
