"""The scheduled drift repair and the S3 Inventory wiring, evaluated by Terraform itself.

The resources exist only when their variable turns them on (`count`), and what they hold
(commands per shard, alarm periods, ARNs) is computed from object variables with optional
attributes: the expression reader of test_terraform.py does not go that far. So these tests run
`terraform test` on a copy of terraform/: each `run` block below sets the variables, plans or
applies with a mock provider (`mock_provider`, no AWS, no credentials; only the provider's
schema, served by infra_check's schema-only provider as for `terraform validate`) and asserts on
the values Terraform computed. Validation rules are checked the same way (`expect_failures`).

The schema-only provider cannot tell an optional attribute from an optional-and-computed one, so
mocks cannot fill `data.aws_region.current.name` or the image digest: an override file in the
copy sets the two locals built from them (`region`, `image`). Nothing else of the module changes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infra_check import pins
from infra_check.engine import find
from infra_check.validate import _IGNORED_FILES, _environment, _install_provider
from migrate.cli import parse_splits
from tests.static.test_terraform import CHECKOV, CONFIG, one, resources

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "terraform"

OVERRIDE = """
locals {
  region = "eu-west-1"
  image  = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/lyve-replicator@sha256:0123456789abcdef"
}
"""

# Values shared by every run; LAMBDA_ZIP is replaced by a file made for the run.
HEADER = """
mock_provider "aws" {
  # Computed values (ARNs) are made up while planning, so plans can compare them.
  override_during = plan

  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::source-bucket", region = "eu-west-1" }
  }
  mock_resource "aws_ecs_cluster" {
    defaults = { arn = "arn:aws:ecs:eu-west-1:123456789012:cluster/lyve-replicator" }
  }
}

override_resource {
  target          = aws_ecs_task_definition.migrate
  override_during = plan
  values          = { arn = "arn:aws:ecs:eu-west-1:123456789012:task-definition/lyve-replicator-migrate:7" }
}

override_resource {
  target          = aws_iam_role.task
  override_during = plan
  values          = { arn = "arn:aws:iam::123456789012:role/lyve-replicator-task" }
}

override_resource {
  target          = aws_iam_role.execution
  override_during = plan
  values          = { arn = "arn:aws:iam::123456789012:role/lyve-replicator-execution" }
}

override_resource {
  target          = aws_iam_role.scheduler
  override_during = plan
  values          = { arn = "arn:aws:iam::123456789012:role/lyve-replicator-scheduler" }
}

override_resource {
  target          = aws_sqs_queue.this
  override_during = plan
  values = {
    arn = "arn:aws:sqs:eu-west-1:123456789012:lyve-replicator.fifo"
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/lyve-replicator.fifo"
  }
}

override_resource {
  target          = aws_sqs_queue.dlq
  override_during = plan
  values = {
    arn = "arn:aws:sqs:eu-west-1:123456789012:lyve-replicator-dlq.fifo"
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/lyve-replicator-dlq.fifo"
  }
}

override_resource {
  target          = aws_sqs_queue.drift_repair_failures
  override_during = plan
  values          = { arn = "arn:aws:sqs:eu-west-1:123456789012:lyve-replicator-drift-repair-failures" }
}

variables {
  bucket          = "source-bucket"
  secret          = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:lyve-AbCdEf"
  endpoint        = "https://s3.us-east-1.lyvecloud.seagate.com"
  target_bucket   = "target-bucket"
  event_delivery  = "eventbridge"
  vpc_id          = "vpc-0123456789abcdef0"
  subnet_ids      = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
  image_tag       = "abc1234"
  lambda_zip_path = "LAMBDA_ZIP"
}
"""

RUNS: dict[str, str] = {}


def run(name: str, body: str) -> str:
    RUNS[name] = f'run "{name}" {{\n{body}\n}}\n'
    return name


def hcl(value: str | list[str]) -> str:
    """A string (or list of strings) as an HCL literal that reads back as exactly that value."""
    if isinstance(value, list):
        return "[" + ", ".join(hcl(item) for item in value) + "]"
    assert all(ord(c) >= 0x20 for c in value), value  # control characters would need \u escapes
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("${", "$${").replace("%{", "%%{") + '"'


# Split points for four shards, in byte order; the second holds a space, quotes, é and /.
SPLITS = ["a b/", 'dir/café "x" y', "z"]
# What `--splits` must receive: the JSON list, as one argument. Encoded here by Python's json,
# not by Terraform's jsonencode, and read back by the CLI's own parser.
SPLITS_ARGUMENT = json.dumps(SPLITS, ensure_ascii=False, separators=(",", ":"))


# -- the harness itself: an assertion that does not hold fails its run --------------------------

FALSE_ASSERTION = run(
    "a_false_assertion_fails",
    """
  command = plan
  variables {
    drift_repair = { enabled = true, shards = 2, splits = ["m"] }
  }
  assert {
    condition     = length(aws_scheduler_schedule.drift_repair) == 3
    error_message = "deliberately false: two shards make two schedules"
  }
