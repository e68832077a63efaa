from __future__ import annotations

import json
from typing import Any

from migrate.ecs import run_tasks, wait_for

OUTPUTS = {
    "cluster_name": "lyve-replicator",
    "migrate_task_definition_arn": "arn:aws:ecs:us-east-1:123456789012:task-definition/lyve-replicator-migrate:3",
    "subnet_ids": ["subnet-1", "subnet-2"],
    "security_group_id": "sg-1",
    "assign_public_ip": False,
    "migrate_log_group": "/ecs/lyve-replicator/migrate",
}


class FakeECS:
    def __init__(self, exit_codes: list[int | None]) -> None:
        self.calls: list[dict[str, Any]] = []
        self.exit_codes = exit_codes
        self.polls = 0

    def run_task(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"tasks": [{"taskArn": f"arn:task/{len(self.calls)}"}], "failures": []}

    def describe_tasks(self, cluster: str, tasks: list[str]) -> dict[str, Any]:
        self.polls += 1
        status = "STOPPED" if self.polls > 1 else "RUNNING"
        return {
            "tasks": [
                {"taskArn": arn, "lastStatus": status, "containers": [{"name": "migrate", "exitCode": code}]}
                for arn, code in zip(tasks, self.exit_codes, strict=True)
            ]
        }


def test_one_task_per_shard_with_its_shard_argument() -> None:
    ecs = FakeECS([0, 0, 0])
    arns = run_tasks(ecs, OUTPUTS, 3, ["--delete"])
    assert arns == ["arn:task/1", "arn:task/2", "arn:task/3"]
    commands = [c["overrides"]["containerOverrides"][0]["command"] for c in ecs.calls]
    assert [cmd[-1] for cmd in commands] == ["0/3", "1/3", "2/3"]
    assert all("--delete" in cmd for cmd in commands)
    network = ecs.calls[0]["networkConfiguration"]["awsvpcConfiguration"]
    assert network == {
        "subnets": ["subnet-1", "subnet-2"],
        "securityGroups": ["sg-1"],
        "assignPublicIp": "DISABLED",
    }
    assert ecs.calls[0]["taskDefinition"] == OUTPUTS["migrate_task_definition_arn"]


def test_waits_until_stopped_and_reports_exit_codes() -> None:
    ecs = FakeECS([0, 1])
    codes = wait_for(ecs, "c", ["a", "b"], poll=0)
    assert codes == [0, 1]
    assert ecs.polls == 2


def test_every_shard_gets_the_same_split_points() -> None:
    """Found once, here: tasks that found their own minutes apart could leave keys to nobody."""
    ecs = FakeECS([0, 0, 0])
    splits = ["logs/2026-11-10/", 'odd "key" é/x']
    run_tasks(ecs, OUTPUTS, 3, ["--check"], splits)
    commands = [call["overrides"]["containerOverrides"][0]["command"] for call in ecs.calls]
    for index, command in enumerate(commands):
        assert command[command.index("--shard") + 1] == f"{index}/3"
        assert json.loads(command[command.index("--splits") + 1]) == splits


def test_split_points_come_from_the_source_bucket() -> None:
    import boto3
    from moto import mock_aws

    from migrate.ecs import plan_splits

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="src")
        for folder in range(6):
            for i in range(300):
                s3.put_object(Bucket="src", Key=f"f{folder}/{i:04d}", Body=b"")
        splits, requests = plan_splits(s3, "src", 3)
    assert len(splits) == 2
    assert splits == sorted(splits)
    assert 0 < requests <= 44
