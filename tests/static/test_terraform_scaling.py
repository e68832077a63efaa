"""Scaling from zero, the worker's long poll and the enqueue Lambda's concurrency, evaluated by
Terraform itself: `terraform test` on a copy of terraform/ with the mock provider and the values
of test_drift_repair.py (no AWS, no credentials), each `run` planning one configuration and
asserting on what Terraform computed (`min`, `floor`, `concat` and `jsonencode` included, which
the expression reader of test_terraform.py only approximates). Validation rules are checked the
same way (`expect_failures`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infra_check import pins
from infra_check.engine import find
from infra_check.validate import _IGNORED_FILES, _environment, _install_provider
from tests.static.test_drift_repair import HEADER, OVERRIDE

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "terraform"

RUNS: dict[str, str] = {}


def run(name: str, body: str) -> str:
    RUNS[name] = f'run "{name}" {{\n{body}\n}}\n'
    return name


# The environment of the worker's container, by name.
WORKER_ENV = "{ for e in jsondecode(aws_ecs_task_definition.worker.container_definitions)[0].environment : e.name => e.value }"
MIGRATE_ENV = "{ for e in jsondecode(aws_ecs_task_definition.migrate.container_definitions)[0].environment : e.name => e.value }"

FALSE_ASSERTION = run(
    "a_false_assertion_fails",
    """
  command = plan
  assert {
    condition     = aws_lambda_function.enqueue.reserved_concurrent_executions == 51
    error_message = "deliberately false: the default is 50"
  }
""",
)

DEFAULTS = run(
    "defaults",
    f"""
  command = plan
  assert {{
    condition     = aws_lambda_function.enqueue.reserved_concurrent_executions == 50
    error_message = "the Lambda's reserved concurrency must default to 50"
  }}
  assert {{
    condition = (
      aws_sqs_queue.this.receive_wait_time_seconds == 20
      && {WORKER_ENV}["RECEIVE_WAIT_SECONDS"] == "20"
      && !contains(keys({MIGRATE_ENV}), "RECEIVE_WAIT_SECONDS")
    )
    error_message = "the worker must long-poll 20 s, as the queue does"
  }}
  assert {{
    condition     = {WORKER_ENV}["QUEUE_URL"] == aws_sqs_queue.this.url
    error_message = "the worker keeps the shared environment"
  }}
  assert {{
    condition = (
      length(aws_appautoscaling_policy.from_zero) == 0 && length(aws_cloudwatch_metric_alarm.queue_has_messages) == 0
      && length(aws_appautoscaling_policy.to_zero) == 0 && length(aws_cloudwatch_metric_alarm.queue_idle) == 0
    )
    error_message = "min_tasks = 1 (the default) has no step policies"
  }}
  assert {{
    condition = (
      aws_cloudwatch_metric_alarm.lambda_throttles.namespace == "AWS/Lambda"
      && aws_cloudwatch_metric_alarm.lambda_throttles.metric_name == "Throttles"
      && aws_cloudwatch_metric_alarm.lambda_throttles.dimensions["FunctionName"] == "lyve-replicator-enqueue"
      && aws_cloudwatch_metric_alarm.lambda_errors.metric_name == "Errors"
      && aws_cloudwatch_metric_alarm.lambda_errors.dimensions["FunctionName"] == "lyve-replicator-enqueue"
      && length(aws_cloudwatch_metric_alarm.lambda_throttles.alarm_actions) == 0
    )
    error_message = "the Lambda's throttles and errors alarms watch this function"
  }}
""",
)

SCALE_TO_ZERO = run(
    "scale_to_zero",
    """
  command = plan
  variables {
    min_tasks       = 0
    alarm_topic_arn = "arn:aws:sns:eu-west-1:123456789012:alarms"
  }
  assert {
    condition = (
      aws_appautoscaling_policy.from_zero[0].step_scaling_policy_configuration[0].adjustment_type == "ChangeInCapacity"
      && alltrue([
        for step in aws_appautoscaling_policy.from_zero[0].step_scaling_policy_configuration[0].step_adjustment :
        step.scaling_adjustment > 0
      ])
    )
    error_message = "scale-from-zero must only ever add tasks"
  }
  assert {
    condition = (
      one([for q in aws_cloudwatch_metric_alarm.queue_has_messages[0].metric_query : q.expression if q.id == "no_worker"])
      == "(visible > 0) AND (inflight == 0) AND (FILL(running, 0) == 0)"
      && one(flatten([
        for q in aws_cloudwatch_metric_alarm.queue_has_messages[0].metric_query : [
          for m in q.metric : m.dimensions if m.metric_name == "RunningTaskCount" && m.namespace == "ECS/ContainerInsights"
        ]
      ])) == tomap({ ClusterName = "lyve-replicator", ServiceName = "lyve-replicator-worker" })
    )
    error_message = "the scale-from-zero alarm must fire only while no task of this service runs"
  }
  assert {
    condition = (
      aws_cloudwatch_metric_alarm.lambda_throttles.alarm_actions == toset(["arn:aws:sns:eu-west-1:123456789012:alarms"])
      && aws_cloudwatch_metric_alarm.lambda_errors.ok_actions == toset(["arn:aws:sns:eu-west-1:123456789012:alarms"])
      && aws_cloudwatch_metric_alarm.lambda_throttles.alarm_actions == aws_cloudwatch_metric_alarm.dlq_not_empty.alarm_actions
    )
    error_message = "the Lambda's alarms notify the alarm topic, as the others do"
  }
