"""`make migrate`: run the migration task definition on ECS, one task per shard, and wait.

Reads `terraform output -json` (cluster, task definition, subnets, security group, log group,
source bucket), finds the shards' split points once, here, with a few requests to the source
bucket (this machine's AWS credentials), starts SHARDS tasks with `--shard i/SHARDS --splits
...` (the same points for all: tasks that found their own minutes apart in a bucket being written
could disagree), prints where their logs are, waits for them to stop and returns the worst exit
code, so `make migrate` fails when any shard failed. `--plan-only` prints the split points.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import boto3

from migrate.discovery import shard_ranges
from migrate.keyspace import Order
from migrate.listing import StoreLister
from replicator.clients import Endpoint

CONTAINER = "migrate"


def _outputs(path: Path) -> dict[str, Any]:
    raw = json.loads(path.read_text())
    return {name: item["value"] for name, item in raw.items()}


def plan_splits(s3: Any, bucket: str, shards: int, prefix: str = "") -> tuple[list[str], int]:
    """Split points of the source bucket for `shards` tasks, and the requests that found them.
    An AWS source lists in byte order, and so is every pair with it merged."""
    source = StoreLister(Endpoint("source", bucket, s3, f"s3://{bucket}"))
    ranges, requests = shard_ranges(source, Order.BYTE, prefix, shards)
    return [r.start for r in ranges[1:] if r.start is not None], requests


def run_tasks(
    ecs: Any, outputs: dict[str, Any], shards: int, extra_args: list[str], splits: list[str] | None = None
) -> list[str]:
    arns = []
    for index in range(shards):
        command = ["python", "-m", "migrate", "--progress", "log", *extra_args]
        if shards > 1:
            command += ["--shard", f"{index}/{shards}"]
            if splits is not None:
                command += ["--splits", json.dumps(splits)]
        response = ecs.run_task(
            cluster=outputs["cluster_name"],
            taskDefinition=outputs["migrate_task_definition_arn"],
            launchType="FARGATE",
            count=1,
            startedBy="make-migrate",
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": outputs["subnet_ids"],
                    "securityGroups": [outputs["security_group_id"]],
                    "assignPublicIp": "ENABLED" if outputs.get("assign_public_ip") else "DISABLED",
                }
            },
            overrides={"containerOverrides": [{"name": CONTAINER, "command": command}]},
        )
        if response.get("failures"):
            raise RuntimeError(f"run-task failed: {response['failures']}")
        arns.append(response["tasks"][0]["taskArn"])
    return arns


def wait_for(ecs: Any, cluster: str, arns: list[str], poll: float = 15.0) -> list[int | None]:
    """Exit codes of the migrate container, once every task has stopped."""
    while True:
        tasks = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]
        if tasks and all(t.get("lastStatus") == "STOPPED" for t in tasks):
            codes: list[int | None] = []
            for task in tasks:
                container: dict[str, Any] = next(
                    (c for c in task.get("containers", []) if c["name"] == CONTAINER), {}
                )
                codes.append(container.get("exitCode"))
            return codes
        time.sleep(poll)


def _prefix(args: list[str]) -> str:
    """The --prefix among the arguments for the tasks: their ranges lie within it."""
    for index, arg in enumerate(args):
        if arg == "--prefix" and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("--prefix="):
            return arg.split("=", 1)[1]
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m migrate.ecs", description=__doc__)
    parser.add_argument(
        "--outputs", type=Path, required=True, help="`terraform output -json` saved to a file"
    )
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--plan-only", action="store_true", help="print the split points as JSON and exit")
    parser.add_argument("args", nargs="*", help="extra arguments for python -m migrate")
    args = parser.parse_args(argv)
    if args.shards < 1:
        parser.error("--shards must be at least 1")
    outputs = _outputs(args.outputs)
    splits = None
    if args.shards > 1 or args.plan_only:
        splits, requests = plan_splits(
            boto3.client("s3"), outputs["source_bucket"], args.shards, _prefix(args.args)
        )
        print(f"split points for {args.shards} shards ({requests} LIST requests to the source):")
        print(json.dumps({"shards": args.shards, "splits": splits}, ensure_ascii=False))
        if args.plan_only:
            return 0
    ecs = boto3.client("ecs")
    arns = run_tasks(ecs, outputs, args.shards, args.args, splits)
    print(f"started {len(arns)} migration task(s) on {outputs['cluster_name']}:")
    for arn in arns:
        print(f"  {arn}")
    print(f"logs: CloudWatch Logs group {outputs['migrate_log_group']} (stream prefix migrate/)")
    print(f"  aws logs tail {outputs['migrate_log_group']} --follow")
    codes = wait_for(ecs, outputs["cluster_name"], arns)
    print(f"exit codes: {codes}")
    if any(code is None for code in codes):
        return 1
    return max(code for code in codes if code is not None)


if __name__ == "__main__":
    sys.exit(main())
