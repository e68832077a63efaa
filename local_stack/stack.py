"""The whole pipeline on loopback: moto (AWS) + SeaweedFS (Lyve Cloud) + the Lambda invoker,
optionally Azurite (an Azure Blob container as a second target), and helpers to run real worker
processes against it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from local_stack.aws import MotoAWS
from local_stack.azurite import Azurite
from local_stack.invoker import LambdaInvoker
from local_stack.seaweed import SeaweedS3

TARGET_BUCKET = "lyve-target"
AZURE_CONTAINER = "replica"
AZURE_SECRET = "azure-target-credentials"


@dataclass
class LocalStack:
    source_bucket: str = "source-bucket"
    target_bucket: str = TARGET_BUCKET
    max_receive_count: int = 5
    # Also an Azure Blob container (Azurite) as a second target, "azure" beside "lyve".
    with_azure: bool = False
    azure_container: str = AZURE_CONTAINER
    aws: MotoAWS = field(init=False)
    lyve: SeaweedS3 = field(init=False)
    azure: Azurite | None = field(default=None, init=False)
    invoker: LambdaInvoker | None = field(default=None, init=False)
    _workers: list[subprocess.Popen[bytes]] = field(default_factory=list, init=False)

    def start(self, invoker_thread: bool = True) -> LocalStack:
        self.lyve = SeaweedS3().start()
        try:
            self.lyve.create_bucket(self.target_bucket)
            self.aws = MotoAWS(source_bucket=self.source_bucket, max_receive_count=self.max_receive_count)
            self.aws.start(
                target_credentials={
                    "access_key_id": self.lyve.access_key,
                    "secret_access_key": self.lyve.secret_key,
                }
            )
            self.invoker = LambdaInvoker(
                self.aws.client("sqs"), self.aws.notification_queue_url, self.aws.queue_url
            )
            if invoker_thread:
                self.invoker.start()
            if self.with_azure:
                self.azure = Azurite().start()
                self.azure.create_container(self.azure_container)
                # As Terraform keeps it: the connection string in a secret of its own.
                self.aws.client("secretsmanager").create_secret(
                    Name=AZURE_SECRET,
                    SecretString=json.dumps({"connection_string": self.azure.connection_string}),
                )
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to see
                self.stop()
            raise
        return self

    def targets(self) -> dict[str, dict[str, str]]:
        """TARGETS for this stack: the Lyve stand-in, and the Azure container when started."""
        targets = {
            "lyve": {
                "type": "s3",
                "bucket": self.target_bucket,
                "endpoint_url": self.lyve.endpoint_url,
                "secret_id": self.aws.secret_name,
            }
        }
        if self.azure is not None:
            targets["azure"] = {"type": "azure", "container": self.azure_container, "secret_id": AZURE_SECRET}
        return targets

    def env(self, **overrides: str) -> dict[str, str]:
        """Environment of a worker or migrate process pointed at this stack."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TARGET", "SOURCE_"))}
        env.update(self.aws.env())
        if self.azure is not None:
            env["TARGETS"] = json.dumps(self.targets())
        else:
            env.update(
                {
                    "TARGET_BUCKET": self.target_bucket,
                    "TARGET_ENDPOINT_URL": self.lyve.endpoint_url,
                    "TARGET_SECRET_ID": self.aws.secret_name,
                }
            )
        env.update(
            {
                "SOURCE_BUCKET": self.source_bucket,
                "QUEUE_URL": self.aws.queue_url,
                "ALLOW_HTTP_ENDPOINTS": "true",
                "LOG_FORMAT": "json",
                "DRAIN_IDLE_SECONDS": "3",
                "RETRY_BACKOFF_BASE_SECONDS": "1",
            }
        )
        env.update(overrides)
        return env

    def source(self) -> Any:
        return self.aws.client("s3")

    def target(self) -> Any:
        return self.lyve.client()

    def start_worker(
        self, *args: str, env: dict[str, str] | None = None, **popen: Any
    ) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker", *args],
            env=env or self.env(),
            stdin=subprocess.DEVNULL,
            **popen,
        )
        self._workers.append(process)
        return process

    def run_worker(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run `python -m worker ARGS` to completion (e.g. --drain), capturing its output."""
        return subprocess.run(
            [sys.executable, "-m", "worker", *args],
            env=env or self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stop(self) -> None:
        """Stop everything that was started, each step even if an earlier one failed."""
        steps = [self._stop_workers]
        if self.invoker is not None:
            steps.append(self.invoker.stop)
        if hasattr(self, "aws"):
            steps.append(self.aws.stop)
        if hasattr(self, "lyve"):
            steps.append(self.lyve.stop)
        if self.azure is not None:
            steps.append(self.azure.stop)
        errors = []
        for step in steps:
            try:
                step()
            except Exception as exc:  # keep stopping the rest
                errors.append(exc)
        if errors:
            raise errors[0]

    def _stop_workers(self) -> None:
        for process in self._workers:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        self._workers.clear()

    def __enter__(self) -> LocalStack:
        # `with LocalStack().start(...) as stack:` must not start a second stack.
        return self if hasattr(self, "lyve") else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
