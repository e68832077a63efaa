"""The AWS side on loopback: moto's ThreadedMotoServer with the pipeline's resources.

Source bucket -> notification -> standard queue (where Lambda would be invoked), the FIFO queue
with its DLQ, and the target credentials in a Secrets Manager secret, as Terraform creates them.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
FAKE_KEY = "testing"


def moto_client(endpoint_url: str, service: str, config: Any = None) -> Any:
    """A boto3 client of the moto server at `endpoint_url` (also from a process of its own)."""
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=FAKE_KEY,
        aws_secret_access_key=FAKE_KEY,
        config=config,
    )


@dataclass
class MotoAWS:
    source_bucket: str = "source-bucket"
    queue_name: str = "replication.fifo"
    dlq_name: str = "replication-dlq.fifo"
    notification_queue_name: str = "s3-events"
    secret_name: str = "lyve-target-credentials"
    max_receive_count: int = 5
    endpoint_url: str = ""
    queue_url: str = ""
    dlq_url: str = ""
    notification_queue_url: str = ""
    secret_arn: str = ""
    _server: ThreadedMotoServer | None = field(default=None, repr=False)

    def client(self, service: str) -> Any:
        return moto_client(self.endpoint_url, service)

    def env(self) -> dict[str, str]:
        """What a process needs to talk to this stack through boto3's standard chain."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": FAKE_KEY,
            "AWS_SECRET_ACCESS_KEY": FAKE_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }

    def start(self, target_credentials: dict[str, str] | None = None) -> MotoAWS:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        self._reset()  # moto keeps its state per process, across server instances
        sqs = self.client("sqs")
        self.dlq_url = sqs.create_queue(
            QueueName=self.dlq_name,
            Attributes={"FifoQueue": "true", "MessageRetentionPeriod": "1209600"},
        )["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.queue_url = sqs.create_queue(
            QueueName=self.queue_name,
            Attributes={
                "FifoQueue": "true",
                "DeduplicationScope": "messageGroup",
                "FifoThroughputLimit": "perMessageGroupId",
                "VisibilityTimeout": "120",
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(self.max_receive_count)}
                ),
            },
        )["QueueUrl"]
        self.notification_queue_url = sqs.create_queue(QueueName=self.notification_queue_name)["QueueUrl"]
        notification_arn = sqs.get_queue_attributes(
            QueueUrl=self.notification_queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        s3 = self.client("s3")
        s3.create_bucket(Bucket=self.source_bucket)
        s3.put_bucket_notification_configuration(
            Bucket=self.source_bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": notification_arn,
                        "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                    }
                ]
            },
        )
        if target_credentials is not None:
            self.secret_arn = self.client("secretsmanager").create_secret(
                Name=self.secret_name, SecretString=json.dumps(target_credentials)
            )["ARN"]
        return self

    def _reset(self) -> None:
        url = f"{self.endpoint_url}/moto-api/reset"  # always http://127.0.0.1
        request = urllib.request.Request(url, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()

    def stop(self) -> None:
        if self._server is not None:
            self._reset()
            self._server.stop()
            self._server = None

    def __enter__(self) -> MotoAWS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
