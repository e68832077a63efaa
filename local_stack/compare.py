"""Byte-for-byte comparison of two buckets (demo verdict and tests): every key, size and MD5 of
the streamed content, not the ETags, which differ between stores for multipart objects."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Content:
    size: int
    md5: str


def object_content(client: Any, bucket: str, key: str) -> Content:
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    digest = hashlib.md5()  # noqa: S324
    size = 0
    for chunk in iter(lambda: body.read(CHUNK), b""):
        digest.update(chunk)
        size += len(chunk)
    return Content(size, digest.hexdigest())


def list_keys(client: Any, bucket: str, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


def bucket_contents(client: Any, bucket: str, prefix: str = "") -> dict[str, Content]:
    """Every object under `prefix`, read whole (only those: a shared bucket is not read in full)."""
    return {key: object_content(client, bucket, key) for key in list_keys(client, bucket, prefix)}


def container_contents(service: Any, container: str, prefix: str = "") -> dict[str, Content]:
    """An Azure Blob container's blobs under `prefix` as Content (`service`: a BlobServiceClient)."""
    client = service.get_container_client(container)
    contents = {}
    for blob in client.list_blobs(name_starts_with=prefix or None):
        digest = hashlib.md5()  # noqa: S324
        size = 0
        for chunk in client.download_blob(blob.name).chunks():
            digest.update(chunk)
            size += len(chunk)
        contents[blob.name] = Content(size, digest.hexdigest())
    return contents


def differences(source: dict[str, Content], target: dict[str, Content]) -> list[str]:
    problems = []
    for key in sorted(source.keys() | target.keys()):
        if key not in target:
            problems.append(f"missing on target: {key!r}")
        elif key not in source:
            problems.append(f"extra on target: {key!r}")
        elif source[key] != target[key]:
            problems.append(f"content differs: {key!r} ({source[key]} vs {target[key]})")
    return problems
