"""Azure Blob's metadata-name encoding, block ids and block sizes, and the store's configuration."""

from __future__ import annotations

import base64
import math
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from replicator.objects import CONTENT_HEADERS
from replicator.stores.azure import (
    HEADER_PREFIX,
    MAX_BLOB_SIZE,
    MAX_BLOCK_SIZE,
    MAX_BLOCKS,
    MIB,
    MIN_BLOCK_SIZE,
    USER_PREFIX,
    AzureBlobConfig,
    block_id_for,
    block_size_for,
    decode_name,
    encode_name,
    from_azure_metadata,
    parse_block_id,
    to_azure_metadata,
)
from replicator.stores.base import ContentHeaders

# RFC 9110 token characters: what an HTTP header name (so x-amz-meta-<name>) may hold.
TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
header_names = st.text(alphabet=TCHAR, min_size=1, max_size=60)
# Names as S3 stores them: lowercase.
s3_names = header_names.map(str.lower)
any_names = st.text(max_size=40)  # beyond HTTP: any Unicode text still round-trips

C_SHARP_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_csharp_identifier(name: str) -> bool:
    # C#'s keywords are letters only (those with "__" aside): a name holding "_" after a letter is none.
    return bool(C_SHARP_IDENTIFIER.match(name)) and name[0].isalpha() and "_" in name


# -- names -----------------------------------------------------------------------------------------


@given(header_names)
def test_header_names_round_trip(name: str) -> None:
    for prefix in (USER_PREFIX, HEADER_PREFIX):
        assert decode_name(encode_name(name, prefix)) == (prefix, name)


@given(any_names)
def test_any_text_round_trips(name: str) -> None:
    assert decode_name(encode_name(name)) == (USER_PREFIX, name)


@given(header_names)
def test_round_trip_survives_a_change_of_case(name: str) -> None:
    # Azure compares metadata names without case; a tool may hand them back in another one.
    encoded = encode_name(name)
    assert decode_name(encoded.upper()) == (USER_PREFIX, name)
    assert decode_name(encoded.swapcase()) == (USER_PREFIX, name)


@given(any_names)
def test_encoded_names_are_csharp_identifiers(name: str) -> None:
    for prefix in (USER_PREFIX, HEADER_PREFIX):
        encoded = encode_name(name, prefix)
        assert is_csharp_identifier(encoded), encoded
        assert encoded == encoded.lower()


@given(header_names, header_names)
def test_encoding_is_injective_even_without_case(a: str, b: str) -> None:
    if a != b:
        assert encode_name(a).lower() != encode_name(b).lower()
    # User metadata and carried headers never share a name.
    assert encode_name(a, USER_PREFIX).lower() != encode_name(b, HEADER_PREFIX).lower()


def test_names_that_a_plain_replacement_would_merge_stay_apart() -> None:
    names = ["my-key", "my_key", "my.key", "mykey", "My-Key", "my--key", "_", "-", ""]
    encoded = {encode_name(name) for name in names}
    assert len(encoded) == len(names)
    assert encode_name("my-key") == "m_my_2dkey"
    assert encode_name("my_key") == "m_my_5fkey"
    assert encode_name("Key") == "m__4bey"
    assert encode_name("1st") == "m_1st"  # a leading digit is behind the prefix
    assert encode_name("é") == "m__c3_a9"


@pytest.mark.parametrize(
    "foreign",
    [
        "MyKey",  # another tool's name: no prefix of ours
        "m__61",  # 'a' escaped: never written so
        "m__zz",  # not hex
        "m__6",  # cut short
        "m__ff",  # not UTF-8
        "m_a-b",  # not a C# identifier at all
        "x_my_2dkey",
    ],
)
def test_names_not_written_by_the_encoding_are_not_decoded(foreign: str) -> None:
    assert decode_name(foreign) is None


@given(st.dictionaries(s3_names, st.text(alphabet=TCHAR + " ", max_size=20), max_size=8))
def test_metadata_round_trips_through_azure_names(metadata: dict[str, str]) -> None:
    expires = "Wed, 02 Jan 2030 03:04:05 GMT"
    stored = to_azure_metadata(metadata, ContentHeaders(expires=expires))
    assert all(is_csharp_identifier(name) for name in stored)
    assert len({name.lower() for name in stored}) == len(stored)
    assert from_azure_metadata(stored) == (metadata, expires)


def test_expires_as_an_instant_is_carried_as_an_http_date() -> None:
    moment = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    stored = to_azure_metadata({"expires": "a user field"}, ContentHeaders(expires=moment))
    assert stored == {"m_expires": "a user field", "h_expires": "Wed, 02 Jan 2030 03:04:05 GMT"}
    assert from_azure_metadata(stored) == ({"expires": "a user field"}, "Wed, 02 Jan 2030 03:04:05 GMT")


