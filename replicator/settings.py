"""The one configuration object, read from the environment.

Every variable is documented in the README. A missing or invalid value stops the program at start
with one line naming the variable (see ``load_settings``).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024

# S3 bucket naming rules (Lyve Cloud follows them too): 3-63 chars, lowercase, digits, dots, hyphens.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _check_bucket(name: str) -> str:
    if not _BUCKET_RE.match(name) or ".." in name:
        raise ValueError(f"{name!r} is not a valid bucket name (3-63 chars: a-z, 0-9, '.', '-')")
    return name


def _check_url(url: str | None) -> str | None:
    if url is None or url == "":
        return None
    if not re.match(r"^https?://[^\s/]+", url):
        raise ValueError(f"{url!r} is not an http(s) URL")
    return url.rstrip("/")


# SQS: a message's visibility can be extended up to 12 hours after it was received.
_SQS_MAX_VISIBILITY_SECONDS = 43_200
# Visibility a lease needs beyond a request's timeouts, for its renewals and their retries.
_LEASE_RENEWAL_SECONDS = 10

BucketName = Annotated[str, AfterValidator(_check_bucket)]
EndpointUrl = Annotated[str | None, AfterValidator(_check_url)]
ChecksumMode = Literal["when_required", "when_supported"]
AddressingStyle = Literal["path", "virtual", "auto"]


# A target's name: in logs, metric dimensions, queue messages and DLQ attributes.
TargetName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
MAX_TARGETS = 8
# Azure container names: 3-63 characters, a-z 0-9 and single hyphens inside.
_CONTAINER_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*$")


class S3TargetConfig(BaseModel):
    """An S3-compatible target named in TARGETS: Lyve Cloud, OCI, Wasabi, MinIO, AWS S3. Its
    fields are those of the single-target TARGET_* variables, without the prefix."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["s3"]
    bucket: BucketName
    endpoint_url: EndpointUrl = None
    region: str = "us-east-1"
    secret_id: str | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    default_credentials: bool = False
    addressing_style: AddressingStyle = "path"
    checksum_mode: ChecksumMode = "when_required"

    @model_validator(mode="after")
    def _credentials(self) -> S3TargetConfig:
        if self.endpoint_url is None and not self.default_credentials:
            raise ValueError("endpoint_url: required (the Lyve Cloud or S3-compatible endpoint)")
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("access_key_id and secret_access_key go together")
        if self.secret_id is None and self.access_key_id is None and not self.default_credentials:
            raise ValueError("secret_id: required (or access_key_id + secret_access_key)")
        return self


class AzureTargetConfig(BaseModel):
    """An Azure Blob Storage container named in TARGETS. Credentials: a Secrets Manager secret
    (JSON: {"connection_string"} or {"account_name", "account_key"}), or a connection string
    given directly (local runs)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["azure"]
    container: str
    account_url: EndpointUrl = None
    secret_id: str | None = None
    connection_string: SecretStr | None = None

    @field_validator("container")
    @classmethod
    def _check_container(cls, name: str) -> str:
        if not _CONTAINER_RE.match(name):
            raise ValueError(
                f"{name!r} is not a valid Azure container name (3-63 chars: a-z, 0-9, single '-' inside)"
            )
        return name

    @model_validator(mode="after")
    def _credentials(self) -> AzureTargetConfig:
        if (self.secret_id is None) == (self.connection_string is None):
            raise ValueError("give secret_id or connection_string (one of them)")
        return self


TargetConfig = Annotated[S3TargetConfig | AzureTargetConfig, Field(discriminator="type")]


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the variable."""


