"""SageMaker processing, training and tuning jobs, run for real as local processes.

Each job gets a fresh folder laid out like the container's ``/opt/ml`` (the entrypoints read it from
``FORECAST_MLOPS_ML_ROOT``, see pipeline_code/entrypoints/sagemaker_paths.py). Inputs come down from
(moto's) S3 and outputs go back up the way SageMaker lays them out, with the job's role:
  * processing: ``ClusterConfig.InstanceCount`` instances (``algo-1``..``algo-N``), each with its own
    folder and ``config/resourceconfig.json`` (``current_host``, ``hosts``); each
    ``ProcessingInputs[].S3Input`` (S3Prefix) into its ``LocalPath``: every object on every instance
    (FullyReplicated), or ShardedByS3Key: the objects in key order dealt round-robin, so each instance
    gets about 1/N of them (AWS documents the share, not the order); the command is
    ``ContainerEntrypoint + ContainerArguments`` with ``Environment``; each instance's
    ``Outputs[].S3Output`` ``LocalPath`` uploaded under the same ``S3Uri`` (a name two instances both
    write is overwritten by the last, listed in ``JobRunner.overwritten``)
    https://docs.aws.amazon.com/sagemaker/latest/dg/build-your-own-processing-container.html
    https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProcessingS3Input.html
  * training: channels to ``input/data/<channel>/``, ``input/config/hyperparameters.json`` (all values
    strings), the image's ENTRYPOINT with the argument ``train``; ``/opt/ml/model`` packed to
    ``<S3OutputPath>/<job>/output/model.tar.gz``; ``/opt/ml/output/failure`` becomes the FailureReason
    of a Failed job; metrics are read from the job's stdout with its ``MetricDefinitions`` regexes
    https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-running-container.html
    https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-output.html
  * tuning: one training job per candidate up to ``ResourceLimits.MaxNumberOfTrainingJobs`` (Grid
    enumerates the categorical grid; Random/Bayesian draw distinct candidates from the ranges with a
    seed derived from the job name), at most ``MaxParallelTrainingJobs`` (and `max_workers`) at once;
    ``BestTrainingJob`` is the completed job with the best objective.
    https://docs.aws.amazon.com/sagemaker/latest/dg/automatic-model-tuning-how-it-works.html
The image itself is not run: the command runs with this interpreter from the repository, which is
what the images contain (their ENTRYPOINT is read from containers/<image>/Dockerfile).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipeline_code.entrypoints.sagemaker_paths import ROOT_ENV

REPO = Path(__file__).resolve().parents[2]
ML = Path("/opt/ml")
# SageMaker adds this hyperparameter to every training job of a tuning job.
TUNING_OBJECTIVE_HP = "_tuning_objective_metric"


class JobFailed(Exception):
    """The job ended Failed; `reason` is its FailureReason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def local(root: Path, container_path: str) -> Path:
    """A container path under /opt/ml, inside this job's folder."""
    path = Path(container_path)
    if not path.is_relative_to(ML):
        raise JobFailed(f"ClientError: LocalPath {container_path} is outside /opt/ml")
    return root / path.relative_to(ML)


def image_entrypoint(image: str) -> list[str]:
    """The ENTRYPOINT of containers/<image>/Dockerfile (SageMaker appends "train" or "serve")."""
    text = (REPO / "containers" / image / "Dockerfile").read_text()
    return json.loads(re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, re.M).group(1))


def command(argv: list[str]) -> list[str]:
    """The container's python3 is this interpreter."""
    return [sys.executable if argv[0] in ("python3", "python") else argv[0], *argv[1:]]


