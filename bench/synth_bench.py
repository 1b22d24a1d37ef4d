"""Synth benchmark: `cdk synth` of the whole app with the pinned CLI (aws-cdk@2.1148.1).

Runs the synth a few times (cdk-nag AwsSolutions runs inside every synth), reports the median wall time,
counts resources, and counts cdk-nag / cfn-lint / checkov findings and acknowledgements on the last
assembly. Writes bench/results/synth.md. Goal: synth <= 20 s on 2 cores.

    python -m bench.synth_bench [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.machine import RESULTS, header
from tests.infra import findings, synth

GOAL_SECONDS = 20.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    synth.ensure_node_modules()
    times: list[float] = []
    outdir = Path(tempfile.mkdtemp(prefix="synth-bench-"))
    try:
        for i in range(args.runs):
            run_dir = outdir / f"run{i}"
            start = time.perf_counter()
            result = synth.cdk_synth(run_dir)
            times.append(time.perf_counter() - start)
            if result.returncode != 0:
                raise SystemExit(f"cdk synth failed:\n{result.stderr[-4000:]}")
            print(f"run {i + 1}: {times[-1]:.1f} s")
        last = outdir / f"run{args.runs - 1}"
        template_path = last / f"{synth.STACK}.template.json"
        template = json.loads(template_path.read_text())
        types = Counter(r["Type"] for r in template["Resources"].values())
        nag = findings.nag_violations(last)
        acks = findings.nag_acknowledgements(last)
        lint = findings.cfn_lint(template_path)
        lint_ignored = findings.cfn_lint_ignored(template)
        checkov = findings.checkov(template_path)
        ck = checkov["summary"]
    finally:
        shutil.rmtree(outdir, ignore_errors=True)

    median = statistics.median(times)
    lines = [
        header("CDK synth", f"python -m bench.synth_bench --runs {args.runs}"),
        "- synth command: `node_modules/.bin/cdk synth --no-notices --quiet --output <tmp>` "
        "(aws-cdk@2.1148.1, aws-cdk-lib 2.275.0, cdk-nag 3.0.2 AwsSolutions inside the synth)",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| synth wall time, median of {args.runs} | {median:.1f} s (runs: {', '.join(f'{t:.1f}' for t in times)}) |",
        f"| goal | <= {GOAL_SECONDS:.0f} s: {'met' if median <= GOAL_SECONDS else 'NOT met'} |",
        f"| CloudFormation resources | {sum(types.values())} |",
        f"| cdk-nag AwsSolutions unacknowledged findings | {len(nag)} |",
        f"| cdk-nag acknowledgements (each with a reason in code) | {len(acks)} |",
        f"| cfn-lint findings | {len(lint)} |",
        f"| cfn-lint per-resource ignores (W3005, CDK's redundant DependsOn) | {len(lint_ignored)} |",
        f"| checkov {findings.CHECKOV_VERSION}: passed / failed / skipped with reason | "
        f"{ck['passed']} / {ck['failed']} / {ck['skipped']} |",
        "",
        "Resources by type:",
        "",
        "| type | count |",
        "| --- | --- |",
        *[f"| {t} | {n} |" for t, n in sorted(types.items(), key=lambda kv: (-kv[1], kv[0]))],
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "synth.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
