"""`make demo`: the pipeline end to end on loopback, with a verdict.

Starts moto (AWS), SeaweedFS (Lyve Cloud) and Azurite (Azure Blob Storage), starts two real
worker processes replicating to both targets at once ("lyve" and "azure" in TARGETS), then
creates objects in the source bucket (one of 64 MiB, odd keys among them), deletes one and
overwrites one. S3 notifications flow through the real enqueue handler into the FIFO queue; the
workers replicate. The demo prints what arrived and exits 0 only if both targets are identical to
the source, byte for byte. Every server and worker it started is stopped on the way out.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

from rich.console import Console
from rich.table import Table

from local_stack.compare import bucket_contents, container_contents, differences
from local_stack.stack import LocalStack

MIB = 1024 * 1024


def _objects() -> dict[str, bytes]:
    rng = os.urandom
    return {
        "reports/2026/summary.csv": b"id,value\n1,42\n",
        "photos/red flower.jpg": rng(300_000),
        "odd/plus+sign & percent%20.txt": b"keys arrive URL-encoded; decoded once",
        "unicode/caf\u00e9-\u65e5\u672c-\U0001f600.txt": "na\u00efve".encode(),
        "empty/zero-byte": b"",
        "video/large-64MiB.bin": rng(64 * MIB + 12345),
        "tmp/to-be-deleted.log": b"short-lived",
        "config/overwritten.json": b'{"version": 1}',
    }


def run(console: Console) -> int:
    with LocalStack(with_azure=True) as stack:
        assert stack.azure is not None
        console.print(f"[bold]AWS (moto)[/]   {stack.aws.endpoint_url}  source bucket: {stack.source_bucket}")
        console.print(
            f'[bold]Lyve (weed)[/]  {stack.lyve.endpoint_url}  target "lyve": bucket {stack.target_bucket}'
        )
        console.print(
            f'[bold]Azure (Azurite)[/]  {stack.azure.blob_endpoint}  target "azure": container '
            f"{stack.azure_container}"
        )
        env = stack.env(DRAIN_IDLE_SECONDS="8", LOG_LEVEL="WARNING")
        workers = [stack.start_worker("--drain", env=env) for _ in range(2)]
        console.print(f"started {len(workers)} worker processes")

        source = stack.source()
        started = time.monotonic()
        for key, body in _objects().items():
            source.upload_fileobj(io.BytesIO(body), stack.source_bucket, key)
        source.delete_object(Bucket=stack.source_bucket, Key="tmp/to-be-deleted.log")
        source.put_object(Bucket=stack.source_bucket, Key="config/overwritten.json", Body=b'{"version": 2}')
        console.print("created 8 objects, deleted 1, overwrote 1; waiting for the workers to drain the queue")

        for worker in workers:
            worker.wait(timeout=600)
        elapsed = time.monotonic() - started
        codes = [w.returncode for w in workers]

        src = bucket_contents(source, stack.source_bucket)
        targets = {
            "lyve": bucket_contents(stack.target(), stack.target_bucket),
            "azure": container_contents(stack.azure.client(), stack.azure_container),
        }
        table = Table(title=f"Replicated in {elapsed:.1f}s (including the workers' idle wait)")
        for column in ("key", "source bytes", *(f"{name} md5 match" for name in targets)):
            table.add_column(column)
        for key in sorted(set(src).union(*targets.values())):
            s = src.get(key)
            matches = []
            for dst in targets.values():
                d = dst.get(key)
                matches.append("yes" if s and d and s.md5 == d.md5 else ("-" if not s and not d else "NO"))
            table.add_row(repr(key), str(s.size) if s else "-", *matches)
        console.print(table)
        problems = []
        for name, dst in targets.items():
            problems += [f"{name}: {problem}" for problem in differences(src, dst)]
            if "tmp/to-be-deleted.log" in dst:
                problems.append(f"{name}: the deleted object is still on the target")
        if any(code != 0 for code in codes):
            problems.append(f"worker exit codes: {codes}")
        if problems:
            console.print("[bold red]FAIL[/]: " + "; ".join(problems))
            return 1
        console.print(
            f"[bold green]PASS[/]: both targets match the source, byte for byte ({len(src)} objects)"
        )
        _show_status(env, console)
        return 0


def _show_status(env: dict[str, str], console: Console) -> None:
    """What `make status` shows, against the demo's queues."""
    result = subprocess.run(
        [sys.executable, "-m", "worker", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    console.print(result.stdout.rstrip() or result.stderr.rstrip())


def main() -> int:
    return run(Console())


if __name__ == "__main__":
    sys.exit(main())
