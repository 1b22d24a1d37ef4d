"""The run document's command-line layer: flags over the settings files, shared by the CLI and the
container entrypoints (docs/design.md, "The run document")."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from pipeline_code.engine.profile import profile_csv
from pipeline_code.pipeline.uploads import check_upload
from pipeline_code.engine.settings import (
    Resolved, Settings, SettingsError, check_offered, read_document, resolve, settings_file_for,
)

# flag -> (section, key); only the flags a user gives become part of the document.
FLAGS = {
    "freq": ("data", "freq"), "season_length": ("data", "season_length"), "horizon": ("data", "horizon"),
    "cv_window": ("cv", "window"), "cv_step": ("cv", "step"),
    "break_start": ("preprocess", "break_start"), "break_end": ("preprocess", "break_end"),
    "eval_origins": ("gate", "eval_origins"), "min_improvement": ("gate", "min_improvement"),
}


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "run settings (defaults: inferred from the data; see docs/design.md, 'The run document')")
    group.add_argument("--settings", metavar="FILE", help="JSON run document (sections as in engine/settings.py)")
    group.add_argument("--freq", help="frequency alias: D, W-FRI, MS, ME, QS, QS-DEC, YS-JUL, ... (default: inferred)")
    group.add_argument("--season-length", type=float,
                       help="season length in periods, 1: none (default: from the frequency, 1 for yearly)")
    group.add_argument("--horizon", type=int,
                       help="forecast horizon in periods (default: one season, at most 26; 6 with no season)")
    group.add_argument("--cv-window", type=int, help="CV training window in periods (default: 8 seasons or what fits)")
    group.add_argument("--cv-step", type=int, help="CV step between splits (default 1)")
    group.add_argument("--break-start", help="first date the structural break may start (default 2020-01-01)")
    group.add_argument("--break-end", help="last date of the break window (default: open)")
    group.add_argument("--eval-origins", type=int, help="backtest origins of the evaluation (default: n/10 in 8..26)")
    group.add_argument("--min-improvement", type=float, help="gate: required MASE improvement (default 0.01)")


FLAGS_LAYER = "command-line flags"  # the last settings layer's name


def flag_document(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    document: dict[str, dict[str, Any]] = {}
    for flag, (section, key) in FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            document.setdefault(section, {})[key] = value
    return document


def settings_layers(args: argparse.Namespace, data: Path | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The layers over the engine's defaults: the settings file beside the data, ``--settings``, flags."""
    layers = []
    if data is not None:
        beside = Path(data).with_name(settings_file_for(Path(data).name))
        if beside.is_file():
            layers.append((str(beside), read_document(beside)))
    if getattr(args, "settings", None):
        layers.append((args.settings, read_document(args.settings)))
    layers.append((FLAGS_LAYER, flag_document(args)))
    return layers


def resolve_for_data(layers: list[tuple[str, dict[str, Any]]], data: Path) -> Resolved:
    """Resolve the layers against an upload (frequency, length); the upload is size-checked first."""
    limit = Settings()
    for source, document in layers:
        limit = limit.merged(document, source, validate=False)
    size = Path(data).stat().st_size
    if size > limit.data.max_file_bytes:
        raise SettingsError([f"the upload is {size} bytes; data.max_file_bytes is {limit.data.max_file_bytes}"],
                            str(data))
    check_upload(Path(data), limit.data.max_file_bytes)  # no symlink, FIFO or device is read
    # For a panel: one item's timestamps, and the longest series' length (docs/panel.md).
    profile = profile_csv(Path(data).read_bytes(), limit.series.columns)
    if profile.problem:  # refused as the input contract would, before settings are derived from part of it
        raise SettingsError([profile.problem], str(data))
    resolved = resolve(layers, timestamps=profile.timestamps, observations=profile.observations,
                       lines=profile.lines)
    check_offered(resolved.settings, panel=profile.panel)  # as the starter Lambda does
    return resolved


def settings_for_data(args: argparse.Namespace) -> Resolved:
    """The command line's run document for ``args.data``: files and flags over what the data implies."""
    if not os.path.lexists(args.data):
        raise FileNotFoundError(f"no such data file: {args.data}")
    return resolve_for_data(settings_layers(args, args.data), args.data)


def frequency_given(args: argparse.Namespace) -> bool:
    """Whether a settings file or a flag sets ``data.freq`` for ``args.data`` (else it is inferred)."""
    return any("freq" in document.get("data", {}) for _, document in settings_layers(args, args.data))


def settings_from_args(args: argparse.Namespace, run_document: Path | None = None) -> Settings:
    """A job's settings, without looking at data: the run document (a job's "settings" input, the
    only way in on SageMaker), then ``--settings`` and flags (local and test use)."""
    layers = settings_layers(args)
    document = find_run_document(run_document) if run_document is not None else None
    if document is not None:
        layers.insert(0, (str(document), read_document(document)))
    return resolve(layers).settings


def processing_settings(prog: str, description: str | None, argv: list[str] | None,
                        run_document: Path) -> Settings:
    """A processing job's settings: the run document of its settings input, then its flags (local and
    test use; ``prog --help`` lists them)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_settings_arguments(parser)
    return settings_from_args(parser.parse_args(argv), run_document)


def find_run_document(folder: Path) -> Path | None:
    """The one JSON document in a job's settings input folder, or None when the job has none."""
    if not Path(folder).is_dir():
        return None
    found = sorted(p for p in Path(folder).rglob("*.json") if p.is_file())
    if len(found) != 1:
        raise SettingsError([f"expected one JSON document in the settings input, found {len(found)}"], str(folder))
    return found[0]
