"""The emulated cloud run of the bundled weekly data, upload to served forecast, and where its time goes.

Synthesizes the app (small tuning job, as the tests do), then in the emulated cloud (tests/cloud/,
docs/emulated-cloud.md) uploads the bundled series with its run document, waits for the training
pipeline and the deploy state machine, and asks the API for a forecast. Reports the wall time of each
part, each state (from the execution histories) and each SageMaker job (its process), in
bench/results/cloud_run.md. With ``--panel``: the emulated cloud tests' panel (six monthly series,
the fit sharded over two instances), in bench/results/cloud_run_panel.md.

    python -m bench.cloud_run_bench [--panel]
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from datetime import datetime

import boto3
import pytest

from bench.machine import RESULTS, header
from tests.cloud.scenario import upload_and_serve
from tests.cloud.series import PANEL, TUNING, WEEKLY
from tests.cloud.stack import synthesize
from tests.cloud.world import CloudWorld

COMMAND = "python -m bench.cloud_run_bench"


def state_seconds(execution_arn: str) -> list[tuple[str, float]]:
    """(state, seconds) from entering to leaving each state, in order."""
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    entered: dict[str, datetime] = {}
    out = []
    for e in events:
        if "stateEnteredEventDetails" in e:
            entered[e["stateEnteredEventDetails"]["name"]] = e["timestamp"]
        elif "stateExitedEventDetails" in e:
            name = e["stateExitedEventDetails"]["name"]
            if name in entered:
                out.append((name, (e["timestamp"] - entered.pop(name)).total_seconds()))
    return out


# (the data's description, its run document's summary, the results file) per run.
RUNS = {
    False: (WEEKLY, "bundled weekly data", "cloud_run.md",
            f"CV window {WEEKLY['settings']['cv']['window']}, step {WEEKLY['settings']['cv']['step']}, "
            f"{WEEKLY['settings']['gate']['eval_origins']} evaluation origins"),
    True: (PANEL, "a panel of six monthly series, the fit sharded over two instances", "cloud_run_panel.md",
           f"series {PANEL['settings']['series']}"),
}


def main(argv: list[str] | None = None) -> int:
    panel = "--panel" in (sys.argv[1:] if argv is None else argv)
    data, title, results, document = RUNS[panel]
    command = COMMAND + (" --panel" if panel else "")
    started = time.perf_counter()
    stack = synthesize({"tuning": TUNING})
    synth_s = time.perf_counter() - started
    with pytest.MonkeyPatch.context() as mp, CloudWorld(stack, mp) as world:
        run = upload_and_serve(world, data)
        if run.problems():
            print("\n".join(run.problems()), file=sys.stderr)
            return 1
        states = {e["name"]: (e["machine"].rsplit(":", 1)[-1], state_seconds(e["executionArn"])) for e in run.executions}
        jobs = list(world.jobs.runner.timings)
        pipeline = run.pipeline
        deploys = run.deploys
        total = run.seconds
        pipeline_s = (pipeline["stopDate"] - pipeline["startDate"]).total_seconds()
        deploy_s = sum((d["stopDate"] - d["startDate"]).total_seconds() for d in deploys)
    lines = [header(f"Emulated cloud run: {title}, upload to served forecast", command), ""]
    lines += [
        f"Run document: {document}; tuning job: at most {TUNING['max_jobs']} training "
        f"jobs (one per candidate), {TUNING['max_parallel_jobs']} in parallel. Each SageMaker job is a local process (one per "
        "instance); moto runs the state machines.", "",
        "| part | seconds |", "|---|---:|",
        f"| `cdk synth` (once per session in the tests) | {synth_s:.1f} |",
        f"| upload to served forecast (total) | {total:.1f} |",
        f"| training pipeline execution | {pipeline_s:.1f} |",
        f"| deploy execution(s) | {deploy_s:.1f} |", "",
        "## Per state (entered to exited; a `.sync` job's state includes the job)", "",
        "| state machine | state | seconds |", "|---|---|---:|",
    ]
    by_state: dict[tuple[str, str], float] = defaultdict(float)
    for machine, seconds in states.values():
        for name, s in seconds:
            by_state[(machine, name)] += s
    for (machine, name), s in sorted(by_state.items(), key=lambda kv: -kv[1]):
        if s >= 0.05:
            lines.append(f"| {machine} | {name} | {s:.2f} |")
    lines += ["", "## Per SageMaker job (the container process)", "", "| kind | job | seconds |", "|---|---|---:|"]
    lines += [f"| {kind} | {name} | {s:.1f} |" for kind, name, s in jobs]
    lines += ["", f"Jobs: {sum(s for _, _, s in jobs):.1f} s of process time in {len(jobs)} jobs "
              f"(training jobs run {TUNING['max_parallel_jobs']} at a time)."]
    (RESULTS / results).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