""",
)

# -- drift repair ---------------------------------------------------------------------------------

OFF_BY_DEFAULT = run(
    "off_by_default",
    """
  command = plan
  assert {
    condition = (
      length(aws_scheduler_schedule.drift_repair) == 0 && length(aws_scheduler_schedule_group.drift_repair) == 0
      && length(aws_iam_role.scheduler) == 0 && length(aws_sqs_queue.drift_repair_failures) == 0
      && length(aws_cloudwatch_metric_alarm.drift_remaining) == 0
      && length(aws_cloudwatch_metric_alarm.drift_repair_overdue) == 0
      && length(aws_cloudwatch_metric_alarm.drift_repair_failures) == 0
    )
    error_message = "drift repair must be off by default"
  }
  assert {
    condition     = !strcontains(aws_cloudwatch_dashboard.this.dashboard_body, "Drift")
    error_message = "no drift-repair widgets while it is off"
  }
  assert {
    condition = (
      length(aws_s3_bucket_inventory.source) == 0 && length(aws_iam_role_policy.task_inventory) == 0
      && output.source_inventory_manifest == null && output.source_inventory_destination_policy_statement == null
    )
    error_message = "the inventory must be off by default"
  }
""",
)

FOUR_SHARDS = run(
    "four_shards_on_the_cluster",
    """
  command = plan
  variables {
    drift_repair = { enabled = true, shards = 4, max_delete = 250, splits = SPLITS_HCL }
  }
  assert {
    condition     = length(aws_scheduler_schedule.drift_repair) == 4
    error_message = "one schedule per shard"
  }
  assert {
    condition     = length(toset(aws_scheduler_schedule.drift_repair[*].name)) == 4
    error_message = "schedule names must differ"
  }
  assert {
    condition = alltrue([
      for i, s in aws_scheduler_schedule.drift_repair :
      jsondecode(s.target[0].input) == {
        containerOverrides = [{
          name    = jsondecode(aws_ecs_task_definition.migrate.container_definitions)[0].name
          command = concat(
            jsondecode(aws_ecs_task_definition.migrate.container_definitions)[0].command,
            ["--delete", "--max-delete", "250", "--shard", "${i}/4", "--splits", SPLITS_ARGUMENT_HCL, "--metrics"],
          )
        }]
      }
    ])
    error_message = "each shard overrides the migrate container's command with --delete --max-delete 250 --shard i/4 --splits JSON --metrics"
  }
  assert {
    condition = alltrue([
      for s in aws_scheduler_schedule.drift_repair :
      s.target[0].arn == aws_ecs_cluster.this.arn
      && s.target[0].ecs_parameters[0].task_definition_arn == aws_ecs_task_definition.migrate.arn
      && s.target[0].ecs_parameters[0].launch_type == "FARGATE"
      && s.target[0].ecs_parameters[0].task_count == 1
      && s.target[0].role_arn == aws_iam_role.scheduler[0].arn
    ])
    error_message = "each schedule runs one migration task on the cluster, with the scheduler role"
  }
  assert {
    condition = alltrue([
      for s in aws_scheduler_schedule.drift_repair :
      s.target[0].ecs_parameters[0].network_configuration[0].subnets == toset(output.subnet_ids)
      && s.target[0].ecs_parameters[0].network_configuration[0].assign_public_ip == output.assign_public_ip
    ])
    error_message = "the network configuration is the one make migrate uses (terraform outputs)"
  }
  assert {
    condition = alltrue([
      for s in aws_scheduler_schedule.drift_repair :
      s.schedule_expression == "rate(1 day)" && s.schedule_expression_timezone == "UTC"
      && s.flexible_time_window[0].mode == "OFF" && s.state == "ENABLED"
      && s.group_name == aws_scheduler_schedule_group.drift_repair[0].name
      && s.target[0].retry_policy[0].maximum_retry_attempts > 0
      && s.target[0].retry_policy[0].maximum_event_age_in_seconds >= 60
      && s.target[0].dead_letter_config[0].arn == aws_sqs_queue.drift_repair_failures[0].arn
    ])
    error_message = "schedule, time window, retries and dead-letter queue"
  }
  assert {
    condition     = aws_sqs_queue.drift_repair_failures[0].fifo_queue != true && aws_sqs_queue.drift_repair_failures[0].sqs_managed_sse_enabled
    error_message = "the Scheduler's dead-letter queue must be a standard queue (FIFO is not supported), encrypted"
  }
""".replace("SPLITS_HCL", hcl(SPLITS)).replace("SPLITS_ARGUMENT_HCL", hcl(SPLITS_ARGUMENT)),
)

ONE_SHARD_NO_DELETE = run(
    "one_shard_without_delete",
    """
  command = plan
  variables {
    drift_repair = { enabled = true, delete = false, schedule = "cron(15 3 * * ? *)", timezone = "Europe/Paris" }
    assign_public_ip = true
  }
  assert {
    condition = (
      length(aws_scheduler_schedule.drift_repair) == 1
      && jsondecode(aws_scheduler_schedule.drift_repair[0].target[0].input).containerOverrides[0].command
      == ["python", "-m", "migrate", "--progress", "log", "--metrics"]
    )
    error_message = "one shard: no --shard; no delete: neither --delete nor --max-delete"
  }
  assert {
    condition = (
      aws_scheduler_schedule.drift_repair[0].schedule_expression == "cron(15 3 * * ? *)"
      && aws_scheduler_schedule.drift_repair[0].schedule_expression_timezone == "Europe/Paris"
      && aws_scheduler_schedule.drift_repair[0].target[0].ecs_parameters[0].network_configuration[0].assign_public_ip
    )
    error_message = "schedule, time zone and public IP as given"
  }
