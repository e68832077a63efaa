"""Static checks of terraform/: every file parses, and the wiring is what the pipeline needs.

`terraform validate` against the provider's schema runs in test_terraform_validate.py; plan does
not run here. Where a resource exists only in some configurations (`count`), or a variable's
validation decides, the expression is evaluated here for each configuration by `evaluate` below:
a small reader of the HCL expression subset these files use in counts, locals and validations.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
import pytest

from replicator.clients import _ACCESS_KEY_FIELDS, _SECRET_KEY_FIELDS
from replicator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "terraform"
EVENTS = ROOT / "tests" / "events"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def _unquote(value: Any) -> Any:
    """python-hcl2 >= 7 keeps the quotes of string literals; compare on the plain values."""
    if isinstance(value, str):
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if not str(k).startswith("__")}
    return value


def _load_all() -> dict[str, list[Any]]:
    merged: dict[str, list[Any]] = {}
    for path in sorted(TF.glob("*.tf")):
        with open(path) as handle:
            for block, items in _unquote(hcl2.load(handle)).items():
                merged.setdefault(block, []).extend(items)
    return merged


CONFIG = _load_all()


def resources(kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for item in CONFIG.get("resource", []):
        for rtype, named in item.items():
            if rtype.strip('"') == kind:
                for name, body in named.items():
                    found[name.strip('"')] = body
    return found


def one(kind: str, name: str) -> dict[str, Any]:
    return resources(kind)[name]


def text(value: Any) -> str:
    return json.dumps(value)


def test_every_file_parses_and_the_layout_is_one_file_per_concern() -> None:
    names = {p.name for p in TF.glob("*.tf")}
    assert {
        "versions.tf",
        "variables.tf",
        "outputs.tf",
        "sqs.tf",
        "lambda.tf",
        "ecs.tf",
        "iam.tf",
        "autoscaling.tf",
        "monitoring.tf",
        "ecr.tf",
        "network.tf",
    } <= names
    for path in TF.glob("*.tf"):
        with open(path) as handle:
            hcl2.load(handle)


def test_versions_are_pinned() -> None:
    terraform = CONFIG["terraform"][0]
    assert re.search(r">=\s*1\.\d+", terraform["required_version"])
    aws = terraform["required_providers"][0]["aws"]
    assert aws["source"] == "hashicorp/aws"
    assert "<" in aws["version"] and ">=" in aws["version"]


def variables() -> dict[str, dict[str, Any]]:
    return {k.strip('"'): v for item in CONFIG["variable"] for k, v in item.items()}


def locals_() -> dict[str, Any]:
    return {k: v for item in CONFIG["locals"] for k, v in item.items()}


# -- evaluating the expressions of counts, locals and validations ------------------------------

_TOKEN = re.compile(
    r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>\d+)|(?P<op>==|!=|<=|>=|&&|\|\||[!?:()\[\]{},=<>+*/-])"""
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*))"
)


