"""Run every benchmark in turn (each writes its table under bench/results/): `make bench`."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = ("tuning_bench", "pipeline_bench", "accuracy_bench", "serving_bench", "synth_bench", "soak_bench",
              "cloud_run_bench", "ops_bench", "rows_bench", "panel_accuracy_bench", "panel_validation_bench",
              "panel_scale_bench", "serving_panel_bench", "ci_bench")


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        print(f"== bench.{name}", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}"]).returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