""",
)

SCHEDULER_ROLE = run(
    "scheduler_role",
    """
  command = plan
  variables {
    drift_repair = { enabled = true }
  }
  assert {
    condition = (
      length(data.aws_iam_policy_document.scheduler[0].statement) == 3
      && toset([for s in data.aws_iam_policy_document.scheduler[0].statement : s.sid])
      == toset(["RunMigrationTask", "PassTaskRoles", "DeadLetterFailedRuns"])
    )
    error_message = "the scheduler role may do three things, no more"
  }
  assert {
    condition = alltrue([
      for s in data.aws_iam_policy_document.scheduler[0].statement : s.sid != "RunMigrationTask" || (
        s.actions == toset(["ecs:RunTask"])
        && s.resources == toset(["arn:aws:ecs:eu-west-1:123456789012:task-definition/${aws_ecs_task_definition.migrate.family}:*"])
        && one([for c in s.condition : c if c.variable == "ecs:cluster"]).values == tolist([aws_ecs_cluster.this.arn])
        && one([for c in s.condition : c if c.variable == "ecs:cluster"]).test == "ArnEquals"
      )
    ])
    error_message = "RunTask on the migration task definition family only, on this cluster only"
  }
  assert {
    condition = alltrue([
      for s in data.aws_iam_policy_document.scheduler[0].statement : s.sid != "PassTaskRoles" || (
        s.actions == toset(["iam:PassRole"])
        && s.resources == toset([aws_iam_role.task.arn, aws_iam_role.execution.arn])
        && length(s.resources) == 2
        && one([for c in s.condition : c if c.variable == "iam:PassedToService"]).values == tolist(["ecs-tasks.amazonaws.com"])
      )
    ])
    error_message = "PassRole on exactly the task and execution roles, to ECS tasks only"
  }
  assert {
    condition = alltrue([
      for s in data.aws_iam_policy_document.scheduler[0].statement : s.sid != "DeadLetterFailedRuns" || (
        s.actions == toset(["sqs:SendMessage"]) && s.resources == toset([aws_sqs_queue.drift_repair_failures[0].arn])
      )
    ])
    error_message = "SendMessage to its own dead-letter queue only"
  }
  assert {
    condition = (
      one(data.aws_iam_policy_document.scheduler_assume[0].statement[0].principals).identifiers == toset(["scheduler.amazonaws.com"])
      && one(data.aws_iam_policy_document.scheduler_assume[0].statement[0].condition).variable == "aws:SourceAccount"
      && one(data.aws_iam_policy_document.scheduler_assume[0].statement[0].condition).values == tolist(["123456789012"])
    )
    error_message = "only EventBridge Scheduler of this account may assume the role"
  }