@dataclass(frozen=True)
class Unknown:
    """A value known only after apply (a resource attribute): opaque, and truthy."""

    reference: str


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while position < len(text.rstrip()):
            match = _TOKEN.match(text, position)
            assert match and match.end() > position, f"cannot read {text[position:]!r}"
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.at = 0

    def peek(self, value: str | None = None) -> bool:
        return self.at < len(self.tokens) and (value is None or self.tokens[self.at][1] == value)

    def take(self, value: str | None = None) -> tuple[str, str]:
        assert self.peek(value), f"expected {value!r} at {self.tokens[self.at :]}"
        self.at += 1
        return self.tokens[self.at - 1]

    def expression(self) -> Any:
        condition = self.binary(0)
        if self.peek("?"):
            self.take("?")
            then = self.expression()
            self.take(":")
            return ("if", condition, then, self.expression())
        return condition

    LEVELS = (("||",), ("&&",), ("==", "!="), ("<", "<=", ">", ">="), ("+", "-"), ("*", "/"))

    def binary(self, level: int) -> Any:
        if level == len(self.LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.at < len(self.tokens) and self.tokens[self.at][1] in self.LEVELS[level]:
            operator = self.take()[1]
            left = (operator, left, self.binary(level + 1))
        return left

    def unary(self) -> Any:
        if self.peek("!"):
            self.take("!")
            return ("!", self.unary())
        node = self.primary()
        while self.peek("["):  # index: split(":", x)[3]
            self.take("[")
            node = ("index", node, self.expression())
            self.take("]")
        return node

    def primary(self) -> Any:
        kind, value = self.take()
        if kind == "str":
            return ("lit", json.loads(value))
        if kind == "num":
            return ("lit", int(value))
        if value == "(":
            node = self.expression()
            self.take(")")
            return node
        if value == "[":
            if self.peek("for"):
                self.take("for")
                name = self.take()[1]
                self.take("in")
                collection = self.expression()
                self.take(":")
                body = self.expression()
                self.take("]")
                return ("for", name, collection, body)
            items = []
            while not self.peek("]"):
                items.append(self.expression())
                if self.peek(","):
                    self.take(",")
            self.take("]")
            return ("list", items)
        if value == "{":
            fields = []
            while not self.peek("}"):
                key_kind, key = self.take()
                self.take("=")
                fields.append((json.loads(key) if key_kind == "str" else key, self.expression()))
                if self.peek(","):
                    self.take(",")
            self.take("}")
            return ("object", fields)
        assert kind == "name", value
        if value in ("true", "false", "null"):
            return ("lit", {"true": True, "false": False, "null": None}[value])
        if self.peek("("):
            self.take("(")
            arguments = []
            while not self.peek(")"):
                arguments.append(self.expression())
                if self.peek(","):
                    self.take(",")
            self.take(")")
            return ("call", value, arguments)
        return ("ref", value)


def _regex(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise ValueError(f"{pattern!r} does not match {text!r}")
    return match.group(0)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "jsonencode": lambda value: value,
    "length": len,
    "contains": lambda values, value: value in values,
    "alltrue": all,
    "lower": str.lower,
    "regex": _regex,
    "split": lambda separator, text: text.split(separator),
    "min": min,
    "max": max,
    "floor": math.floor,
    "tostring": str,
    "strcontains": lambda text, part: part in text,
    # Maps iterate in key order, as in Terraform.
    "keys": sorted,
    "values": lambda mapping: [mapping[key] for key in sorted(mapping)],
    "coalesce": lambda *values: next(v for v in values if v is not None and v != ""),
    "sort": sorted,
    "distinct": lambda values: list(dict.fromkeys(values)),
    "join": lambda separator, values: separator.join(values),
}


def evaluate(expression: Any, **values: Any) -> Any:
    """The value of one attribute's expression, with these variables (others: their default)."""
    scope = {name: body.get("default") for name, body in variables().items()} | values
    return _evaluate_attribute(expression, scope)


def _evaluate_attribute(expression: Any, scope: dict[str, Any]) -> Any:
    if isinstance(expression, dict):  # an object written out, e.g. a local: its values
        return {key: _evaluate_attribute(value, scope) for key, value in expression.items()}
    if not isinstance(expression, str) or not expression.startswith("${") or expression.count("${") > 1:
        return expression  # a literal, or a template (not evaluated here)
    return _evaluate(_Parser(expression[2:-1]).expression(), scope, {})


def _evaluate(node: Any, scope: dict[str, Any], names: dict[str, Any]) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "ref":
        path = node[1].split(".")
        if path[0] == "var":
            return scope[path[1]]
        if path[0] == "local":
            return _evaluate_attribute(locals_()[path[1]], scope)
        if path[0] in names:  # a `for` variable, and its attributes (t.type)
            value = names[path[0]]
            for attribute in path[1:]:
                value = value[attribute]
            return value
        return names.get(node[1], Unknown(node[1]))
    if kind == "list":
        return [_evaluate(item, scope, names) for item in node[1]]
    if kind == "object":
        return {key: _evaluate(value, scope, names) for key, value in node[1]}
    if kind == "for":
        _, name, collection, body = node
        return [_evaluate(body, scope, names | {name: item}) for item in _evaluate(collection, scope, names)]
    if kind == "if":
        branch = node[2] if _evaluate(node[1], scope, names) else node[3]
        return _evaluate(branch, scope, names)
    if kind == "!":
        return not _evaluate(node[1], scope, names)
    if kind == "index":
        return _evaluate(node[1], scope, names)[_evaluate(node[2], scope, names)]
    if kind == "call":
        if node[1] == "can":
            try:
                _evaluate(node[2][0], scope, names)
            except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                return False
            return True
        return _FUNCTIONS[node[1]](*(_evaluate(argument, scope, names) for argument in node[2]))
    left = _evaluate(node[1], scope, names)
    if kind == "&&":
        return bool(left) and bool(_evaluate(node[2], scope, names))
    if kind == "||":
        return bool(left) or bool(_evaluate(node[2], scope, names))
    right = _evaluate(node[2], scope, names)
    comparisons: dict[str, Callable[[Any, Any], Any]] = {
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
        "/": lambda a, b: a / b,
        "==": lambda a, b: bool(a == b),
        "!=": lambda a, b: bool(a != b),
        "<": lambda a, b: bool(a < b),
        "<=": lambda a, b: bool(a <= b),
        ">": lambda a, b: bool(a > b),
        ">=": lambda a, b: bool(a >= b),
    }
    return comparisons[kind](left, right)


def count(kind: str, name: str, **values: Any) -> int:
    body = one(kind, name)
    return int(evaluate(body["count"], **values)) if "count" in body else 1


def target_fields() -> list[str]:
    """The attributes of a `targets` entry, as its type declares them."""
    return re.findall(r"(\w+)\s*=\s*(?:optional\()?string", variables()["targets"]["type"])


def targets_value(targets: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`targets` as Terraform holds it: the attributes left out are null."""
    return {name: {f: t.get(f) for f in target_fields()} | t for name, t in targets.items()}


def valid(variable: str, value: Any) -> bool:
    """Whether every validation of `variable` accepts `value`."""
    if variable == "targets":
        value = targets_value(value)
    return all(
        evaluate(rule["condition"], **{variable: value}) for rule in variables()[variable]["validation"]
    )


def test_the_evaluator_reads_these_expressions() -> None:
    assert evaluate('${var.a == "x" ? 1 : 0}', a="x") == 1
    assert evaluate("${!(var.a && var.b) || var.a}", a=False, b=True) is True
    assert evaluate('${[for v in var.a : can(regex("^k", v))]}', a=["k1", "j"]) == [True, False]
    assert evaluate('${jsonencode({"d-t" = ["A"], b = {n = [var.a]}})}', a="z") == {
        "d-t": ["A"],
        "b": {"n": ["z"]},
    }
    assert evaluate('${split(":", var.a)[3]}', a="arn:aws:sm:eu-west-1:1") == "eu-west-1"
    assert evaluate("${aws_sqs_queue.this.arn}") == Unknown("aws_sqs_queue.this.arn")
    assert evaluate("${min(20, floor(var.a) - 2) + 1 * 3}", a=7.5) == 8


def test_every_variable_is_typed_and_described() -> None:
    for name, body in variables().items():
        assert body.get("type"), name
        assert len(body.get("description", "")) > 10, name


@pytest.mark.parametrize("name", ["bucket", "image_tag", "event_delivery"])
def test_required_inputs_exist_with_validation(name: str) -> None:
    body = variables()[name]
    assert "default" not in body
    assert body.get("validation"), name


WORKER_PRECONDITIONS = one("aws_ecs_task_definition", "worker")["lifecycle"][0]["precondition"]
SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:lyve-AbCdEf"
SINGLE = {
    "secret": SECRET,
    "endpoint": "https://s3.us-east-1.lyvecloud.seagate.com",
    "target_bucket": "replica",
}


def _preconditions_hold(**values: Any) -> bool:
    return all(evaluate(p["condition"], **values) for p in WORKER_PRECONDITIONS)


@pytest.mark.parametrize("name", ["secret", "endpoint", "target_bucket"])
def test_the_single_target_is_required_unless_targets_are_named(name: str) -> None:
    # Optional for Terraform (null) since `targets` may replace them; a precondition requires them
    # without `targets`, so a configuration of today plans exactly as before.
    body = variables()[name]
    assert body["default"] is None and body.get("validation"), name
    assert valid(name, None)
    assert _preconditions_hold(**SINGLE)
    assert not _preconditions_hold(**(SINGLE | {name: None}))


def test_the_single_target_variables_are_refused_next_to_targets() -> None:
    targets = targets_value({"lyve": {"type": "s3", "bucket": "b-1", "secret_arn": SECRET}})
    assert _preconditions_hold(targets=targets)
    assert variables()["target_region"]["default"] is None  # so that a value given can be told
    for name, value in (SINGLE | {"target_region": "us-east-1", "secret_kms_key_arn": KEY}).items():
        assert not _preconditions_hold(targets=targets, **{name: value}), name
    messages = " ".join(p["error_message"] for p in WORKER_PRECONDITIONS)
    assert "With `targets` set, leave the single-target variables unset" in messages
    assert "Without `targets`, secret, endpoint and target_bucket are required" in messages


def test_endpoint_must_be_https() -> None:
    condition = variables()["endpoint"]["validation"][0]["condition"]
    assert "https://" in condition


def test_every_output_is_described() -> None:
    for item in CONFIG["output"]:
        for name, body in item.items():
            assert body.get("description"), name


# -- how events reach the Lambda: EventBridge (default) or a bucket notification ---------------

EVENTBRIDGE_ONLY = [
    ("aws_cloudwatch_event_rule", "this"),
    ("aws_cloudwatch_event_target", "this"),
    ("aws_lambda_permission", "eventbridge"),
    ("aws_sqs_queue_policy", "lambda_failures"),
]
MODES = [
    {"event_delivery": "eventbridge", "manage_bucket_eventbridge": False},
    {"event_delivery": "eventbridge", "manage_bucket_eventbridge": True},
    {"event_delivery": "notification", "manage_bucket_eventbridge": False},
]


def test_delivery_is_a_required_choice_and_eventbridge_leaves_the_bucket_configuration_alone() -> None:
    # Required: a deployment from before the choice existed must not switch (and drop its bucket
    # notification) just by being applied again.
    delivery = variables()["event_delivery"]
    assert "default" not in delivery and delivery["nullable"] is False
    assert valid("event_delivery", "eventbridge") and valid("event_delivery", "notification")
    assert not valid("event_delivery", "sqs") and not valid("event_delivery", "")
    assert variables()["manage_bucket_eventbridge"]["default"] is False
    # EventBridge with the other defaults writes nothing on the bucket.
    assert count("aws_s3_bucket_notification", "this", event_delivery="eventbridge") == 0
    assert all(count(kind, name, event_delivery="eventbridge") == 1 for kind, name in EVENTBRIDGE_ONLY)


@pytest.mark.parametrize(
    "mode", MODES, ids=lambda m: f"{m['event_delivery']}-manage={m['manage_bucket_eventbridge']}"
)
def test_each_delivery_mode_creates_only_its_own_resources(mode: dict[str, Any]) -> None:
    eventbridge = mode["event_delivery"] == "eventbridge"
    for kind, name in EVENTBRIDGE_ONLY:
        assert count(kind, name, **mode) == int(eventbridge), (kind, name)
    assert count("aws_lambda_permission", "s3", **mode) == int(not eventbridge)
    # The bucket's notification configuration is written (whole) only when Terraform may own it.
    owns_configuration = not eventbridge or mode["manage_bucket_eventbridge"]
    assert count("aws_s3_bucket_notification", "this", **mode) == int(owns_configuration)
    notification = one("aws_s3_bucket_notification", "this")
    assert evaluate(notification["eventbridge"], **mode) is eventbridge
    [lambda_function] = [d["lambda_function"] for d in notification["dynamic"]]
    assert len(evaluate(lambda_function["for_each"], **mode)) == int(not eventbridge)
    [precondition] = notification["lifecycle"][0]["precondition"]
    assert evaluate(precondition["condition"], **mode) is True


def test_managing_eventbridge_is_refused_in_notification_mode() -> None:
    notification = one("aws_s3_bucket_notification", "this")
    [precondition] = notification["lifecycle"][0]["precondition"]
    assert (
        evaluate(precondition["condition"], event_delivery="notification", manage_bucket_eventbridge=True)
        is False
    )
    assert "eventbridge" in precondition["error_message"]


def test_notification_mode_goes_to_the_lambda_for_creates_and_deletes() -> None:
    notification = one("aws_s3_bucket_notification", "this")
    [dynamic] = [d["lambda_function"] for d in notification["dynamic"]]
    assert evaluate(dynamic["for_each"], event_delivery="notification") == [
        Unknown("aws_lambda_function.enqueue.arn")
    ]
    function = dynamic["content"][0]
    assert function["lambda_function_arn"] == "${lambda_function.value}"
    assert {"s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:LifecycleExpiration:*"} <= set(function["events"])
    permission = one("aws_lambda_permission", "s3")
    assert permission["principal"] == "s3.amazonaws.com"
    assert permission["source_arn"] == "${data.aws_s3_bucket.source.arn}"
    assert "aws_lambda_permission.s3" in text(notification["depends_on"])


def test_existing_deployments_keep_their_notification_when_it_gained_a_count() -> None:
    moved = {(m["from"], m["to"]) for m in CONFIG["moved"]}
    assert ("${aws_s3_bucket_notification.this}", "${aws_s3_bucket_notification.this[0]}") in moved
    assert ("${aws_lambda_permission.s3}", "${aws_lambda_permission.s3[0]}") in moved


def _matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """EventBridge matching for patterns of exact values (all this rule uses)."""
    for field, wanted in pattern.items():
        value = event.get(field) if isinstance(event, dict) else None
        if isinstance(wanted, dict):
            if not isinstance(value, dict) or not _matches(wanted, value):
                return False
        elif value not in wanted:
            return False
    return True


def test_the_rule_matches_created_and_deleted_objects_of_this_bucket_only() -> None:
    rule = one("aws_cloudwatch_event_rule", "this")
    assert rule["event_bus_name"] == "default"
    pattern = evaluate(rule["event_pattern"], bucket="source-bucket")
    assert pattern == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created", "Object Deleted"],
        "detail": {"bucket": {"name": ["source-bucket"]}},
    }
    created = json.loads((EVENTS / "eventbridge_object_created.json").read_text())
    deleted = json.loads((EVENTS / "eventbridge_object_deleted.json").read_text())
    assert _matches(pattern, created) and _matches(pattern, deleted)
    other_bucket = {**created, "detail": {**created["detail"], "bucket": {"name": "other-bucket"}}}
    restored = {**created, "detail-type": "Object Restore Completed"}
    assert not _matches(pattern, other_bucket) and not _matches(pattern, restored)


def test_the_rule_invokes_the_lambda_with_retries_and_a_dead_letter_queue() -> None:
    target = one("aws_cloudwatch_event_target", "this")
    assert target["rule"] == "${aws_cloudwatch_event_rule.this[0].name}"
    assert target["arn"] == "${aws_lambda_function.enqueue.arn}"
    retry = target["retry_policy"][0]
    assert evaluate(retry["maximum_retry_attempts"]) == 185
    assert evaluate(retry["maximum_event_age_in_seconds"]) == 86400
    assert target["dead_letter_config"][0]["arn"] == "${aws_sqs_queue.lambda_failures.arn}"
    assert not valid("eventbridge_retry_attempts", 186) and not valid("eventbridge_max_event_age_seconds", 59)
    permission = one("aws_lambda_permission", "eventbridge")
    assert permission["principal"] == "events.amazonaws.com"
    assert permission["action"] == "lambda:InvokeFunction"
    assert permission["source_arn"] == "${aws_cloudwatch_event_rule.this[0].arn}"
    # Lambda's own async retries and on-failure destination apply to EventBridge's invocations.
    invoke = one("aws_lambda_function_event_invoke_config", "enqueue")
    assert "aws_sqs_queue.lambda_failures.arn" in text(invoke["destination_config"])


@pytest.mark.parametrize("delivery", ["eventbridge", "notification"])
def test_checkov_passes_in_each_delivery_mode(delivery: str, tmp_path: Path) -> None:
    # Without a value for the required `event_delivery`, checkov cannot resolve the counts and
    # leaves the resources that depend on it out of its scan: give it each value in turn.
    var_file = tmp_path / "delivery.tfvars"
    var_file.write_text(f'event_delivery = "{delivery}"\n')
    arguments = ["-d", "terraform", "--var-file", str(var_file), "--framework", "terraform"]
    result = subprocess.run(
        [str(CHECKOV), *arguments, "--output", "json", "--skip-download"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    report = json.loads(result.stdout)
    failed = report["results"]["failed_checks"]
    assert failed == [], [(c["check_id"], c["resource"]) for c in failed]
    scanned = {c["resource"] for c in report["results"]["passed_checks"]}
    assert {
        "aws_lambda_permission.eventbridge",
        "aws_lambda_permission.s3",
        "aws_sqs_queue_policy.lambda_failures",
        "aws_lambda_function.enqueue",
    } <= scanned


def test_checkov_passes_with_named_targets(tmp_path: Path) -> None:
    # With `targets` set, the per-target alarms and the task role's secret statements exist.
    var_file = tmp_path / "targets.tfvars"
    var_file.write_text(
        'event_delivery = "eventbridge"\n'
        "targets = {\n"
        '  lyve  = { type = "s3", bucket = "replica", endpoint_url = "https://s3.example.com",'
        f' secret_arn = "{LYVE_SECRET}", secret_kms_key_arn = "{KEY}" }}\n'
        f'  azure = {{ type = "azure", container = "replica", secret_arn = "{AZURE_SECRET}" }}\n'
        "}\n"
    )
    arguments = ["-d", "terraform", "--var-file", str(var_file), "--framework", "terraform"]
    result = subprocess.run(
        [str(CHECKOV), *arguments, "--output", "json", "--skip-download"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    report = json.loads(result.stdout)
    failed = report["results"]["failed_checks"]
    assert failed == [], [(c["check_id"], c["resource"]) for c in failed]
    scanned = {c["resource"] for c in report["results"]["passed_checks"]}
    assert {
        "aws_iam_policy_document.task",
        "aws_ecs_task_definition.worker",
        'aws_cloudwatch_metric_alarm.target_failures["lyve"]',
        'aws_cloudwatch_metric_alarm.target_failures["azure"]',
    } <= scanned


def test_eventbridge_may_write_dead_letters_for_this_rule_only() -> None:
    policy = one("aws_sqs_queue_policy", "lambda_failures")
    assert policy["queue_url"] == "${aws_sqs_queue.lambda_failures.id}"
    assert policy["policy"] == "${data.aws_iam_policy_document.lambda_failures[0].json}"
    [statement] = [s for n, s in _statements() if n == "lambda_failures"]
    assert statement["actions"] == ["sqs:SendMessage"]
    assert statement["resources"] == ["${aws_sqs_queue.lambda_failures.arn}"]
    assert statement["principals"][0] == {"type": "Service", "identifiers": ["events.amazonaws.com"]}
    assert statement["condition"][0] == {
        "test": "ArnEquals",
        "variable": "aws:SourceArn",
        "values": ["${aws_cloudwatch_event_rule.this[0].arn}"],
    }


def test_lambda_sends_to_the_fifo_queue_and_keeps_failures() -> None:
    function = one("aws_lambda_function", "enqueue")
    assert function["handler"] == "lambda_enqueue.handler.handler"
    assert "aws_sqs_queue.this.url" in text(function["environment"])
    assert "filebase64sha256" in function["source_code_hash"]
    invoke = one("aws_lambda_function_event_invoke_config", "enqueue")
    assert "aws_sqs_queue.lambda_failures.arn" in text(invoke["destination_config"])
    log_group = one("aws_cloudwatch_log_group", "lambda")
    assert log_group["retention_in_days"]


def test_queue_is_fifo_high_throughput_encrypted_with_a_fifo_dlq() -> None:
    queue, dlq = one("aws_sqs_queue", "this"), one("aws_sqs_queue", "dlq")
    assert queue["fifo_queue"] is True and dlq["fifo_queue"] is True
    assert queue["deduplication_scope"] == "messageGroup"
    assert queue["fifo_throughput_limit"] == "perMessageGroupId"
    assert queue["sqs_managed_sse_enabled"] is True and dlq["sqs_managed_sse_enabled"] is True
    assert queue["visibility_timeout_seconds"] == "${var.visibility_timeout_seconds}"
    redrive = one("aws_sqs_queue_redrive_policy", "this")
    assert "aws_sqs_queue.dlq.arn" in redrive["redrive_policy"]
    assert "var.max_receive_count" in redrive["redrive_policy"]


def _containers(task: dict[str, Any]) -> str:
    return str(task["container_definitions"])


def test_target_credentials_come_from_the_secret_never_plain_environment() -> None:
    for name in ("worker", "migrate"):
        task = one("aws_ecs_task_definition", name)
        assert "local.container_secrets" in _containers(task)
        assert "local.common_environment" in _containers(task)
    ecs_tf = (TF / "ecs.tf").read_text()
    env_block = ecs_tf[ecs_tf.index("targets_config = {") : ecs_tf.index("target_secrets = ")]
    assert "SECRET" not in env_block and "ACCESS_KEY" not in env_block
    # TARGETS carries the secrets' ARNs only, never a value read from them.
    assert "secret_id        = t.secret_arn" in env_block and "secretsmanager_secret" not in ecs_tf
    secrets_block = ecs_tf[ecs_tf.index("target_secrets = ") : ecs_tf.index("tmp_volume")]
    assert 'valueFrom = "${var.secret}:access_key_id::"' in secrets_block
    assert 'valueFrom = "${var.secret}:secret_access_key::"' in secrets_block
    # With `targets`, ECS injects none: each task reads its targets' secrets (task role).
    assert evaluate(locals_()["container_secrets"], targets={"lyve": {}}) is None


def test_worker_stop_timeout_matches_its_shutdown_deadline() -> None:
    worker = _containers(one("aws_ecs_task_definition", "worker"))
    assert "local.stop_timeout" in worker
    main = (TF / "main.tf").read_text()
    assert "stop_timeout = var.shutdown_deadline_seconds + 5" in main
    assert "SHUTDOWN_DEADLINE_SECONDS" in (TF / "ecs.tf").read_text()


def test_worker_service_and_migration_task_definition() -> None:
    service = one("aws_ecs_service", "worker")
    assert service["launch_type"] == "FARGATE"
    assert "aws_ecs_task_definition.worker.arn" in service["task_definition"]
    assert "desired_count" in text(service["lifecycle"][0]["ignore_changes"])
    migrate = one("aws_ecs_task_definition", "migrate")
    assert '"python", "-m", "migrate"' in _containers(migrate)
    assert migrate["requires_compatibilities"] == ["FARGATE"]
    cluster = one("aws_ecs_cluster", "this")
    assert cluster["setting"][0] == {"name": "containerInsights", "value": "enabled"}


def test_scaling_tracks_backlog_per_task_on_this_queue() -> None:
    policy = one("aws_appautoscaling_policy", "backlog")
    assert policy["policy_type"] == "TargetTrackingScaling"
    spec = policy["target_tracking_scaling_policy_configuration"][0]["customized_metric_specification"][0]
    metrics = {m["id"]: m for m in spec["metrics"]}
    assert metrics["backlog_per_task"]["expression"] == "visible / tasks"
    visible = metrics["visible"]["metric_stat"][0]["metric"][0]
    assert visible["metric_name"] == "ApproximateNumberOfMessagesVisible"
    assert "aws_sqs_queue.this.name" in text(visible["dimensions"])
    tasks = metrics["tasks"]["metric_stat"][0]["metric"][0]
    assert tasks["metric_name"] == "RunningTaskCount"


def test_step_policies_scale_from_and_to_zero() -> None:
    assert "aws_appautoscaling_policy.from_zero[0].arn" in text(
        one("aws_cloudwatch_metric_alarm", "queue_has_messages")
    )
    assert "aws_appautoscaling_policy.to_zero[0].arn" in text(
        one("aws_cloudwatch_metric_alarm", "queue_idle")
    )
    target = one("aws_appautoscaling_target", "worker")
    assert target["min_capacity"] == "${var.min_tasks}"


def _metric_math(expression: str, series: dict[str, float | None]) -> float | None:
    """One datapoint of a CloudWatch metric-math expression: ids, numbers, FILL(m, value),
    comparisons, AND/OR. None is a missing datapoint. As CloudWatch documents it: a comparison or
    logical operator treats a missing value as 0 when the other side has one, FILL replaces it."""
    tokens: list[str] = re.findall(
        r"\s*(==|!=|<=|>=|&&|\|\||[<>(),]|[0-9.]+|[A-Za-z_][A-Za-z0-9_]*)", expression
    )
    assert "".join(tokens) == re.sub(r"\s+", "", expression), expression
    at = 0
    # A value is (number or None, whether it is a time series): a scalar has no timestamps.
    Value = tuple[float | None, bool]

    def take() -> str:
        nonlocal at
        at += 1
        return tokens[at - 1]

    def peek() -> str | None:
        return tokens[at] if at < len(tokens) else None

    def combine(left: Value, right: Value, op: Callable[[float, float], bool]) -> Value:
        timed = [value for value, is_series in (left, right) if is_series]
        if timed and all(value is None for value in timed):
            return None, True  # no datapoint at this timestamp on either side
        return float(op(left[0] or 0.0, right[0] or 0.0)), bool(timed)

    logical: dict[str, Callable[[float, float], bool]] = {
        "AND": lambda a, b: bool(a) and bool(b),
        "&&": lambda a, b: bool(a) and bool(b),
        "OR": lambda a, b: bool(a) or bool(b),
        "||": lambda a, b: bool(a) or bool(b),
    }
    comparison: dict[str, Callable[[float, float], bool]] = {
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }

    def either() -> Value:
        left = compared()
        while peek() in logical:
            op = logical[take()]
            left = combine(left, compared(), op)
        return left

    def compared() -> Value:
        left = operand()
        while peek() in comparison:
            op = comparison[take()]
            left = combine(left, operand(), op)
        return left

    def operand() -> Value:
        token = take()
        if token == "(":
            inner = either()
            assert take() == ")"
            return inner
        if token == "FILL":
            assert take() == "("
            filled, _ = either()
            assert take() == ","
            filler = float(take())
            assert take() == ")"
            return (filler if filled is None else filled), True
        if re.fullmatch(r"[0-9.]+", token):
            return float(token), False
        assert token in series, f"{token} is not a metric of the alarm"
        return series[token], True

    result, _ = either()
    assert at == len(tokens), expression
    return result


def _alarm_fires(alarm: dict[str, Any], series: dict[str, float | None]) -> bool:
    """Whether one period of these datapoints puts the alarm in ALARM (threshold > 0 only).
    `series` is by metric-query id; an alarm on one metric reads it by these ids too."""
    if "metric_query" in alarm:
        [expression] = [q["expression"] for q in alarm["metric_query"] if q.get("return_data")]
        value = _metric_math(expression, series)
    else:
        ids = {
            "ApproximateNumberOfMessagesVisible": "visible",
            "ApproximateNumberOfMessagesNotVisible": "inflight",
            "RunningTaskCount": "running",
        }
        value = series[ids[alarm["metric_name"]]]
    assert (alarm["comparison_operator"], alarm["threshold"]) == ("GreaterThanThreshold", 0)
    if value is None:
        assert alarm.get("treat_missing_data", "missing") != "breaching"
        return False
    return value > 0


def test_the_metric_math_reader_follows_cloudwatchs_documented_examples() -> None:
    # The examples of "Comparison and logical operators" in CloudWatch's metric math syntax.
    metric1, metric2 = [30.0, 20.0, 0.0, 0.0], [20.0, None, 20.0, None]
    for expression, expected in (
        ("(metric1 < metric2)", [0, 0, 1, 0]),
        ("(metric1 >= 30)", [1, 0, 0, 0]),
        ("(metric1 > 15 AND metric2 > 15)", [1, 0, 0, 0]),
    ):
        got = [
            _metric_math(expression, {"metric1": a, "metric2": b})
            for a, b in zip(metric1, metric2, strict=True)
        ]
        assert got == expected, expression
    assert _metric_math("FILL(m, 0) == 0", {"m": None}) == 1
    assert _metric_math("m == 0", {"m": None}) is None


# One period each: (visible, in flight, running tasks); None is no datapoint. Container Insights
# sends nothing for a service without running tasks, and its datapoint can be late.
WHILE_TASKS_RUN = {
    "a burst, ten tasks at work": (90_000.0, 160.0, 10.0),
    "a burst, the running-task datapoint late": (90_000.0, 160.0, None),
    "a burst, every task between two receives": (90_000.0, 0.0, 10.0),
    "one task starting, the queue not yet received from": (40.0, 0.0, 1.0),
    "a trickle, one task": (3.0, 1.0, 1.0),
}
WITHOUT_A_TASK = {
    "scaled to zero, no datapoint from Container Insights": (5.0, 0.0, None),
    "scaled to zero, Container Insights reports 0": (5.0, 0.0, 0.0),
}
IDLE = {
    "an empty queue, no task": (0.0, 0.0, None),
    "an empty queue, one task": (0.0, 0.0, 1.0),
    "a queue asleep (no SQS datapoints), no task": (None, None, None),
}


def _from_zero_alarm_fires(visible: float | None, inflight: float | None, running: float | None) -> bool:
    alarm = one("aws_cloudwatch_metric_alarm", "queue_has_messages")
    return _alarm_fires(alarm, {"visible": visible, "inflight": inflight, "running": running})


@pytest.mark.parametrize("case", list(WHILE_TASKS_RUN))
def test_the_scale_from_zero_alarm_stays_quiet_while_tasks_run(case: str) -> None:
    assert not _from_zero_alarm_fires(*WHILE_TASKS_RUN[case])


@pytest.mark.parametrize("case", list(WITHOUT_A_TASK))
def test_the_scale_from_zero_alarm_fires_when_messages_wait_and_no_task_runs(case: str) -> None:
    assert _from_zero_alarm_fires(*WITHOUT_A_TASK[case])


@pytest.mark.parametrize("case", list(IDLE))
def test_the_scale_from_zero_alarm_stays_quiet_on_an_empty_queue(case: str) -> None:
    assert not _from_zero_alarm_fires(*IDLE[case])


def test_the_scale_from_zero_alarm_reads_this_queue_and_this_services_running_tasks() -> None:
    alarm = one("aws_cloudwatch_metric_alarm", "queue_has_messages")
    assert alarm["count"] == "${local.scale_to_zero ? 1 : 0}"
    assert alarm["evaluation_periods"] == 1
    metrics = {q["id"]: q["metric"][0] for q in alarm["metric_query"] if "metric" in q}
    queue = {"QueueName": "${aws_sqs_queue.this.name}"}
    assert (metrics["visible"]["namespace"], metrics["visible"]["metric_name"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert (metrics["inflight"]["namespace"], metrics["inflight"]["metric_name"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesNotVisible",
    )
    assert metrics["visible"]["dimensions"] == metrics["inflight"]["dimensions"] == queue
    # ECS/ContainerInsights RunningTaskCount has the dimensions ServiceName, ClusterName, and
    # exists only on a cluster with Container Insights on.
    running = metrics["running"]
    assert (running["namespace"], running["metric_name"]) == ("ECS/ContainerInsights", "RunningTaskCount")
    assert running["dimensions"] == {
        "ClusterName": "${aws_ecs_cluster.this.name}",
        "ServiceName": "${aws_ecs_service.worker.name}",
    }
    assert {"name": "containerInsights", "value": "enabled"} in one("aws_ecs_cluster", "this")["setting"]
    # Any task running at any moment of the minute counts; every metric on one-minute periods.
    assert {m["stat"] for m in metrics.values()} == {"Maximum"}
    assert {m["period"] for m in metrics.values()} == {60}


def test_the_scale_from_zero_policy_can_never_lower_the_task_count() -> None:
    # Its alarm's action repeats every minute in ALARM, and target tracking does not block a step
    # policy: an ExactCapacity of 1 would take a service of ten tasks back to one.
    policy = one("aws_appautoscaling_policy", "from_zero")
    config = policy["step_scaling_policy_configuration"][0]
    assert config["adjustment_type"] == "ChangeInCapacity"
    steps = config["step_adjustment"]
    assert steps and all(step["scaling_adjustment"] > 0 for step in steps)
    # Its alarm's breach (1 above a threshold of 0) falls in a step.
    assert any(
        step.get("metric_interval_lower_bound", float("-inf"))
        <= 1
        < step.get("metric_interval_upper_bound", float("inf"))
        for step in steps
    )
    # A repeat within the cooldown counts the task already added: no second task per action.
    assert config["cooldown"] >= 300
    for current in range(0, 11):
        for step in steps:
            assert min(current + step["scaling_adjustment"], 10) >= current


def test_target_tracking_reads_the_queue_length_as_a_gauge() -> None:
    # ApproximateNumberOfMessagesVisible is a queue length at an instant: a Sum over a period
    # adds up the samples in it.
    policy = one("aws_appautoscaling_policy", "backlog")
    spec = policy["target_tracking_scaling_policy_configuration"][0]["customized_metric_specification"][0]
    metrics = {m["id"]: m for m in spec["metrics"]}
    assert metrics["visible"]["metric_stat"][0]["stat"] == "Maximum"
    assert metrics["tasks"]["metric_stat"][0]["stat"] in ("Average", "Maximum")
    for alarm in ("queue_has_messages", "queue_idle"):
        for query in one("aws_cloudwatch_metric_alarm", alarm)["metric_query"]:
            if "metric" in query and query["metric"][0]["metric_name"].startswith("ApproximateNumberOf"):
                assert query["metric"][0]["stat"] == "Maximum", alarm


# -- the enqueue Lambda: its concurrency and its alarms -------------------------------------------


def test_the_lambdas_reserved_concurrency_is_a_validated_variable() -> None:
    function = one("aws_lambda_function", "enqueue")
    assert function["reserved_concurrent_executions"] == "${var.lambda_reserved_concurrency}"
    body = variables()["lambda_reserved_concurrency"]
    assert (body["type"], body["default"], body["nullable"]) == ("number", 50, False)
    assert valid("lambda_reserved_concurrency", 1) and valid("lambda_reserved_concurrency", 50)
    assert valid("lambda_reserved_concurrency", 900)
    for refused in (0, -1, 2.5):
        assert not valid("lambda_reserved_concurrency", refused), refused


@pytest.mark.parametrize(
    ("alarm", "metric"), [("lambda_throttles", "Throttles"), ("lambda_errors", "Errors")]
)
def test_the_lambdas_throttles_and_errors_raise_alarms(alarm: str, metric: str) -> None:
    body = one("aws_cloudwatch_metric_alarm", alarm)
    assert (body["namespace"], body["metric_name"], body["statistic"]) == ("AWS/Lambda", metric, "Sum")
    assert body["dimensions"] == {"FunctionName": "${aws_lambda_function.enqueue.function_name}"}
    assert (body["comparison_operator"], body["threshold"]) == ("GreaterThanThreshold", 0)
    assert body["treat_missing_data"] == "notBreaching"
    # The same actions as the other operational alarms.
    assert body["alarm_actions"] == body["ok_actions"] == "${local.alarm_actions}"
    assert one("aws_cloudwatch_metric_alarm", "dlq_not_empty")["alarm_actions"] == "${local.alarm_actions}"


def test_the_throttles_alarm_waits_for_sustained_throttling() -> None:
    # A burst above the reserved concurrency is retried by Lambda and only delays events.
    body = one("aws_cloudwatch_metric_alarm", "lambda_throttles")
    assert body["period"] * body["evaluation_periods"] == 300
    assert body["datapoints_to_alarm"] == body["evaluation_periods"]
    assert "var.lambda_reserved_concurrency" in body["alarm_description"]


# -- defaults the example and the worker must share ---------------------------------------------


def test_the_tfvars_example_keeps_the_default_min_tasks() -> None:
    with open(TF / "terraform.tfvars.example") as handle:
        example = _unquote(hcl2.load(handle))
    assert (
        example.get("min_tasks", variables()["min_tasks"]["default"]) == variables()["min_tasks"]["default"]
    )
    for name, value in example.items():
        assert name in variables(), name
        if variables()[name].get("validation"):
            assert valid(name, value), name


def test_the_tfvars_examples_two_targets_are_valid_once_uncommented() -> None:
    example = (TF / "terraform.tfvars.example").read_text()
    start = example.index("# targets = {")
    end = example.index("# }\n", start) + len("# }\n")
    block = "\n".join(line.removeprefix("#").removeprefix(" ") for line in example[start:end].splitlines())
    targets = _unquote(hcl2.loads(block))["targets"]
    assert sorted(t["type"] for t in targets.values()) == ["azure", "s3"]
    assert "lyvecloud.seagate.com" in targets["lyve"]["endpoint_url"]
    assert valid("targets", targets)


def test_the_worker_long_polls_as_long_as_the_queue_does() -> None:
    queue = one("aws_sqs_queue", "this")
    assert queue["receive_wait_time_seconds"] == "${local.receive_wait_seconds}"
    worker_only = locals_()["worker_environment"]
    assert {
        "name": "RECEIVE_WAIT_SECONDS",
        "value": "${tostring(aws_sqs_queue.this.receive_wait_time_seconds)}",
    } in [_unquote(entry) for entry in worker_only]
    assert "local.worker_environment" in _containers(one("aws_ecs_task_definition", "worker"))
    assert "RECEIVE_WAIT_SECONDS" not in text(locals_()["common_environment"])
    # SQS's longest poll by default, and always inside the shutdown deadline (a poll under way at
    # SIGTERM must return before it) and within what the worker's settings accept.
    assert evaluate(locals_()["receive_wait_seconds"]) == 20
    field = Settings.model_fields["receive_wait_seconds"]
    low = next(m.ge for m in field.metadata if hasattr(m, "ge"))
    high = next(m.le for m in field.metadata if hasattr(m, "le"))
    for deadline in (5, 7.5, 10, 21, 22, 25, 60, 115):
        assert valid("shutdown_deadline_seconds", deadline)
        wait = evaluate(locals_()["receive_wait_seconds"], shutdown_deadline_seconds=deadline)
        assert low <= wait <= high and wait == int(wait), deadline
        assert wait + 2 <= deadline, deadline


def _statements() -> list[tuple[str, dict[str, Any]]]:
    """Every statement of every policy document, the conditional (`dynamic`) ones included."""
    found = []
    for item in CONFIG.get("data", []):
        for dtype, named in item.items():
            if dtype.strip('"') != "aws_iam_policy_document":
                continue
            for name, body in named.items():
                for statement in body.get("statement", []):
                    found.append((name.strip('"'), statement))
                for dynamic in body.get("dynamic", []):
                    for statement in dynamic.get("statement", {}).get("content", []):
                        found.append((name.strip('"'), statement))
    return found


def _dynamic_statement(document: str, sid: str) -> dict[str, Any]:
    """The `dynamic "statement"` block (for_each and content) holding this sid."""
    [body] = [
        b
        for item in CONFIG["data"]
        for t, named in item.items()
        if t == "aws_iam_policy_document"
        for n, b in named.items()
        if n == document
    ]
    [block] = [
        d["statement"] for d in body.get("dynamic", []) if d["statement"]["content"][0].get("sid") == sid
    ]
    return block  # type: ignore[no-any-return]


def test_no_wildcard_actions_anywhere() -> None:
    for name, statement in _statements():
        for action in statement.get("actions", []):
            assert "*" not in action, (name, action)


def test_task_role_reads_only_the_source_bucket_and_uses_only_this_queue() -> None:
    task = {str(s.get("sid")): s for n, s in _statements() if n == "task"}
    for sid, statement in task.items():
        # Tested below; DecryptTargetCredentials<Region>: one per region of the targets' secrets.
        if sid.startswith(("DecryptSourceObjects", "DeadLetterPermanentFailures", "TargetCredentials")):
            continue
        if sid.startswith("DecryptTargetCredentials"):
            continue
        for resource in statement["resources"]:
            assert "data.aws_s3_bucket.source.arn" in resource or "aws_sqs_queue.this.arn" in resource
        for action in statement["actions"]:
            assert not action.startswith(("s3:Put", "s3:Delete")), action
    assert "secretsmanager:GetSecretValue" in text([s for n, s in _statements() if n == "execution"])
    # The single target's secret, for ECS to inject: the execution role reads it, and only it.
    block = _dynamic_statement("execution", "TargetCredentials")
    assert block["content"][0]["resources"] == ["${statement.value}"]
    assert evaluate(block["for_each"], secret=SECRET) == [SECRET]
    assert evaluate(block["for_each"], secret=None, targets={"lyve": {}}) == []


LYVE_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:lyve-credentials-AbCdEf"
AZURE_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:azure-credentials-GhIjKl"
TARGETS = {
    "lyve": {
        "type": "s3",
        "endpoint_url": "https://s3.us-east-1.lyvecloud.seagate.com",
        "bucket": "lyve-replica",
        "secret_arn": LYVE_SECRET,
    },
    "azure-archive": {"type": "azure", "container": "replica", "secret_arn": AZURE_SECRET},
    # The same secret again: granted once.
    "lyve-2": {
        "type": "s3",
        "endpoint_url": "https://s3.eu-central-1.lyvecloud.seagate.com",
        "bucket": "replica-2",
        "secret_arn": LYVE_SECRET,
    },
}


def test_with_targets_the_task_role_reads_exactly_their_secrets() -> None:
    block = _dynamic_statement("task", "TargetCredentials")
    assert evaluate(block["for_each"]) == []  # without targets the task role reads no secret
    assert evaluate(block["for_each"], targets=targets_value(TARGETS)) == [[AZURE_SECRET, LYVE_SECRET]]
    statement = block["content"][0]
    assert statement["actions"] == ["secretsmanager:GetSecretValue"]
    assert statement["resources"] == "${statement.value}"
    # Each target secret's customer-managed key: kms:Decrypt through Secrets Manager only.
    [decrypt] = [
        d["statement"] for d in one_document("task").get("dynamic", []) if "target_secret_keys" in text(d)
    ]
    assert decrypt["for_each"] == "${local.target_secret_keys_by_region}"
    content = decrypt["content"][0]
    assert content["actions"] == ["kms:Decrypt"]
    assert content["condition"] == [
        {
            "test": "StringEquals",
            "variable": "kms:ViaService",
            "values": ["secretsmanager.${statement.key}.amazonaws.com"],
        }
    ]


def test_targets_is_an_optional_map_of_at_most_eight() -> None:
    body = variables()["targets"]
    assert body["default"] == {} and body["nullable"] is False
    assert body["type"].startswith("${map(object({")
    assert set(target_fields()) == {
        "type",
        "secret_arn",
        "secret_kms_key_arn",
        "bucket",
        "endpoint_url",
        "region",
        "addressing_style",
        "container",
        "account_url",
    }
    assert valid("targets", {}) and valid("targets", TARGETS)
    eight = {f"t{i}": TARGETS["lyve"] for i in range(8)}
    assert valid("targets", eight)
    assert not valid("targets", eight | {"t8": TARGETS["lyve"]})


TARGET_MESSAGES = {
    "name": "every name must be 1-32 characters",
    "type": 'type must be \\"s3\\" or \\"azure\\"',  # as written in HCL
    "s3 bucket": "an s3 target needs `bucket`, a valid bucket name",
    "s3 endpoint": "an s3 target needs `endpoint_url`, an https:// URL",
    "style": "addressing_style must be null",
    "s3 azure fields": "an s3 target takes `bucket` and `endpoint_url`, not the azure fields",
    "azure bucket": "an azure target takes a `container`, not a `bucket`",
    "container": "an azure target needs `container`, a valid container name",
    "azure s3 fields": "an azure target takes `container` and `account_url`, not the s3 fields",
    "account url": "account_url must be null or an https:// URL",
    "secret": "secret_arn must be the full ARN of a Secrets Manager secret",
    "kms": "secret_kms_key_arn must be null or a KMS key ARN",
}
# Each breaks one rule, whose message says what is wrong.
REFUSED_TARGETS: dict[str, tuple[dict[str, Any], str]] = {
    "uppercase name": ({"Lyve": TARGETS["lyve"]}, TARGET_MESSAGES["name"]),
    "name over 32": ({"a" * 33: TARGETS["lyve"]}, TARGET_MESSAGES["name"]),
    "name with a leading hyphen": ({"-lyve": TARGETS["lyve"]}, TARGET_MESSAGES["name"]),
    "empty name": ({"": TARGETS["lyve"]}, TARGET_MESSAGES["name"]),
    "type gcs": ({"lyve": TARGETS["lyve"] | {"type": "gcs"}}, TARGET_MESSAGES["type"]),
    "type missing": ({"lyve": TARGETS["lyve"] | {"type": None}}, TARGET_MESSAGES["type"]),
    "s3 without bucket": ({"lyve": TARGETS["lyve"] | {"bucket": None}}, TARGET_MESSAGES["s3 bucket"]),
    "s3 bucket name": ({"lyve": TARGETS["lyve"] | {"bucket": "Lyve_Replica"}}, TARGET_MESSAGES["s3 bucket"]),
    "s3 bucket with ..": ({"lyve": TARGETS["lyve"] | {"bucket": "a..b"}}, TARGET_MESSAGES["s3 bucket"]),
    "s3 without endpoint": (
        {"lyve": TARGETS["lyve"] | {"endpoint_url": None}},
        TARGET_MESSAGES["s3 endpoint"],
    ),
    "s3 http endpoint": (
        {"lyve": TARGETS["lyve"] | {"endpoint_url": "http://s3.example.com"}},
        TARGET_MESSAGES["s3 endpoint"],
    ),
    "s3 addressing style": (
        {"lyve": TARGETS["lyve"] | {"addressing_style": "dns"}},
        TARGET_MESSAGES["style"],
    ),
    "s3 with a container": (
        {"lyve": TARGETS["lyve"] | {"container": "replica"}},
        TARGET_MESSAGES["s3 azure fields"],
    ),
    "azure with a bucket": (
        {"a": TARGETS["azure-archive"] | {"bucket": "replica"}},
        TARGET_MESSAGES["azure bucket"],
    ),
    "azure without container": (
        {"a": TARGETS["azure-archive"] | {"container": None}},
        TARGET_MESSAGES["container"],
    ),
    "azure container --": (
        {"a": TARGETS["azure-archive"] | {"container": "re--plica"}},
        TARGET_MESSAGES["container"],
    ),
    "azure container -end": (
        {"a": TARGETS["azure-archive"] | {"container": "replica-"}},
        TARGET_MESSAGES["container"],
    ),
    "azure container uppercase": (
        {"a": TARGETS["azure-archive"] | {"container": "Replica"}},
        TARGET_MESSAGES["container"],
    ),
    "azure container of 2": (
        {"a": TARGETS["azure-archive"] | {"container": "ab"}},
        TARGET_MESSAGES["container"],
    ),
    "azure container of 64": (
        {"a": TARGETS["azure-archive"] | {"container": "a" * 64}},
        TARGET_MESSAGES["container"],
    ),
    "azure with a region": (
        {"a": TARGETS["azure-archive"] | {"region": "us-east-1"}},
        TARGET_MESSAGES["azure s3 fields"],
    ),
    "azure http account url": (
        {"a": TARGETS["azure-archive"] | {"account_url": "http://a.blob.core.windows.net"}},
        TARGET_MESSAGES["account url"],
    ),
    "secret name, not ARN": (
        {"lyve": TARGETS["lyve"] | {"secret_arn": "lyve-credentials"}},
        TARGET_MESSAGES["secret"],
    ),
    "no secret": ({"lyve": TARGETS["lyve"] | {"secret_arn": None}}, TARGET_MESSAGES["secret"]),
    "kms alias": (
        {"lyve": TARGETS["lyve"] | {"secret_kms_key_arn": "arn:aws:kms:eu-west-1:123456789012:alias/x"}},
        TARGET_MESSAGES["kms"],
    ),
}


@pytest.mark.parametrize("case", list(REFUSED_TARGETS))
def test_targets_refuses_invalid_entries_by_the_rule_that_says_why(case: str) -> None:
    targets, message = REFUSED_TARGETS[case]
    rules = variables()["targets"]["validation"]
    failed = [
        r["error_message"] for r in rules if not evaluate(r["condition"], targets=targets_value(targets))
    ]
    assert len(failed) == 1 and message in failed[0], (message, failed)


@pytest.mark.parametrize(
    "entry",
    [
        {"type": "s3", "bucket": "a.b-c", "endpoint_url": "https://e.example", "addressing_style": "virtual"},
        {"type": "s3", "bucket": "abc", "endpoint_url": "https://e.example", "region": "eu-central-1"},
        {"type": "azure", "container": "abc"},
        {"type": "azure", "container": "a" * 63, "account_url": "https://a.blob.core.windows.net"},
        {"type": "azure", "container": "a-b-c"},
    ],
)
def test_targets_accepts_valid_entries(entry: dict[str, Any]) -> None:
    assert valid(
        "targets", {"0": entry | {"secret_arn": LYVE_SECRET, "secret_kms_key_arn": MULTI_REGION_KEY}}
    )


def test_targets_error_messages_say_what_is_wrong() -> None:
    messages = " ".join(rule["error_message"] for rule in variables()["targets"]["validation"])
    for expected in (
        "at most 8 targets",
        "^[a-z0-9][a-z0-9-]{0,31}$",
        'type must be \\"s3\\" or \\"azure\\"',
        "an s3 target needs `bucket`, a valid bucket name",
        "an s3 target needs `endpoint_url`, an https:// URL",
        "an azure target takes a `container`, not a `bucket`",
        "an azure target needs `container`, a valid container name (3-63 characters",
        "secret_arn must be the full ARN of a Secrets Manager secret",
    ):
        assert expected in messages, expected


def test_each_target_has_a_failures_alarm_on_queue_and_target() -> None:
    alarm = one("aws_cloudwatch_metric_alarm", "target_failures")
    assert alarm["for_each"] == "${var.targets}"
    assert (alarm["namespace"], alarm["metric_name"]) == ("${local.metrics_namespace}", "Failures")
    assert alarm["dimensions"] == {"Queue": "${aws_sqs_queue.this.name}", "Target": "${each.key}"}
    assert (alarm["statistic"], alarm["comparison_operator"], alarm["threshold"]) == (
        "Sum",
        "GreaterThanThreshold",
        0,
    )
    # As the other alarms: notifies the topic both ways, quiet without data, tagged.
    assert alarm["alarm_actions"] == alarm["ok_actions"] == "${local.alarm_actions}"
    assert alarm["treat_missing_data"] == "notBreaching" and alarm["tags"] == "${local.tags}"
    assert alarm["alarm_name"] == "${var.name}-failures-${each.key}"


def test_with_targets_the_tasks_get_targets_instead_of_target_star() -> None:
    environment = locals_()["target_environment"]
    condition, _, single = environment.partition("] : [")
    assert condition.startswith("${local.multi_target ? [")
    assert '"TARGETS"' in condition and "jsonencode(local.targets_config)" in condition
    assert "TARGET_" not in condition
    for name in ("TARGET_BUCKET", "TARGET_ENDPOINT_URL", "TARGET_REGION"):
        assert f'"{name}"' in single
    assert "local.target_environment" in locals_()["common_environment"]
    assert evaluate(locals_()["multi_target"]) is False
    assert evaluate(locals_()["multi_target"], targets=targets_value(TARGETS)) is True


def one_document(name: str) -> dict[str, Any]:
    [body] = [
        b
        for item in CONFIG["data"]
        for t, named in item.items()
        if t == "aws_iam_policy_document"
        for n, b in named.items()
        if n == name
    ]
    return body  # type: ignore[no-any-return]


def test_workers_may_requeue_interrupted_copies_and_dead_letter_permanent_failures() -> None:
    task = {s.get("sid"): s for n, s in _statements() if n == "task"}
    # Requeue: a fresh message on the replication queue itself.
    assert "sqs:SendMessage" in task["ConsumeReplicationQueue"]["actions"]
    dead_letter = task["DeadLetterPermanentFailures"]
    assert dead_letter["resources"] == ["${aws_sqs_queue.dlq.arn}"]
    assert "sqs:SendMessage" in dead_letter["actions"]
    assert not any(a.startswith(("sqs:Delete", "sqs:Receive")) for a in dead_letter["actions"])
    # The worker is told its dead-letter queue, no lookup needed.
    assert "DLQ_URL" in text(locals_()["common_environment"])
    assert "aws_sqs_queue.dlq.url" in text(locals_()["common_environment"])


def test_the_dashboard_shows_permanent_failures_interruptions_and_a_missing_source() -> None:
    dashboard = text(one("aws_cloudwatch_dashboard", "this"))
    for metric in ("PermanentFailures", "Interruptions", "LeasesLost", "SourceBucketMissing"):
        assert metric in dashboard, metric
    missing = one("aws_cloudwatch_metric_alarm", "source_bucket_missing")
    assert (missing["metric_name"], missing["comparison_operator"]) == (
        "SourceBucketMissing",
        "GreaterThanThreshold",
    )


def test_lambda_can_only_send_to_its_queues() -> None:
    for _, statement in [(n, s) for n, s in _statements() if n == "lambda"]:
        if statement["actions"][0].startswith("sqs:"):
            assert statement["actions"] == ["sqs:SendMessage"]
            assert statement["resources"][0] in (
                "${aws_sqs_queue.this.arn}",
                "${aws_sqs_queue.lambda_failures.arn}",
            )


def test_dashboard_and_alarms_watch_the_queue_and_the_dlq() -> None:
    dashboard = text(one("aws_cloudwatch_dashboard", "this"))
    for metric in (
        "ApproximateNumberOfMessagesVisible",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateAgeOfOldestMessage",
        "RunningTaskCount",
        "ReplicationLatency",
        "ObjectsReplicated",
        "BytesReplicated",
    ):
        assert metric in dashboard, metric
    assert "aws_sqs_queue.dlq.name" in text(one("aws_cloudwatch_metric_alarm", "dlq_not_empty"))
    # Events rejected or not enqueued are kept in the enqueue-failures queue: someone must know.
    failures = one("aws_cloudwatch_metric_alarm", "enqueue_failures")
    assert failures["dimensions"] == {"QueueName": "${aws_sqs_queue.lambda_failures.name}"}
    assert (failures["comparison_operator"], failures["threshold"]) == ("GreaterThanThreshold", 0)
    oldest = one("aws_cloudwatch_metric_alarm", "oldest_message")
    assert oldest["metric_name"] == "ApproximateAgeOfOldestMessage"


def test_every_checkov_skip_has_a_written_reason() -> None:
    for path in TF.glob("*.tf"):
        for line in path.read_text().splitlines():
            if "checkov:skip=" in line:
                check, _, reason = line.split("checkov:skip=")[1].partition(":")
                assert re.match(r"CKV2?_AWS_\d+", check)
                assert len(reason.strip()) > 20, line


# -- SSE-KMS: the source's keys for the task role, the secret's key for the execution role ------

KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
MULTI_REGION_KEY = "arn:aws:kms:us-east-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab"
ALIAS = "arn:aws:kms:eu-west-1:123456789012:alias/source-objects"


def test_kms_key_variables_take_key_arns_only() -> None:
    keys, secret_key = variables()["source_kms_key_arns"], variables()["secret_kms_key_arn"]
    assert keys["type"] == "${list(string)}" and keys["default"] == []
    assert secret_key["type"] == "string" and secret_key["default"] is None
    assert valid("source_kms_key_arns", []) and valid("source_kms_key_arns", [KEY, MULTI_REGION_KEY])
    assert not valid("source_kms_key_arns", [KEY, ALIAS])
    assert not valid("source_kms_key_arns", ["1234abcd-12ab-34cd-56ef-1234567890ab"])
    assert valid("secret_kms_key_arn", None) and valid("secret_kms_key_arn", MULTI_REGION_KEY)
    assert not valid("secret_kms_key_arn", ALIAS)


def test_task_role_decrypts_source_objects_through_s3_only() -> None:
    block = _dynamic_statement("task", "DecryptSourceObjects")
    # Present exactly when keys are given.
    assert evaluate(block["for_each"]) == []
    assert evaluate(block["for_each"], source_kms_key_arns=[KEY]) == [[KEY]]
    statement = block["content"][0]
    assert statement["actions"] == ["kms:Decrypt"]
    assert statement["resources"] == "${statement.value}"
    assert statement["condition"] == [
        {
            "test": "StringEquals",
            "variable": "kms:ViaService",
            "values": ["s3.${data.aws_s3_bucket.source.region}.amazonaws.com"],
        }
    ]
    # The migration tasks run with the same task role as the worker.
    for task in ("worker", "migrate"):
        assert one("aws_ecs_task_definition", task)["task_role_arn"] == "${aws_iam_role.task.arn}"


def test_execution_role_decrypts_the_secret_through_secrets_manager_only() -> None:
    block = _dynamic_statement("execution", "DecryptTargetCredentials")
    assert evaluate(block["for_each"]) == []
    assert evaluate(block["for_each"], secret_kms_key_arn=MULTI_REGION_KEY, secret=SECRET) == [
        MULTI_REGION_KEY
    ]
    # No single secret (`targets`, refused by a precondition): no statement to build from it.
    assert evaluate(block["for_each"], secret_kms_key_arn=MULTI_REGION_KEY) == []
    statement = block["content"][0]
    assert statement["actions"] == ["kms:Decrypt"]
    assert statement["resources"] == ["${statement.value}"]
    assert statement["condition"] == [
        {
            "test": "StringEquals",
            "variable": "kms:ViaService",
            "values": ["secretsmanager.${local.secret_region}.amazonaws.com"],
        }
    ]
    secret = "arn:aws:secretsmanager:ap-southeast-2:123456789012:secret:lyve-credentials-AbCdEf"
    assert evaluate(locals_()["secret_region"], secret=secret) == "ap-southeast-2"
    assert evaluate(locals_()["secret_region"], secret=None) is None  # `targets`: no single secret
    for task in ("worker", "migrate"):
        assert one("aws_ecs_task_definition", task)["execution_role_arn"] == "${aws_iam_role.execution.arn}"


# -- the image: a tag that was pushed, pinned by digest -----------------------------------------


@pytest.mark.parametrize("tag", ["latest", "LATEST", "", "bad tag", "-leading", "x" * 129])
def test_image_tag_refuses_latest_and_malformed_tags(tag: str) -> None:
    assert not valid("image_tag", tag)


@pytest.mark.parametrize("tag", ["ad0391f", "v1.2.3", "release_2026-11-21", "x" * 128])
def test_image_tag_takes_the_tags_make_push_pushes(tag: str) -> None:
    assert valid("image_tag", tag)


def test_tasks_run_the_pushed_image_pinned_by_its_digest() -> None:
    body = variables()["image_tag"]
    assert "default" not in body and body["nullable"] is False
    image = [
        d
        for item in CONFIG["data"]
        for t, named in item.items()
        if t == "aws_ecr_image"
        for d in named.values()
    ]
    assert image == [{"repository_name": "${aws_ecr_repository.this.name}", "image_tag": "${var.image_tag}"}]
    assert (
        locals_()["image"]
        == "${aws_ecr_repository.this.repository_url}@${data.aws_ecr_image.worker.image_digest}"
    )
    for task in ("worker", "migrate"):
        assert "local.image" in _containers(one("aws_ecs_task_definition", task))
    assert one("aws_ecr_repository", "this")["image_tag_mutability"] == "IMMUTABLE"


# -- the target secret's field names: one spelling in the code, ECS and the docs ----------------


def test_secret_field_names_are_the_same_in_ecs_the_code_and_the_docs() -> None:
    injected = dict(
        re.findall(
            r'\{\s*name\s*=\s*"([A-Z_]+)",\s*valueFrom\s*=\s*"\$\{var\.secret\}:([A-Za-z0-9_]+)::"\s*\}',
            str(locals_()["target_secrets"]),
        )
    )
    assert injected == {
        "TARGET_ACCESS_KEY_ID": _ACCESS_KEY_FIELDS[0],
        "TARGET_SECRET_ACCESS_KEY": _SECRET_KEY_FIELDS[0],
    }
    assert (_ACCESS_KEY_FIELDS, _SECRET_KEY_FIELDS) == (("access_key_id",), ("secret_access_key",))
    expected_json = f'{{\\"{_ACCESS_KEY_FIELDS[0]}\\": \\"...\\", \\"{_SECRET_KEY_FIELDS[0]}\\": \\"...\\"}}'
    assert expected_json in variables()["secret"]["description"]
    readme = (ROOT / "README.md").read_text()
    assert f'{{"{_ACCESS_KEY_FIELDS[0]}":"...","{_SECRET_KEY_FIELDS[0]}":"..."}}' in readme


def test_visibility_leaves_the_worker_time_to_stop_a_copy_it_cannot_renew() -> None:
    # The worker refuses a visibility below connect + read timeout + 10 s (80 s by default).
    assert not valid("visibility_timeout_seconds", 60)
    assert valid("visibility_timeout_seconds", 80)
    assert variables()["max_receive_count"]["default"] >= 8  # each task kill uses one receive
