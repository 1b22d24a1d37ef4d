"""A panel fitted in shards and merged back into one model (the cloud's sharded fit; docs/panel.md).

Processing writes each part of a panel as ``series.instances`` shard files, the same names under
``train/`` and ``test/`` (``panel_stages.SHARD_FILE``), so shard k of both parts holds the same items.
The sharded fit is one SageMaker processing job on that many instances: each instance receives some
of the ``train/`` files (ShardedByS3Key) and every ``test/`` file, fits the items of its own files
(``shard_parts`` stages them with their test twins) and writes its partial panel under its host name.
Evaluation merges the partial panels into the one model it evaluates and registers (``merged_shards``).
``fit_in_shards`` does the same on one machine, so the local pipeline and the cloud fit alike (a
panel's pooled calibration errors are its shard's; a pooled family's statistics are the whole
panel's: each instance also receives every train file, fully replicated, to sum them).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

from pipeline_code.engine.core.panel_artifact import PANEL_JSON, merge_panels
from pipeline_code.engine.settings import Settings

T = TypeVar("T")


class ShardError(ValueError):
    """The shards' inputs are not what processing writes (names the file)."""


def shard_files(train: Path) -> list[Path]:
    """The shard files under ``train`` that hold at least one row (a shard no item fell into is
    written header-only)."""
    return sorted(p for p in Path(train).rglob("*.csv") if p.is_file() and _has_rows(p))


def _has_rows(path: Path) -> bool:
    with path.open("rb") as handle:
        return sum(1 for line, _ in zip(handle, range(2)) if line.strip()) > 1


def stage(files: list[Path], train: Path, test: Path, work: Path) -> Path:
    """``work/train/`` and ``work/test/`` holding these train files of ``train`` and the test files of
    the same names from ``test``; returns ``work``."""
    for part in ("train", "test"):
        (work / part).mkdir(parents=True, exist_ok=True)
    for path in files:
        twin = Path(test) / path.relative_to(train)
        if not twin.is_file():
            raise ShardError(f"shard {path.name}: no test file of the same name under test/ "
                             "(processing writes each shard under train/ and test/)")
        shutil.copyfile(path, work / "train" / path.name)
        shutil.copyfile(twin, work / "test" / path.name)
    return work


def shard_parts(train: Path, test: Path, work: Path) -> Path | None:
    """This instance's shard staged under ``work`` (see `stage`); None when it received no shard
    file with rows (more instances than files, or an empty shard)."""
    files = shard_files(train)
    return stage(files, train, test, work) if files else None


def shard_folders(folder: Path) -> list[Path]:
    """The partial panels under ``folder`` (one folder per instance, each with its ``panel.json``),
    ordered by their first item: which instance fitted which shard file is SageMaker's choice, and
    the merged model must not depend on it."""
    folders = [p.parent for p in Path(folder).glob(f"*/{PANEL_JSON}")]
    return sorted(folders, key=lambda path: json.loads((path / PANEL_JSON).read_text())["items"][:1])


def merged_shards(folder: Path, out: Path) -> Path | None:
    """The shards under ``folder`` merged into one panel in ``out``; None when ``folder`` holds no
    shards (one series, or a panel fitted as one model)."""
    shards = shard_folders(folder)
    if not shards or (Path(folder) / PANEL_JSON).is_file():
        return None
    return merge_panels(shards, out)


def fit_in_shards(train: Path, test: Path, out: Path, fit: Callable[[Path, Path, Path, str], T]) -> list[T]:
    """The sharded fit on one machine, as the cloud runs it: ``fit(train, test, model_dir, shard)`` on
    each shard file's items on their own (``shard``: the file's stem), then the merge into ``out``;
    what each fit returned, in shard order. With one shard file the fit writes straight into ``out``."""
    files = shard_files(train)
    if len(files) <= 1:
        return [fit(Path(train), Path(test), Path(out), files[0].stem if files else "")]
    results = []
    with tempfile.TemporaryDirectory(prefix="shards-") as tmp:
        for index, path in enumerate(files):
            staged = stage([path], train, test, Path(tmp) / "inputs" / str(index))
            results.append(fit(staged / "train", staged / "test", Path(tmp) / "fits" / str(index), path.stem))
        merged_shards(Path(tmp) / "fits", Path(out))
    return results


def fit_panel_in_shards(train: Path, test: Path, hyperparameters: dict[str, Any], model_dir: Path,
                        settings: Settings, report_dir: Path | None = None, *, jobs: int = 1,
                        whole: tuple[Path, Path] | None = None) -> list[dict[str, Any]]:
    """A panel's final model with these global choices, fitted shard by shard (``fit_in_shards`` over
    ``panel_stages.train_panel``): what the cloud's sharded fit computes, so the local pipeline and
    each instance call this. Each shard's fit report goes to ``report_dir/<shard>/`` (several shards)
    or ``report_dir``; returns each shard's CV metrics.

    ``whole``: the train and test folders of the whole panel (default ``train`` and ``test``). When it
    holds more than one shard and a family is pooled (``global_ar``), every shard's fit sums the whole
    panel's statistics, so all shards shrink toward one pooled model: a reduce before the map, read once here."""
    from pipeline_code.engine.panel_fit import pooled_families
    from pipeline_code.pipeline.panel_stages import read_processed_panel, train_panel

    whole_train, whole_test = whole or (train, test)
    pooled = None
    if len(shard_files(whole_train)) > 1 and pooled_families(settings):
        pooled = read_processed_panel(whole_train, whole_test, freq=settings.data.freq)

    def fit(shard_train: Path, shard_test: Path, out: Path, shard: str) -> dict[str, Any]:
        reports = None if report_dir is None else (report_dir / shard if len(shard_files(train)) > 1 else report_dir)
        return train_panel(shard_train, shard_test, hyperparameters, out, settings, reports, jobs=jobs, whole=pooled)

    return fit_in_shards(train, test, model_dir, fit)
