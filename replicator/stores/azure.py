"""Azure Blob Storage as a Store: block blobs through the Azure SDK (azure-storage-blob), the
writes a copy makes per object and per block (Put Blob, Put Block, Put Block List) on a lean path
(lean_azure) where it applies.

Writes. put() is one Put Blob carrying the bytes' Content-MD5. In parts, each part is a block
staged with Put Block and its Content-MD5 (the service refuses a block whose bytes do not match:
IntegrityError), and complete() commits them with Put Block List, with the content headers and
metadata; only that commit makes the blob visible. Until then an existing blob keeps its content,
and a copy that fails half-way leaves nothing visible. Block ids are `<upload id>-<part number in
5 digits>`: all of one length (Azure requires it per blob), and two attempts never mix blocks.
abort() sends nothing: uncommitted blocks cannot be removed one by one, and Azure discards them
a week after the last Put Block on the blob, or as soon as the blob is committed again (Put Block
List, Put Blob), by anyone; delete() discards them too. An upload whose blocks went that way
fails its complete() with SourceChangedError. A blob holds up to 50,000 blocks of up to 4,000 MiB
(block_size_for); Put Blob takes up to 5,000 MiB. Content headers and metadata can be replaced
without the bytes (update_metadata); blob_name_refusal() names the keys Azure Blob cannot hold as
they are.

Metadata names. Azure wants valid C# identifiers, compared without regard to case; S3 allows any
header token (`my-key`, `my.key`, `my_key`, ...). A name becomes a prefix, `m_` for user metadata
and this product's own fields, `h_` for a content header Azure lacks (Expires), followed by the
name's UTF-8 bytes: those in [a-z0-9] as they are, every other one as `_` and two lowercase hex
digits (`my-key` -> `m_my_2dkey`, `my_key` -> `m_my_5fkey`, `Key` -> `m__4bey`). The result
starts with a letter, holds only [a-z0-9_], is the same whatever the case, and decodes to exactly
the name it came from. Names not of this form (written by other tools) are read as they are.
Values pass unchanged.

Credentials (a connection string or an account key) are SecretStr in AzureBlobConfig, registered
with logs.register_secrets, and never part of a message, a repr or a log line.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import math
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import requests.adapters
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import (
    BlobBlock,
    BlobClient,
    BlobProperties,
    BlobServiceClient,
    BlobType,
    ContentSettings,
    ExponentialRetry,
)
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from urllib3.util.retry import Retry

from replicator.errors import (
    CopyError,
    IntegrityError,
    PermanentError,
    RetryPolicy,
    SourceChangedError,
    UnstorableKeyError,
)
from replicator.lean_http import LeanUnsupported
from replicator.logs import get_logger, register_secrets
from replicator.objects import META_MD5
from replicator.stores.base import (
    ContentHeaders,
    Data,
    IncompleteUpload,
    ListedObject,
    ObjectVersion,
    Part,
    StoreAccessError,
    StoredObject,
    StoreLimits,
    StoreMissingError,
    StoreUnavailableError,
    Upload,
    md5_base64,
)
from replicator.stores.lean_azure import AzureAnswer, LeanAzure

log = get_logger(__name__)

MIB = 1024 * 1024
MAX_BLOCKS = 50_000
MAX_BLOCK_SIZE = 4000 * MIB
MAX_BLOB_SIZE = MAX_BLOCKS * MAX_BLOCK_SIZE  # about 190.7 TiB
MAX_SINGLE_PUT = 5000 * MIB
MIN_BLOCK_SIZE = MIB  # a planning floor; Azure sets none

USER_PREFIX = "m_"
HEADER_PREFIX = "h_"
_EXPIRES = "expires"
_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789")
_HEX = frozenset("0123456789abcdef")
_BLOCK_ID = re.compile(r"^([0-9a-f]{32})-(\d{5})$")
_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_NAME_CHARS = 1024
MAX_NAME_SEGMENTS = 254
# Code points the service refuses in a blob name even percent-encoded ("Unicode characters not
# supported in container or blob names", besides the control characters 0x00-0x1F). Its table
# skips a few members of the same ranges (U+0081, which its text names, U+FDD0, U+4FFFE, ...):
# the whole ranges are refused, C1 controls and noncharacters alike.
_UNSUPPORTED = frozenset(
    [*range(0x80, 0xA0), *range(0xFDD0, 0xFDF0), *range(0xFFF0, 0x10000)]
    + [plane * 0x10000 + low for plane in range(1, 17) for low in (0xFFFE, 0xFFFF)]
)

T = TypeVar("T")


def block_size_for(size: int, configured: int) -> int:
    """max(configured, 1 MiB, ceil(size / 50,000)), rounded up to a whole MiB, at most 4,000 MiB
    (a larger configured size is brought down to it)."""
    if size < 0:
        raise ValueError(f"object size {size} is negative")
    if size > MAX_BLOB_SIZE:
        raise ValueError(f"object of {size} bytes exceeds Azure's block blob limit of {MAX_BLOB_SIZE} bytes")
    needed = max(min(configured, MAX_BLOCK_SIZE), MIN_BLOCK_SIZE, math.ceil(size / MAX_BLOCKS))
    return math.ceil(needed / MIB) * MIB  # MAX_BLOCK_SIZE is a whole MiB: never above it


def block_id_for(upload_id: str, number: int) -> str:
    """The id of part `number` of an upload (the SDK base64-encodes it on the wire)."""
    if not 1 <= number <= MAX_BLOCKS:
        raise ValueError(f"part number {number} is outside 1..{MAX_BLOCKS}")
    return f"{upload_id}-{number:05d}"


def parse_block_id(block_id: str) -> tuple[str, int] | None:
    """(upload id, part number) of one of our block ids; None for anyone else's."""
    match = _BLOCK_ID.match(block_id)
    return (match.group(1), int(match.group(2))) if match else None