""",
)


@dataclass(frozen=True)
class Overdue:
    """The overdue alarm: fewer than `threshold` reports in each of `windows` windows of `window` s."""

    window: int
    windows: int
    threshold: int


def _alarm_run(name: str, drift_repair: str, period: int, overdue: Overdue | None) -> str:
    overdue_check = (
        "length(aws_cloudwatch_metric_alarm.drift_repair_overdue) == 0"
        if overdue is None
        else f"""(
      aws_cloudwatch_metric_alarm.drift_repair_overdue[0].namespace == "LyveReplicator"
      && aws_cloudwatch_metric_alarm.drift_repair_overdue[0].metric_name == "Seconds"
      && aws_cloudwatch_metric_alarm.drift_repair_overdue[0].statistic == "SampleCount"
      && aws_cloudwatch_metric_alarm.drift_repair_overdue[0].dimensions == tomap({{ Queue = aws_sqs_queue.this.name }})
      && aws_cloudwatch_metric_alarm.drift_repair_overdue[0].period == {overdue.window}
      && aws_cloudwatch_metric_alarm.drift_repair_overdue[0].evaluation_periods == {overdue.windows}
      && aws_cloudwatch_metric_alarm.drift_repair_overdue[0].datapoints_to_alarm == {overdue.windows}
      && aws_cloudwatch_metric_alarm.drift_repair_overdue[0].comparison_operator == "LessThanThreshold"
      && aws_cloudwatch_metric_alarm.drift_repair_overdue[0].threshold == {overdue.threshold}
      && aws_cloudwatch_metric_alarm.drift_repair_overdue[0].treat_missing_data == "breaching"
      && aws_cloudwatch_metric_alarm.drift_repair_overdue[0].alarm_actions == toset(["arn:aws:sns:eu-west-1:123456789012:alarms"])
    )"""
    )
    return run(
        name,
        f"""
  command = plan
  variables {{
    drift_repair    = {drift_repair}
    alarm_topic_arn = "arn:aws:sns:eu-west-1:123456789012:alarms"
  }}
  assert {{
    condition = (
      one([for q in aws_cloudwatch_metric_alarm.drift_remaining[0].metric_query : q if q.return_data == true]).expression == "remaining + failed"
      && one([for q in aws_cloudwatch_metric_alarm.drift_remaining[0].metric_query : q if q.id == "remaining"]).metric[0].metric_name == "DriftRemaining"
      && one([for q in aws_cloudwatch_metric_alarm.drift_remaining[0].metric_query : q if q.id == "failed"]).metric[0].metric_name == "DriftFailed"
      && alltrue([
        for q in aws_cloudwatch_metric_alarm.drift_remaining[0].metric_query : q.id == "left" || (
          q.metric[0].namespace == "LyveReplicator" && q.metric[0].stat == "Sum" && q.metric[0].period == {period}
          && q.metric[0].dimensions == tomap({{ Queue = aws_sqs_queue.this.name }})
        )
      ])
      && aws_cloudwatch_metric_alarm.drift_remaining[0].comparison_operator == "GreaterThanThreshold"
      && aws_cloudwatch_metric_alarm.drift_remaining[0].threshold == 0
      && aws_cloudwatch_metric_alarm.drift_remaining[0].treat_missing_data == "ignore"
      && aws_cloudwatch_metric_alarm.drift_remaining[0].alarm_actions == toset(["arn:aws:sns:eu-west-1:123456789012:alarms"])
    )
    error_message = "drift_remaining: remaining + failed > 0, summed over {period} s, state kept between runs"
  }}
  assert {{
    condition     = {overdue_check}
    error_message = "drift_repair_overdue: {overdue}"
  }}
  assert {{
    condition = alltrue([
      for metric in ["DriftFound", "DriftRepaired", "DriftFailed", "DriftRemaining", "ObjectsCompared", "Seconds", "drift-repair-failures"] :
      strcontains(aws_cloudwatch_dashboard.this.dashboard_body, metric)
    ])
    error_message = "the dashboard shows the drift-repair results and failed invocations"
  }}
  assert {{
    condition = (
      aws_cloudwatch_metric_alarm.drift_repair_failures[0].dimensions == tomap({{ QueueName = aws_sqs_queue.drift_repair_failures[0].name }})
      && aws_cloudwatch_metric_alarm.drift_repair_failures[0].metric_name == "ApproximateNumberOfMessagesVisible"
      && aws_cloudwatch_metric_alarm.drift_repair_failures[0].threshold == 0
    )
    error_message = "failed schedule invocations alarm"
  }}
""",
    )


FOUR = f"shards = 4, splits = {hcl(SPLITS)}"
ALARMS = {
    # (drift_repair, period of the drift-remaining alarm, the overdue alarm)
    # A daily window has no margin: three of them by default.
    "alarms_daily": ("{ enabled = true }", 86400, Overdue(86400, 3, 1)),
    "alarms_daily_four_shards": (f"{{ enabled = true, {FOUR} }}", 86400, Overdue(86400, 3, 4)),
    # 6 h and a quarter; twice 6 h holds one such window.
    "alarms_every_6_hours": (
        f'{{ enabled = true, schedule = "rate(6 hours)", {FOUR} }}',
        21600,
        Overdue(27000, 1, 4),
    ),
    # 30 min + 7 (a quarter, in whole minutes); 2 h hold three.
    "alarms_every_30_minutes": (
        '{ enabled = true, schedule = "rate(30 minutes)" }',
        1800,
        Overdue(2220, 3, 1),
    ),
    # 20 h and a quarter is over a day: a day's window.
    "alarms_every_20_hours": (
        f'{{ enabled = true, schedule = "rate(20 hours)", {FOUR} }}',
        72000,
        Overdue(86400, 1, 4),
    ),
    # Over a day: hours without any report, whatever the shards.
    "alarms_every_3_days": (
        f'{{ enabled = true, schedule = "rate(3 days)", {FOUR} }}',
        86400,
        Overdue(3600, 144, 1),
    ),
    "alarms_weekly": ('{ enabled = true, schedule = "rate(7 days)" }', 86400, Overdue(3600, 168, 1)),
    "alarms_cron": (
        f'{{ enabled = true, schedule = "cron(0 2 ? * MON-FRI *)", {FOUR} }}',
        86400,
        Overdue(86400, 3, 4),
    ),
    "alarms_overdue_given": ("{ enabled = true, overdue_after_hours = 30 }", 86400, Overdue(86400, 1, 1)),
    "alarms_one_time": ('{ enabled = true, schedule = "at(2030-01-01T03:00:00)" }', 86400, None),
}
for _name, (_value, _period, _overdue) in ALARMS.items():
    _alarm_run(_name, _value, _period, _overdue)


def _refused(name: str, variables: str, failing: str) -> str:
    return run(
        name,
        f"""
  command = plan
  variables {{
    {variables}
  }}
  expect_failures = [{failing}]
