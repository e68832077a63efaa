"""The listing bench's own parts: its key set, the key digest and the LIST-counting proxy."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config

from bench.listing import FLAT_PREFIX, ListCounter, is_list_request, key_set, keys_digest
from local_stack.seaweed import SeaweedS3

pytestmark = pytest.mark.integration


def test_key_set_is_deterministic_distinct_and_shaped() -> None:
    keys = key_set(20_000)
    assert keys == key_set(20_000)
    assert len(set(keys)) == 20_000
    assert sum(k.startswith(FLAT_PREFIX) for k in keys) == 6_000
    assert len({k.rsplit("/", 1)[0] for k in keys if not k.startswith(FLAT_PREFIX)}) > 300
    assert any(not k.isascii() for k in keys)


def test_digests_of_disjoint_parts_xor_to_the_whole() -> None:
    keys = key_set(5_000)
    parts = [keys[i::4] for i in range(4)]
    combined = 0
    for part in parts:
        combined ^= int(keys_digest(part), 16)
    assert f"{combined:016x}" == keys_digest(keys)
    assert keys_digest(keys[:-1]) != keys_digest(keys)


def test_list_requests_are_told_from_other_bucket_requests() -> None:
    assert is_list_request("GET", "/b?list-type=2&prefix=a%2F&continuation-token=x%3D")
    assert is_list_request("GET", "/b")
    assert not is_list_request("GET", "/b?uploads")
    assert not is_list_request("GET", "/b?location")
    assert not is_list_request("GET", "/b/key")
    assert not is_list_request("HEAD", "/b")
    assert not is_list_request("GET", "/")


def test_counting_proxy_counts_lists_and_keeps_the_server_header() -> None:
    with SeaweedS3() as server:
        server.create_bucket("counted")
        server.client().put_object(Bucket="counted", Key="a/b", Body=b"xyz")
        with ListCounter(server.endpoint_url) as proxy:
            client = boto3.client(
                "s3",
                endpoint_url=proxy.endpoint_url,
                aws_access_key_id=server.access_key,
                aws_secret_access_key=server.secret_key,
                region_name="us-east-1",
                config=Config(s3={"addressing_style": "path"}),
            )
            page = client.list_objects_v2(Bucket="counted", MaxKeys=1)
            assert page["ResponseMetadata"]["HTTPHeaders"]["server"].startswith("SeaweedFS")
            assert client.head_object(Bucket="counted", Key="a/b")["ContentLength"] == 3
            client.list_multipart_uploads(Bucket="counted")
            assert proxy.lists == 1
