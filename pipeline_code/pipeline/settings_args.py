"""Command-line flags for the data settings, shared by the CLI and the container entrypoints."""

from __future__ import annotations

import argparse
from dataclasses import replace

from pipeline_code.engine.settings import Settings


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data settings (defaults: the bundled weekly series)")
    group.add_argument("--settings", metavar="FILE", help="JSON settings file (sections as in settings.py)")
    group.add_argument("--freq", help="frequency alias: D, W-FRI, MS, ME, QS, ... (default W-FRI)")
    group.add_argument("--season-length", type=float, help="season length in periods (default 52.18)")
    group.add_argument("--horizon", type=int, help="forecast horizon in periods (default 26)")
    group.add_argument("--cv-window", type=int, help="CV training window in periods (default 417)")
    group.add_argument("--cv-step", type=int, help="CV step between splits (default 1)")
    group.add_argument("--break-start", help="first date the structural break may start (default 2020-01-01)")
    group.add_argument("--break-end", help="last date of the break window (default: open)")
    group.add_argument("--eval-origins", type=int, help="backtest origins of the evaluation (default 26)")
    group.add_argument("--min-improvement", type=float, help="gate: required MASE improvement (default 0.01)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Defaults, then the settings file, then the flags."""
    settings = Settings.from_file(args.settings) if getattr(args, "settings", None) else Settings()
    data = {k: v for k, v in {
        "freq": args.freq, "season_length": args.season_length, "horizon": args.horizon,
    }.items() if v is not None}
    cv = {k: v for k, v in {"window": args.cv_window, "step": args.cv_step}.items() if v is not None}
    pre = {k: v for k, v in {"break_start": args.break_start, "break_end": args.break_end}.items()
           if v is not None}
    gate = {k: v for k, v in {
        "eval_origins": args.eval_origins, "min_improvement": args.min_improvement,
    }.items() if v is not None}
    return replace(
        settings,
        data=replace(settings.data, **data),
        cv=replace(settings.cv, **cv),
        preprocess=replace(settings.preprocess, **pre),
        gate=replace(settings.gate, **gate),
    )
