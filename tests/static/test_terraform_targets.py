"""Several named targets (`targets`), evaluated by Terraform itself: `terraform test` on a copy of
terraform/ with the mock provider and the values of test_drift_repair.py, as in
test_terraform_scaling.py. Each `run` plans one configuration and asserts on what Terraform
computed: the TARGETS environment variable of both task definitions, the secrets the roles may
read, the alarm of each target. The refused configurations run without `expect_failures`, so that
the error message itself can be checked, not only which variable or resource refused.

The TARGETS value asserted here is also handed to the worker's own settings parser: what Terraform
writes is what the worker reads.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replicator.settings import MAX_TARGETS, AzureTargetConfig, ConfigError, S3TargetConfig, load_settings
from tests.static.test_drift_repair import hcl
from tests.static.test_terraform import valid, variables
from tests.static.test_terraform_scaling import MIGRATE_ENV, WORKER_ENV, RunResult, _terraform_test

RUNS: dict[str, str] = {}


def run(name: str, body: str) -> str:
    RUNS[name] = f'run "{name}" {{\n{body}\n}}\n'
    return name


def hcl_value(value: Any) -> str:
    """A JSON-like value (dicts, strings, numbers, None) as an HCL literal."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return hcl(value)
    if isinstance(value, list):
        return "[" + ", ".join(hcl_value(v) for v in value) + "]"
    return "{\n" + "\n".join(f"      {hcl(k)} = {hcl_value(v)}" for k, v in value.items()) + "\n    }"


ACCOUNT = "123456789012"
SINGLE_SECRET = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:lyve-AbCdEf"  # HEADER's `secret`
LYVE_SECRET = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:lyve-credentials-AbCdEf"
AZURE_SECRET = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:azure-credentials-GhIjKl"
US_KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
EU_KEY = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/abcd1234-ab12-cd34-ef56-abcdef123456"
QUEUE = "lyve-replicator.fifo"

LYVE = {
    "type": "s3",
    "endpoint_url": "https://s3.us-east-1.lyvecloud.seagate.com",
    "bucket": "lyve-replica",
    "addressing_style": "path",
    "secret_arn": LYVE_SECRET,
}
AZURE = {
    "type": "azure",
    "container": "replica",
    "account_url": "https://myaccount.blob.core.windows.net",
    "secret_arn": AZURE_SECRET,
}
TWO_TARGETS = {"lyve": LYVE, "azure-archive": AZURE}

# What both task definitions must carry in TARGETS for TWO_TARGETS: the region filled in for the
# s3 target, the secret's ARN as secret_id, no null fields.
EXPECTED_TARGETS = {
    "lyve": {
        "type": "s3",
        "bucket": "lyve-replica",
        "endpoint_url": "https://s3.us-east-1.lyvecloud.seagate.com",
        "region": "us-east-1",
        "addressing_style": "path",
        "secret_id": LYVE_SECRET,
    },
    "azure-archive": {
        "type": "azure",
        "container": "replica",
        "account_url": "https://myaccount.blob.core.windows.net",
        "secret_id": AZURE_SECRET,
    },
}

TARGETS_STRING = json.dumps(EXPECTED_TARGETS, sort_keys=True, separators=(",", ":"))

# The single-target variables of test_drift_repair.HEADER, unset.
NO_SINGLE_TARGET = "secret = null\n    endpoint = null\n    target_bucket = null"

# The environment, in order, the worker got before `targets` existed.
SINGLE_TARGET_ENV_NAMES = [
    "SOURCE_BUCKET",
    "TARGET_BUCKET",
    "TARGET_ENDPOINT_URL",
    "TARGET_REGION",
    "QUEUE_URL",
    "DLQ_URL",
    "PART_SIZE_MIB",
    "MAX_BUFFER_MIB",
    "WORKER_CONCURRENCY",
    "VISIBILITY_TIMEOUT_SECONDS",
    "SHUTDOWN_DEADLINE_SECONDS",
    "LOG_FORMAT",
    "AWS_REGION",
    "RECEIVE_WAIT_SECONDS",
]

