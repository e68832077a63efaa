"""boto3 clients for the two ends and the queue, built once per process and shared by threads.

The AWS side (SQS, Secrets Manager, the source bucket by default) uses boto3's standard chain, so
AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_SQS point the same code at a local stack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.handlers import add_expect_header

from replicator.errors import StartupError
from replicator.logs import register_secrets
from replicator.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

# The two fields of the secret's JSON, one spelling each: ECS injects exactly these
# (terraform/ecs.tf `valueFrom = "<secret>:access_key_id::"`), so the code reads no other.
_ACCESS_KEY_FIELDS = ("access_key_id",)
_SECRET_KEY_FIELDS = ("secret_access_key",)


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str


@dataclass(frozen=True)
class Endpoint:
    """One end of the copy: a bucket and the client that reaches it."""

    name: str  # "source" or "target", for messages
    bucket: str
    client: S3Client
    url: str  # for error messages; never holds credentials


@dataclass(frozen=True)
class Clients:
    source: Endpoint
    # The single TARGET_* target; None when the targets are named in TARGETS (target_builder).
    target: Endpoint | None
    session: boto3.session.Session
    # Keys as resolved at start (from settings or Secrets Manager), for renewed().
    credentials: dict[str, Credentials | None] = field(default_factory=dict, repr=False)

    def renewed(self, settings: Settings) -> Clients:
        """New clients with their own connection pools, for a forked child process (which must
        not share the parent's sockets). The session's loaded service models and the keys
        already read are reused: milliseconds instead of a cold start and a secret lookup."""
        return build_clients(settings, self.session, self.credentials)

    def sqs(self, settings: Settings) -> SQSClient:
        return self.session.client("sqs", config=_aws_config(settings))

    def lease_sqs(self, settings: Settings, timeout: float) -> SQSClient:
        """For visibility changes only: `timeout` to connect and to read, two attempts, so that
        a slow call ends while its lease still has time for another."""
        config = Config(
            retries={"mode": "standard", "total_max_attempts": 2},
            max_pool_connections=settings.worker_concurrency,
            connect_timeout=timeout,
            read_timeout=timeout,
        )
        return self.session.client("sqs", config=config)


def _aws_config(settings: Settings) -> Config:
    return Config(
        retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
        max_pool_connections=settings.max_pool_connections,
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.read_timeout_seconds,
    )


def _s3_config(settings: Settings, side: str) -> Config:
    checksum = getattr(settings, f"{side}_checksum_mode")
    return Config(
        retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
        max_pool_connections=settings.max_pool_connections,
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.read_timeout_seconds,
        tcp_keepalive=True,
        signature_version="s3v4",
        request_checksum_calculation=checksum,
        response_checksum_validation=checksum,
        s3={
            "addressing_style": getattr(settings, f"{side}_addressing_style"),
            # Integrity comes from Content-MD5 or the ETag chain, which every S3 store checks;
            # a signed payload hash is not verified by all of them and costs a SHA-256 pass.
            "payload_signing_enabled": False,
        },
    )


def secrets_client(session: boto3.session.Session, secret_id: str) -> Any:
    """Secrets Manager in the secret's own region when it is named by ARN (a target's secret may
    live in another region than the worker), else in the session's."""
    parts = secret_id.split(":")
    if secret_id.startswith("arn:") and len(parts) > 3 and parts[3]:
        return session.client("secretsmanager", region_name=parts[3])
    return session.client("secretsmanager")


def read_secret_json(session: boto3.session.Session, secret_id: str, variable: str) -> dict[str, Any]:
    """A Secrets Manager secret's JSON object; StartupError naming `variable` and the secret
    (never a value) when it cannot be read or is not an object."""
    try:
        value = secrets_client(session, secret_id).get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise StartupError(f"{variable}: cannot read secret {secret_id!r}: {code}") from None
    except BotoCoreError as exc:
        raise StartupError(f"{variable}: cannot reach Secrets Manager: {type(exc).__name__}") from None
    try:
        data = json.loads(value.get("SecretString") or "")
    except json.JSONDecodeError:
        raise StartupError(f"{variable}: secret {secret_id!r} is not a JSON object") from None
    if not isinstance(data, dict):
        raise StartupError(f"{variable}: secret {secret_id!r} is not a JSON object")
    return data