class OpsSettings(BaseSettings):
    """What the operations commands (status, redrive) need: the queue side only."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    queue_url: str | None = None
    # Default: the dead-letter queue named in the queue's redrive policy.
    dlq_url: str | None = None
    # For `status`: the ECS service running the workers (its task counts).
    ecs_cluster: str | None = None
    ecs_service: str | None = None
    metrics_namespace: str = "LyveReplicator"

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    def require_queue(self) -> str:
        if not self.queue_url:
            raise ConfigError("configuration error: QUEUE_URL: required by the worker")
        return self.queue_url


class Settings(OpsSettings):
    """Configuration of the worker and of migrate (the Lambda reads only QUEUE_URL)."""

    # Source: AWS S3 by default. Credentials come from boto3's standard chain unless given here,
    # which is how the same program migrates Lyve Cloud back to S3 with the sides swapped.
    source_bucket: BucketName
    source_endpoint_url: EndpointUrl = None
    source_region: str | None = None
    source_secret_id: str | None = None
    source_access_key_id: SecretStr | None = None
    source_secret_access_key: SecretStr | None = None
    source_addressing_style: AddressingStyle = "auto"
    source_checksum_mode: ChecksumMode = "when_required"

    # One target: Lyve Cloud or any S3-compatible endpoint, named TARGET_NAME ...
    target_name: TargetName = "lyve"
    target_bucket: BucketName | None = None
    target_endpoint_url: EndpointUrl = None
    target_region: str = "us-east-1"
    target_secret_id: str | None = None
    target_access_key_id: SecretStr | None = None
    target_secret_access_key: SecretStr | None = None
    # Use boto3's standard credential chain for the target too (the target is AWS S3 itself,
    # e.g. a migration back from Lyve Cloud); otherwise explicit target credentials are required.
    target_default_credentials: bool = False
    target_addressing_style: AddressingStyle = "path"
    # boto3 >= 1.36 sends CRC checksums by default; many S3-compatible stores reject them.
    target_checksum_mode: ChecksumMode = "when_required"

    # ... or several, by name: a JSON object {name: {"type": "s3" | "azure", ...}} (S3TargetConfig,
    # AzureTargetConfig). Each converges to the source on its own.
    targets: dict[TargetName, TargetConfig] | None = None

    allow_http_endpoints: bool = False

    # Transfer tuning.
    multipart_threshold_mib: int = Field(default=8, ge=5, le=5 * 1024)
    part_size_mib: int = Field(default=16, ge=5, le=4 * 1024)
    part_concurrency: int = Field(default=8, ge=1, le=64)
    # Process-wide cap on part buffers in memory, whatever the number of objects in flight.
    max_buffer_mib: int = Field(default=128, ge=5, le=64 * 1024)
    max_pool_connections: int = Field(default=64, ge=1, le=1024)
    # Per request (botocore's standard retry mode and the lean path): transport errors,
    # throttling and 5xx only.
    max_attempts: int = Field(default=5, ge=1, le=20)
    # Per object, on top of the requests' own retries: start the copy over when the source
    # changed under it (SourceChanged, PreconditionFailed) or the upload vanished (NoSuchUpload) ...
    source_changed_restarts: int = Field(default=3, ge=0, le=20)
    # ... and when the bytes written did not verify (an integrity error).
    integrity_restarts: int = Field(default=2, ge=0, le=20)
    # Resume an interrupted multipart copy from the parts already uploaded (same source version).
    resume_uploads: bool = True
    # Also compute the whole-object MD5 while streaming and record it on the target (a
    # metadata-only self-copy after a multipart upload where the MD5 was not known up front).
    # Off: the ETag chain or the per-part Content-MD5 already proves every byte.
    whole_object_md5: bool = False
    connect_timeout_seconds: float = Field(default=10, gt=0)
    read_timeout_seconds: float = Field(default=60, gt=0)
    copy_tags: bool = False
    # Object and part GETs and PUTs go through lean_s3 (one keep-alive connection per thread, a
    # signer checked against botocore's) instead of full boto3 calls; off: boto3 for everything.
    lean_requests: bool = True
    # How multipart parts are verified. "auto": when the source object is itself multipart and
    # its part layout can be replayed, the target's part ETags must combine into the source's
    # ETag before the upload is completed (end to end, no hashing here); otherwise, and always
    # with "content-md5", every part carries its Content-MD5, which the target checks.
    part_checksum: Literal["auto", "content-md5"] = "auto"

    # Queue consumer tuning.
    worker_concurrency: int = Field(default=16, ge=1, le=512)
    visibility_timeout_seconds: int = Field(default=120, ge=10, le=43200)
    receive_wait_seconds: int = Field(default=10, ge=0, le=20)
    shutdown_deadline_seconds: float = Field(default=25, gt=0, le=115)
    drain_idle_seconds: float = Field(default=5, gt=0)
    # A failed message becomes visible again after base * 2^(receives - 1) seconds, capped.
    retry_backoff_base_seconds: float = Field(default=10, ge=0, le=3600)
    max_backoff_seconds: int = Field(default=300, ge=1, le=43200)
    metrics_interval_seconds: float = Field(default=60, gt=0)
    # SQS lets a message's visibility be extended up to 12 hours after it was received; a copy
    # still running this long after the receive stops (its upload is kept) and the message is
    # handed on as a fresh one, so the copy resumes instead of starting over.
    max_lease_seconds: int = Field(default=42_600, ge=60, le=43_200)

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.targets is not None:
            self._check_targets()
        elif self.target_bucket is None:
            raise ValueError("TARGET_BUCKET: required (or name the targets in TARGETS)")
        # The source's checks, and the single target's where there is one, in this order.
        self._check_ends(("source", "target") if self.targets is None else ("source",))
        self._check_tuning()
        return self

    def _check_targets(self) -> None:
        assert self.targets is not None
        single = {
            "TARGET_BUCKET": self.target_bucket,
            "TARGET_ENDPOINT_URL": self.target_endpoint_url,
            "TARGET_SECRET_ID": self.target_secret_id,
            "TARGET_ACCESS_KEY_ID": self.target_access_key_id,
            "TARGET_SECRET_ACCESS_KEY": self.target_secret_access_key,
            "TARGET_DEFAULT_CREDENTIALS": self.target_default_credentials or None,
        }
        given = [name for name, value in single.items() if value is not None]
        if given:
            raise ValueError(f"TARGETS: name every target there; unset {', '.join(given)}")
        if not self.targets:
            raise ValueError("TARGETS: names no target")
        if len(self.targets) > MAX_TARGETS:
            raise ValueError(f"TARGETS: at most {MAX_TARGETS} targets")
        places: dict[tuple[str, ...], str] = {}
        for name, config in self.targets.items():
            place = (
                ("s3", config.endpoint_url or "aws", config.bucket)
                if isinstance(config, S3TargetConfig)
                else ("azure", config.account_url or config.secret_id or "", config.container)
            )
            if place in places:
                raise ValueError(f"TARGETS: {name} and {places[place]} name the same bucket or container")
            places[place] = name
            url = config.endpoint_url if isinstance(config, S3TargetConfig) else config.account_url
            if url and url.startswith("http://") and not self.allow_http_endpoints:
                raise ValueError(
                    f"TARGETS: {name}: {url} is plain http; use https or set ALLOW_HTTP_ENDPOINTS=true"
                )

    def _check_ends(self, sides: tuple[str, ...]) -> None:
        if "target" in sides and self.target_endpoint_url is None and not self.target_default_credentials:
            raise ValueError("TARGET_ENDPOINT_URL: required (the Lyve Cloud or S3-compatible endpoint)")
        for name in (f"{side}_endpoint_url" for side in sides):
            url = getattr(self, name)
            if url and url.startswith("http://") and not self.allow_http_endpoints:
                raise ValueError(
                    f"{name.upper()}: {url} is plain http; use https or set ALLOW_HTTP_ENDPOINTS=true"
                )
        for side in sides:
            key_id = getattr(self, f"{side}_access_key_id")
            secret = getattr(self, f"{side}_secret_access_key")
            if (key_id is None) != (secret is None):
                raise ValueError(
                    f"{side.upper()}_ACCESS_KEY_ID and {side.upper()}_SECRET_ACCESS_KEY go together"
                )
        if (
            "target" in sides
            and self.target_secret_id is None
            and self.target_access_key_id is None
            and not self.target_default_credentials
        ):
            raise ValueError(
                "TARGET_SECRET_ID: required (or TARGET_ACCESS_KEY_ID + TARGET_SECRET_ACCESS_KEY)"
            )

    def _check_tuning(self) -> None:
        if self.multipart_threshold_mib > 5 * 1024:
            raise ValueError("MULTIPART_THRESHOLD_MIB: at most 5120 (a single PUT is limited to 5 GiB)")
        if self.max_buffer_mib < self.part_size_mib:
            raise ValueError("MAX_BUFFER_MIB: must hold at least one part (>= PART_SIZE_MIB)")
        if self.shutdown_deadline_seconds >= self.visibility_timeout_seconds:
            raise ValueError("SHUTDOWN_DEADLINE_SECONDS: must be below VISIBILITY_TIMEOUT_SECONDS")
        request_seconds = self.connect_timeout_seconds + self.read_timeout_seconds
        if self.visibility_timeout_seconds < request_seconds + _LEASE_RENEWAL_SECONDS:
            # A copy told to stop may finish the request it has in flight (connect + read timeout)
            # before the message can be received again; renewals need time of their own.
            raise ValueError(
                f"VISIBILITY_TIMEOUT_SECONDS: must be at least CONNECT_TIMEOUT_SECONDS + "
                f"READ_TIMEOUT_SECONDS + {_LEASE_RENEWAL_SECONDS} "
                f"({request_seconds + _LEASE_RENEWAL_SECONDS:g}), so that a copy can stop in time"
            )
        if self.max_lease_seconds > _SQS_MAX_VISIBILITY_SECONDS - self.visibility_timeout_seconds:
            # The last renewal must still fit into SQS's 12 hours, with the lease's margin left.
            raise ValueError(
                f"MAX_LEASE_SECONDS: at most 43200 - VISIBILITY_TIMEOUT_SECONDS "
                f"({_SQS_MAX_VISIBILITY_SECONDS - self.visibility_timeout_seconds})"
            )

    # -- targets --------------------------------------------------------------------------------

    def target_configs(self) -> dict[str, S3TargetConfig | AzureTargetConfig]:
        """Every target by name; the single TARGET_* target under TARGET_NAME."""
        if self.targets is not None:
            return dict(self.targets)
        assert self.target_bucket is not None
        return {
            self.target_name: S3TargetConfig(
                type="s3",
                bucket=self.target_bucket,
                endpoint_url=self.target_endpoint_url,
                region=self.target_region,
                secret_id=self.target_secret_id,
                access_key_id=self.target_access_key_id,
                secret_access_key=self.target_secret_access_key,
                default_credentials=self.target_default_credentials,
                addressing_style=self.target_addressing_style,
                checksum_mode=self.target_checksum_mode,
            )
        }

    @property
    def target_names(self) -> list[str]:
        return list(self.targets) if self.targets is not None else [self.target_name]

    def for_target(self, name: str) -> Settings:
        """These settings with the S3 target `name` as the single TARGET_* target: what the copy
        engine, the clients and migrate's S3 path read. Validated already, as part of TARGETS."""
        config = self.target_configs().get(name)
        if not isinstance(config, S3TargetConfig):
            raise ConfigError(f"configuration error: {name!r} is not an S3 target of this deployment")
        if self.targets is None:
            return self
        return self.model_copy(
            update={
                "targets": None,
                "target_name": name,
                "target_bucket": config.bucket,
                "target_endpoint_url": config.endpoint_url,
                "target_region": config.region,
                "target_secret_id": config.secret_id,
                "target_access_key_id": config.access_key_id,
                "target_secret_access_key": config.secret_access_key,
                "target_default_credentials": config.default_credentials,
                "target_addressing_style": config.addressing_style,
                "target_checksum_mode": config.checksum_mode,
            }
        )

    @property
    def part_size(self) -> int:
        return self.part_size_mib * MIB

    @property
    def multipart_threshold(self) -> int:
        return self.multipart_threshold_mib * MIB

    @property
    def max_buffer_bytes(self) -> int:
        return self.max_buffer_mib * MIB

    def swapped(self) -> Settings:
        """The same settings with source and target exchanged (migrate --reverse)."""
        if self.targets is not None:
            raise ConfigError("configuration error: --reverse takes the single TARGET_* target, not TARGETS")
        data = {
            k: (v.get_secret_value() if isinstance(v, SecretStr) else v) for k, v in self.model_dump().items()
        }
        source_has_credentials = bool(data["source_secret_id"] or data["source_access_key_id"])
        for field in (
            "bucket",
            "endpoint_url",
            "secret_id",
            "access_key_id",
            "secret_access_key",
            "addressing_style",
            "checksum_mode",
        ):
            data[f"source_{field}"], data[f"target_{field}"] = (
                data[f"target_{field}"],
                data[f"source_{field}"],
            )
        data["source_region"], data["target_region"] = (
            data["target_region"],
            data["source_region"] or "us-east-1",
        )
        data["target_default_credentials"] = not source_has_credentials
        try:
            return Settings.model_validate(data)
        except ValidationError as exc:
            # The complaint is about the swapped settings: name the variables as the user set
            # them (the swapped TARGET_X is the user's SOURCE_X). from None: the error's input
            # values hold the unwrapped keys.
            raise ConfigError(
                "configuration error: with --reverse the SOURCE_* settings describe the target: "
                + _SIDE.sub(lambda m: "TARGET_" if m.group(1) == "SOURCE" else "SOURCE_", _describe(exc))
            ) from None


_SIDE = re.compile(r"\b(SOURCE|TARGET)_")


def _describe(error: ValidationError) -> str:
    """One line per problem, each naming the environment variable."""
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        message = str(item["msg"]).removeprefix("Value error, ")
        if not loc:
            lines.append(message)
            continue
        name = loc[0].upper()
        if item["type"] == "missing":
            message = "required"
        if name == "TARGETS" and len(loc) > 1:
            # ('targets', <name>, <type tag>, <field>): name the target and the field.
            inner = [part for i, part in enumerate(loc[1:]) if not (i == 1 and part in ("s3", "azure"))]
            name = f"TARGETS: {'.'.join(inner)}"
        lines.append(f"{name}: {message}")
    return "; ".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Read the environment; raise ConfigError with a one-line explanation on any problem."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(f"configuration error: {_describe(exc)}") from None


def load_ops_settings() -> OpsSettings:
    try:
        return OpsSettings()
    except ValidationError as exc:
        raise ConfigError(f"configuration error: {_describe(exc)}") from None