WORKER_DEF = "jsondecode(aws_ecs_task_definition.worker.container_definitions)[0]"
MIGRATE_DEF = "jsondecode(aws_ecs_task_definition.migrate.container_definitions)[0]"
# The resources of every statement of a policy document that allows reading a secret.
SECRET_READS = (
    "toset(flatten([for s in data.aws_iam_policy_document.{doc}.statement : "
    'tolist(s.resources) if contains(s.actions, "secretsmanager:GetSecretValue")]))'
)


FALSE_ASSERTION = run(
    "a_false_assertion_fails",
    f"""
  command = plan
  variables {{
    {NO_SINGLE_TARGET}
    targets = {hcl_value(TWO_TARGETS)}
  }}
  assert {{
    condition     = length(aws_cloudwatch_metric_alarm.target_failures) == 3
    error_message = "deliberately false: two targets make two alarms"
  }}
""",
)

TWO = run(
    "two_targets",
    f"""
  command = plan
  variables {{
    {NO_SINGLE_TARGET}
    targets         = {hcl_value(TWO_TARGETS)}
    alarm_topic_arn = "arn:aws:sns:eu-west-1:{ACCOUNT}:alarms"
    drift_repair    = {{ enabled = true }}
  }}
  assert {{
    condition     = jsondecode({WORKER_ENV}["TARGETS"]) == jsondecode({hcl(json.dumps(EXPECTED_TARGETS))})
    error_message = "the worker's TARGETS must name both targets, with their settings and secret ARNs"
  }}
  assert {{
    condition     = {WORKER_ENV}["TARGETS"] == {hcl(TARGETS_STRING)}
    error_message = "TARGETS is compact JSON, keys in order (what jsonencode writes)"
  }}
  assert {{
    condition     = {MIGRATE_ENV}["TARGETS"] == {WORKER_ENV}["TARGETS"]
    error_message = "the migration task gets the same TARGETS as the worker"
  }}
  assert {{
    condition = (
      alltrue([for name in keys({WORKER_ENV}) : !startswith(name, "TARGET_")])
      && alltrue([for name in keys({MIGRATE_ENV}) : !startswith(name, "TARGET_")])
      && {WORKER_ENV}["SOURCE_BUCKET"] == "source-bucket" && {MIGRATE_ENV}["QUEUE_URL"] == aws_sqs_queue.this.url
    )
    error_message = "with targets, no TARGET_* variable; the rest of the environment stays"
  }}
  assert {{
    condition     = try({WORKER_DEF}.secrets, null) == null && try({MIGRATE_DEF}.secrets, null) == null
    error_message = "with targets, ECS injects no credentials: the tasks read the secrets named in TARGETS"
  }}
  assert {{
    condition = (
      {SECRET_READS.format(doc="task")} == toset([{hcl(AZURE_SECRET)}, {hcl(LYVE_SECRET)}])
      && length([for s in data.aws_iam_policy_document.task.statement : s if contains(s.actions, "secretsmanager:GetSecretValue")]) == 1
      && one([for s in data.aws_iam_policy_document.task.statement : s if s.sid == "TargetCredentials"]).actions == toset(["secretsmanager:GetSecretValue"])
    )
    error_message = "the task role may read exactly the two target secrets, in one statement with one action"
  }}
  assert {{
    condition     = length({SECRET_READS.format(doc="execution")}) == 0
    error_message = "with targets, the execution role reads no secret (ECS injects none)"
  }}
  assert {{
    condition = (
      length([for s in data.aws_iam_policy_document.task.statement : s if contains(s.actions, "kms:Decrypt")]) == 0
      && length([for s in data.aws_iam_policy_document.execution.statement : s if contains(s.actions, "kms:Decrypt")]) == 0
    )
    error_message = "no customer-managed key given, no kms:Decrypt"
  }}
  assert {{
    condition = (
      keys(aws_cloudwatch_metric_alarm.target_failures) == ["azure-archive", "lyve"]
      && alltrue([
        for name, alarm in aws_cloudwatch_metric_alarm.target_failures : (
          alarm.alarm_name == "lyve-replicator-failures-${{name}}"
          && alarm.namespace == "LyveReplicator" && alarm.metric_name == "Failures"
          && alarm.dimensions == tomap({{ Queue = "{QUEUE}", Target = name }})
          && alarm.statistic == "Sum" && alarm.comparison_operator == "GreaterThanThreshold" && alarm.threshold == 0
          && alarm.treat_missing_data == "notBreaching"
          && alarm.alarm_actions == toset(["arn:aws:sns:eu-west-1:{ACCOUNT}:alarms"])
          && alarm.ok_actions == alarm.alarm_actions
        )
      ])
    )
    error_message = "one Failures alarm per target, on the dimensions Queue and Target, notifying the topic"
  }}
  assert {{
    condition = (
      strcontains(aws_cloudwatch_dashboard.this.dashboard_body, jsonencode(["LyveReplicator", "Failures", "Queue", "{QUEUE}", "Target", "azure-archive"]))
      && strcontains(aws_cloudwatch_dashboard.this.dashboard_body, jsonencode(["LyveReplicator", "ObjectsReplicated", "Queue", "{QUEUE}", "Target", "lyve"]))
    )
    error_message = "the dashboard shows each target's figures"
  }}
  assert {{
    condition     = output.targets == jsondecode({hcl(json.dumps(EXPECTED_TARGETS))}) && output.target_bucket == null
    error_message = "the targets output is what the tasks get"
  }}
  assert {{
    condition     = strcontains(aws_scheduler_schedule.drift_repair[0].description, "source-bucket -> azure-archive, lyve, shard 0")
    error_message = "the drift-repair schedule names the targets"
  }}
""",
)

