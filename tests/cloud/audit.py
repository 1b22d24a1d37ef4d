"""Every AWS call made on behalf of a role, checked as AWS would: IAM (the role's policy) and parameters
(the service model).

moto neither enforces IAM nor (for Step Functions `aws-sdk:*` tasks) validates parameters. The audit
hooks botocore's `before-parameter-build` event, so it sees each call of every boto3 client (the state
machine interpreter's, the Lambdas', the harness's job and endpoint emulation) with its API parameters.
A call is attributed to the principal set for the current thread (`Audit.acting_as`); calls made
without one (test setup, assertions) are not checked. A call the role may not make, or whose parameters
the service would refuse, is recorded and refused with the error the service would return
(AccessDenied / ValidationException), so the run fails where the real one would.

Parameter checks: botocore's `ParamValidator` (required members, types, minimums) and, as the service
does server-side, maximum lengths and sizes, enums and (where Python's `re` can read them) patterns.
"""

from __future__ import annotations

import functools
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import boto3
import botocore.handlers
import botocore.session
from botocore.exceptions import ClientError
from botocore.model import ListShape, MapShape, Shape, StructureShape
from botocore.validate import ParamValidator

from tests.cloud.policy import Policy, Request, authorizations

EVENT = "before-parameter-build"


@dataclass
class Call:
    principal: str
    service: str
    operation: str
    params: dict[str, Any]
    requests: list[Request]
    denied: list[Request]
    invalid: list[str]


def _pattern_ok(pattern: str, value: str) -> bool:
    try:
        return re.fullmatch(pattern, value, re.DOTALL) is not None
    except re.error:  # Java-only syntax (\p{L}, ...): the length and enum checks still apply
        return True


def service_side_errors(shape: Shape, value: Any, path: str = "") -> list[str]:
    """What botocore leaves to the service: maximums, enums, patterns (recursively)."""
    errors: list[str] = []
    meta = shape.metadata
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                errors += service_side_errors(member, value[name], f"{path}.{name}" if path else name)
    elif isinstance(shape, ListShape) and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: {len(value)} items, at most {meta['max']}")
        for i, item in enumerate(value):
            errors += service_side_errors(shape.member, item, f"{path}[{i}]")
    elif isinstance(shape, MapShape) and isinstance(value, dict):
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: {len(value)} entries, at most {meta['max']}")
        for k, v in value.items():
            errors += service_side_errors(shape.key, k, f"{path} key {k!r}")
            errors += service_side_errors(shape.value, v, f"{path}.{k}")
    elif shape.type_name == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: length {len(value)}, at most {meta['max']}")
        if shape.enum and value not in shape.enum:
            errors.append(f"{path}: {value!r} is not one of {shape.enum}")
        if "pattern" in meta and not _pattern_ok(meta["pattern"], value):
            errors.append(f"{path}: {value[:80]!r} does not match {meta['pattern']!r}")
    elif shape.type_name in ("integer", "long", "float", "double") and isinstance(value, (int, float)):
        if "max" in meta and value > meta["max"]:
            errors.append(f"{path}: {value} is above {meta['max']}")
    return errors


def _versioned_package_tags(params: dict[str, Any]) -> list[str]:
    # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateModelPackage.html (Tags)
    if params.get("ModelPackageGroupName") and params.get("Tags"):
        return ["Tags: not supported when creating a versioned model package (ModelPackageGroupName)"]
    return []


def _model_container_image(params: dict[str, Any]) -> list[str]:
    # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ContainerDefinition.html (Image)
    containers = [params["PrimaryContainer"]] if "PrimaryContainer" in params else params.get("Containers", [])
    return [f"container {i}: Image is required unless ModelPackageName is given"
            for i, c in enumerate(containers) if not c.get("Image") and not c.get("ModelPackageName")]


# Rules the service enforces that the service model does not express.
SERVICE_RULES = {("sagemaker", "CreateModelPackage"): _versioned_package_tags,
                 ("sagemaker", "CreateModel"): _model_container_image}


