"""Builds the configured targets (settings.target_configs()) into Target objects.

An S3-compatible target gets a copy engine of its own (TransferEngine: the lean path, the ETag
chain, resumable uploads); an Azure Blob container is a Store behind StoreTarget, its source read
through the S3 store. The Azure SDK is imported only when a deployment names an Azure target.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
from pydantic import SecretStr

from replicator.clients import Clients, clients_for_target, read_secret_json
from replicator.errors import StartupError
from replicator.logs import register_secrets
from replicator.settings import AzureTargetConfig, S3TargetConfig, Settings
from replicator.targets import S3Target, Target
from replicator.transfer import ByteBudget, TransferEngine

if TYPE_CHECKING:
    from replicator.stores.azure import AzureBlobConfig

_AZURE_SECRET_FIELDS = ("connection_string", "account_name", "account_key")


def azure_config(
    name: str, config: AzureTargetConfig, session: boto3.session.Session, lean_requests: bool = True
) -> AzureBlobConfig:
    """The store's configuration, its credentials read from Secrets Manager when named there."""
    from replicator.stores.azure import AzureBlobConfig  # noqa: PLC0415 - the SDK only when used

    fields: dict[str, Any] = {"container": config.container, "lean_requests": lean_requests}
    if config.account_url:
        fields["account_url"] = config.account_url
    if config.connection_string is not None:
        fields["connection_string"] = config.connection_string
    else:
        assert config.secret_id is not None
        fields.update(_azure_secret(name, config.secret_id, session))
    try:
        return AzureBlobConfig(**fields)
    except ValueError as exc:
        # pydantic's text names fields and rules; the values it quotes are the container's only.
        raise StartupError(f"TARGETS: {name}: {str(exc).splitlines()[-1].strip()}") from None


def _azure_secret(name: str, secret_id: str, session: boto3.session.Session) -> dict[str, SecretStr | str]:
    where = f"TARGETS: {name}: secret {secret_id!r}"
    data = read_secret_json(session, secret_id, f"TARGETS: {name}")
    found = {k: v for k, v in data.items() if k in _AZURE_SECRET_FIELDS and isinstance(v, str) and v}
    register_secrets(v for k, v in found.items() if k != "account_name")
    for connection_field in ("AccountKey=", "SharedAccessSignature="):
        for part in found.get("connection_string", "").split(";"):
            if part.startswith(connection_field):
                register_secrets([part.removeprefix(connection_field)])
    if "connection_string" not in found and not {"account_name", "account_key"} <= set(found):
        # Field names only, never their values.
        raise StartupError(
            f"{where} must hold 'connection_string', or 'account_name' and 'account_key'; "
            f"fields found: {', '.join(sorted(map(str, data))) or 'none'}"
        )
    return {k: (v if k == "account_name" else SecretStr(v)) for k, v in found.items()}


def build_targets(settings: Settings, clients: Clients) -> tuple[dict[str, Target], TransferEngine]:
    """Every configured target by name, and the engine that reads the source (an S3 target's
    own engine when there is one, so a one-target deployment builds exactly one)."""
    targets: dict[str, Target] = {}
    reader: TransferEngine | None = None
    # MAX_BUFFER_MIB bounds the process, whatever the number of targets.
    budget = ByteBudget(settings.max_buffer_bytes)
    for name, config in settings.target_configs().items():
        if isinstance(config, S3TargetConfig):
            target_settings = settings.for_target(name)
            own = clients if clients.target is not None else clients_for_target(target_settings, clients)
            assert own.target is not None
            engine = TransferEngine(own.source, own.target, target_settings)
            engine.budget = budget
            reader = reader or engine
            targets[name] = S3Target(name, engine, own)
        else:
            targets[name] = _store_target(name, config, settings, clients, budget)
    if reader is None:
        reader = TransferEngine(clients.source, None, settings)
        reader.budget = budget
    return targets, reader


def _store_target(
    name: str, config: AzureTargetConfig, settings: Settings, clients: Clients, budget: ByteBudget
) -> Target:
    # The Azure SDK takes half a second to import: only deployments that name Azure pay it.
    from replicator.store_target import StoreTarget  # noqa: PLC0415
    from replicator.stores.azure import AzureBlobStore  # noqa: PLC0415
    from replicator.stores.s3 import S3Store  # noqa: PLC0415

    store = AzureBlobStore(azure_config(name, config, clients.session, settings.lean_requests))
    return StoreTarget(name, S3Store(clients.source, settings), store, settings, budget=budget)