SHARED = {
    "lyve-a": {**LYVE, "secret_kms_key_arn": US_KEY},
    # Same secret as lyve-a; no addressing style (the worker's default), a region of its own.
    "lyve-b": {
        "type": "s3",
        "endpoint_url": "https://s3.eu-central-1.lyvecloud.seagate.com",
        "bucket": "lyve.replica.b",
        "region": "eu-central-1",
        "secret_arn": LYVE_SECRET,
        "secret_kms_key_arn": US_KEY,
    },
    "archive": {
        "type": "azure",
        "container": "replica-2",
        "secret_arn": f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:azure-eu-XyZ123",
        "secret_kms_key_arn": EU_KEY,
    },
    "plain": {**AZURE, "secret_arn": f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:plain-QwErTy"},
}

SHARED_SECRETS_AND_KEYS = run(
    "shared_secrets_and_keys",
    f"""
  command = plan
  variables {{
    {NO_SINGLE_TARGET}
    targets = {hcl_value(SHARED)}
  }}
  assert {{
    condition = {SECRET_READS.format(doc="task")} == toset([
      {hcl(LYVE_SECRET)},
      "arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:azure-eu-XyZ123",
      "arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:plain-QwErTy",
    ])
    error_message = "a secret shared by two targets is granted once; each other secret once"
  }}
  assert {{
    condition = (
      toset([for s in data.aws_iam_policy_document.task.statement : s.sid if contains(s.actions, "kms:Decrypt") && s.sid != "DecryptSourceObjects"])
      == toset(["DecryptTargetCredentialsUsEast1", "DecryptTargetCredentialsEuWest1"])
    )
    error_message = "one decrypt statement per region of the secrets that have a customer-managed key"
  }}
  assert {{
    condition = alltrue([
      for s in data.aws_iam_policy_document.task.statement : (
        s.sid == "DecryptTargetCredentialsUsEast1" ? (
          s.actions == toset(["kms:Decrypt"]) && s.resources == toset([{hcl(US_KEY)}])
          && one(s.condition).test == "StringEquals" && one(s.condition).variable == "kms:ViaService"
          && one(s.condition).values == tolist(["secretsmanager.us-east-1.amazonaws.com"])
        )
        : s.sid == "DecryptTargetCredentialsEuWest1" ? (
          s.resources == toset([{hcl(EU_KEY)}])
          && one(s.condition).values == tolist(["secretsmanager.eu-west-1.amazonaws.com"])
        )
        : true
      )
    ])
    error_message = "each key is decrypted through Secrets Manager in its secrets' region only"
  }}
  assert {{
    condition = (
      jsondecode({WORKER_ENV}["TARGETS"])["lyve-b"] == {{
        type = "s3", bucket = "lyve.replica.b", endpoint_url = "https://s3.eu-central-1.lyvecloud.seagate.com",
        region = "eu-central-1", secret_id = {hcl(LYVE_SECRET)}
      }}
      && jsondecode({WORKER_ENV}["TARGETS"])["archive"] == {{
        type = "azure", container = "replica-2", secret_id = "arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:azure-eu-XyZ123"
      }}
    )
    error_message = "unset fields (addressing_style, account_url) are left out of TARGETS; a region given is kept; keys stay out"
  }}
""",
)

SINGLE = run(
    "single_target_unchanged",
    f"""
  command = plan
  assert {{
    condition     = [for e in {WORKER_DEF}.environment : e.name] == {hcl_value(SINGLE_TARGET_ENV_NAMES)}
    error_message = "without targets, the worker's environment is what it was, in the same order"
  }}
  assert {{
    condition = (
      {WORKER_ENV}["TARGET_BUCKET"] == "target-bucket"
      && {WORKER_ENV}["TARGET_ENDPOINT_URL"] == "https://s3.us-east-1.lyvecloud.seagate.com"
      && {WORKER_ENV}["TARGET_REGION"] == "us-east-1"
      && {MIGRATE_ENV}["TARGET_BUCKET"] == "target-bucket" && {MIGRATE_ENV}["TARGET_REGION"] == "us-east-1"
      && !contains(keys({WORKER_ENV}), "TARGETS") && !contains(keys({MIGRATE_ENV}), "TARGETS")
    )
    error_message = "without targets, TARGET_BUCKET, TARGET_ENDPOINT_URL and TARGET_REGION (us-east-1 by default), no TARGETS"
  }}
  assert {{
    condition = alltrue([
      for definition in [{WORKER_DEF}, {MIGRATE_DEF}] :
      [for s in definition.secrets : "${{s.name}}=${{s.valueFrom}}"] == [
        "TARGET_ACCESS_KEY_ID={SINGLE_SECRET}:access_key_id::",
        "TARGET_SECRET_ACCESS_KEY={SINGLE_SECRET}:secret_access_key::",
      ]
    ])
    error_message = "without targets, ECS injects the secret's two keys, as before"
  }}
  assert {{
    condition = (
      {SECRET_READS.format(doc="execution")} == toset([{hcl(SINGLE_SECRET)}])
      && length({SECRET_READS.format(doc="task")}) == 0
    )
    error_message = "without targets, the execution role reads the one secret and the task role none"
  }}
  assert {{
    condition = (
      length(aws_cloudwatch_metric_alarm.target_failures) == 0 && length(output.targets) == 0
      && !strcontains(aws_cloudwatch_dashboard.this.dashboard_body, "By target")
      && output.target_bucket == "target-bucket"
    )
    error_message = "without targets, no per-target alarm, widget or output"
  }}
""",
)

SINGLE_REGION = run(
    "single_target_region_given",
    f"""
  command = plan
  variables {{
    target_region = "eu-central-1"
  }}
  assert {{
    condition     = {WORKER_ENV}["TARGET_REGION"] == "eu-central-1" && {MIGRATE_ENV}["TARGET_REGION"] == "eu-central-1"
    error_message = "target_region is passed on as TARGET_REGION"
  }}
""",
)

NAME_32 = "a" + "-b" * 15 + "c"  # 32 characters
EIGHT = {
    **{f"t{i}": {**LYVE, "bucket": f"bucket-{i}"} for i in range(1, 6)},
    "0": {**AZURE, "container": "abc"},
    NAME_32: {**AZURE, "container": "a" * 63},
    "lyve": {**LYVE, "bucket": "a.b-c", "addressing_style": "virtual"},
}
assert len(EIGHT) == MAX_TARGETS and len(NAME_32) == 32

ACCEPTED = run(
    "accepts_the_limits",
    f"""
  command = plan
  variables {{
    {NO_SINGLE_TARGET}
    targets = {hcl_value(EIGHT)}
  }}
  assert {{
    condition     = length(aws_cloudwatch_metric_alarm.target_failures) == 8 && length(jsondecode({WORKER_ENV}["TARGETS"])) == 8
    error_message = "8 targets, a 32-character name, a one-character name, 3- and 63-character containers are valid"
  }}
""",
)


def _refused(name: str, targets: dict[str, Any] | None, message: str, extra: str = NO_SINGLE_TARGET) -> str:
    assignment = "" if targets is None else f"targets = {hcl_value(targets)}"
    RUNS[name] = (
        f'run "{name}" {{\n  command = plan\n  variables {{\n    {extra}\n    {assignment}\n  }}\n}}\n'
    )
    REFUSED[name] = message
    return name


REFUSED: dict[str, str] = {}
_refused(
    "refuses_an_uppercase_name",
    {"Lyve": LYVE},
    "targets: every name must be 1-32 characters of a-z, 0-9 and '-', starting with a letter or digit (^[a-z0-9][a-z0-9-]{0,31}$); not: \"Lyve\".",
)
_refused("refuses_a_33_character_name", {NAME_32 + "d": LYVE}, f'not: "{NAME_32}d".')
_refused("refuses_a_name_starting_with_a_hyphen", {"-lyve": LYVE}, 'not: "-lyve".')
_refused(
    "refuses_an_unknown_type",
    {"lyve": {**LYVE, "type": "gcs"}},
    'targets: type must be "s3" or "azure"; not for: lyve.',
)
_refused(
    "refuses_s3_without_bucket",
    {"lyve": {k: v for k, v in LYVE.items() if k != "bucket"}},
    "targets: an s3 target needs `bucket`, a valid bucket name (3-63 characters of a-z, 0-9, '.' and '-'); not for: lyve.",
)
_refused(
    "refuses_s3_bucket_name",
    {"lyve": {**LYVE, "bucket": "Lyve_Replica"}},
    "targets: an s3 target needs `bucket`, a valid bucket name",
)
_refused(
    "refuses_s3_plain_http_endpoint",
    {"lyve": {**LYVE, "endpoint_url": "http://s3.us-east-1.lyvecloud.seagate.com"}},
    "targets: an s3 target needs `endpoint_url`, an https:// URL; not for: lyve.",
)
_refused(
    "refuses_s3_without_endpoint",
    {"lyve": {k: v for k, v in LYVE.items() if k != "endpoint_url"}},
    "targets: an s3 target needs `endpoint_url`, an https:// URL; not for: lyve.",
)
_refused(
    "refuses_an_unknown_addressing_style",
    {"lyve": {**LYVE, "addressing_style": "dns"}},
    'targets: addressing_style must be null, "path", "virtual" or "auto".',
)
_refused(
    "refuses_s3_with_a_container",
    {"lyve": {**LYVE, "container": "replica"}},
    "targets: an s3 target takes `bucket` and `endpoint_url`, not the azure fields `container` or `account_url`; for: lyve.",
)
_refused(
    "refuses_azure_with_a_bucket",
    {"archive": {**AZURE, "bucket": "replica"}},
    "targets: an azure target takes a `container`, not a `bucket`; for: archive.",
)
_refused(
    "refuses_azure_without_container",
    {"archive": {k: v for k, v in AZURE.items() if k != "container"}},
    "targets: an azure target needs `container`, a valid container name (3-63 characters of a-z, 0-9 and single hyphens, starting and ending with a letter or digit); not for: archive.",
)
_refused(
    "refuses_azure_container_double_hyphen",
    {"archive": {**AZURE, "container": "re--plica"}},
    "an azure target needs `container`, a valid container name",
)
_refused(
    "refuses_azure_container_of_two_characters",
    {"archive": {**AZURE, "container": "ab"}},
    "an azure target needs `container`, a valid container name",
)
_refused(
    "refuses_azure_container_of_64_characters",
    {"archive": {**AZURE, "container": "a" * 64}},
    "an azure target needs `container`, a valid container name",
)
_refused(
    "refuses_azure_with_an_endpoint",
    {"archive": {**AZURE, "endpoint_url": "https://s3.us-east-1.lyvecloud.seagate.com"}},
    "targets: an azure target takes `container` and `account_url`, not the s3 fields `endpoint_url`, `region` or `addressing_style`; for: archive.",
)
_refused(
    "refuses_azure_plain_http_account_url",
    {"archive": {**AZURE, "account_url": "http://myaccount.blob.core.windows.net"}},
    "targets: account_url must be null or an https:// URL",
)
_refused(
    "refuses_a_secret_name_for_an_arn",
    {"lyve": {**LYVE, "secret_arn": "lyve-credentials"}},
    "targets: secret_arn must be the full ARN of a Secrets Manager secret (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME); not for: lyve.",
)
_refused(
    "refuses_a_kms_alias",
    {"lyve": {**LYVE, "secret_kms_key_arn": f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/secrets"}},
    "targets: secret_kms_key_arn must be null or a KMS key ARN",
)
_refused(
    "refuses_nine_targets",
    {f"t{i}": {**LYVE, "bucket": f"bucket-{i}"} for i in range(1, 10)},
    "targets holds at most 8 targets, not 9.",
)
# The single-target variables next to `targets` (HEADER sets secret, endpoint, target_bucket).
_refused(
    "refuses_targets_with_the_single_target_variables",
    TWO_TARGETS,
    "With `targets` set, leave the single-target variables unset (each target carries its own secret_arn, endpoint_url, bucket, region and secret_kms_key_arn); set now: endpoint, secret, target_bucket.",
    extra="",
)
_refused(
    "refuses_targets_with_target_region",
    TWO_TARGETS,
    "leave the single-target variables unset (each target carries its own secret_arn, endpoint_url, bucket, region and secret_kms_key_arn); set now: target_region.",
    extra=f'{NO_SINGLE_TARGET}\n    target_region = "us-east-1"',
)
_refused(
    "refuses_targets_with_secret_kms_key_arn",
    TWO_TARGETS,
    "set now: secret_kms_key_arn.",
    extra=f"{NO_SINGLE_TARGET}\n    secret_kms_key_arn = {hcl(US_KEY)}",
)
_refused(
    "requires_the_single_target_without_targets",
    None,
    "Without `targets`, secret, endpoint and target_bucket are required; missing: secret, target_bucket.",
    extra="secret = null\n    target_bucket = null",
)


# -- running them ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, RunResult]]:
    with tempfile.TemporaryDirectory(prefix="targets-test-") as tmp:
        results, output = _terraform_test(Path(tmp), RUNS)
        assert results, output
        yield results


def _passed(runs: dict[str, RunResult], name: str) -> None:
    result = runs[name]
    assert result.status == "pass", (name, result.status, result.diagnostics)


def test_a_false_assertion_fails_its_run(runs: dict[str, RunResult]) -> None:
    result = runs[FALSE_ASSERTION]
    assert result.status == "fail"
    assert any("deliberately false" in d for d in result.diagnostics), result.diagnostics


def test_two_targets_give_both_tasks_one_targets_variable_instead_of_target_star(
    runs: dict[str, RunResult],
) -> None:
    _passed(runs, TWO)


def test_the_task_role_reads_exactly_the_target_secrets_and_decrypts_through_their_region(
    runs: dict[str, RunResult],
) -> None:
    _passed(runs, SHARED_SECRETS_AND_KEYS)


def test_without_targets_the_single_target_is_wired_as_before(runs: dict[str, RunResult]) -> None:
    _passed(runs, SINGLE)
    _passed(runs, SINGLE_REGION)


def test_the_limits_themselves_are_accepted(runs: dict[str, RunResult]) -> None:
    _passed(runs, ACCEPTED)


@pytest.mark.parametrize("name", list(REFUSED))
def test_invalid_targets_are_refused_with_a_message_that_says_why(
    runs: dict[str, RunResult], name: str
) -> None:
    result = runs[name]
    assert result.status in ("error", "fail"), (name, result.status, result.diagnostics)
    errors = [d for d in result.diagnostics if d.startswith("error:")]
    # Only the rule concerned: every error says it (one message per failed rule).
    assert errors and all(REFUSED[name] in " ".join(d.split()) for d in errors), (REFUSED[name], errors)
    precondition = name.startswith(("refuses_targets_with", "requires_"))
    summary = "Resource precondition failed" if precondition else "Invalid value for variable"
    assert all(d.startswith(f"error: {summary}:") for d in errors), errors


def test_every_run_block_was_run() -> None:
    assert set(RUNS) == {
        FALSE_ASSERTION,
        TWO,
        SHARED_SECRETS_AND_KEYS,
        SINGLE,
        SINGLE_REGION,
        ACCEPTED,
        *REFUSED,
    }


# -- what the worker reads back ---------------------------------------------------------------------


def test_the_targets_terraform_writes_are_what_the_worker_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    # The environment of the two_targets run (EXPECTED_TARGETS is asserted there), read by the
    # worker's own settings parser.
    for name in ("TARGET_BUCKET", "TARGET_ENDPOINT_URL", "TARGET_REGION", "TARGET_SECRET_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SOURCE_BUCKET", "source-bucket")
    monkeypatch.setenv("TARGETS", json.dumps(EXPECTED_TARGETS))

    settings = load_settings()

    assert settings.targets is not None and set(settings.targets) == {"lyve", "azure-archive"}
    lyve, azure = settings.targets["lyve"], settings.targets["azure-archive"]
    assert isinstance(lyve, S3TargetConfig) and isinstance(azure, AzureTargetConfig)
    assert (lyve.type, lyve.bucket, lyve.region, lyve.secret_id) == (
        "s3",
        "lyve-replica",
        "us-east-1",
        LYVE_SECRET,
    )
    assert (azure.type, azure.container, azure.secret_id) == ("azure", "replica", AZURE_SECRET)


def test_the_worker_refuses_what_the_variable_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same limits on both sides: names, count, container names.
    monkeypatch.setenv("SOURCE_BUCKET", "source-bucket")
    for name in ("TARGET_BUCKET", "TARGET_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    one_s3 = EXPECTED_TARGETS["lyve"]
    one_azure = EXPECTED_TARGETS["azure-archive"]
    cases: list[dict[str, Any]] = [
        {"Lyve": one_s3},
        {NAME_32 + "d": one_s3},
        {f"t{i}": one_s3 for i in range(MAX_TARGETS + 1)},
        {"archive": {**one_azure, "container": "re--plica"}},
        {"archive": {**one_azure, "container": "ab"}},
    ]
    for targets in cases:
        monkeypatch.setenv("TARGETS", json.dumps(targets))
        with pytest.raises(ConfigError):
            load_settings()
        # The variable's validations refuse it too (its fields as the variable takes them).
        as_variable = {
            name: {("secret_arn" if k == "secret_id" else k): v for k, v in t.items()}
            for name, t in targets.items()
        }
        assert not valid("targets", as_variable), targets
    assert valid("targets", TWO_TARGETS)
    assert "at most 8" in variables()["targets"]["description"].lower() and MAX_TARGETS == 8