def parameter_errors(operation_model, params: dict[str, Any]) -> list[str]:
    """Every reason the service would refuse these parameters (empty when it would accept them)."""
    shape = operation_model.input_shape
    if shape is None:
        return []
    report = ParamValidator().validate(params, shape)
    errors = [line.strip() for line in report.generate_report().splitlines()[1:] if line.strip()] if report.has_errors() else []
    rule = SERVICE_RULES.get((operation_model.service_model.service_name, operation_model.name))
    return errors + service_side_errors(shape, params) + (rule(params) if rule else [])


@functools.lru_cache(maxsize=None)
def service_model(service: str):
    """botocore's model of `service` (loaded once: a fresh load reads its JSON, about 0.3 s)."""
    return botocore.session.get_session().get_service_model(service)


def sdk_operation(service: str, action: str):
    """The botocore operation of an ASL `aws-sdk:<service>:<camelCaseAction>` (None: no such API)."""
    model = service_model(service)
    wanted = action[0].upper() + action[1:]
    return next((model.operation_model(op) for op in model.operation_names if op == wanted), None)


@dataclass
class Audit:
    """Policies by principal name; `calls` and the findings of one emulated run."""

    policies: dict[str, Policy]
    # (service, operation, params) -> the model package ARN a CreateModelPackage will get (for IAM).
    package_arn: Callable[[dict[str, Any]], str | None] = lambda params: None
    calls: list[Call] = field(default_factory=list)
    _local: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ---- attribution ------------------------------------------------------------------------------
    @property
    def principal(self) -> str | None:
        return getattr(self._local, "principal", None)

    @contextmanager
    def acting_as(self, principal: str | None) -> Iterator[None]:
        """Calls on this thread are made by `principal` (None: the harness itself, unchecked)."""
        before = self.principal
        self._local.principal = principal
        try:
            yield
        finally:
            self._local.principal = before

    # ---- findings ---------------------------------------------------------------------------------
    def denials(self) -> list[str]:
        return [f"{c.principal}: {c.service}.{c.operation}: {r}" for c in self.calls for r in c.denied]

    def invalid_calls(self) -> list[str]:
        return [f"{c.principal}: {c.service}.{c.operation}: {e}" for c in self.calls for e in c.invalid]

    def findings(self) -> list[str]:
        return self.denials() + self.invalid_calls()

    def check_implied(self, principal: str, requests: list[Request], what: str) -> None:
        """Requests a service makes on a role's behalf without a boto3 call here (e.g. `.sync` rules)."""
        policy = self.policies[principal]
        denied = [r for r in requests if not policy.allows(r)]
        with self._lock:
            self.calls.append(Call(principal, "implied", what, {}, requests, denied, []))

    def check_sdk_action(self, principal: str, service: str, action: str) -> None:
        """An `aws-sdk` task's action must name an operation of the service (as Step Functions checks)."""
        if sdk_operation(service, action) is None:
            with self._lock:
                self.calls.append(Call(principal, service, action, {}, [], [], [f"no {service} API named {action}"]))

    # ---- the botocore hook --------------------------------------------------------------------------
    def _before_parameter_build(self, params: dict[str, Any], model, **_: Any) -> None:
        principal = self.principal
        if principal is None:
            return
        service = model.service_model.service_name
        operation = model.name
        invalid = parameter_errors(model, params)
        package = self.package_arn(params) if operation == "CreateModelPackage" else None
        requests = authorizations(service, operation, params, package_arn=package)
        policy = self.policies[principal]
        denied = [r for r in requests if not policy.allows(r)]
        with self._lock:
            self.calls.append(Call(principal, service, operation, dict(params), requests, denied, invalid))
        if invalid:
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "; ".join(invalid)}}, operation)
        if denied:
            first = denied[0]
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": (
                f"User: arn:aws:sts::{principal} is not authorized to perform: {first.action} on resource: "
                f"{first.resource} because no identity-based policy allows the {first.action} action")}}, operation)

    @contextmanager
    def installed(self) -> Iterator["Audit"]:
        """Hook every boto3 client created while active (sessions made before are rebuilt)."""
        handler = (EVENT, self._before_parameter_build)
        botocore.handlers.BUILTIN_HANDLERS.append(handler)
        boto3.DEFAULT_SESSION = None
        try:
            yield self
        finally:
            botocore.handlers.BUILTIN_HANDLERS.remove(handler)
            boto3.DEFAULT_SESSION = None