def test_other_tools_metadata_is_kept_and_ours_wins_a_clash() -> None:
    metadata, expires = from_azure_metadata({"Owner": "ops", "m_owner": "us", "owner": "them"})
    assert metadata == {"Owner": "ops", "owner": "us"}
    assert expires is None


def test_content_headers_convert_to_and_from_boto3_names() -> None:
    headers = {name: f"value of {name}" for name in CONTENT_HEADERS}
    assert ContentHeaders.from_s3(headers).to_s3() == headers
    assert ContentHeaders.from_s3({"ContentType": "text/plain", "Other": "x"}).to_s3() == {
        "ContentType": "text/plain"
    }


# -- blocks ----------------------------------------------------------------------------------------


def test_block_ids_have_one_length_and_parse_back() -> None:
    upload = "0123456789abcdef0123456789abcdef"
    ids = [block_id_for(upload, number) for number in (1, 9, 10_000, MAX_BLOCKS)]
    assert len({len(block_id) for block_id in ids}) == 1
    assert len(ids[0]) <= 64  # Azure's limit before base64
    assert [parse_block_id(block_id) for block_id in ids] == [(upload, n) for n in (1, 9, 10_000, MAX_BLOCKS)]
    assert parse_block_id("someone-else's block") is None
    for number in (0, MAX_BLOCKS + 1):
        with pytest.raises(ValueError, match="part number"):
            block_id_for(upload, number)


def check_block_size(size: int, configured: int) -> None:
    block = block_size_for(size, configured)
    assert block % MIB == 0
    assert MIN_BLOCK_SIZE <= block <= MAX_BLOCK_SIZE
    assert math.ceil(size / block) <= MAX_BLOCKS
    assert block >= min(configured, MAX_BLOCK_SIZE)  # never smaller than asked (within the limit)
    # The smallest whole MiB that does all that: one MiB less would break a bound.
    smaller = block - MIB
    assert (
        smaller < min(configured, MAX_BLOCK_SIZE)
        or smaller < MIN_BLOCK_SIZE
        or (math.ceil(size / smaller) > MAX_BLOCKS)
    )


@given(st.integers(0, MAX_BLOB_SIZE), st.integers(1, 8 * 1024 * MIB))
def test_block_size_stays_within_azure_limits(size: int, configured: int) -> None:
    check_block_size(size, configured)


@pytest.mark.parametrize(
    ("size", "configured", "expected"),
    [
        (0, 8 * MIB, 8 * MIB),
        (1, 8 * MIB, 8 * MIB),
        (1, 1, MIN_BLOCK_SIZE),
        (8 * MIB * MAX_BLOCKS, 8 * MIB, 8 * MIB),
        (8 * MIB * MAX_BLOCKS + 1, 8 * MIB, 9 * MIB),
        (MAX_BLOB_SIZE - 1, 8 * MIB, MAX_BLOCK_SIZE),
        (MAX_BLOB_SIZE, 8 * MIB, MAX_BLOCK_SIZE),
        (10 * MIB, 5 * 1024 * MIB, MAX_BLOCK_SIZE),  # above the block limit: brought down to it
    ],
)
def test_block_size_at_the_edges(size: int, configured: int, expected: int) -> None:
    assert block_size_for(size, configured) == expected
    check_block_size(size, configured)


def test_block_blob_limit_is_about_190_7_tib() -> None:
    assert round(MAX_BLOB_SIZE / 2**40, 1) == 190.7
    with pytest.raises(ValueError, match="block blob limit"):
        block_size_for(MAX_BLOB_SIZE + 1, 8 * MIB)


# -- configuration ---------------------------------------------------------------------------------

KEY = base64.b64encode(b"k" * 64).decode()


def test_config_keeps_its_secrets_out_of_repr() -> None:
    by_key = AzureBlobConfig(container="replica", account_name="acct", account_key=SecretStr(KEY))
    connection = (
        f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};EndpointSuffix=core.windows.net"
    )
    by_string = AzureBlobConfig(container="replica", connection_string=SecretStr(connection))
    for config in (by_key, by_string):
        assert KEY not in repr(config)
        assert KEY not in str(config)
        assert config.account == "acct"
        assert KEY in config.secret_values()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"container": "replica"}, "is required"),
        (
            {"container": "replica", "connection_string": "AccountName=a", "account_name": "a"},
            "not both",
        ),
        ({"container": "Bad_Name", "account_name": "a", "account_key": KEY}, "container name"),
        ({"container": "ab", "account_name": "a", "account_key": KEY}, "container name"),
    ],
)
def test_config_refuses_what_cannot_work(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AzureBlobConfig.model_validate(fields)


def test_a_key_that_is_not_base64_is_refused_without_being_echoed() -> None:
    key = "not-base64-but-secret!" * 3
    with pytest.raises(ValidationError) as caught:
        AzureBlobConfig(container="replica", account_name="acct", account_key=SecretStr(key))
    assert "not base64" in str(caught.value)
    assert key not in str(caught.value)
    assert key not in repr(caught.value)
