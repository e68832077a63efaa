"""`make package` builds a Lambda zip that imports and runs in a fresh interpreter holding only
what the Lambda runtime provides (the standard library and boto3)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _lambda_python() -> str:
    """The Terraform runtime is python3.12: build for it when this machine has a working 3.12
    interpreter, else for the running one (the same recipe, checked for real either way)."""
    candidates = [
        shutil.which("python3.12"),
        *map(str, Path.home().glob(".pyenv/versions/3.12*/bin/python3.12")),
    ]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import venv"], capture_output=True, check=False)
        if probe.returncode == 0:
            return candidate
    return sys.executable


LAMBDA_PYTHON = _lambda_python()

RUN_HANDLER = r"""
import json, sys
from lambda_enqueue.handler import handle_event

class RecordingSQS:
    def __init__(self): self.entries = []
    def send_message_batch(self, QueueUrl, Entries):
        self.entries.extend(Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

for path in sys.argv[1:]:
    sqs = RecordingSQS()
    event = json.load(open(path))
    print(json.dumps({"result": handle_event(event, sqs, "https://sqs.example/q.fifo"),
                      "bodies": [json.loads(e["MessageBody"]) for e in sqs.entries]}))
import pydantic, boto3
assert "site-packages" not in pydantic.__file__, pydantic.__file__  # from the zip, not the venv
"""


def test_package_imports_and_runs_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    version = subprocess.run(
        [LAMBDA_PYTHON, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    build = subprocess.run(
        ["make", "package", f"LAMBDA_PYTHON_VERSION={version}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    package = ROOT / "build" / "lambda_enqueue.zip"
    with zipfile.ZipFile(package) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "task")
    top = {name.split("/")[0] for name in names}
    assert {"lambda_enqueue", "replicator", "pydantic", "pydantic_core"} <= top
    assert not top & {"boto3", "botocore", "moto", "structlog", "tenacity", "rich", "worker", "migrate"}
    files = {n for n in names if n.startswith("replicator/") and not n.endswith("/")}
    assert files == {"replicator/__init__.py", "replicator/messages.py"}

    venv = tmp_path / "venv"
    subprocess.run([LAMBDA_PYTHON, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "boto3"], check=True, timeout=300)
    script = tmp_path / "run.py"
    script.write_text(RUN_HANDLER)
    # The same change in both of S3's formats: a bucket notification and an EventBridge event.
    events = []
    for name in ("s3_put.json", "eventbridge_object_created.json"):
        events.append(tmp_path / name)
        events[-1].write_text((ROOT / "tests" / "events" / name).read_text())
    result = subprocess.run(
        [str(venv / "bin" / "python"), str(script), *map(str, events)],
        cwd=tmp_path / "task",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "task")},
    )
    assert result.returncode == 0, result.stderr
    import json

    notification, eventbridge = (json.loads(line) for line in result.stdout.splitlines()[:2])
    assert notification["result"]["enqueued"] == eventbridge["result"]["enqueued"] == 1
    assert notification["bodies"][0]["key"] == "photos/red flower.jpg"
    assert eventbridge["bodies"] == notification["bodies"]
