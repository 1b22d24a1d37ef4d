"""Names of the SageMaker resources the pipeline creates, in one place.

Each name is built inside the state machine with `States.Format` from the resource prefix, the execution
name (the run id the starter Lambda derives from the S3 key and version id, at most RUN_ID_MAX
characters) and the run's transient-retry counter `$.retries.count` (one digit: bounded by
MAX_TRANSIENT_RETRIES; see stacks/asl.py), so a create repeated after a lost response never collides
with the name of the attempt before it.

The deploy state machine names its model and endpoint config after the model package (its run id and
version), with no counter: deploying the same package twice finds them already there and goes on.

SageMaker limits: 63 characters, except hyperparameter tuning jobs (32). SageMaker lower-cases names in
ARNs, so the prefix and run ids are lower-case and IAM resources are scoped to ``<prefix>-*``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from stacks.settings import InfraSettings

# kind -> template with {prefix}; the two `{}` are the execution name and the retry count.
TEMPLATES: dict[str, str] = {
    "preprocess_job": "{prefix}-{{}}-pre{{}}",
    "tuning_job": "{prefix}-{{}}-t{{}}",
    "evaluation_job": "{prefix}-{{}}-ev{{}}",
    "panel_fit_job": "{prefix}-{{}}-fit{{}}",
    "selection_job": "{prefix}-{{}}-sel{{}}",
}
# The deploy state machine's names: the package's run id and version.
DEPLOY_TEMPLATES: dict[str, str] = {
    "model": "{prefix}-{{}}-v{{}}-m",
    "endpoint_config": "{prefix}-{{}}-v{{}}-c",
}
# Model package versions are counted per group; 7 digits are 10 million runs.
PACKAGE_VERSION_MAX_DIGITS = 7
# Training jobs launched by a tuning job are named `<tuning job>-<3 digits>-<8 hex>` by SageMaker.
TRAINING_JOB_SUFFIX_LEN = len("-001-abcdef12")


def template(settings: "InfraSettings", kind: str) -> str:
    return TEMPLATES[kind].format(prefix=settings.resource_prefix)


def format_expr(settings: "InfraSettings", kind: str) -> str:
    """The `States.Format(...)` intrinsic that renders this name at run time."""
    return f"States.Format('{template(settings, kind)}', $$.Execution.Name, $.retries.count)"


def deploy_format_expr(settings: "InfraSettings", kind: str) -> str:
    """The deploy state machine's name for this package (`$.package.runId`, `$.package.version`)."""
    tpl = DEPLOY_TEMPLATES[kind].format(prefix=settings.resource_prefix)
    return f"States.Format('{tpl}', $.package.runId, $.package.version)"


def render(settings: "InfraSettings", kind: str, run_id: str, retry: int) -> str:
    """The name the state machine produces (used by tests and by the clean-up's documentation)."""
    return template(settings, kind).replace("{}", run_id, 1).replace("{}", str(retry), 1)


def longest_names(settings: "InfraSettings") -> dict[str, str]:
    from stacks.settings import MAX_TRANSIENT_RETRIES, RUN_ID_MAX

    run_id = "r" * RUN_ID_MAX
    names = {kind: render(settings, kind, run_id, MAX_TRANSIENT_RETRIES) for kind in TEMPLATES}
    names["training_job"] = names["tuning_job"] + "x" * TRAINING_JOB_SUFFIX_LEN
    version = "9" * PACKAGE_VERSION_MAX_DIGITS
    for kind, tpl in DEPLOY_TEMPLATES.items():
        names[f"deploy_{kind}"] = tpl.format(prefix=settings.resource_prefix).replace(
            "{}", run_id, 1).replace("{}", version, 1)
    names["endpoint"] = settings.endpoint_name
    return names


def sagemaker_arn_pattern(settings: "InfraSettings", resource_type: str) -> str:
    """`<type>/<prefix>-*`: the IAM resource suffix of everything the pipeline names."""
    return f"{resource_type}/{settings.resource_prefix}-*"
