from __future__ import annotations

import pytest

from replicator.settings import ConfigError, Settings, load_settings

BASE = {
    "SOURCE_BUCKET": "source-bucket",
    "TARGET_BUCKET": "lyve-target",
    "TARGET_ENDPOINT_URL": "https://s3.us-east-1.lyvecloud.seagate.com",
    "TARGET_SECRET_ID": "lyve-credentials",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in BASE.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_minimal_settings_load_with_defaults(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.target_checksum_mode == "when_required"
    assert settings.part_size == 16 * 1024 * 1024
    assert settings.allow_http_endpoints is False


@pytest.mark.parametrize(
    "missing", ["SOURCE_BUCKET", "TARGET_BUCKET", "TARGET_ENDPOINT_URL", "TARGET_SECRET_ID"]
)
def test_missing_variable_is_named_in_one_line(env: pytest.MonkeyPatch, missing: str) -> None:
    env.delenv(missing)
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert missing in text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("TARGET_BUCKET", "Bad_Bucket", "TARGET_BUCKET"),
        ("SOURCE_BUCKET", "ab", "SOURCE_BUCKET"),
        ("TARGET_ENDPOINT_URL", "ftp://x", "TARGET_ENDPOINT_URL"),
        ("TARGET_ENDPOINT_URL", "http://127.0.0.1:8333", "ALLOW_HTTP_ENDPOINTS"),
        ("PART_SIZE_MIB", "4", "PART_SIZE_MIB"),
        ("WORKER_CONCURRENCY", "many", "WORKER_CONCURRENCY"),
        ("TARGET_CHECKSUM_MODE", "always", "TARGET_CHECKSUM_MODE"),
    ],
)
def test_invalid_values_are_named(env: pytest.MonkeyPatch, name: str, value: str, expected: str) -> None:
    env.setenv(name, value)
    with pytest.raises(ConfigError, match=expected):
        load_settings()


def test_http_endpoint_is_allowed_only_when_asked(env: pytest.MonkeyPatch) -> None:
    env.setenv("TARGET_ENDPOINT_URL", "http://127.0.0.1:8333")
    env.setenv("ALLOW_HTTP_ENDPOINTS", "true")
    assert load_settings().target_endpoint_url == "http://127.0.0.1:8333"


def test_explicit_keys_replace_the_secret_but_must_come_in_pairs(env: pytest.MonkeyPatch) -> None:
    env.delenv("TARGET_SECRET_ID")
    env.setenv("TARGET_ACCESS_KEY_ID", "AKIDLOCAL")
    with pytest.raises(ConfigError, match="TARGET_SECRET_ACCESS_KEY"):
        load_settings()
    env.setenv("TARGET_SECRET_ACCESS_KEY", "very-secret-value")
    settings = load_settings()
    assert "very-secret-value" not in repr(settings)
    assert "very-secret-value" not in str(settings.model_dump())


def test_worker_requires_queue_url(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="QUEUE_URL"):
        load_settings().require_queue()


def test_swapped_settings_exchange_the_two_ends(env: pytest.MonkeyPatch) -> None:
    env.setenv("SOURCE_ENDPOINT_URL", "https://s3.eu-west-1.amazonaws.com")
    swapped: Settings = load_settings().swapped()
    assert swapped.source_bucket == "lyve-target"
    assert swapped.source_secret_id == "lyve-credentials"
    assert swapped.target_bucket == "source-bucket"
    assert swapped.target_endpoint_url == "https://s3.eu-west-1.amazonaws.com"
    assert swapped.target_default_credentials is True


