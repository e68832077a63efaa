"""`python -m migrate` arguments, exit codes and the summary's categories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from migrate import cli
from migrate.runner import Options, Summary

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SOURCE_", "TARGET_"))}
    return subprocess.run(
        [sys.executable, "-m", "migrate", *args],
        env={**clean, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_reverse_with_explicit_source_keys_and_no_source_endpoint_is_a_one_line_config_error() -> None:
    result = run(
        "--reverse",
        "--check",
        SOURCE_BUCKET="source-bucket",
        SOURCE_ACCESS_KEY_ID="AKIASOURCEKEY",
        SOURCE_SECRET_ACCESS_KEY="source-secret-value",
        TARGET_BUCKET="target-bucket",
        TARGET_ENDPOINT_URL="https://s3.us-east-1.lyvecloud.seagate.com",
        TARGET_ACCESS_KEY_ID="LYVEKEY",
        TARGET_SECRET_ACCESS_KEY="lyve-secret-value",
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("configuration error: with --reverse")
    assert "SOURCE_ENDPOINT_URL: required" in lines[0]  # the variable the user must set
    assert "source-secret-value" not in result.stderr
    assert "lyve-secret-value" not in result.stderr


def test_max_delete_defaults_to_a_thousand_and_unlimited_lifts_it() -> None:
    parser = cli._parser()
    assert parser.parse_args([]).max_delete == 1000
    assert parser.parse_args(["--max-delete", "0"]).max_delete == 0
    assert parser.parse_args(["--max-delete", "unlimited"]).max_delete is None
    assert Options().max_delete == 1000
    with pytest.raises(SystemExit):
        parser.parse_args(["--max-delete", "-1"])
    help_text = " ".join(parser.format_help().split())
    assert "default 1000; 'unlimited' lifts the cap" in help_text
    assert "--allow-empty-source" in help_text


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({}, 0),
        ({"archived": [{"key": "k", "reason": "archived in GLACIER, not copied"}]}, 0),
        ({"gone": ["deleted/at/the/source"]}, 0),
        ({"unstorable": [{"key": "k", "reason": "segment over 255 bytes"}]}, 1),
        ({"failures": [{"key": "k", "error": "x"}]}, 1),
        ({"deletes_refused": 5, "failures": [{"key": "k", "error": "x"}]}, 4),
        ({"source_missing": "the source bucket 'b' does not exist", "deletes_refused": 1}, 3),
        ({"cancelled": True, "source_missing": "gone"}, 130),
    ],
)
def test_exit_codes(fields: dict[str, object], code: int) -> None:
    assert cli.exit_code(Summary(**fields)) == code  # type: ignore[arg-type]


def test_the_summary_names_each_category(capsys: pytest.CaptureFixture[str]) -> None:
    summary = Summary(
        deletes_refused=3, deletes_refused_reason="they exceed --max-delete 2 (raise it, or 'unlimited')"
    )
    summary.archive("cold", "archived in GLACIER, not copied")
    summary.refuse_key("a", "an object and a prefix of the same name cannot coexist")
    summary.skip_delete("back")
    summary.settle()
    summary.done["metadata"] = 2
    cli._print_summary(summary, Options())
    err = " ".join(capsys.readouterr().err.split())
    assert "archived, not copied: 'cold'" in err
    assert "cannot be stored on the target: 'a': an object and a prefix" in err
    assert "deletes skipped: source has the key again: 'back'" in err
    assert "2 object(s): metadata updated" in err
    assert "refused all 3 deletes: they exceed --max-delete 2" in err
