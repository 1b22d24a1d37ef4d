"""The emulated cloud's checks themselves: the policy evaluator, the IAM requests of a call, the
parameter rules, and the tuning job's candidates (fast; no state machine)."""

from __future__ import annotations

import pytest

from tests.cloud.audit import parameter_errors, sdk_operation, service_model
from tests.cloud.jobs import candidates, metrics
from tests.cloud.policy import Policy, Request, authorizations

BUCKET = "arn:aws:s3:::data"
POLICY = Policy("role", [
    {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": BUCKET, "Condition": {"StringLike": {"s3:prefix": ["runs/*"]}}},
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion"], "Resource": f"{BUCKET}/raw/*"},
    {"Effect": "Allow", "Action": "s3:PutObject", "Resource": [f"{BUCKET}/runs/*"]},
    {"Effect": "Deny", "Action": "s3:PutObject", "Resource": f"{BUCKET}/runs/locked/*"},
    {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::123456789012:role/sm",
     "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}},
    {"Effect": "Allow", "Action": ["sagemaker:CreateProcessingJob", "sagemaker:AddTags"],
     "Resource": "arn:aws:sagemaker:us-east-1:123456789012:processing-job/fcst-*"},
])


def allowed(service: str, operation: str, params: dict) -> list[bool]:
    return [POLICY.allows(r) for r in authorizations(service, operation, params)]


def test_the_evaluator_applies_resources_conditions_and_explicit_denies():
    assert allowed("s3", "ListObjectsV2", {"Bucket": "data", "Prefix": "runs/r1/"}) == [True]
    assert allowed("s3", "ListObjectsV2", {"Bucket": "data", "Prefix": "raw/"}) == [False]
    assert allowed("s3", "ListObjectsV2", {"Bucket": "data"}) == [False]  # no prefix: the condition fails
    assert allowed("s3", "PutObject", {"Bucket": "data", "Key": "runs/r1/x"}) == [True]
    assert allowed("s3", "PutObject", {"Bucket": "data", "Key": "runs/locked/x"}) == [False]
    # a versioned copy reads the source with GetObjectVersion and writes the target
    assert allowed("s3", "CopyObject", {"Bucket": "data", "Key": "runs/r1/in.csv",
                                        "CopySource": "data/raw/in.csv?versionId=v1"}) == [True, True]
    assert allowed("s3", "CopyObject", {"Bucket": "data", "Key": "forecasts/x",
                                        "CopySource": "data/raw/in.csv"}) == [True, False]
    assert not POLICY.allows(Request("iam:PassRole", "arn:aws:iam::123456789012:role/sm",
                                     {"iam:PassedToService": "lambda.amazonaws.com"}))


def test_a_sagemaker_create_needs_add_tags_and_pass_role_for_what_it_sends():
    params = {"ProcessingJobName": "FCST-run-pre0", "RoleArn": "arn:aws:iam::123456789012:role/sm",
              "Tags": [{"Key": "forecast-mlops:stack", "Value": "S"}]}
    requests = authorizations("sagemaker", "CreateProcessingJob", params)
    assert [r.action for r in requests] == ["sagemaker:CreateProcessingJob", "sagemaker:AddTags", "iam:PassRole"]
    assert requests[0].resource.endswith("processing-job/fcst-run-pre0")  # SageMaker lower-cases ARNs
    assert requests[0].context["aws:RequestTag/forecast-mlops:stack"] == "S"
    assert all(POLICY.allows(r) for r in requests)
    assert authorizations("sagemaker", "ListModelPackages", {"ModelPackageGroupName": "g"})[0].resource == "*"


def operation(service: str, name: str):
    return service_model(service).operation_model(name)


def test_parameters_are_checked_as_the_service_checks_them():
    package = {"ModelPackageGroupName": "fcst-models", "ModelApprovalStatus": "Approved",
               "InferenceSpecification": {"Containers": [{"Image": "img", "ModelDataUrl": "s3://b/m.tar.gz"}],
                                          "SupportedContentTypes": ["application/json"],
                                          "SupportedResponseMIMETypes": ["application/json"]},
               "CustomerMetadataProperties": {"run_id": "r1"}}
    assert parameter_errors(operation("sagemaker", "CreateModelPackage"), package) == []
    too_long = {**package, "CustomerMetadataProperties": {"note": "x" * 257}}
    assert any("at most 256" in e for e in parameter_errors(operation("sagemaker", "CreateModelPackage"), too_long))
    tagged = {**package, "Tags": [{"Key": "k", "Value": "v"}]}
    assert any("versioned" in e for e in parameter_errors(operation("sagemaker", "CreateModelPackage"), tagged))
    bad_status = {**package, "ModelApprovalStatus": "approved"}
    assert any("not one of" in e for e in parameter_errors(operation("sagemaker", "CreateModelPackage"), bad_status))
    model = {"ModelName": "fcst-m", "ExecutionRoleArn": "arn:aws:iam::123456789012:role/sm",
             "PrimaryContainer": {"ModelDataUrl": "s3://b/m.tar.gz"}}
    assert any("Image is required" in e for e in parameter_errors(operation("sagemaker", "CreateModel"), model))
    assert any("Missing required" in e for e in parameter_errors(operation("s3", "CopyObject"), {"Bucket": "b"}))


def test_an_asl_action_name_maps_to_the_services_operation():
    assert sdk_operation("sagemaker", "describeModelPackageGroup").name == "DescribeModelPackageGroup"
    assert sdk_operation("s3", "getObject").name == "GetObject"
    assert sdk_operation("sagemaker", "describeModelPackages") is None


@pytest.mark.parametrize("strategy", ["Bayesian", "Random"])
def test_tuning_candidates_are_distinct_bounded_and_deterministic(strategy):
    config = {"Strategy": strategy, "ResourceLimits": {"MaxNumberOfTrainingJobs": 3},
              "ParameterRanges": {"CategoricalParameterRanges": [{"Name": "deseasonalize", "Values": ["0", "1"]}],
                                  "IntegerParameterRanges": [{"Name": "fourier_k", "MinValue": "2", "MaxValue": "3"}]}}
    first = candidates(config, seed="job-a")
    assert len(first) == 3 and len({tuple(sorted(c.items())) for c in first}) == 3
    assert first == candidates(config, seed="job-a")
    every = candidates({**config, "ResourceLimits": {"MaxNumberOfTrainingJobs": 10}}, seed="job-a")
    assert sorted((c["deseasonalize"], c["fourier_k"]) for c in every) == [("0", "2"), ("0", "3"), ("1", "2"), ("1", "3")]


def test_grid_search_takes_categorical_ranges_only():
    ranges = {"CategoricalParameterRanges": [{"Name": "a", "Values": ["0", "1"]}, {"Name": "b", "Values": ["x"]}]}
    assert candidates({"Strategy": "Grid", "ParameterRanges": ranges}, "j") == [{"a": "0", "b": "x"}, {"a": "1", "b": "x"}]
    with pytest.raises(ValueError, match="categorical"):
        candidates({"Strategy": "Grid", "ParameterRanges": {
            **ranges, "IntegerParameterRanges": [{"Name": "k", "MinValue": "1", "MaxValue": "2"}]}}, "j")


def test_metrics_are_read_with_the_jobs_own_regex():
    log = "fold 1\ncv_mse=12.5;\ncv_mase=0.91;\ncv_mse=11.25;\n"
    definitions = [{"Name": "cv_mse", "Regex": r"cv_mse=([0-9.eE+-]+);"}, {"Name": "other", "Regex": r"nope=(\d+)"}]
    assert metrics(log, definitions) == {"cv_mse": 11.25}
