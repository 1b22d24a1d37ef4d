"""Run every benchmark in turn (each writes its table under bench/results/): `make bench`.

Each entry is a module and its arguments: every command of the README's benchmark table, and the
panel processing, panel pipeline (`--items 5`, as its committed table), panel scale, serving panel,
soak, rows and panel cloud run benches. The calibration validation reads the selection validation's
cache, so it runs after it. Variant tables (e.g. `selection_validation_ces.md`, `--extra-family ces`)
and tables merged from several runs (`accuracy.md`) are not repeated here: their headers name their
commands.
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS: tuple[tuple[str, ...], ...] = (
    ("tuning_bench",),
    ("pipeline_bench",),
    ("accuracy_bench",),
    ("selection_validation_bench",),
    ("calibration_validation_bench",),
    ("serving_bench",),
    ("synth_bench",),
    ("soak_bench",),
    ("cloud_run_bench",),
    ("cloud_run_bench", "--default-search"),
    ("cloud_run_bench", "--panel"),
    ("ops_bench",),
    ("rows_bench",),
    ("panel_processing_bench",),
    ("panel_pipeline_bench", "--items", "5"),
    ("panel_accuracy_bench",),
    ("panel_validation_bench",),
    ("panel_validation_bench", "--tuned", "seasonal_naive,ets,theta,global_ar",
     "seasonal_naive,ets,theta,global_ar,global_ar_drift", "--name", "panel_validation_tuned"),
    ("panel_scale_bench",),
    ("serving_panel_bench",),
    ("ci_bench",),
)


def main() -> int:
    failed = []
    for name, *args in BENCHMARKS:
        command = " ".join([f"bench.{name}", *args])
        print(f"== {command}", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}", *args]).returncode:
            failed.append(command)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
