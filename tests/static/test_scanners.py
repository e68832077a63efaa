"""checkov on terraform/ and the Dockerfile, hadolint on the Dockerfile, and the image's shape."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
HADOLINT = ROOT / ".venv" / "bin" / "hadolint"


def _checkov(*args: str) -> dict[str, object]:
    result = subprocess.run(
        [str(CHECKOV), *args, "--output", "json", "--quiet", "--skip-download"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    report = json.loads(result.stdout)
    if isinstance(report, list):
        report = {
            "summary": {k: sum(r["summary"][k] for r in report) for k in ("passed", "failed", "skipped")},
            "results": {"failed_checks": [c for r in report for c in r["results"]["failed_checks"]]},
        }
    return report  # type: ignore[no-any-return]


def test_checkov_finds_no_failed_check_in_terraform() -> None:
    report = _checkov("-d", "terraform")
    failed = report["results"]["failed_checks"]  # type: ignore[index]
    assert failed == [], [(c["check_id"], c["resource"]) for c in failed]  # type: ignore[union-attr]
    assert report["summary"]["passed"] > 50  # type: ignore[index]


def test_checkov_finds_no_failed_check_in_the_dockerfile() -> None:
    report = _checkov("-f", "Dockerfile", "--framework", "dockerfile")
    assert report["results"]["failed_checks"] == []  # type: ignore[index]
    assert report["summary"]["passed"] > 10  # type: ignore[index]


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [str(HADOLINT), "Dockerfile"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_pinned_multistage_non_root_with_worker_default() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    froms = [line for line in lines if line.startswith("FROM ")]
    assert len(froms) >= 2
    for line in froms:
        image = line.split()[1]
        assert ":" in image and "latest" not in image and "slim" in image, line
    assert any(line.startswith("USER ") and "root" not in line and " 0" not in line for line in lines)
    assert lines[-1] == 'CMD ["python", "-m", "worker"]'