""",
)

SHORT_DEADLINE = run(
    "short_shutdown_deadline",
    f"""
  command = plan
  variables {{
    shutdown_deadline_seconds = 7.5
  }}
  assert {{
    condition = (
      aws_sqs_queue.this.receive_wait_time_seconds == 5 && {WORKER_ENV}["RECEIVE_WAIT_SECONDS"] == "5"
    )
    error_message = "a poll must end 2 s inside the shutdown deadline, for the queue and the worker alike"
  }}
""",
)

CONCURRENCY_GIVEN = run(
    "reserved_concurrency_given",
    """
  command = plan
  variables {
    lambda_reserved_concurrency = 200
  }
  assert {
    condition = (
      aws_lambda_function.enqueue.reserved_concurrent_executions == 200
      && strcontains(aws_cloudwatch_metric_alarm.lambda_throttles.alarm_description, "(200)")
    )
    error_message = "lambda_reserved_concurrency sets the function's reserved concurrency"
  }
""",
)

REFUSED = {
    f"refuses_reserved_concurrency_{label}": run(
        f"refuses_reserved_concurrency_{label}",
        f"""
  command = plan
  variables {{
    lambda_reserved_concurrency = {value}
  }}
  expect_failures = [var.lambda_reserved_concurrency]
""",
    )
    for label, value in (("0", "0"), ("negative", "-1"), ("fractional", "2.5"))
}


# -- running them ------------------------------------------------------------------------------------


@dataclass
class RunResult:
    status: str = "not run"
    diagnostics: list[str] = field(default_factory=list)


def _terraform_test(tmp: Path, runs: dict[str, str] = RUNS) -> tuple[dict[str, RunResult], str]:
    """`terraform test` of these run blocks on a copy of terraform/; each run's status and diagnostics."""
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
    for name, block in runs.items():
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
    results = {name: RunResult() for name in runs}
    for line in done.stdout.splitlines():
        event = json.loads(line)
        name = event.get("@testrun") or Path(event.get("@testfile", "")).name.removesuffix(".tftest.hcl")
        if event.get("type") == "test_run" and event["test_run"].get("progress") == "complete":
            results[event["test_run"]["run"]].status = event["test_run"]["status"]
        elif event.get("type") == "diagnostic":
            diagnostic = event["diagnostic"]
            message = f"{diagnostic['severity']}: {diagnostic['summary']}: {diagnostic.get('detail', '')}"
            results.setdefault(name or "(file)", RunResult()).diagnostics.append(message)
    return results, done.stdout + done.stderr


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, RunResult]]:
    with tempfile.TemporaryDirectory(prefix="scaling-test-") as tmp:
        results, output = _terraform_test(Path(tmp))
        assert results, output
        yield results


def _passed(runs: dict[str, RunResult], name: str) -> None:
    result = runs[name]
    assert result.status == "pass", (name, result.status, result.diagnostics)


def test_a_false_assertion_fails_its_run(runs: dict[str, RunResult]) -> None:
    result = runs[FALSE_ASSERTION]
    assert result.status == "fail"
    assert any("deliberately false" in d for d in result.diagnostics), result.diagnostics


def test_defaults_concurrency_long_poll_and_the_lambdas_alarms(runs: dict[str, RunResult]) -> None:
    _passed(runs, DEFAULTS)


def test_scale_from_zero_only_adds_tasks_and_only_when_none_runs(runs: dict[str, RunResult]) -> None:
    _passed(runs, SCALE_TO_ZERO)


def test_a_short_shutdown_deadline_shortens_the_poll_of_queue_and_worker(runs: dict[str, RunResult]) -> None:
    _passed(runs, SHORT_DEADLINE)


def test_the_reserved_concurrency_comes_from_the_variable(runs: dict[str, RunResult]) -> None:
    _passed(runs, CONCURRENCY_GIVEN)


@pytest.mark.parametrize("name", list(REFUSED.values()))
def test_a_reserved_concurrency_below_one_or_fractional_is_refused(
    runs: dict[str, RunResult], name: str
) -> None:
    _passed(runs, name)


def test_every_run_block_was_run() -> None:
    assert set(RUNS) == {
        FALSE_ASSERTION,
        DEFAULTS,
        SCALE_TO_ZERO,
        SHORT_DEADLINE,
        CONCURRENCY_GIVEN,
        *REFUSED.values(),
    }