""",
    )


REFUSED = {
    "refuses_schedule_every_day": (
        'drift_repair = { enabled = true, schedule = "every day" }',
        "var.drift_repair",
    ),
    "refuses_schedule_rate_zero": ('drift_repair = { schedule = "rate(0 days)" }', "var.drift_repair"),
    "refuses_schedule_cron_5_fields": ('drift_repair = { schedule = "cron(0 3 * * ?)" }', "var.drift_repair"),
    "refuses_schedule_at_date_only": ('drift_repair = { schedule = "at(2030-01-01)" }', "var.drift_repair"),
    "refuses_0_shards": ("drift_repair = { enabled = true, shards = 0 }", "var.drift_repair"),
    "refuses_65_shards": ("drift_repair = { enabled = true, shards = 65 }", "var.drift_repair"),
    "refuses_fractional_shards": ("drift_repair = { enabled = true, shards = 2.5 }", "var.drift_repair"),
    "refuses_negative_max_delete": ("drift_repair = { enabled = true, max_delete = -1 }", "var.drift_repair"),
    "refuses_bad_timezone": ('drift_repair = { enabled = true, timezone = "UTC; rm" }', "var.drift_repair"),
    "refuses_overdue_over_7_days": (
        "drift_repair = { enabled = true, overdue_after_hours = 169 }",
        "var.drift_repair",
    ),
    # Windows under an hour: CloudWatch looks back one day at most.
    "refuses_overdue_over_a_day_of_short_windows": (
        'drift_repair = { enabled = true, schedule = "rate(30 minutes)", overdue_after_hours = 25 }',
        "aws_cloudwatch_metric_alarm.drift_repair_overdue",
    ),
    "refuses_shards_without_splits": ("drift_repair = { enabled = true, shards = 4 }", "var.drift_repair"),
    "refuses_too_few_splits": (
        f"drift_repair = {{ enabled = true, shards = 4, splits = {hcl(SPLITS[:2])} }}",
        "var.drift_repair",
    ),
    "refuses_too_many_splits": (
        f"drift_repair = {{ enabled = true, shards = 2, splits = {hcl(SPLITS[:2])} }}",
        "var.drift_repair",
    ),
    "refuses_splits_for_one_shard": ('drift_repair = { enabled = true, splits = ["m"] }', "var.drift_repair"),
    "refuses_splits_out_of_order": (
        f"drift_repair = {{ enabled = true, shards = 4, splits = {hcl([SPLITS[1], SPLITS[0], SPLITS[2]])} }}",
        "var.drift_repair",
    ),
    # In byte order as written (U+0327 < U+0331), not once Terraform has composed the first (NFC:
    # "e" + U+0327 is U+0229) and left the second alone (no composed form).
    "refuses_splits_that_nfc_puts_out_of_order": (
        'drift_repair = { enabled = true, shards = 3, splits = ["e\\u0327x", "e\\u0331y"] }',
        "var.drift_repair",
    ),
    # 15 keys of 602 characters: over the 8,192 characters ECS takes as a task's overrides.
    "refuses_a_command_over_the_ecs_limit": (
        'drift_repair = { enabled = true, shards = 16, splits = [for i in range(1, 16) : format("%02d%0600d", i, 0)] }',
        "aws_scheduler_schedule.drift_repair",
    ),
    # 11 keys of 502 characters fit (accepts_long_split_points); made of "é", each counts as a
    # six-character \u escape.
    "refuses_non_ascii_split_points_over_the_ecs_limit": (
        "drift_repair = { enabled = true, shards = 12, splits = "
        '[for i in range(1, 12) : format("%02d%s", i, replace(format("%0500d", 0), "0", "é"))] }',
        "aws_scheduler_schedule.drift_repair",
    ),
    "refuses_inventory_without_bucket": ("source_inventory = { enabled = true }", "var.source_inventory"),
    "refuses_inventory_bucket_name": (
        'source_inventory = { enabled = true, destination_bucket_arn = "inventory-bucket" }',
        "var.source_inventory",
    ),
    "refuses_inventory_orc": (
        'source_inventory = { enabled = true, destination_bucket_arn = "arn:aws:s3:::inv-bucket", format = "ORC" }',
        "var.source_inventory",
    ),
    "refuses_inventory_hourly": (
        'source_inventory = { enabled = true, destination_bucket_arn = "arn:aws:s3:::inv-bucket", frequency = "Hourly" }',
        "var.source_inventory",
    ),
    "refuses_inventory_prefix_slash": (
        'source_inventory = { enabled = true, destination_bucket_arn = "arn:aws:s3:::inv-bucket", prefix = "/inventory/" }',
        "var.source_inventory",
    ),
    "refuses_inventory_account": (
        'source_inventory = { enabled = true, destination_bucket_arn = "arn:aws:s3:::inv-bucket", destination_account_id = "12345" }',
        "var.source_inventory",
    ),
    "refuses_inventory_in_the_source_bucket": (
        'source_inventory = { enabled = true, destination_bucket_arn = "arn:aws:s3:::source-bucket" }',
        "aws_s3_bucket_inventory.source",
    ),
}
for _name, (_variables, _failing) in REFUSED.items():
    _refused(_name, _variables, _failing)

ACCEPTED = run(
    "accepts_the_documented_forms",
    """
  command = plan
  variables {
    drift_repair = {
      enabled = true, schedule = "rate(1 hour)", shards = 64, max_delete = 0,
      timezone = "America/Argentina/Buenos_Aires", overdue_after_hours = 168,
      splits = [for i in range(1, 64) : format("k%02d", i)]
    }
  }
  assert {
    condition     = length(aws_scheduler_schedule.drift_repair) == 64
    error_message = "64 shards, --max-delete 0 and a three-part time zone are valid"
  }
  assert {
    condition = alltrue([
      for i, s in aws_scheduler_schedule.drift_repair : (
        contains(jsondecode(s.target[0].input).containerOverrides[0].command, "${i}/64")
        && jsondecode(element(
          jsondecode(s.target[0].input).containerOverrides[0].command,
          index(jsondecode(s.target[0].input).containerOverrides[0].command, "--splits") + 1,
        )) == [for i in range(1, 64) : format("k%02d", i)]
      )
    ])
    error_message = "shard i is i/64, and every shard gets the same 63 split points"
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.drift_repair_overdue[0].period == 4500 && aws_cloudwatch_metric_alarm.drift_repair_overdue[0].evaluation_periods == 134
    error_message = "168 h of 75-minute windows: 134 windows, within CloudWatch's seven days"
  }
