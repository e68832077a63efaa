from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azure.storage.blob import ContainerClient
from moto.server import ThreadedMotoServer

from local_stack.azurite import Azurite
from local_stack.seaweed import SeaweedS3
from local_stack.stack import LocalStack
from replicator.clients import Endpoint, build_clients
from tests.integration.support import drop_bucket, settings_for


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    """moto + SeaweedFS on loopback; stopped (with any worker it started) after the module."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_ENDPOINT_URL", "QUEUE_URL"):
            mp.delenv(name, raising=False)
        local = LocalStack().start(invoker_thread=False)
        try:
            yield local
        finally:
            local.stop()


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}/"


@pytest.fixture(scope="module")
def lyve() -> Iterator[SeaweedS3]:
    """SeaweedFS on loopback, started for the module that asks for it and stopped after it."""
    with SeaweedS3() as server:
        yield server


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    """Azurite on loopback, started for the module that asks for it and stopped after it."""
    with Azurite() as server:
        yield server


@pytest.fixture
def container(azurite: Azurite) -> Iterator[ContainerClient]:
    """A fresh container, read with the plain SDK (not through the store under test)."""
    client = azurite.client().get_container_client(f"c-{uuid.uuid4().hex[:12]}")
    client.create_container()
    yield client
    client.delete_container()


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """moto's S3 as an AWS source: storage classes, SSE-KMS, keys SeaweedFS (like Lyve Cloud)
    cannot hold."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(params=["lean", "boto3"])
def request_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LEAN_REQUESTS", str(request.param == "lean").lower())
    return str(request.param)


@pytest.fixture
def ends(lyve: SeaweedS3, request_path: str) -> Iterator[tuple[Endpoint, Endpoint]]:
    """Source and target buckets, reached through clients configured as in production."""
    name = uuid.uuid4().hex[:10]
    admin = lyve.client()
    for bucket in (f"src-{name}", f"dst-{name}"):
        admin.create_bucket(Bucket=bucket)
    clients = build_clients(settings_for(lyve, f"src-{name}", f"dst-{name}"))
    yield clients.source, clients.target
    for bucket in (f"src-{name}", f"dst-{name}"):
        drop_bucket(admin, bucket)