def test_swapping_into_an_invalid_configuration_names_the_users_variables_and_no_secret(
    env: pytest.MonkeyPatch,
) -> None:
    # Explicit source keys and no source endpoint: swapped, the target has no endpoint.
    env.setenv("SOURCE_ACCESS_KEY_ID", "AKIDEXAMPLESOURCE")
    env.setenv("SOURCE_SECRET_ACCESS_KEY", "source-secret-value-0123456789")
    settings = load_settings()
    with pytest.raises(ConfigError) as caught:
        settings.swapped()
    message = str(caught.value)
    assert "SOURCE_ENDPOINT_URL" in message
    assert "source-secret-value" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_the_visibility_must_leave_a_stopping_copy_its_request_in_flight(env: pytest.MonkeyPatch) -> None:
    env.setenv("VISIBILITY_TIMEOUT_SECONDS", "75")  # connect 10 + read 60 + 10 for renewals = 80
    with pytest.raises(ConfigError, match=r"VISIBILITY_TIMEOUT_SECONDS.*80"):
        load_settings()
    env.setenv("READ_TIMEOUT_SECONDS", "55")
    assert load_settings().visibility_timeout_seconds == 75


def test_the_lease_cap_leaves_room_for_one_visibility_within_12_hours(env: pytest.MonkeyPatch) -> None:
    env.setenv("VISIBILITY_TIMEOUT_SECONDS", "1200")
    with pytest.raises(ConfigError, match=r"MAX_LEASE_SECONDS.*42000"):
        load_settings()  # the default 42600 + 1200 passes SQS's 43200
    env.setenv("MAX_LEASE_SECONDS", "42001")
    with pytest.raises(ConfigError, match="MAX_LEASE_SECONDS"):
        load_settings()
    env.setenv("MAX_LEASE_SECONDS", "42000")
    assert load_settings().max_lease_seconds == 42_000


# -- several targets --------------------------------------------------------------------------------

LYVE = {"type": "s3", "bucket": "lyve-replica", "endpoint_url": "https://lyve.example", "secret_id": "lyve"}
AZURE = {"type": "azure", "container": "replica", "secret_id": "azure"}


@pytest.fixture
def targets_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("SOURCE_BUCKET", "source-bucket")
    for name in BASE:
        if name.startswith("TARGET_"):
            monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_targets_name_s3_and_azure_targets_and_each_s3_one_reads_as_the_single_target(
    targets_env: pytest.MonkeyPatch,
) -> None:
    import json

    targets_env.setenv("TARGETS", json.dumps({"lyve": LYVE, "azure": AZURE}))
    settings = load_settings()
    assert settings.target_names == ["lyve", "azure"]
    lyve = settings.for_target("lyve")
    assert (lyve.target_bucket, lyve.target_endpoint_url, lyve.target_secret_id) == (
        "lyve-replica",
        "https://lyve.example",
        "lyve",
    )
    with pytest.raises(ConfigError, match="not an S3 target"):
        settings.for_target("azure")
    with pytest.raises(ConfigError, match="--reverse"):
        settings.swapped()


@pytest.mark.parametrize(
    ("targets", "single", "expected"),
    [
        ({"lyve": LYVE}, {"TARGET_SECRET_ID": "x"}, "unset TARGET_SECRET_ID"),
        ({"lyve": LYVE, "copy": LYVE}, {}, "copy and lyve name the same bucket"),
        ({"Lyve": LYVE}, {}, "TARGETS"),
        ({"lyve": {**LYVE, "type": "gcs"}}, {}, "TARGETS: lyve"),
        ({"az": {**AZURE, "container": "Bad_Name"}}, {}, "TARGETS: az.container"),
        ({"az": {"type": "azure", "container": "replica"}}, {}, "secret_id or connection_string"),
        ({"lyve": {**LYVE, "endpoint_url": "http://lyve.example"}}, {}, "plain http"),
        ({}, {}, "names no target"),
    ],
)
def test_targets_that_cannot_work_are_refused_in_one_line_naming_the_target(
    targets_env: pytest.MonkeyPatch, targets: dict[str, object], single: dict[str, str], expected: str
) -> None:
    import json

    targets_env.setenv("TARGETS", json.dumps(targets))
    for name, value in single.items():
        targets_env.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert expected in str(info.value)
    assert "\n" not in str(info.value)