@dataclass
class Transfer:
    """S3 up- and downloads made as the job's role (`acting()`: audit.Audit.acting_as that role)."""

    client: Callable[[], Any]
    acting: Callable[[], Any]

    def download_prefix(self, uri: str, target: Path) -> int:
        with self.acting():
            return self._download_prefix(uri, target)

    def list_prefix(self, uri: str) -> list[str]:
        """The keys under an S3 prefix, in key order (a job's input must hold at least one)."""
        with self.acting():
            bucket, prefix = s3_uri(uri)
            s3 = self.client()
            keys: list[str] = []
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            while True:
                page = s3.list_objects_v2(**kwargs)
                keys += [o["Key"] for o in page.get("Contents", [])]
                if not page.get("IsTruncated"):
                    break
                kwargs["ContinuationToken"] = page["NextContinuationToken"]
        if not keys:
            raise JobFailed(f"ClientError: no S3 objects found under S3 URL {uri}")
        return sorted(keys)

    def download_keys(self, uri: str, keys: list[str], target: Path) -> None:
        """These objects of the prefix `uri`, laid out below `target` as their keys are below it."""
        with self.acting():
            self._download_keys(uri, keys, target)

    def _download_prefix(self, uri: str, target: Path) -> int:
        keys = self.list_prefix(uri)
        self._download_keys(uri, keys, target)
        return len(keys)

    def _download_keys(self, uri: str, keys: list[str], target: Path) -> None:
        bucket, prefix = s3_uri(uri)
        s3 = self.client()
        for key in keys:
            relative = key[len(prefix):].lstrip("/") or key.rsplit("/", 1)[-1]
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        return len(keys)

    def upload_folder(self, folder: Path, uri: str) -> list[str]:
        """Every file below `folder` to the prefix `uri`; the keys written."""
        bucket, prefix = s3_uri(uri)
        written = []
        with self.acting():
            s3 = self.client()
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                key = f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}" if prefix else path.name
                s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
                written.append(key)
        return written

    def upload_bytes(self, uri: str, body: bytes) -> None:
        bucket, key = s3_uri(uri)
        with self.acting():
            self.client().put_object(Bucket=bucket, Key=key, Body=body)

    def read(self, uri: str) -> bytes:
        bucket, key = s3_uri(uri)
        with self.acting():
            return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def tar_gz(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return buf.getvalue()


@dataclass
class Outcome:
    """What a finished process left: exit code, stdout, stderr, seconds."""

    code: int
    stdout: str
    stderr: str
    seconds: float


def run_process(argv: list[str], env: dict[str, str], root: Path, log_name: str) -> Outcome:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # containers get no keys here
    full_env.update(env)
    full_env[ROOT_ENV] = str(root)
    started = time.perf_counter()
    proc = subprocess.run(command(argv), cwd=REPO, env=full_env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - started
    (root.parent / f"{log_name}.log").write_text(f"$ {' '.join(argv)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return Outcome(proc.returncode, proc.stdout, proc.stderr, seconds)


def failure_reason(outcome: Outcome, failure_file: Path | None) -> str:
    """SageMaker's FailureReason: the reason file if the container wrote one, else only the exit code
    (the logs are not read: a container that writes no reason tells the failure notification nothing)."""
    text = failure_file.read_text().strip() if failure_file and failure_file.is_file() else ""
    detail = text or f"See job logs for more information (exit code {outcome.code})"
    return f"AlgorithmError: {detail}"[:1024]


def metrics(stdout: str, definitions: list[dict[str, str]]) -> dict[str, float]:
    """Each metric's last value in the log, read with its own regex (as SageMaker does)."""
    found: dict[str, float] = {}
    for definition in definitions:
        values = re.findall(definition["Regex"], stdout)
        if values:
            value = values[-1]
            found[definition["Name"]] = float(value[0] if isinstance(value, tuple) else value)
    return found


# ---- the three job kinds ---------------------------------------------------------------------------
@dataclass
class JobRunner:
    """Runs jobs in folders under `workdir`; `transfer(role_arn)` gives S3 access as that role."""

    workdir: Path
    transfer: Callable[[str], Transfer]
    max_workers: int = 2
    timings: list[tuple[str, str, float]] = field(default_factory=list)  # (kind, job name, seconds)
    # processing job -> host -> input name -> the S3 keys that instance received
    received: dict[str, dict[str, dict[str, list[str]]]] = field(default_factory=dict)
    overwritten: list[str] = field(default_factory=list)  # output keys a second instance wrote again

    def _root(self, name: str) -> Path:
        root = self.workdir / name / "ml"
        root.mkdir(parents=True, exist_ok=False)
        return root

    def processing(self, name: str, params: dict[str, Any]) -> list[Outcome]:
        """Runs the job on each of its instances (at most `max_workers` at once); their outcomes."""
        count = int(params["ProcessingResources"]["ClusterConfig"].get("InstanceCount", 1))
        hosts = [f"algo-{i + 1}" for i in range(count)]
        io_ = self.transfer(params["RoleArn"])
        roots = {host: self._root(name if count == 1 else f"{name}/{host}") for host in hosts}
        for root, host in zip(roots.values(), hosts):
            config = root / "config"
            config.mkdir(parents=True)
            (config / "resourceconfig.json").write_text(json.dumps({"current_host": host, "hosts": hosts}))
        for item in params.get("ProcessingInputs", []):
            source = item["S3Input"]
            if source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise JobFailed(f"ClientError: S3DataType {source['S3DataType']} is not emulated")
            keys = io_.list_prefix(source["S3Uri"])
            sharded = source.get("S3DataDistributionType", "FullyReplicated") == "ShardedByS3Key"
            for index, (host, root) in enumerate(roots.items()):
                mine = keys[index::count] if sharded else keys
                self.received.setdefault(name, {}).setdefault(host, {})[item["InputName"]] = mine
                local(root, source["LocalPath"]).mkdir(parents=True, exist_ok=True)  # an instance may get none
                io_.download_keys(source["S3Uri"], mine, local(root, source["LocalPath"]))
        outputs = params.get("ProcessingOutputConfig", {}).get("Outputs", [])
        for root in roots.values():
            for out in outputs:
                local(root, out["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
        app = params["AppSpecification"]
        argv = list(app.get("ContainerEntrypoint") or []) + list(app.get("ContainerArguments") or [])
        env = dict(params.get("Environment") or {})

        def instance(host: str) -> Callable[[], Outcome]:
            return lambda: run_process(argv, env, roots[host], name if count == 1 else f"{name}-{host}")

        outcomes = run_in_parallel([instance(host) for host in hosts], self.max_workers)
        for host, outcome in zip(hosts, outcomes):
            self.timings.append(("processing", name if count == 1 else f"{name}/{host}", outcome.seconds))
            if outcome.code != 0:
                # A processing container's reason is its ExitMessage: the first 1 KB of output/message.
                # https://docs.aws.amazon.com/sagemaker/latest/dg/byoc-metadata.html
                raise JobFailed(failure_reason(outcome, roots[host] / "output" / "message"))
        written: dict[str, str] = {}
        for host, root in roots.items():  # S3UploadMode EndOfJob: every instance to the same S3Uri
            for out in outputs:
                for key in io_.upload_folder(local(root, out["S3Output"]["LocalPath"]), out["S3Output"]["S3Uri"]):
                    if key in written:
                        self.overwritten.append(f"{name}: {host} overwrote {key} of {written[key]}")
                    written[key] = host
        return outcomes

    def training(self, name: str, params: dict[str, Any]) -> tuple[Outcome, dict[str, float]]:
        """Returns the outcome and the metrics of `MetricDefinitions`; raises JobFailed."""
        root = self._root(name)
        io_ = self.transfer(params["RoleArn"])
        hyperparameters = params.get("HyperParameters", {})
        config = root / "input" / "config"
        config.mkdir(parents=True)
        (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
        channels = params.get("InputDataConfig", [])
        (config / "inputdataconfig.json").write_text(json.dumps(
            {c["ChannelName"]: {"ContentType": c.get("ContentType", ""), "TrainingInputMode": "File"} for c in channels}))
        (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
        for channel in channels:
            io_.download_prefix(channel["DataSource"]["S3DataSource"]["S3Uri"],
                                root / "input" / "data" / channel["ChannelName"])
        checkpoint = params.get("CheckpointConfig")
        if checkpoint:
            local(root, checkpoint.get("LocalPath", "/opt/ml/checkpoints")).mkdir(parents=True, exist_ok=True)
        for sub in ("model", "output/data"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        outcome = run_process([*image_entrypoint("training"), "train"], dict(params.get("Environment") or {}), root, name)
        self.timings.append(("training", name, outcome.seconds))
        if outcome.code != 0:
            raise JobFailed(failure_reason(outcome, root / "output" / "failure"))
        job_prefix = f"{params['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{name}/output"
        io_.upload_bytes(f"{job_prefix}/model.tar.gz", tar_gz(root / "model"))
        if any((root / "output" / "data").iterdir()):
            io_.upload_bytes(f"{job_prefix}/output.tar.gz", tar_gz(root / "output" / "data"))
        if checkpoint:
            io_.upload_folder(local(root, checkpoint.get("LocalPath", "/opt/ml/checkpoints")), checkpoint["S3Uri"])
        definitions = params.get("AlgorithmSpecification", {}).get("MetricDefinitions", [])
        return outcome, metrics(outcome.stdout, definitions)


# ---- tuning candidates ----------------------------------------------------------------------------
def candidates(config: dict[str, Any], seed: str) -> list[dict[str, str]]:
    """The training jobs' tuned hyperparameters, in launch order, at most MaxNumberOfTrainingJobs."""
    ranges = config.get("ParameterRanges", {})
    strategy = config.get("Strategy", "Bayesian")
    limit = config.get("ResourceLimits", {}).get("MaxNumberOfTrainingJobs")
    axes: list[tuple[str, list[str]]] = [(r["Name"], [str(v) for v in r["Values"]])
                                         for r in ranges.get("CategoricalParameterRanges", [])]
    if strategy == "Grid":
        if ranges.get("IntegerParameterRanges") or ranges.get("ContinuousParameterRanges"):
            raise ValueError("Grid search supports categorical parameter ranges only")
        grid = [dict(zip([n for n, _ in axes], combo)) for combo in itertools.product(*[v for _, v in axes])]
        return grid[:limit] if limit else grid
    for r in ranges.get("IntegerParameterRanges", []):
        axes.append((r["Name"], [str(v) for v in range(int(r["MinValue"]), int(r["MaxValue"]) + 1)]))
    if ranges.get("ContinuousParameterRanges"):
        raise ValueError("continuous parameter ranges are not emulated")
    grid = [dict(zip([n for n, _ in axes], combo)) for combo in itertools.product(*[v for _, v in axes])]
    rng = random.Random(int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16))
    rng.shuffle(grid)  # distinct candidates in a seeded order (a stand-in for the search strategy)
    return grid[:limit or len(grid)]


def training_job_name(tuning_name: str, index: int) -> str:
    """SageMaker's naming of a tuning job's training jobs: <tuning job>-<NNN>-<8 hex>."""
    return f"{tuning_name}-{index:03d}-{hashlib.sha256(f'{tuning_name}{index}'.encode()).hexdigest()[:8]}"


def run_in_parallel(tasks: list[Callable[[], Any]], workers: int) -> list[Any]:
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda task: task(), tasks))