def blob_name_refusal(key: str) -> str | None:
    """Why Azure Blob cannot hold a blob named `key` as it is, in words; None when it can.

    The service's rules (Naming and Referencing Containers, Blobs, and Metadata): 1 to 1,024
    characters (counted here in UTF-16 code units, the stricter reading: never fewer than the
    code points), at most 254 `/`-separated segments (accounts without a hierarchical
    namespace), no control characters nor the code points it lists as unsupported. A name ending
    in `.` or `/`, or with a segment that ends in `.`, is one the documentation says to avoid:
    the service may store it under another name (a trailing dot dropped), and a `.` or `..`
    segment is folded away on the way (Azurite answers such a name with an authentication
    failure: the path signed is not the path received). A backslash is stored as `/` (Azurite
    does so), another key. Each of these would be written under a name other than the key, or
    refused; none is worth retrying.
    """
    if not key:
        return "a blob name cannot be empty"
    length = len(key.encode("utf-16-le", "surrogatepass")) // 2
    if length > MAX_NAME_CHARS:
        return f"the key is {length} characters long, over Azure Blob's {MAX_NAME_CHARS}-character limit"
    segments = key.split("/")
    if len(segments) > MAX_NAME_SEGMENTS:
        return f"the key has {len(segments)} '/'-separated segments, over Azure Blob's {MAX_NAME_SEGMENTS}"
    bad = next((char for char in key if ord(char) < 0x20 or ord(char) in _UNSUPPORTED), None)
    if bad is not None:
        return f"it holds the character U+{ord(bad):04X}, which Azure Blob does not allow in a name"
    if "\\" in key:
        return "it holds a backslash, which Azure Blob stores as '/' (another key)"
    if key.endswith("/"):
        return "it ends with '/', which Azure Blob names must not"
    dotted = next((segment for segment in segments if segment.endswith(".")), None)
    if dotted is not None:
        shown = dotted if len(dotted) <= 40 else f"...{dotted[-37:]}"
        return (
            f"its segment {shown!r} ends with '.', which Azure Blob names must not (the service may "
            "drop the dot and store another name)"
        )
    return None


# -- metadata names --------------------------------------------------------------------------------


def encode_name(name: str, prefix: str = USER_PREFIX) -> str:
    """An S3 metadata name (or a carried header's) as an Azure metadata name (module docstring)."""
    raw = name.encode("utf-8", "surrogatepass")
    return prefix + "".join(chr(byte) if byte in _PLAIN else f"_{byte:02x}" for byte in raw)


def decode_name(encoded: str) -> tuple[str, str] | None:
    """(prefix, original name) of a name encode_name() wrote, whatever case the store gives it
    back in; None for any other name."""
    lowered = encoded.lower()
    prefix = next((p for p in (USER_PREFIX, HEADER_PREFIX) if lowered.startswith(p)), None)
    if prefix is None:
        return None
    body, raw, pos = lowered[len(prefix) :], bytearray(), 0
    while pos < len(body):
        char = body[pos]
        if char == "_":
            digits = body[pos + 1 : pos + 3]
            if len(digits) != 2 or not set(digits) <= _HEX:
                return None
            byte = int(digits, 16)
            if byte in _PLAIN:
                return None  # never written so: not ours
            raw.append(byte)
            pos += 3
        elif ord(char) in _PLAIN:
            raw.append(ord(char))
            pos += 1
        else:
            return None
    try:
        return prefix, raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None


