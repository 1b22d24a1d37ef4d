"""Building blocks of the two state machines (training pipeline and deploy), as plain ASL data.

Error handling (one rule for every task):
  * Only throttling and transient service errors are retried; validation errors, quota errors
    (`SageMaker.ResourceLimitExceededException`), a failed job (`States.TaskFailed`) and timeouts fail
    at once to the task's failure target.
  * Step Functions names an error `<Service>.<Exception>` for the AWS SDK integrations, and errors the
    SDK does not model (SageMaker's `ValidationException` *and* `ThrottlingException`) all arrive as the
    generic `SageMaker.SageMakerException`; the optimised SageMaker integrations (`.sync` jobs) report
    them as `SageMaker.AmazonSageMakerException`. A throttle and a validation error therefore share one
    error name and differ only in the cause text, which `Retry` cannot test. So each task catches the
    generic names into a Choice that matches the cause against throttling/transient patterns and
    loops back after a wait; anything else goes on to the failure target.
    https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html (error naming)
    https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html
  * The loop's counter (`$.retries.count`) is shared by all tasks of a run and bounded by
    `max_transient_retries`; its wait doubles on each use. The counter is also the last character of
    every generated SageMaker name (stacks.naming), so a create repeated after a lost response never
    collides with the name of the attempt before it.
"""

from __future__ import annotations

from typing import Any

from stacks.settings import InfraSettings

SAGEMAKER_SYNC = "arn:aws:states:::sagemaker:{}.sync"
SDK = "arn:aws:states:::aws-sdk:{}:{}"
SNS_PUBLISH = "arn:aws:states:::sns:publish"

# Error names under which a throttle or a transient service error can arrive (generic, unmodelled).
GENERIC_ERRORS = [
    "SageMaker.AmazonSageMakerException",  # optimised SageMaker integrations
    "SageMaker.SageMakerException",  # aws-sdk:sagemaker, unmodelled errors
    "S3.S3Exception",  # aws-sdk:s3, unmodelled errors (SlowDown, InternalError)
    "SNS.AmazonSNSException",  # optimised SNS integration
]
# Modelled error names that are always transient.
TRANSIENT_ERRORS = ["SNS.ThrottledException", "SNS.InternalErrorException", "SNS.KmsThrottlingException"]
# Cause texts of throttling and transient (5xx) errors; everything else under a generic name fails at once.
TRANSIENT_CAUSES = [
    "*ThrottlingException*",
    "*Rate exceeded*",
    "*SlowDown*",
    "*InternalFailure*",
    "*InternalServerError*",
    "*ServiceUnavailable*",
    "*Status Code: 5*",
]
# Never retried: quota and validation errors, failed jobs (named here for the tests and the docs).
FAIL_AT_ONCE = ["SageMaker.ResourceLimitExceededException", "States.TaskFailed", "States.Timeout"]

RETRIES_PATH = "$.retries"


def initial_retries(settings: InfraSettings) -> dict[str, int]:
    """The run-wide transient-retry state every execution starts with (see the module docstring)."""
    return {"count": 0, "wait": settings.retry_wait_seconds}


def transient_loop(name: str, on_error: str, limit: int) -> dict[str, dict[str, Any]]:
    """The Choice, Wait and Pass that bring task `name` back after a throttle or transient error."""
    check, wait, count = f"{name}.Transient?", f"{name}.Wait", f"{name}.Again"
    return {
        check: {
            "Type": "Choice",
            "Comment": "Throttling/transient (retry after a wait) or anything else (fail at once)?",
            "Choices": [
                {
                    "And": [
                        {
                            "Or": [{"Variable": "$.error.Cause", "StringMatches": p} for p in TRANSIENT_CAUSES]
                            + [{"Variable": "$.error.Error", "StringEquals": e} for e in TRANSIENT_ERRORS]
                        },
                        {"Variable": f"{RETRIES_PATH}.count", "NumericLessThan": limit},
                    ],
                    "Next": wait,
                }
            ],
            "Default": on_error,
        },
        wait: {"Type": "Wait", "SecondsPath": f"{RETRIES_PATH}.wait", "Next": count},
        count: {
            "Type": "Pass",
            "Parameters": {
                "count.$": f"States.MathAdd({RETRIES_PATH}.count, 1)",
                "wait.$": f"States.MathAdd({RETRIES_PATH}.wait, {RETRIES_PATH}.wait)",
            },
            "ResultPath": RETRIES_PATH,
            "Next": name,
        },
    }


class States:
    """A growing `States` dict with the task helper that wires every task's error handling."""

    def __init__(self, settings: InfraSettings, failure: str) -> None:
        self.settings = settings
        self.failure = failure
        self.states: dict[str, Any] = {}

    def add(self, name: str, state: dict[str, Any]) -> None:
        if name in self.states:
            raise ValueError(f"duplicate state {name!r}")
        self.states[name] = state

    def task(self, name: str, resource: str, parameters: dict[str, Any], nxt: str | None, *,
             result_path: str | None = None, result_selector: dict[str, Any] | None = None,
             on_error: str | None = None, comment: str | None = None) -> None:
        """A Task whose transient errors loop back (bounded) and whose other errors go to `on_error`."""
        target = on_error or self.failure
        state: dict[str, Any] = {"Type": "Task", "Resource": resource, "Parameters": parameters}
        if comment:
            state["Comment"] = comment
        if result_selector is not None:
            state["ResultSelector"] = result_selector
        state["ResultPath"] = result_path
        state["Catch"] = [
            {"ErrorEquals": GENERIC_ERRORS + TRANSIENT_ERRORS, "ResultPath": "$.error", "Next": f"{name}.Transient?"},
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": target},
        ]
        if nxt is None:
            state["End"] = True
        else:
            state["Next"] = nxt
        self.add(name, state)
        for loop_name, loop_state in transient_loop(name, target, self.settings.max_transient_retries).items():
            self.add(loop_name, loop_state)

    def failed(self, name: str, error: str, cause: str, nxt: str) -> None:
        """A Pass that writes a named error to `$.error` (for the failure notification)."""
        cause_key = "Cause.$" if cause.startswith("States.") else "Cause"
        self.add(name, {
            "Type": "Pass",
            "Parameters": {"Error": error, cause_key: cause},
            "ResultPath": "$.error",
            "Next": nxt,
        })