""",
)

LONG_SPLITS = run(
    "accepts_long_split_points",
    """
  command = plan
  variables {
    drift_repair = {
      enabled = true, schedule = "rate(30 minutes)", overdue_after_hours = 24, shards = 12,
      splits = [for i in range(1, 12) : format("%02d%0500d", i, 0)]
    }
  }
  assert {
    condition     = length(aws_scheduler_schedule.drift_repair) == 12
    error_message = "11 keys of 502 characters fit in ECS's 8,192 characters of overrides"
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.drift_repair_overdue[0].period * aws_cloudwatch_metric_alarm.drift_repair_overdue[0].evaluation_periods == 84360
    error_message = "24 h of 37-minute windows: 38 of them, within CloudWatch's one day for windows under an hour"
  }
""",
)

# -- S3 Inventory ----------------------------------------------------------------------------------

INVENTORY = run(
    "inventory",
    """
  command = plan
  variables {
    source_inventory = { enabled = true, destination_bucket_arn = "arn:aws:s3:::inv-bucket" }
  }
  assert {
    condition = (
      aws_s3_bucket_inventory.source[0].bucket == "source-bucket"
      && aws_s3_bucket_inventory.source[0].included_object_versions == "Current"
      && aws_s3_bucket_inventory.source[0].enabled
      && aws_s3_bucket_inventory.source[0].optional_fields == toset(["Size", "LastModifiedDate", "ETag", "StorageClass", "IsMultipartUploaded", "EncryptionStatus"])
      && aws_s3_bucket_inventory.source[0].schedule[0].frequency == "Daily"
    )
    error_message = "current versions, the listing's fields plus multipart and encryption status, daily"
  }
  assert {
    condition = (
      aws_s3_bucket_inventory.source[0].destination[0].bucket[0].format == "CSV"
      && aws_s3_bucket_inventory.source[0].destination[0].bucket[0].bucket_arn == "arn:aws:s3:::inv-bucket"
      && aws_s3_bucket_inventory.source[0].destination[0].bucket[0].prefix == "inventory"
      && length(aws_s3_bucket_inventory.source[0].destination[0].bucket[0].encryption[0].sse_s3) == 1
    )
    error_message = "CSV, under the prefix, encrypted"
  }
  assert {
    condition = output.source_inventory_manifest == "s3://inv-bucket/inventory/source-bucket/${aws_s3_bucket_inventory.source[0].name}/YYYY-MM-DDTHH-MMZ/manifest.json"
    error_message = "manifests are at PREFIX/SOURCE-BUCKET/CONFIG-ID/YYYY-MM-DDTHH-MMZ/manifest.json (S3 Inventory's layout)"
  }
  assert {
    condition = alltrue([
      for s in data.aws_iam_policy_document.task_inventory[0].statement :
      s.sid == "ReadSourceInventory" ? (
        s.actions == toset(["s3:GetObject"])
        && s.resources == toset(["arn:aws:s3:::inv-bucket/inventory/source-bucket/${aws_s3_bucket_inventory.source[0].name}/*"])
      ) : (
        s.actions == toset(["s3:ListBucket"]) && s.resources == toset(["arn:aws:s3:::inv-bucket"])
        && one(s.condition).values == tolist(["inventory/source-bucket/${aws_s3_bucket_inventory.source[0].name}/*"])
      )
    ]) && length(data.aws_iam_policy_document.task_inventory[0].statement) == 2
    error_message = "the task role reads this inventory's files only"
  }
  assert {
    condition = aws_iam_role_policy.task_inventory[0].policy == data.aws_iam_policy_document.task_inventory[0].json
    error_message = "the reading policy is attached"
  }
  assert {
    condition = jsondecode(output.source_inventory_destination_policy_statement) == {
      Sid       = "S3InventoryWrites"
      Effect    = "Allow"
      Principal = { Service = "s3.amazonaws.com" }
      Action    = "s3:PutObject"
      Resource  = "arn:aws:s3:::inv-bucket/inventory/source-bucket/${aws_s3_bucket_inventory.source[0].name}/*"
      Condition = {
        ArnLike      = { "aws:SourceArn" = "arn:aws:s3:::source-bucket" }
        StringEquals = { "aws:SourceAccount" = "123456789012", "s3:x-amz-acl" = "bucket-owner-full-control" }
      }
    }
    error_message = "the destination policy statement lets S3 write this inventory, for this bucket and account only"
  }