def _expires_text(value: datetime | str) -> str:
    if isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return format_datetime(moment, usegmt=True)
    return value


def to_azure_metadata(metadata: Mapping[str, str], headers: ContentHeaders) -> dict[str, str]:
    """Azure metadata for S3-named metadata (ours among it) and the headers Azure has no place for."""
    result = {encode_name(name): value for name, value in metadata.items()}
    if headers.expires is not None:
        result[encode_name(_EXPIRES, HEADER_PREFIX)] = _expires_text(headers.expires)
    return result


def from_azure_metadata(stored: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
    """(S3-named metadata, Expires) from a blob's metadata. A name of ours wins over another
    tool's name that reads the same."""
    metadata: dict[str, str] = {}
    foreign: dict[str, str] = {}
    expires = None
    for name, value in stored.items():
        decoded = decode_name(name)
        if decoded is None:
            foreign[name] = value
        elif decoded[0] == USER_PREFIX:
            metadata[decoded[1]] = value
        elif decoded[1] == _EXPIRES:
            expires = value
    return {**foreign, **metadata}, expires


def _trimmed(value: str | None) -> str | None:
    # Header values go out trimmed (the SDK strips metadata; requests refuses a content header
    # with leading blanks; the service trims what it signs): the same on both paths.
    return value.strip() if value is not None else None


def _content_settings(headers: ContentHeaders, md5_hex: str | None = None) -> ContentSettings:
    return ContentSettings(
        content_type=_trimmed(headers.content_type),
        content_encoding=_trimmed(headers.content_encoding),
        content_language=_trimmed(headers.content_language),
        content_disposition=_trimmed(headers.content_disposition),
        cache_control=_trimmed(headers.cache_control),
        content_md5=bytearray(bytes.fromhex(md5_hex)) if md5_hex else None,
    )


def _md5_header(md5_hex: str) -> dict[str, str]:
    """The transactional Content-MD5 (base64) the service checks the request body against."""
    return {"Content-MD5": md5_base64(md5_hex)}


_BLOB_HEADERS = (
    ("content_type", "x-ms-blob-content-type"),
    ("content_encoding", "x-ms-blob-content-encoding"),
    ("content_language", "x-ms-blob-content-language"),
    ("content_disposition", "x-ms-blob-content-disposition"),
    ("cache_control", "x-ms-blob-cache-control"),
)


class _NotLean:
    """What _lean_write gives back where the lean path does not apply."""


_NOT_LEAN = _NotLean()


def _blob_headers(
    headers: ContentHeaders, metadata: Mapping[str, str], md5_hex: str | None = None
) -> dict[str, str]:
    """The request headers that set a blob's content headers and metadata on Put Blob and Put
    Block List (the lean path's form of _content_settings and to_azure_metadata)."""
    # Values trimmed as on the SDK path (_trimmed): the service trims header values before it
    # checks the signature, so a padded one would be refused as a bad signature.
    result = {name: str(value).strip() for field, name in _BLOB_HEADERS if (value := getattr(headers, field))}
    if md5_hex:
        result["x-ms-blob-content-md5"] = md5_base64(md5_hex)
    for name, value in to_azure_metadata(metadata, headers).items():
        result[f"x-ms-meta-{name}"] = value.strip()
    return result


def _plain_md5(value: str | None) -> str | None:
    return value if value and len(value) == 32 and set(value) <= _HEX else None


def _unquoted(etag: str | None) -> str:
    return (etag or "").strip('"')


# -- configuration ---------------------------------------------------------------------------------


def _connection_fields(connection_string: str) -> dict[str, str]:
    fields = {}
    for part in connection_string.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return fields


class AzureBlobConfig(BaseModel):
    """Where an Azure Blob store writes and with which credentials: a connection string, or an
    account name and key (endpoint: https://<account>.blob.core.windows.net unless given)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    container: str
    connection_string: SecretStr | None = None
    account_name: str | None = None
    account_key: SecretStr | None = None
    account_url: str | None = None
    # Attempts per request (the SDK's retries: throttling, 5xx, connection errors).
    max_attempts: int = Field(default=5, ge=1, le=20)
    # Kept-alive connections: as many as requests in flight (objects and their blocks).
    max_pool_connections: int = Field(default=64, ge=1, le=1024)
    connect_timeout: int = Field(default=20, ge=1)
    read_timeout: int = Field(default=60, ge=1)
    # Put Blob, Put Block and Put Block List through lean_azure (where it applies), not the SDK.
    lean_requests: bool = True

    @field_validator("container")
    @classmethod
    def _check_container(cls, name: str) -> str:
        if not _CONTAINER.match(name):
            raise ValueError(
                f"{name!r} is not a valid Azure container name (3-63 chars: a-z, 0-9, single '-' inside)"
            )
        return name

    @field_validator("account_key")
    @classmethod
    def _check_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None:
            try:
                base64.b64decode(key.get_secret_value(), validate=True)
            except ValueError:
                raise ValueError("the account key is not base64 (copy it whole from the portal)") from None
        return key

    @field_validator("connection_string")
    @classmethod
    def _check_connection_key(cls, value: SecretStr | None) -> SecretStr | None:
        key = _connection_fields(value.get_secret_value()).get("accountkey") if value is not None else None
        if key:
            try:
                base64.b64decode(key, validate=True)
            except ValueError:
                raise ValueError(
                    "the connection string's AccountKey is not base64 (copy the string whole from the portal)"
                ) from None
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> AzureBlobConfig:
        by_key = self.account_name is not None or self.account_key is not None
        if self.connection_string is not None and by_key:
            raise ValueError("give a connection string or an account name and key, not both")
        if self.connection_string is None and not (self.account_name and self.account_key):
            raise ValueError("a connection string, or an account name and key, is required")
        return self

    @property
    def account(self) -> str:
        """The account name, for messages (never a secret)."""
        if self.account_name:
            return self.account_name
        assert self.connection_string is not None
        fields = _connection_fields(self.connection_string.get_secret_value())
        if fields.get("accountname"):
            return fields["accountname"]
        host = urlsplit(fields.get("blobendpoint", "")).hostname or ""
        return host.split(".")[0] or "(unnamed account)"

    def secret_values(self) -> list[str]:
        values = []
        if self.account_key is not None:
            values.append(self.account_key.get_secret_value())
        if self.connection_string is not None:
            fields = _connection_fields(self.connection_string.get_secret_value())
            values += [fields.get("accountkey", ""), fields.get("sharedaccesssignature", "")]
            values.append(self.connection_string.get_secret_value())
        return [value for value in values if value]

    def service_client(self) -> BlobServiceClient:
        options: dict[str, Any] = {
            # The SDK's default waits 15 s, then 18, 24, ...: a target answering 503 would hold a
            # worker's slot for minutes per request. Like botocore's standard mode instead: about
            # 1 s, 3, 5, 9 (with a second of jitter); the message's own back-off takes it from there.
            "retry_policy": ExponentialRetry(
                initial_backoff=1, increment_base=2, retry_total=self.max_attempts - 1, random_jitter_range=1
            ),
            "connection_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            # put() is always one Put Blob, and a ranged read one GET (never split by the SDK),
            # whose body is handed over whole, read off the socket 1 MiB at a time (not 4 KiB).
            "max_single_put_size": MAX_SINGLE_PUT,
            "max_single_get_size": MAX_BLOCK_SIZE,
            "max_chunk_get_size": MAX_BLOCK_SIZE,
            "connection_data_block_size": MIB,
            "transport": _transport(self.max_pool_connections),
        }
        if self.connection_string is not None:
            return BlobServiceClient.from_connection_string(
                self.connection_string.get_secret_value(), **options
            )
        assert self.account_name is not None
        assert self.account_key is not None
        url = self.account_url or f"https://{self.account_name}.blob.core.windows.net"
        credential = {"account_name": self.account_name, "account_key": self.account_key.get_secret_value()}
        return BlobServiceClient(url, credential=credential, **options)


_PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


class _Adapter(requests.adapters.HTTPAdapter):
    """Sends request bodies given as streams in 64 KiB writes (http.client's default: 8 KiB),
    as the SDK's own adapter does in 32 KiB."""

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> Any:
        conn = super().get_connection_with_tls_context(*args, **kwargs)
        conn.conn_kw = {**(conn.conn_kw or {}), "blocksize": 65536}
        return conn


def _transport(pool: int) -> RequestsTransport:
    """The SDK's transport with a session set up as it would (no urllib3 retries: the pipeline
    retries), but with a pool for `pool` connections (requests keeps 10: with more requests in
    flight, connections were dropped and opened again, with a warning each), and without the
    per-request look at the environment's proxy settings when none is set (a tenth of a small
    Put Blob's CPU)."""
    session = requests.Session()
    session.trust_env = any(os.environ.get(name) or os.environ.get(name.lower()) for name in _PROXY_VARIABLES)
    adapter = _Adapter(
        pool_connections=pool,
        pool_maxsize=pool,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    return RequestsTransport(session=session, session_owner=True, use_env_settings=session.trust_env)


# -- the store -------------------------------------------------------------------------------------

_AUTH_CODES = frozenset(
    {
        "AuthenticationFailed",
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "AuthorizationResourceTypeMismatch",
        "InvalidAuthenticationInfo",
        "InsufficientAccountPermissions",
        "AccountIsDisabled",
    }
)
_INTEGRITY_CODES = frozenset({"Md5Mismatch", "Crc64Mismatch", "InvalidMd5"})
_BUSY_CODES = frozenset({"ServerBusy", "OperationTimedOut", "InternalError"})
_KEY_CODES = frozenset({"InvalidResourceName", "InvalidUri", "OutOfRangeInput"})
_METADATA_CODES = frozenset({"InvalidMetadata", "MetadataTooLarge"})


def _code(exc: HttpResponseError) -> str:
    code = getattr(exc, "error_code", None)  # set by the storage SDK on the errors it raises
    return str(getattr(code, "value", code) or "")


class AzureBlobStore:
    """One Azure Blob container as a Store. Thread-safe (one SDK client, shared)."""

    limits = StoreLimits(
        max_parts=MAX_BLOCKS,
        min_part_size=1,
        max_part_size=MAX_BLOCK_SIZE,
        max_single_put=MAX_SINGLE_PUT,
        max_object_size=MAX_BLOB_SIZE,
    )

    def __init__(self, config: AzureBlobConfig) -> None:
        register_secrets(config.secret_values())
        self.config = config
        self._account = config.account
        self._container = config.service_client().get_container_client(config.container)
        self._lean: LeanAzure | None = None
        if config.lean_requests:
            try:
                self._lean = LeanAzure(self._container, config.connect_timeout, config.read_timeout)
            except LeanUnsupported as exc:
                log.debug("lean_path_off", store=self.name, reason=str(exc))
        # The lean path's retries, timed as the SDK's are here (service_client).
        self._lean_retry = RetryPolicy(
            config.max_attempts, 1, 8, lambda exc: isinstance(exc, StoreUnavailableError)
        )

    @property
    def name(self) -> str:
        return f"azure-blob:{self._account}/{self.config.container}"

    def check(self) -> None:
        """At start: the container exists and the credentials reach it; otherwise the store's
        error (StoreMissingError, StoreAccessError, StoreUnavailableError), naming no secret."""
        try:
            self._container.get_container_properties()
        except AzureError as exc:
            raise self._failure(exc, "Get Container Properties", None) from None

    def __repr__(self) -> str:
        return f"AzureBlobStore({self.name!r})"

    # -- reads -------------------------------------------------------------------------------------

    def head(self, key: str) -> StoredObject | None:
        try:
            props = self._blob(key).get_blob_properties()
        except HttpResponseError as exc:
            if _code(exc) == "BlobNotFound" or (exc.status_code == 404 and _code(exc) != "ContainerNotFound"):
                return None
            raise self._failure(exc, "HEAD", key) from exc
        except AzureError as exc:
            raise self._failure(exc, "HEAD", key) from exc
        return self._stored(key, props)

    def read_range(self, key: str, start: int, length: int, expect: ObjectVersion | None = None) -> bytes:
        if start < 0 or length < 0:
            raise ValueError(f"bad range: start {start}, length {length}")
        if length == 0:
            return b""
        options: dict[str, Any] = {}
        if expect is not None and expect.version_id:
            options["version_id"] = expect.version_id
        elif expect is not None and expect.etag:
            options.update(etag=f'"{expect.etag}"', match_condition=MatchConditions.IfNotModified)

        def read() -> bytes:
            # The one GET's body comes back as one chunk (max_chunk_get_size), and joining a
            # single chunk returns it as it is: readall() would copy it once more (a BytesIO).
            # The chunks are gathered by a comprehension: list() of the SDK's iterator would
            # take its length in bytes for a count of items and reserve 8 bytes for each.
            download = self._blob(key).download_blob(
                offset=start, length=length, max_concurrency=1, **options
            )
            return b"".join([chunk for chunk in download.chunks()])

        data = self._call("read", key, read)
        if len(data) != length:
            raise SourceChangedError(
                f"read {len(data)} bytes of {key!r} at offset {start}, expected {length}: it is shorter now"
            )
        return data

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ListedObject]:
        """Committed blobs only, in name order. `start_after` is also sent to the service as
        its (inclusive) startFrom where it lies under the prefix; a service that ignores it
        (older API versions, Azurite) costs a longer listing, never a wrong one: names up to
        `start_after` are dropped here."""
        options: dict[str, Any] = {}
        if start_after is not None and start_after.startswith(prefix):
            options["start_from"] = start_after
        try:
            for props in self._container.list_blobs(name_starts_with=prefix or None, **options):
                if start_after is not None and props.name <= start_after:
                    continue
                yield ListedObject(props.name, int(props.size), _unquoted(props.etag), props.last_modified)
        except AzureError as exc:
            raise self._failure(exc, "list", None) from exc

    def incomplete_uploads(self, key: str) -> Sequence[IncompleteUpload]:
        """Our uploads among the blob's uncommitted blocks (grouped by the upload id in their
        block ids; other tools' blocks are not listed). Azure does not tell when a block was
        staged: `initiated` is None."""
        try:
            _, uncommitted = self._blob(key).get_block_list("uncommitted")
        except HttpResponseError as exc:
            if _code(exc) == "BlobNotFound":
                return []
            raise self._failure(exc, "block list", key) from exc
        except AzureError as exc:
            raise self._failure(exc, "block list", key) from exc
        uploads: dict[str, dict[int, Part]] = {}
        for block in uncommitted:
            parsed = parse_block_id(block.id)
            if parsed is not None:
                upload_id, number = parsed
                uploads.setdefault(upload_id, {})[number] = Part(number, block.id, int(block.size or 0))
        return [IncompleteUpload(key, upload_id, None, parts) for upload_id, parts in sorted(uploads.items())]

    # -- writes ------------------------------------------------------------------------------------

    def put(
        self, key: str, data: Data, headers: ContentHeaders, metadata: Mapping[str, str], md5: str
    ) -> str | None:
        if len(data) > MAX_SINGLE_PUT:
            raise ValueError(
                f"{len(data)} bytes are above Put Blob's {MAX_SINGLE_PUT} byte limit: write in parts"
            )
        md5_b64 = md5_base64(md5)
        etag = self._lean_write(
            "Put Blob",
            key,
            lambda lean: lean.put_blob(key, data, md5_b64, _blob_headers(headers, metadata)),
        )
        if not isinstance(etag, _NotLean):
            return etag or None
        body = bytes(data)
        result = self._call(
            "Put Blob",
            key,
            lambda: self._blob(key).upload_blob(
                body,
                length=len(body),
                blob_type=BlobType.BLOCKBLOB,
                overwrite=True,
                content_settings=_content_settings(headers),
                metadata=to_azure_metadata(metadata, headers),
                headers=_md5_header(md5),
                max_concurrency=1,
            ),
        )
        return _unquoted(result.get("etag")) or None

    def create_upload(self, key: str, headers: ContentHeaders, metadata: Mapping[str, str]) -> Upload:
        """Nothing is sent: the headers and metadata go with the commit."""
        return Upload(key, uuid.uuid4().hex, headers, dict(metadata))

    def upload_part(self, upload: Upload, number: int, data: Data, md5: str | None) -> Part:
        if len(data) > MAX_BLOCK_SIZE:
            raise ValueError(
                f"part {number}: {len(data)} bytes are above Azure's {MAX_BLOCK_SIZE} byte block limit"
            )
        block_id = block_id_for(upload.upload_id, number)
        checksum = md5 or hashlib.md5(data).hexdigest()  # noqa: S324 (the service's integrity hash)
        md5_b64 = md5_base64(checksum)
        staged = self._lean_write(
            f"Put Block {number}",
            upload.key,
            lambda lean: lean.put_block(upload.key, block_id, data, md5_b64),
            upload_id=upload.upload_id,
        )
        if not isinstance(staged, _NotLean):
            return Part(number, block_id, len(data))
        body = data if isinstance(data, bytes) else bytes(data)
        self._call(
            f"Put Block {number}",
            upload.key,
            lambda: self._blob(upload.key).stage_block(
                block_id, body, length=len(body), headers=_md5_header(checksum)
            ),
        )
        return Part(number, block_id, len(body))

    def complete(self, upload: Upload, parts: Sequence[Part]) -> str | None:
        """Put Block List of the parts in number order, with the upload's content headers and
        metadata; the whole-object MD5 we recorded (if any) becomes the blob's Content-MD5 too,
        for Azure's own tools to check against."""
        ordered = sorted(parts, key=lambda part: part.number)
        numbers = [part.number for part in ordered]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"upload {upload.upload_id} of {upload.key!r}: a part number given twice")
        for part in ordered:
            if part.token != block_id_for(upload.upload_id, part.number):
                raise ValueError(f"part {part.number} does not belong to upload {upload.upload_id}")
        md5 = _plain_md5(upload.metadata.get(META_MD5))
        etag = self._lean_write(
            "Put Block List",
            upload.key,
            lambda lean: lean.put_block_list(
                upload.key,
                [part.token for part in ordered],
                _blob_headers(upload.headers, upload.metadata, md5),
            ),
            upload_id=upload.upload_id,
        )
        if not isinstance(etag, _NotLean):
            return etag or None
        result = self._call(
            "Put Block List",
            upload.key,
            lambda: self._blob(upload.key).commit_block_list(
                [BlobBlock(block_id=part.token) for part in ordered],
                content_settings=_content_settings(upload.headers, md5),
                metadata=to_azure_metadata(upload.metadata, upload.headers),
            ),
            upload_id=upload.upload_id,
        )
        return _unquoted(str(result.get("etag") or "")) or None

    def abort(self, upload: Upload) -> None:
        """Nothing to send: the upload's blocks were never committed, so they are not visible;
        Azure discards them after 7 days, or when the blob is next committed."""
        log.debug("upload_abandoned", store=self.name, key=upload.key, upload_id=upload.upload_id)

    def delete(self, key: str) -> None:
        """Delete Blob, snapshots included, and every block staged under the name.

        Azure discards uncommitted blocks a week after the last Put Block on the blob, or when
        the blob is next written: Put Block List drops every uncommitted block not in its list,
        Put Blob all of them. What Delete Blob does with them is not documented; Azurite hides
        them from Get Block List and still commits them afterwards. So where blocks are staged, a
        Put Block List of none goes first (the name holds 0 bytes for a moment), then the delete:
        an upload of the key begun before the delete can never complete (SourceChangedError)
        and bring back what was deleted. One Get Block List more per delete."""
        blob = self._blob(key)
        try:
            try:
                _, staged = blob.get_block_list("uncommitted")
            except HttpResponseError as exc:
                if _code(exc) == "BlobNotFound":
                    return  # no blob, nothing staged
                if _code(exc) != "InvalidBlobType":  # a page or append blob has no blocks
                    raise
                staged = []
            if staged:
                blob.commit_block_list([])
            blob.delete_blob(delete_snapshots="include")
        except HttpResponseError as exc:
            if _code(exc) == "BlobNotFound":
                return
            raise self._failure(exc, "delete", key) from exc
        except AzureError as exc:
            raise self._failure(exc, "delete", key) from exc

    # -- optional capabilities (base.PlansParts, RefusesKeys, UpdatesMetadata) ----------------------

    def part_size_for(self, size: int, configured: int) -> int:
        return block_size_for(size, configured)

    def key_refusal(self, key: str) -> str | None:
        return blob_name_refusal(key)

    def update_metadata(
        self, key: str, expect: ObjectVersion, headers: ContentHeaders, metadata: Mapping[str, str]
    ) -> str | None:
        """Set Blob Properties (the content headers), then Set Blob Metadata, each only while the
        blob holds the ETag the step before left (If-Match): the bytes are not sent again, and a
        blob rewritten meanwhile is left alone (SourceChangedError). Set Blob Properties replaces
        every content header and clears the blob's Content-MD5 unless it is sent again: the MD5
        recorded in `metadata` is sent, or else the one the blob holds (read under the same
        condition). Should the second step fail, the blob has the new headers and its old
        metadata; the next comparison of metadata finds that and updates again."""
        blob = self._blob(key)

        def pinned(etag: str) -> dict[str, Any]:
            return {"etag": f'"{etag}"', "match_condition": MatchConditions.IfNotModified}

        md5 = _plain_md5(metadata.get(META_MD5))
        if md5 is None:
            props = self._call("HEAD", key, lambda: blob.get_blob_properties(**pinned(expect.etag)))
            held = props.content_settings.content_md5
            md5 = bytes(held).hex() if held else None
        settings = _content_settings(headers, md5)
        updated = self._call(
            "Set Blob Properties", key, lambda: blob.set_http_headers(settings, **pinned(expect.etag))
        )
        # The service always names the new ETag; were it missing, the old one makes the second
        # step fail (412) rather than go unpinned.
        etag = _unquoted(str(updated.get("etag") or "")) or expect.etag
        result = self._call(
            "Set Blob Metadata",
            key,
            lambda: blob.set_blob_metadata(to_azure_metadata(metadata, headers), **pinned(etag)),
        )
        return _unquoted(str(result.get("etag") or "")) or None

    # -- helpers -----------------------------------------------------------------------------------

    def _blob(self, key: str) -> BlobClient:
        return self._container.get_blob_client(key)

    def _stored(self, key: str, props: BlobProperties) -> StoredObject:
        settings = props.content_settings
        metadata, expires = from_azure_metadata(props.metadata or {})
        return StoredObject(
            key=key,
            size=int(props.size),
            etag=_unquoted(props.etag),
            last_modified=props.last_modified,
            content_md5=bytes(settings.content_md5).hex() if settings.content_md5 else None,
            headers=ContentHeaders(
                content_type=settings.content_type,
                content_encoding=settings.content_encoding,
                content_disposition=settings.content_disposition,
                content_language=settings.content_language,
                cache_control=settings.cache_control,
                expires=expires,
            ),
            metadata=metadata,
            version_id=props.version_id,
        )

    def _call(self, operation: str, key: str, call: Callable[[], T], upload_id: str | None = None) -> T:
        try:
            return call()
        except AzureError as exc:
            raise self._failure(exc, operation, key, upload_id) from exc

    def _lean_write(
        self, operation: str, key: str, call: Callable[[LeanAzure], T], upload_id: str | None = None
    ) -> T | _NotLean:
        """`call` on the lean path, retried as the SDK would be, its failures the store's errors;
        _NOT_LEAN where that path does not apply (the caller uses the SDK)."""
        lean = self._lean
        if lean is None:
            return _NOT_LEAN

        def attempt() -> T:
            try:
                return call(lean)
            except AzureAnswer as answer:
                raise self._refusal(
                    answer.status, answer.code, answer.message, operation, key, upload_id
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                raise self._connection_trouble(type(exc).__name__, operation, key) from None

        try:
            return self._lean_retry(attempt)
        except LeanUnsupported as exc:
            if exc.endpoint_wide:
                self._lean = None
            log.debug("lean_path_off", store=self.name, reason=str(exc))
            return _NOT_LEAN

    def _place(self) -> str:
        return f"container {self.config.container!r} of Azure Blob account {self._account!r}"

    def _connection_trouble(self, kind: str, operation: str, key: str | None) -> StoreUnavailableError:
        where = f"{operation} of {key!r}" if key is not None else operation
        return StoreUnavailableError(f"{where} in {self._place()}: {kind} (connection trouble)")

    def _failure(
        self, exc: AzureError, operation: str, key: str | None, upload_id: str | None = None
    ) -> Exception:
        """The project's error for an SDK failure, in words that name no credential."""
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            return self._connection_trouble(type(exc).__name__, operation, key)
        if not isinstance(exc, HttpResponseError):
            where = f"{operation} of {key!r}" if key is not None else operation
            return CopyError(f"{where} in {self._place()} failed: {type(exc).__name__}")
        return self._refusal(
            int(exc.status_code or 0), _code(exc), str(exc.message or ""), operation, key, upload_id
        )

    def _refusal(
        self, status: int, code: str, text: str, operation: str, key: str | None, upload_id: str | None
    ) -> Exception:
        """The project's error for the service's answer `status` / `code` (and its message)."""
        where = f"{operation} of {key!r}" if key is not None else operation
        place = self._place()
        answer = f"{status} {code}".strip()
        message = text.lower()
        if status in (401, 403) or code in _AUTH_CODES:
            return StoreAccessError(
                f"{place} refused {where} ({answer}): check the account key or connection string, "
                "and that it may read and write this container"
            )
        if code == "ContainerNotFound":
            return StoreMissingError(
                f"{place} does not exist ({answer} on {where}): create it or fix its name"
            )
        if code in _INTEGRITY_CODES or (status == 400 and "md5" in message):
            return IntegrityError(f"{place} refused {where}: the bytes do not match their MD5 ({answer})")
        if status == 412 or code == "ConditionNotMet":
            return SourceChangedError(f"{key!r} changed during {operation} ({answer}): look at it again")
        if code in ("BlobNotFound", "InvalidRange"):
            return SourceChangedError(f"{key!r} changed or vanished during {operation} ({answer})")
        if code == "InvalidBlockList":
            return SourceChangedError(
                f"the blocks of upload {upload_id} of {key!r} are gone ({answer}): expired, or "
                "discarded when the blob was committed by another writer; copy it again"
            )
        if code in _METADATA_CODES:
            return PermanentError(
                f"{place} refused the metadata of {key!r} ({answer})", reason="unstorable_metadata"
            )
        if key is not None and code in _KEY_CODES:
            return UnstorableKeyError(f"{place} cannot store the key {key!r} ({answer})")
        if status in (408, 429) or status >= 500 or code in _BUSY_CODES:
            return StoreUnavailableError(f"{where} in {place}: {answer}")
        return CopyError(f"{where} in {place} failed: {answer}")
