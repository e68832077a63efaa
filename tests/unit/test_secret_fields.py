"""The target secret's JSON: exactly `access_key_id` and `secret_access_key`, the names ECS
injects (terraform/ecs.tf); any other spelling is refused by name, never echoing a value."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from replicator.clients import _ACCESS_KEY_FIELDS, _SECRET_KEY_FIELDS, read_secret_credentials
from replicator.errors import StartupError

KEY_ID = "LYVEKEYID0001"
SECRET = "lyve-secret-value-0001"


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.session.Session]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.session.Session(region_name="us-east-1")


def _store(session: boto3.session.Session, value: object) -> str:
    secrets = session.client("secretsmanager")
    return str(secrets.create_secret(Name="lyve-credentials", SecretString=json.dumps(value))["ARN"])


def test_one_spelling_of_each_field() -> None:
    assert _ACCESS_KEY_FIELDS == ("access_key_id",)
    assert _SECRET_KEY_FIELDS == ("secret_access_key",)


def test_the_expected_fields_are_read(session: boto3.session.Session) -> None:
    arn = _store(session, {"access_key_id": KEY_ID, "secret_access_key": SECRET, "note": "ignored"})
    credentials = read_secret_credentials(session, arn, "TARGET_SECRET_ID")
    assert (credentials.access_key_id, credentials.secret_access_key) == (KEY_ID, SECRET)


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        # Spellings an older syncer used: refused, not guessed.
        (
            {"aws_access_key_id": KEY_ID, "aws_secret_access_key": SECRET},
            "'access_key_id', 'secret_access_key'",
        ),
        (
            {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET},
            "'access_key_id', 'secret_access_key'",
        ),
        ({"lc_access_key": KEY_ID, "lc_secret_key": SECRET}, "'access_key_id', 'secret_access_key'"),
        ({"access_key_id": KEY_ID, "secret_key": SECRET}, "'secret_access_key'"),
        ({"access_key_id": KEY_ID, "secret_access_key": ""}, "'secret_access_key'"),
        ({"access_key_id": 9876543, "secret_access_key": SECRET}, "'access_key_id'"),
        ({}, "'access_key_id', 'secret_access_key'"),
    ],
)
def test_other_field_names_are_refused_by_name_without_values(
    session: boto3.session.Session, fields: dict[str, object], missing: str
) -> None:
    arn = _store(session, fields)
    with pytest.raises(StartupError) as raised:
        read_secret_credentials(session, arn, "TARGET_SECRET_ID")
    message = str(raised.value)
    assert message.startswith("TARGET_SECRET_ID: secret ")
    assert "must hold the string fields 'access_key_id' and 'secret_access_key'" in message
    assert f"missing or empty: {missing};" in message
    found = ", ".join(repr(name) for name in sorted(fields)) or "none"
    assert message.endswith(f"fields found: {found}")
    assert KEY_ID not in message and SECRET not in message and "9876543" not in message
    assert raised.value.__cause__ is None and raised.value.__context__ is None


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '"text"'])
def test_a_secret_that_is_not_a_json_object_is_refused(session: boto3.session.Session, body: str) -> None:
    secrets = session.client("secretsmanager")
    arn = secrets.create_secret(Name="lyve-credentials", SecretString=body)["ARN"]
    with pytest.raises(StartupError, match="is not a JSON object"):
        read_secret_credentials(session, arn, "TARGET_SECRET_ID")
