"""Typed settings of the CDK app: one frozen dataclass, loaded from the CDK context and validated.

The run's settings are not declared here: ``run`` is the deployment's layer of the run document
(`pipeline_code.engine.settings`, the engine's schema), so a platform engineer deploys a monthly or a
daily pipeline by context alone, and the deployed pipeline and the local runner agree without
repeating numbers. The starter Lambda merges it with an uploaded settings file and the data.

Context (cdk.json or `-c`):
  * ``forecast-mlops``: an object whose keys are the field names below (nested values as JSON objects);
  * ``forecast-mlops:<field>``: one field given as a string on the command line, e.g.
    ``cdk deploy -c forecast-mlops:approval_mode=manual -c forecast-mlops:alarm_email=ops@example.com``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, Mapping

from pipeline_code.engine.settings import Settings, SettingsError

CONTEXT_KEY = "forecast-mlops"

# SageMaker names: at most 63 characters, except hyperparameter tuning jobs (32).
SAGEMAKER_NAME_MAX = 63
HPO_NAME_MAX = 32
# The run id (= Step Functions execution name) the starter Lambda derives from the S3 key and version id.
RUN_ID_MAX = 20
# Transient-error retries per run are bounded so the counter renders as one digit in job names.
MAX_TRANSIENT_RETRIES = 9

ApprovalMode = Literal["automatic", "manual"]
_SERVERLESS_MEMORY = (1024, 2048, 3072, 4096, 5120, 6144)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LOWER_NAME = re.compile(r"^[a-z0-9](-*[a-z0-9])*$")


@dataclass(frozen=True, kw_only=True)
class TuningSettings:
    """The SageMaker hyperparameter tuning job.

    Defaults a new account can run: its per-instance-type training quotas are often 0 to 4 and its spot
    training quotas 0, so 2 parallel on-demand jobs. Raise both (and the quotas: `forecast-mlops doctor`
    says which) for faster tuning.
    """

    max_parallel_jobs: int = 2
    use_spot: bool = False
    # Per training job: run time limit and, with spot, the total wait (>= run time).
    max_runtime_seconds: int = 3600
    max_wait_seconds: int = 7200


@dataclass(frozen=True, kw_only=True)
class InfraSettings:
    """Everything the stack needs to know; the defaults deploy the bundled weekly series' pipeline."""

    stack_name: str = "ForecastMlops"
    # Lower-case prefix of every SageMaker resource the pipeline creates (IAM is scoped to it).
    resource_prefix: str = "fcst"
    # The one stable serverless endpoint.
    endpoint_name: str = "forecast-mlops"

    # The deployment's layer of the run document (sections and keys of `pipeline_code.engine.settings`);
    # what no layer sets is inferred from each upload (docs/design.md, "The run document").
    run: Mapping[str, Any] = field(default_factory=dict)

    tuning: TuningSettings = field(default_factory=TuningSettings)

    processing_instance_type: str = "ml.m5.large"
    training_instance_type: str = "ml.m5.large"
    volume_size_gb: int = 30
    processing_max_runtime_seconds: int = 3600

    serverless_memory_mb: int = 2048
    serverless_max_concurrency: int = 5

    # Create and set the account-level API Gateway CloudWatch Logs role (needed for access logging;
    # one per account and region). False where the account manages that role centrally.
    api_gateway_cloudwatch_role: bool = True
    # API Gateway usage plan.
    api_rate_limit: float = 10.0
    api_burst_limit: int = 20
    api_quota_per_day: int = 10000

    # automatic: a candidate past the gate is Approved and deployed; manual: every candidate waits
    # as PendingManualApproval (approving it in the registry deploys it: stacks/deploy_definition.py).
    approval_mode: ApprovalMode = "automatic"
    alarm_email: str | None = None

    # Retries of throttling / transient service errors per execution (all tasks together; stacks/asl.py),
    # the first after `retry_wait_seconds`, each later one after twice the wait before it.
    max_transient_retries: int = 6
    retry_wait_seconds: int = 5
    # Seconds between DescribeEndpoint polls while the endpoint is Creating/Updating/Deleting, and the
    # most polls one deployment makes before it gives up (30 s x 120 = 1 hour).
    endpoint_poll_seconds: int = 30
    endpoint_max_polls: int = 120
    # Seconds an upload waits in the queue before the starter looks again (a run is in progress).
    queue_retry_seconds: int = 300

    # S3 lifecycle: runs/ objects move to Infrequent Access after this many days ...
    runs_infrequent_access_days: int = 30
    # ... and expire after this many (None: keep; the approved model's artifact lives under runs/).
    run_retention_days: int | None = None
    # Old object versions expire after this many days.
    noncurrent_version_days: int = 30
    log_retention_days: int = 90
    # Keep the data bucket (and its access-log bucket) on `cdk destroy`.
    retain_data: bool = True
    # Public Powertools for AWS Lambda (Python) v3 layer version (same number in every region).
    powertools_layer_version: int = 27

    # ---- derived -------------------------------------------------------------------------------
    @property
    def model_package_group_prefix(self) -> str:
        return f"{self.resource_prefix}-models"

    @property
    def tag_key(self) -> str:
        return "forecast-mlops:stack"

    def preflight(self) -> dict[str, Any]:
        """What `forecast-mlops doctor` checks against the account (the stack's PreflightSettings output)."""
        return {
            "training_instance_type": self.training_instance_type,
            "processing_instance_type": self.processing_instance_type,
            "max_parallel_jobs": self.tuning.max_parallel_jobs,
            "use_spot": self.tuning.use_spot,
            "serverless_max_concurrency": self.serverless_max_concurrency,
            "api_gateway_cloudwatch_role": self.api_gateway_cloudwatch_role,
            "series_instances": self.run_defaults.series.instances,
        }

    @property
    def run_defaults(self) -> Settings:
        """The engine's defaults under the deployment's layer (what applies before any upload)."""
        return Settings.from_dict(self.run, f"{CONTEXT_KEY}.run")

    @property
    def max_periods(self) -> int:
        """The largest `periods` a request may ask for: the API model, the Lambda and the endpoint."""
        return self.run_defaults.serve.max_periods

    # ---- loading -------------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> "InfraSettings":
        known = {f.name: f for f in fields(cls)}
        unknown = set(raw) - set(known)
        if unknown:
            raise ValueError(f"unknown forecast-mlops setting(s): {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if name == "tuning":
                values[name] = _nested(TuningSettings, value)
            elif name == "run":
                if not isinstance(value, Mapping):
                    raise ValueError(f"{CONTEXT_KEY}.run must be an object (a run document)")
                values[name] = dict(value)
            else:
                values[name] = value
        settings = replace(cls(), **values)
        settings.validate()
        return settings

    @classmethod
    def from_context(cls, node: Any) -> "InfraSettings":
        """Read `forecast-mlops` (object) and `forecast-mlops:<field>` (string) context values."""
        raw = dict(node.try_get_context(CONTEXT_KEY) or {})
        if isinstance(raw, str):  # `-c forecast-mlops='{"...": ...}'`
            raw = json.loads(raw)
        for f in fields(cls):
            value = node.try_get_context(f"{CONTEXT_KEY}:{f.name}")
            if value is not None:
                raw[f.name] = _coerce(f.name, value, getattr(cls(), f.name))
        return cls.from_mapping(raw)

    def validate(self) -> None:
        errors: list[str] = []

        def check(ok: bool, message: str) -> None:
            if not ok:
                errors.append(message)

        check(bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}", self.stack_name)), "stack_name: invalid")
        check(bool(_LOWER_NAME.match(self.resource_prefix)) and len(self.resource_prefix) <= 8,
              "resource_prefix: 1..8 lower-case letters, digits or hyphens")
        check(bool(_LOWER_NAME.match(self.endpoint_name)) and len(self.endpoint_name) <= SAGEMAKER_NAME_MAX,
              "endpoint_name: lower-case letters, digits, hyphens, at most 63 characters")
        # The longest generated name must fit SageMaker's limits (see stacks.naming).
        from stacks import naming

        longest = naming.longest_names(self)
        for kind, name in longest.items():
            limit = HPO_NAME_MAX if kind == "tuning_job" else SAGEMAKER_NAME_MAX
            check(len(name) <= limit, f"{kind} name {name!r} exceeds {limit} characters")
        try:
            self.run_defaults
        except SettingsError as err:
            errors.extend(f"run.{problem}" for problem in err.problems)
        t = self.tuning
        check(1 <= t.max_parallel_jobs <= 100, "tuning.max_parallel_jobs must be in 1..100")
        check(t.max_runtime_seconds >= 60, "tuning.max_runtime_seconds must be >= 60")
        check(not t.use_spot or t.max_wait_seconds >= t.max_runtime_seconds,
              "tuning.max_wait_seconds must be >= max_runtime_seconds with spot")
        for name in ("processing_instance_type", "training_instance_type"):
            check(bool(re.fullmatch(r"ml\.[a-z0-9]+\.[a-z0-9]+", getattr(self, name))), f"{name}: not an ml.* type")
        check(1 <= self.volume_size_gb <= 16384, "volume_size_gb out of range")
        check(self.serverless_memory_mb in _SERVERLESS_MEMORY, f"serverless_memory_mb must be one of {_SERVERLESS_MEMORY}")
        check(1 <= self.serverless_max_concurrency <= 200, "serverless_max_concurrency must be in 1..200")
        check(self.api_rate_limit > 0 and self.api_burst_limit >= 1 and self.api_quota_per_day >= 1,
              "api limits must be positive")
        check(self.approval_mode in ("automatic", "manual"), "approval_mode must be 'automatic' or 'manual'")
        check(self.alarm_email is None or bool(_EMAIL.match(self.alarm_email)), "alarm_email: not an e-mail address")
        check(0 <= self.max_transient_retries <= MAX_TRANSIENT_RETRIES,
              f"max_transient_retries must be in 0..{MAX_TRANSIENT_RETRIES}")
        check(1 <= self.retry_wait_seconds <= 300, "retry_wait_seconds must be in 1..300")
        check(1 <= self.endpoint_poll_seconds <= 3600, "endpoint_poll_seconds must be in 1..3600")
        check(1 <= self.endpoint_max_polls <= 1000, "endpoint_max_polls must be in 1..1000")
        check(0 <= self.queue_retry_seconds <= 43200, "queue_retry_seconds must be in 0..43200 (SQS limit)")
        check(self.runs_infrequent_access_days >= 30, "runs_infrequent_access_days must be >= 30 (S3 minimum)")
        check(self.run_retention_days is None or self.run_retention_days > self.runs_infrequent_access_days,
              "run_retention_days must be None or > runs_infrequent_access_days")
        check(self.noncurrent_version_days >= 1 and self.log_retention_days >= 1, "retention days must be >= 1")
        check(self.powertools_layer_version >= 1, "powertools_layer_version must be >= 1")
        if errors:
            raise ValueError("invalid forecast-mlops settings:\n  " + "\n  ".join(errors))


def _nested(cls: type, value: Any, *, tuples: bool = False) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"{cls.__name__} settings must be an object")
    allowed = {f.name for f in fields(cls)}
    bad = set(value) - allowed
    if bad:
        raise ValueError(f"unknown {cls.__name__} setting(s): {sorted(bad)}")
    if tuples:
        value = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    return replace(cls(), **value)


def _coerce(name: str, value: Any, default: Any) -> Any:
    """A `-c forecast-mlops:<field>=<text>` value to the field's type."""
    if not isinstance(value, str):
        return value
    if isinstance(default, bool):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{name}: expected a boolean, got {value!r}")
        return value.lower() in ("true", "1", "yes")
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if default is None and name == "alarm_email":
        return value or None
    if default is None and name == "run_retention_days":
        return int(value) if value not in ("", "none", "None") else None
    if not isinstance(default, str):
        return json.loads(value)
    return value
