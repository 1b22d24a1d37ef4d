"""The emulated cloud run of the bundled weekly data, upload to served forecast, and where its time goes.

Synthesizes the app (small tuning job, as the tests do), then in the emulated cloud (tests/cloud/,
docs/emulated-cloud.md) uploads the bundled series with its run document, waits for the training
pipeline and the deploy state machine, and asks the API for a forecast. Reports the wall time of each
part, each state (from the execution histories) and each SageMaker job (its process), in
bench/results/cloud_run.md. With ``--panel``: the emulated cloud tests' panel (six monthly series,
the fit sharded over two instances), in bench/results/cloud_run_panel.md. With ``--default-search``: the
weekly run with the engine's default search (every default family and combination: one tuning trial per
family), checked against the local pipeline's forecast for the same data and document, in
bench/results/cloud_run_default_search.md.

    python -m bench.cloud_run_bench [--panel | --default-search]
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from datetime import datetime

import boto3
import pytest

from bench.machine import RESULTS, header
from pipeline_code.engine.settings import Settings
from pipeline_code.pipeline import layout
from pipeline_code.pipeline.trials import SELECTION_FILE
from stacks.settings import TuningSettings
from tests.cloud.scenario import upload_and_serve
from tests.cloud.series import PANEL, WEEKLY, local_run
from tests.cloud.stack import synthesize
from tests.cloud.world import CloudWorld

COMMAND = "python -m bench.cloud_run_bench"
# The default app's tuning job (the stack's `forecast-mlops:tuning` defaults).
PARALLEL = TuningSettings().max_parallel_jobs


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


WEEKLY_DOCUMENT = (f"CV window {WEEKLY['settings']['cv']['window']}, step {WEEKLY['settings']['cv']['step']}, "
                   f"{WEEKLY['settings']['gate']['eval_origins']} evaluation origins")
DEFAULT_SEARCH = {**WEEKLY, "settings": {k: v for k, v in WEEKLY["settings"].items() if k != "search"}}
# flag: (the data, its description, the results file, its run document's summary)
RUNS = {
    "": (WEEKLY, "bundled weekly data", "cloud_run.md",
         f"{WEEKLY_DOCUMENT}, search: two harmonic candidates"),
    "--panel": (PANEL, "a panel of six monthly series, the fit sharded over two instances", "cloud_run_panel.md",
                f"series {PANEL['settings']['series']}"),
    "--default-search": (DEFAULT_SEARCH, "bundled weekly data, the engine's default search", "cloud_run_default_search.md",
                         f"{WEEKLY_DOCUMENT}, search: the engine's defaults"),
}


def tuning_job(data: dict) -> str:
    """What the tuning job ran: a Grid over one series' families, or a panel's histories and scales."""
    panel = "series" in data["settings"]
    trials = Settings().merged(data["settings"], "run document").tuning_grid(panel=panel)
    jobs = "1 training job" if trials == 1 else f"{trials} training jobs"
    each = "one history and scale each" if panel else "one family each"
    return f"tuning job: a Grid of {jobs} ({each}), {min(PARALLEL, trials)} at once"


def same_as_local(world: CloudWorld, data: dict, run_id: str) -> list[str]:
    """The served model and whether the local pipeline forecasts the same for the same data and document."""
    local = local_run(data)
    workdir = local.run_dir.parents[1]
    same = world.read(f"forecasts/{run_id}/forecast.csv") == (workdir / "forecasts" / local.run_id / "forecast.csv").read_bytes()
    selection = json.loads(world.read(layout.run_key(run_id, layout.SELECTION_REPORT + SELECTION_FILE)))
    return ["", f"Served: {json.dumps(selection['hyperparameters'])} ({selection['serve']}, from "
            f"{selection['trials']} trials). The local pipeline on the same data and document "
            f"{'writes the same forecast file, byte for byte' if same else 'writes a DIFFERENT forecast file'}."]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    flag = next((a for a in args if a in RUNS), "")
    data, title, results, document = RUNS[flag]
    command = " ".join([COMMAND, flag]).strip()
    started = time.perf_counter()
    stack = synthesize()
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
        compared = same_as_local(world, data, run.run_id) if flag == "--default-search" else []
    lines = [header(f"Emulated cloud run: {title}, upload to served forecast", command), ""]
    lines += [
        f"Run document: {document}; {tuning_job(data)}. Each SageMaker job is a local process (one per "
        "instance); moto runs the state machines.", *compared, "",
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
              f"(training jobs run {PARALLEL} at a time)."]
    (RESULTS / results).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
