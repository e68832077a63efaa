"""A real Azure Storage server on loopback standing in for Azure Blob Storage: Azurite's blob service.

Azurite comes from npm (`make setup` installs the pinned version into `.azurite/`) and runs on
Node.js. Shared Key authentication is really checked: the server knows one account with a random
key, so a wrong key fails as it does on Azure. Strict mode (no `--loose`) stays on, so a header
or parameter Azurite does not support is refused instead of silently ignored; the API version
check is skipped because the SDK speaks a newer version than this Azurite release. Data lives in
memory only (`--inMemoryPersistence`) and the process runs in a temporary directory removed on
exit, so nothing is left on disk.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient

AZURITE_DIR = Path(__file__).resolve().parents[1] / ".azurite"
ACCOUNT_NAME = "lyvelocal"
_LISTENING = re.compile(r"Azurite Blob service successfully listens on (http://\S+)")


def _random_key() -> str:
    return base64.b64encode(os.urandom(64)).decode()


def node_binary() -> str:
    found = shutil.which("node")
    if not found:
        raise RuntimeError("the 'node' binary is missing: Azurite needs Node.js 20+ on PATH")
    return found


def azurite_blob_script(root: Path = AZURITE_DIR) -> tuple[Path, str]:
    """Azurite's blob service entry point (its package's `azurite-blob` bin) and the version."""
    package = root / "node_modules" / "azurite" / "package.json"
    if not package.exists():
        raise RuntimeError(f"Azurite is not installed in {root}: run `make setup` (npm install azurite)")
    manifest = json.loads(package.read_text())
    script = package.parent / manifest["bin"]["azurite-blob"]
    if not script.exists():
        raise RuntimeError(f"Azurite's blob service is missing from {package.parent}: run `make setup` again")
    return script, str(manifest["version"])


@dataclass
class Azurite:
    """`with Azurite() as az:` starts the blob service on a free 127.0.0.1 port, yields it, and
    stops it (its whole process group) on exit, also when the body raised."""

    account_name: str = ACCOUNT_NAME
    account_key: str = field(default_factory=_random_key, repr=False)
    root: Path = AZURITE_DIR
    blob_endpoint: str = ""
    version: str = ""
    log_path: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
            f"AccountKey={self.account_key};BlobEndpoint={self.blob_endpoint};"
        )

    def start(self, timeout: float = 60) -> Azurite:
        node = node_binary()
        script, self.version = azurite_blob_script(self.root)
        self._tmp = tempfile.TemporaryDirectory(prefix="azurite-")
        workdir = Path(self._tmp.name)
        self.log_path = workdir / "azurite.log"
        argv = [
            node,
            str(script),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            "0",  # the system picks a free port; the banner names it
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",  # no access log
        ]
        env = dict(os.environ, AZURITE_ACCOUNTS=f"{self.account_name}:{self.account_key}")
        try:
            with open(self.log_path, "wb") as out:
                self._process = subprocess.Popen(
                    argv,
                    cwd=workdir,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # its own process group: stop() takes all of it down
                )
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            assert self._process is not None
            assert self.log_path is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"Azurite exited with {self._process.returncode}: {self.tail_log()}")
            match = _LISTENING.search(self.log_path.read_text(errors="replace"))
            if match:
                self.blob_endpoint = f"{match.group(1).rstrip('/')}/{self.account_name}"
                try:
                    self.client().get_service_properties()
                    return
                except AzureError as exc:
                    last_error = type(exc).__name__
            time.sleep(0.1)
        raise RuntimeError(f"Azurite did not become ready in {timeout}s: {last_error}: {self.tail_log()}")

    def tail_log(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def client(self, **kwargs: Any) -> BlobServiceClient:
        """A plain SDK client for the account (few retries: the server is local)."""
        kwargs.setdefault("retry_total", 2)
        return BlobServiceClient.from_connection_string(self.connection_string, **kwargs)

    def create_container(self, name: str) -> None:
        self.client().create_container(name)

    def stop(self) -> None:
        process = self._process
        self._process = None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        elif process is not None:
            # The leader is gone; anything it left in its group goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