""",
)

INVENTORY_NO_PREFIX = run(
    "inventory_without_prefix_weekly",
    """
  command = plan
  variables {
    source_inventory = { enabled = true, destination_bucket_arn = "arn:aws:s3:::inv-bucket", prefix = "", frequency = "Weekly", destination_account_id = "210987654321" }
  }
  assert {
    condition = (
      output.source_inventory_manifest == "s3://inv-bucket/source-bucket/lyve-replicator-migrate/YYYY-MM-DDTHH-MMZ/manifest.json"
      && aws_s3_bucket_inventory.source[0].destination[0].bucket[0].prefix == null
      && aws_s3_bucket_inventory.source[0].destination[0].bucket[0].account_id == "210987654321"
      && aws_s3_bucket_inventory.source[0].schedule[0].frequency == "Weekly"
    )
    error_message = "no prefix: SOURCE-BUCKET/CONFIG-ID/ at the bucket's root"
  }
""",
)


# -- running them ------------------------------------------------------------------------------------


@dataclass
class RunResult:
    status: str = "not run"
    diagnostics: list[str] = field(default_factory=list)


def _terraform_test(tmp: Path) -> tuple[dict[str, RunResult], str]:
    env = _environment(tmp, pins.SCHEMA_FILE)
    home = tmp / "home"
    home.mkdir()
    env["HOME"] = str(home)
    terraform = find("library", env)
    module = tmp / "module"
    shutil.copytree(TF, module, ignore=_IGNORED_FILES)
    (module / "test_override.tf").write_text(OVERRIDE)
    lambda_zip = tmp / "lambda.zip"
    lambda_zip.write_bytes(b"not read: only hashed")
    (module / "tests").mkdir()
    # One file per run: a run that errors makes Terraform skip the rest of its file.
    header = HEADER.replace("LAMBDA_ZIP", str(lambda_zip))
    for name, block in RUNS.items():
        (module / "tests" / f"{name}.tftest.hcl").write_text(header + block)
    _install_provider(tmp / "plugins", terraform.platform)
    chdir = f"-chdir={module}"
    init = terraform.run(
        [chdir, "init", "-backend=false", "-input=false", "-no-color", f"-plugin-dir={tmp / 'plugins'}"],
        env,
        300,
    )
    assert init.returncode == 0, init.stderr + init.stdout
    done = terraform.run([chdir, "test", "-json", "-no-color"], env, 600)
    results = {name: RunResult() for name in RUNS}
    for line in done.stdout.splitlines():
        event = json.loads(line)
        # Each file holds one run, named after it: its file-level errors are the run's.
        name = event.get("@testrun") or Path(event.get("@testfile", "")).name.removesuffix(".tftest.hcl")
        if event.get("type") == "test_run" and event["test_run"].get("progress") == "complete":
            results[event["test_run"]["run"]].status = event["test_run"]["status"]
        elif event.get("type") == "diagnostic":
            diagnostic = event["diagnostic"]
            values = "; ".join(
                f"{v['traversal']} {v['statement']}" for v in diagnostic.get("snippet", {}).get("values", [])
            )
            message = (
                f"{diagnostic['severity']}: {diagnostic['summary']}: {diagnostic.get('detail', '')} {values}"
            )
            results.setdefault(name or "(file)", RunResult()).diagnostics.append(message)
    return results, done.stdout + done.stderr


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, RunResult]]:
    with tempfile.TemporaryDirectory(prefix="drift-repair-test-") as tmp:
        results, output = _terraform_test(Path(tmp))
        assert results, output
        yield results


def _passed(runs: dict[str, RunResult], name: str) -> None:
    result = runs[name]
    assert result.status == "pass", (name, result.status, result.diagnostics)


def test_a_false_assertion_fails_its_run(runs: dict[str, RunResult]) -> None:
    # Shows the assertions below are evaluated, not skipped: this one does not hold.
    result = runs[FALSE_ASSERTION]
    assert result.status == "fail"
    assert any("deliberately false" in d for d in result.diagnostics), result.diagnostics


def test_drift_repair_and_the_inventory_are_off_by_default(runs: dict[str, RunResult]) -> None:
    _passed(runs, OFF_BY_DEFAULT)


def test_a_schedule_per_shard_runs_the_migration_task_on_the_cluster(runs: dict[str, RunResult]) -> None:
    _passed(runs, FOUR_SHARDS)


def test_one_shard_without_delete_runs_a_plain_repair_with_metrics(runs: dict[str, RunResult]) -> None:
    _passed(runs, ONE_SHARD_NO_DELETE)


def test_the_scheduler_may_run_only_the_migration_task_and_pass_only_its_roles(
    runs: dict[str, RunResult],
) -> None:
    _passed(runs, SCHEDULER_ROLE)


@pytest.mark.parametrize("name", list(ALARMS))
def test_alarms_watch_the_runs_result_over_the_schedules_period(
    runs: dict[str, RunResult], name: str
) -> None:
    _passed(runs, name)


@pytest.mark.parametrize("name", list(REFUSED))
def test_invalid_settings_are_refused_before_anything_is_planned(
    runs: dict[str, RunResult], name: str
) -> None:
    _passed(runs, name)


def test_the_limits_themselves_are_accepted(runs: dict[str, RunResult]) -> None:
    _passed(runs, ACCEPTED)
    _passed(runs, LONG_SPLITS)


def test_the_splits_argument_is_what_the_cli_reads_back() -> None:
    # The argument the schedules must carry (asserted in FOUR_SHARDS) is one JSON list that
    # `--splits` parses into the very keys given, a space, quotes, "é" and "/" included.
    assert parse_splits(SPLITS_ARGUMENT) == tuple(SPLITS)
    assert " " in SPLITS[1] and '"' in SPLITS[1] and "é" in SPLITS[1] and "/" in SPLITS[1]
    assert sorted(SPLITS, key=lambda key: key.encode()) == SPLITS


def test_the_inventory_feeds_the_migration_and_tells_the_destination_policy(
    runs: dict[str, RunResult],
) -> None:
    _passed(runs, INVENTORY)
    _passed(runs, INVENTORY_NO_PREFIX)


def test_every_run_block_was_run() -> None:
    # A run whose name the fixture did not see would make its test pass vacuously.
    assert set(RUNS) == {
        FALSE_ASSERTION,
        OFF_BY_DEFAULT,
        FOUR_SHARDS,
        ONE_SHARD_NO_DELETE,
        SCHEDULER_ROLE,
        ACCEPTED,
        LONG_SPLITS,
        INVENTORY,
        INVENTORY_NO_PREFIX,
        *ALARMS,
        *REFUSED,
    }


# -- what the parsed configuration shows (no evaluation needed) ----------------------------------


def test_the_schedule_uses_the_tasks_security_group_and_the_roles_are_attached() -> None:
    schedule = one("aws_scheduler_schedule", "drift_repair")
    network = schedule["target"][0]["ecs_parameters"][0]["network_configuration"][0]
    assert network == {
        "subnets": "${var.subnet_ids}",
        "security_groups": ["${aws_security_group.tasks.id}"],
        "assign_public_ip": "${var.assign_public_ip}",
    }
    # make migrate starts its tasks with the same three values.
    outputs = {k: v for item in CONFIG["output"] for k, v in item.items()}
    assert outputs["security_group_id"]["value"] == "${aws_security_group.tasks.id}"
    assert outputs["subnet_ids"]["value"] == "${var.subnet_ids}"
    assert outputs["assign_public_ip"]["value"] == "${var.assign_public_ip}"
    policy = one("aws_iam_role_policy", "scheduler")
    assert (policy["role"], policy["policy"]) == (
        "${aws_iam_role.scheduler[0].id}",
        "${data.aws_iam_policy_document.scheduler[0].json}",
    )
    inventory_policy = one("aws_iam_role_policy", "task_inventory")
    assert inventory_policy["role"] == "${aws_iam_role.task.id}"


def test_nothing_new_grants_a_wildcard_action_or_writes_a_bucket_policy() -> None:
    # A bucket has one policy: writing the inventory destination's would replace its owner's.
    assert resources("aws_s3_bucket_policy") == {}
    documents = {
        name: body
        for item in CONFIG["data"]
        for dtype, named in item.items()
        if dtype == "aws_iam_policy_document"
        for name, body in named.items()
    }
    for name in ("scheduler", "scheduler_assume", "task_inventory"):
        statements = documents[name]["statement"]
        assert statements, name
        for statement in statements:
            assert all("*" not in action for action in statement["actions"]), (name, statement)


def test_checkov_passes_with_drift_repair_and_the_inventory_on(tmp_path: Path) -> None:
    # checkov resolves `count` from the variables: off (the default), it leaves these out.
    var_file = tmp_path / "on.tfvars"
    var_file.write_text(
        'event_delivery = "eventbridge"\n'
        'drift_repair = { enabled = true, shards = 2, splits = ["m"] }\n'
        'source_inventory = { enabled = true, destination_bucket_arn = "arn:aws:s3:::inv-bucket" }\n'
    )
    result = subprocess.run(
        [
            str(CHECKOV),
            *("-d", "terraform", "--var-file", str(var_file), "--framework", "terraform"),
            *("--output", "json", "--skip-download"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    report = json.loads(result.stdout)
    failed = report["results"]["failed_checks"]
    assert failed == [], [(c["check_id"], c["resource"]) for c in failed]
    checked = {
        c["resource"] for c in report["results"]["passed_checks"] + report["results"]["skipped_checks"]
    }
    assert {
        "aws_scheduler_schedule.drift_repair",
        "aws_sqs_queue.drift_repair_failures",
        "aws_iam_role.scheduler",
        "aws_iam_role_policy.task_inventory",
    } <= {r.split("[")[0] for r in checked}
