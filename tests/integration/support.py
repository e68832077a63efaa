"""Set-up shared by the integration tests that run against SeaweedFS (and moto as an AWS source):
settings, engines, buckets, source objects and a refusing proxy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from local_stack import aws
from local_stack.fault_proxy import FaultPlan, FaultProxy
from local_stack.seaweed import SeaweedS3
from replicator.clients import Endpoint, build_clients
from replicator.settings import Settings
from replicator.transfer import TransferEngine

if TYPE_CHECKING:
    from local_stack.azurite import Azurite
    from replicator.stores.azure import AzureBlobConfig


def settings_through(
    source_url: str,
    source_keys: tuple[str, str],
    lyve: SeaweedS3,
    buckets: tuple[str, str],
    target_url: str | None = None,
    **tuning: Any,
) -> Settings:
    """Settings whose ends are reached at these URLs (a proxy in front of a server, moto)."""
    return Settings(
        source_bucket=buckets[0],
        source_endpoint_url=source_url,
        source_access_key_id=source_keys[0],
        source_secret_access_key=source_keys[1],
        source_addressing_style="path",
        target_bucket=buckets[1],
        target_endpoint_url=target_url or lyve.endpoint_url,
        target_access_key_id=lyve.access_key,
        target_secret_access_key=lyve.secret_key,
        allow_http_endpoints=True,
        **({"max_attempts": 2} | tuning),
    )


def settings_for(
    lyve: SeaweedS3, source_bucket: str, target_bucket: str, target_url: str | None = None, **tuning: Any
) -> Settings:
    """Both ends on the server (the target at `target_url` when given: a proxy in front of it)."""
    keys = (lyve.access_key, lyve.secret_key)
    return settings_through(
        lyve.endpoint_url, keys, lyve, (source_bucket, target_bucket), target_url, **tuning
    )


def drop_bucket(client: Any, bucket: str) -> None:
    """Empty and delete a bucket: each bucket holds SeaweedFS volumes, of which a server has
    about 75."""
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=entry["Key"])
    client.delete_bucket(Bucket=bucket)


def make_engine(ends: tuple[Endpoint, Endpoint], **tuning: Any) -> TransferEngine:
    lyve_url = ends[1].url
    settings = Settings(
        source_bucket=ends[0].bucket,
        target_bucket=ends[1].bucket,
        target_endpoint_url=lyve_url,
        target_access_key_id="unused",
        target_secret_access_key="unused-secret",
        allow_http_endpoints=True,
        max_attempts=2,
        **tuning,
    )
    engine = TransferEngine(ends[0], ends[1], settings)
    lean = settings.lean_requests
    # The path under test is the one really taken (not a silent fallback to boto3).
    assert (engine._lean_source is not None, engine._lean_target is not None) == (lean, lean)
    return engine


def moto_client(url: str) -> Any:
    """A client of moto's S3 at `url`."""
    return aws.moto_client(url, "s3")


HEADERS = {
    "ContentType": "video/mp4",
    "ContentEncoding": "identity",
    "ContentDisposition": 'attachment; filename="clip.mp4"',
    "ContentLanguage": "en-GB",
    "CacheControl": "max-age=600",
    "Expires": datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
}


def put_source(end: Endpoint, key: str, data: bytes, multipart_part: int | None = None) -> None:
    if multipart_part is None:
        end.client.put_object(Bucket=end.bucket, Key=key, Body=data, Metadata={"owner": "qa"}, **HEADERS)
        return
    upload = end.client.create_multipart_upload(
        Bucket=end.bucket, Key=key, Metadata={"owner": "qa"}, **HEADERS
    )
    parts = []
    for number, start in enumerate(range(0, len(data), multipart_part), 1):
        etag = end.client.upload_part(
            Bucket=end.bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=data[start : start + multipart_part],
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    end.client.complete_multipart_upload(
        Bucket=end.bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )


def uploads_left(end: Endpoint) -> list[Any]:
    return end.client.list_multipart_uploads(Bucket=end.bucket).get("Uploads", [])  # type: ignore[no-any-return]


class RefusingProxy(FaultProxy):
    """Forwards to the server, except requests `rule` answers itself: (status, S3 error code or
    None for a bare answer[, message]). Records every request as (method, path, Range header)."""

    def __init__(self, upstream: str, rule: Any) -> None:
        super().__init__(upstream, FaultPlan())
        self.rule = rule
        self.seen: list[tuple[str, str, str | None]] = []

    def __enter__(self) -> RefusingProxy:
        self.start()
        return self

    def handle(self, request: Any) -> None:
        self.seen.append((request.command, request.path, request.headers.get("Range")))
        answer = self.rule(request.command, request.path)
        if answer is None:
            super().handle(request)
            return
        status, code, *said = answer
        message = said[0] if said else "refused"
        length = int(request.headers.get("Content-Length") or 0)
        if length:
            request.rfile.read(length)
        payload = (
            b""
            if code is None or request.command == "HEAD"
            else (
                f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
            )
        )
        request.send_response(status)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)


def engine_through(
    source_url: str,
    source_keys: tuple[str, str],
    lyve: SeaweedS3,
    buckets: tuple[str, str],
    target_url: str | None = None,
    **tuning: Any,
) -> TransferEngine:
    """An engine whose ends are reached at these URLs (a proxy in front of a server, moto)."""
    settings = settings_through(source_url, source_keys, lyve, buckets, target_url, **tuning)
    clients = build_clients(settings)
    engine = TransferEngine(clients.source, clients.target, settings)
    assert (engine._lean_source is not None) == settings.lean_requests
    return engine


def azure_config(azurite: Azurite, container: str, **overrides: object) -> AzureBlobConfig:
    """An Azure Blob store's configuration for a container of `azurite` (few retries: the server
    is local)."""
    from replicator.stores.azure import AzureBlobConfig

    fields: dict[str, object] = {
        "container": container,
        "connection_string": SecretStr(azurite.connection_string),
        "max_attempts": 2,
    }
    return AzureBlobConfig.model_validate(fields | overrides)
