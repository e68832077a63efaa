"""Checks run at start, before any message is consumed: wrong credentials, a missing bucket or an
unreachable endpoint stop the program with one clear line instead of failing every message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from replicator.clients import Endpoint
from replicator.errors import StartupError, error_code
from replicator.logs import get_logger
from replicator.stores.base import StoreAccessError, StoreMissingError, StoreUnavailableError

log = get_logger("startup")


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


def check_endpoints(source: Endpoint, targets: Mapping[str, Any]) -> None:
    """Each target's bucket or container (a Target's `check()`), then the source's bucket.

    One target: any trouble stops the program (StartupError). Several: a target that fails its
    check is logged and the program starts for the others (one target down or misconfigured
    must not hold up the rest; its keys go to the DLQ or back off, by name); only when every
    target fails does the program stop."""
    failures: list[StartupError] = []
    for name, target in targets.items():
        check = getattr(target, "check", None)
        if check is None:
            continue
        try:
            try:
                check()
            except (StoreAccessError, StoreMissingError, StoreUnavailableError) as exc:
                raise StartupError(f"target {name}: {exc}") from None
        except StartupError as exc:
            if len(targets) == 1:
                raise
            log.error("target_check_failed", target=name, error=str(exc), then="starting for the others")
            failures.append(exc)
    if failures and len(failures) == len(targets):
        raise failures[0]
    check_bucket(source)
