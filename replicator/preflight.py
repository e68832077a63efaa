"""Checks run at start, before any message is consumed: wrong credentials, a missing bucket or an
unreachable endpoint stop the program with one clear line instead of failing every message."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from replicator.clients import Endpoint
from replicator.errors import StartupError, error_code


def check_bucket(endpoint: Endpoint) -> None:
    where = f"{endpoint.name} bucket {endpoint.bucket!r} at {endpoint.url}"
    try:
        endpoint.client.head_bucket(Bucket=endpoint.bucket)
    except ClientError as exc:
        code = error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise StartupError(f"{where} does not exist") from None
        if code in ("403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise StartupError(
                f"{where}: access denied ({code}): check the {endpoint.name} credentials and permissions"
            ) from None
        raise StartupError(f"{where}: {code} (HTTP {status})") from None
    except BotoCoreError as exc:
        raise StartupError(f"{where}: endpoint unreachable ({type(exc).__name__})") from None


def check_queue(sqs: Any, queue_url: str) -> None:
    try:
        sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["FifoQueue"])
    except ClientError as exc:
        raise StartupError(f"QUEUE_URL {queue_url}: {error_code(exc)}") from None
    except BotoCoreError as exc:
        raise StartupError(f"QUEUE_URL {queue_url}: unreachable ({type(exc).__name__})") from None


def check_endpoints(source: Endpoint, target: Endpoint) -> None:
    check_bucket(target)
    check_bucket(source)
