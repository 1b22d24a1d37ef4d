"""The `.sync` SageMaker jobs of moto's state machine interpreter, played for real (tests/cloud/jobs.py).

`SageMakerJobs` is the job world that tests/integration/aws_fakes.py's `.sync` task calls: after the
task created the job in moto, `run` runs it and writes the outcome back to moto's job record (status,
FailureReason, metrics, the tuning job's BestTrainingJob), so the `.sync` result and every later
Describe* call read what SageMaker would report.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import boto3
from moto.sagemaker import models as sm_models

from tests.cloud.jobs import (
    TUNING_OBJECTIVE_HP,
    JobFailed,
    JobRunner,
    candidates,
    run_in_parallel,
    training_job_name,
)
from tests.cloud.policy import ACCOUNT, REGION


def backend():
    return sm_models.sagemaker_backends[ACCOUNT][REGION]


@dataclass
class TrainingResult:
    name: str
    tuned: dict[str, str]
    objective: float | None
    failure: str | None


@dataclass
class SageMakerJobs:
    """The job world of aws_fakes' `.sync` task (same interface as aws_fakes.JobWorld)."""

    runner: JobRunner
    # Runs harness-internal calls (SageMaker's own bookkeeping) without a principal.
    as_service: Callable[[], Any]
    fail: set[str] = field(default_factory=set)  # job kinds forced to fail ("processing", "tuning")
    fail_trials: set[str] = field(default_factory=set)  # a tuning job's trials with any of these values fail
    throttle_once_after_create: set[str] = field(default_factory=set)
    created: list[tuple[str, str]] = field(default_factory=list)  # (kind, job name)
    inputs: dict[str, list[str]] = field(default_factory=dict)  # processing job -> input names
    trials: dict[str, list[TrainingResult]] = field(default_factory=dict)  # tuning job -> its training jobs
    lock: threading.Lock = field(default_factory=threading.Lock)

    def kind(self, action: str, params: dict[str, Any]) -> str:
        return {"createHyperParameterTuningJob": "tuning", "createTrainingJob": "training"}.get(action, "processing")

    def run(self, kind: str, name: str, params: dict[str, Any]) -> None:
        try:
            if kind == "processing":
                self.inputs[name] = [i["InputName"] for i in params.get("ProcessingInputs", [])]
                self.runner.processing(name, params)
            elif kind == "training":
                self._training(name, params)
            else:
                self._tuning(name, params)
        except JobFailed as failed:
            self.fail_job(kind, name, failed.reason)
            raise

    def fail_job(self, kind: str, name: str, reason: str = "ClientError: failed on purpose by the test") -> None:
        b = backend()
        if kind == "tuning":
            job = b.hyper_parameter_tuning_jobs[name]
            job.hyper_parameter_tuning_job_status = "Failed"
        elif kind == "training":
            job = b.training_jobs[name]
            job.training_job_status = job.secondary_status = "Failed"
        else:
            job = b.processing_jobs[name]
            job.processing_job_status = "Failed"
            job.exit_message = reason
        job.failure_reason = reason

    # ---- training -----------------------------------------------------------------------------------
    def _training(self, name: str, params: dict[str, Any]) -> dict[str, float]:
        metric_definitions = copy.deepcopy(params.get("AlgorithmSpecification", {}).get("MetricDefinitions", []))
        _, found = self.runner.training(name, params)
        job = backend().training_jobs[name]
        # moto replaces MetricDefinitions with its own; SageMaker keeps the job's.
        job.algorithm_specification["MetricDefinitions"] = metric_definitions
        job.final_metric_data_list = [{"MetricName": k, "Value": v, "Timestamp": sm_models.utcnow()}
                                      for k, v in found.items()]
        return found

    # ---- tuning ------------------------------------------------------------------------------------
    def _tuning(self, name: str, params: dict[str, Any]) -> None:
        config = params["HyperParameterTuningJobConfig"]
        definition = params["TrainingJobDefinition"]
        objective = config["HyperParameterTuningJobObjective"]
        spec = definition["AlgorithmSpecification"]
        names = [m["Name"] for m in spec.get("MetricDefinitions", [])]
        if objective["MetricName"] not in names:
            raise JobFailed(f"ClientError: objective metric {objective['MetricName']} has no MetricDefinition")
        try:
            trials = candidates(config, seed=name)
        except ValueError as err:
            raise JobFailed(f"ClientError: {err}") from None
        limits = config.get("ResourceLimits", {})

        def trial(index: int, tuned: dict[str, str]) -> Callable[[], TrainingResult]:
            def go() -> TrainingResult:
                job = training_job_name(name, index + 1)
                job_params = self._training_params(job, definition, tuned, objective["MetricName"])
                with self.as_service():
                    boto3.client("sagemaker", region_name=REGION).create_training_job(**copy.deepcopy(job_params))
                try:
                    if self.fail_trials & set(tuned.values()):
                        raise JobFailed("AlgorithmError: failed on purpose by the test")
                    found = self._training(job, job_params)
                except JobFailed as failed:
                    self.fail_job("training", job, failed.reason)
                    return TrainingResult(job, tuned, None, failed.reason)
                value = found.get(objective["MetricName"])
                return TrainingResult(job, tuned, value, None if value is not None else "objective metric not found")

            return go

        workers = min(limits.get("MaxParallelTrainingJobs", 1), self.runner.max_workers)
        results = run_in_parallel([trial(i, t) for i, t in enumerate(trials)], workers)
        self.trials[name] = results
        job = backend().hyper_parameter_tuning_jobs[name]
        done = [r for r in results if r.objective is not None]
        job.training_job_status_counters = {
            "Completed": sum(r.failure is None for r in results), "InProgress": 0, "RetryableError": 0,
            "NonRetryableError": sum(r.failure is not None and r.objective is None for r in results), "Stopped": 0}
        job.objective_status_counters = {"Succeeded": len(done), "Pending": 0, "Failed": len(results) - len(done)}
        if not done:
            first = next((r.failure for r in results if r.failure), "no training job")
            raise JobFailed(f"All training jobs failed. First failure: {first}"[:1024])
        sign = -1 if objective["Type"] == "Maximize" else 1
        best = min(done, key=lambda r: sign * r.objective)
        training = backend().training_jobs[best.name]
        job.best_training_job = {
            "TrainingJobName": best.name,
            "TrainingJobArn": training.arn,
            "TuningJobName": name,
            "CreationTime": training.creation_time,
            "TrainingStartTime": training.training_start_time,
            "TrainingEndTime": training.training_end_time,
            "TrainingJobStatus": "Completed",
            "TunedHyperParameters": best.tuned,
            "FinalHyperParameterTuningJobObjectiveMetric": {
                "Type": objective["Type"], "MetricName": objective["MetricName"], "Value": best.objective},
            "ObjectiveStatus": "Succeeded",
        }
        job.OverallBestTrainingJob = job.best_training_job

    @staticmethod
    def _training_params(job: str, definition: dict[str, Any], tuned: dict[str, str], objective: str) -> dict[str, Any]:
        """The CreateTrainingJob SageMaker makes for one candidate of a tuning job."""
        params: dict[str, Any] = {
            "TrainingJobName": job,
            "HyperParameters": {**definition.get("StaticHyperParameters", {}), **tuned, TUNING_OBJECTIVE_HP: objective},
            "AlgorithmSpecification": copy.deepcopy(definition["AlgorithmSpecification"]),
            "RoleArn": definition["RoleArn"],
            "OutputDataConfig": definition["OutputDataConfig"],
            "ResourceConfig": definition["ResourceConfig"],
            "StoppingCondition": definition["StoppingCondition"],
        }
        for key in ("InputDataConfig", "EnableManagedSpotTraining", "Environment", "VpcConfig"):
            if key in definition:
                params[key] = definition[key]
        if "CheckpointConfig" in definition:  # each training job checkpoints under its own name
            checkpoint = dict(definition["CheckpointConfig"])
            checkpoint["S3Uri"] = f"{checkpoint['S3Uri'].rstrip('/')}/{job}"
            params["CheckpointConfig"] = checkpoint
        return params