def read_secret_credentials(session: boto3.session.Session, secret_id: str, variable: str) -> Credentials:
    """Fetch {access key id, secret key} from a Secrets Manager secret's JSON."""
    data = read_secret_json(session, secret_id, variable)
    expected = (*_ACCESS_KEY_FIELDS, *_SECRET_KEY_FIELDS)
    values = [data.get(name) for name in expected]
    register_secrets(v for name, v in data.items() if name in _SECRET_KEY_FIELDS and isinstance(v, str))
    if not all(isinstance(v, str) and v for v in values):
        # Field names only, never their values.
        problems = [name for name, v in zip(expected, values, strict=True) if not (isinstance(v, str) and v)]
        found = ", ".join(repr(str(name)) for name in sorted(data, key=str)) or "none"
        raise StartupError(
            f"{variable}: secret {secret_id!r} must hold the string fields "
            f"{' and '.join(map(repr, expected))}; missing or empty: {', '.join(map(repr, problems))}; "
            f"fields found: {found}"
        )
    key_id, secret = (str(v) for v in values)
    return Credentials(key_id, secret)


def _credentials(settings: Settings, session: boto3.session.Session, side: str) -> Credentials | None:
    key_id = getattr(settings, f"{side}_access_key_id")
    secret = getattr(settings, f"{side}_secret_access_key")
    if key_id is not None and secret is not None:
        register_secrets([secret.get_secret_value()])
        return Credentials(key_id.get_secret_value(), secret.get_secret_value())
    secret_id = getattr(settings, f"{side}_secret_id")
    if secret_id:
        return read_secret_credentials(session, secret_id, f"{side.upper()}_SECRET_ID")
    return None


def s3_client(
    settings: Settings, session: boto3.session.Session, side: str, creds: Credentials | None
) -> Endpoint:
    endpoint_url = getattr(settings, f"{side}_endpoint_url")
    kwargs: dict[str, Any] = {"config": _s3_config(settings, side)}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    region = getattr(settings, f"{side}_region")
    if region:
        kwargs["region_name"] = region
    if creds:
        kwargs["aws_access_key_id"] = creds.access_key_id
        kwargs["aws_secret_access_key"] = creds.secret_access_key
    client = session.client("s3", **kwargs)
    # botocore waits for "100 Continue" before sending each PUT body: one more round trip per
    # part, for a benefit (an early rejection) our preflight check already gives.
    for operation in ("PutObject", "UploadPart"):
        client.meta.events.unregister(f"before-call.s3.{operation}", add_expect_header)
    return Endpoint(
        name=side,
        bucket=getattr(settings, f"{side}_bucket"),
        client=client,
        url=client.meta.endpoint_url,
    )


def build_clients(
    settings: Settings,
    session: boto3.session.Session | None = None,
    credentials: dict[str, Credentials | None] | None = None,
) -> Clients:
    session = session or boto3.session.Session()
    sides = ("source", "target") if settings.target_bucket is not None else ("source",)
    if credentials is None:
        credentials = {side: _credentials(settings, session, side) for side in sides}
    return Clients(
        source=s3_client(settings, session, "source", credentials["source"]),
        target=s3_client(settings, session, "target", credentials["target"]) if "target" in sides else None,
        session=session,
        credentials=credentials,
    )


def clients_for_target(target_settings: Settings, clients: Clients) -> Clients:
    """`clients` with the S3 target of `target_settings` (Settings.for_target), its keys read
    as those settings say; the source's client and keys are reused."""
    credentials = dict(clients.credentials)
    credentials["target"] = _credentials(target_settings, clients.session, "target")
    return Clients(
        source=clients.source,
        target=s3_client(target_settings, clients.session, "target", credentials["target"]),
        session=clients.session,
        credentials=credentials,
    )
