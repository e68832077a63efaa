"""`make bench`: this project vs rclone vs the old method, same work, same run, alternating.

Two SeaweedFS servers on loopback stand for the source (S3) and the target (Lyve Cloud). Data is
generated on the fly: one 1 GiB object, and 2,000 objects of 4-64 KiB. Each contender copies the
whole source bucket into a fresh target bucket; runs alternate between contenders; the medians
are reported with the ratios to rclone, in bench/results.md and bench/results.json.

Contenders:
- lyve-replicator: `python -m migrate` at default settings.
- rclone: `rclone copy src:bucket dst:bucket`, two remotes, concurrency matched to ours.
- old method: `aws s3 cp --recursive` to local disk, then up (what the earlier projects did).

Then the listing scenarios (bench/listing.py): `--check` of an identical 100,000-key pair against
`rclone check`, sharded checks, memory and temporary disk against bucket size, and the time to the
first copy. Then the event path (bench/events.py): S3 events at steady rates and in a burst through
the handler, the FIFO queue and two workers, on the local stack. Then the Azure Blob target
(bench/azure.py): the same loads to Azurite against rclone, and one target against two.
"""

from __future__ import annotations

import argparse
import compileall
import io
import json
import os
import random
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from boto3.s3.transfer import TransferConfig

from bench import azure, events, listing
from local_stack.seaweed import SeaweedS3
from migrate.cli import DEFAULT_CONCURRENCY
from replicator.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MIB = 1024 * 1024
SOURCE_BUCKET = "bench-source"

# Ours runs at its defaults, as the README tells users to; rclone and the AWS CLI get the flags
# that match them where they have the knob: objects in flight, parts per object, part size.
OBJECTS_IN_FLIGHT = DEFAULT_CONCURRENCY
PARTS_IN_FLIGHT = Settings.model_fields["part_concurrency"].default
PART_MIB = Settings.model_fields["part_size_mib"].default


@dataclass
class Measurement:
    scenario: str
    contender: str
    run: int
    seconds: float
    peak_rss_mib: float
    cpu_seconds: float  # the contender's process tree
    servers_cpu_seconds: float  # the two SeaweedFS servers', during the run
    objects: int
    bytes: int
    ok: bool

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6

    @property
    def objects_per_s(self) -> float:
        return self.objects / self.seconds


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process so far, all its threads (from /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree(root_pid: int) -> dict[int, int]:
    """The resident memory of a process and each of its descendants, in bytes (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE")
    tree: dict[int, int] = {}
    stack = [root_pid]
    while stack:
        pid = stack.pop()
        tree[pid] = rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return tree


def _temp_bytes(directory: Path, pids: Iterable[int]) -> int:
    """Disk held under `directory`: its files, and files there that the processes still hold
    open after unlinking them (SQLite's temporary files live that way)."""
    held: dict[tuple[int, int], int] = {}
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                info = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            held[(info.st_dev, info.st_ino)] = info.st_blocks * 512
    inside = f"{directory}{os.sep}"
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if not os.readlink(f"{fd_dir}/{fd}").startswith(inside):
                    continue
                info = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                held[(info.st_dev, info.st_ino)] = info.st_blocks * 512
    return sum(held.values())


class Measured(NamedTuple):
    seconds: float
    peak_rss: int  # bytes, the whole process tree
    code: int
    stderr: str  # its tail
    peak_temp: int  # bytes under the watched directory (0 when none is watched)
    cpu_seconds: float = 0.0  # user + system of the process and every descendant it waited for


def measure(argv: list[str], env: dict[str, str], watch_dir: Path | None = None) -> Measured:
    """Run a command; wall seconds, peak RSS of its process tree, exit code, stderr tail and,
    given a directory (its TMPDIR), the peak disk held there."""
    started = time.monotonic()
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    peak = peak_temp = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak, peak_temp
        while not stop.is_set():
            tree = _tree(process.pid)
            peak = max(peak, sum(tree.values()))
            if watch_dir is not None:
                peak_temp = max(peak_temp, _temp_bytes(watch_dir, tree))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert process.stderr is not None
    stderr = process.stderr.read()  # to EOF: the process and its children are done writing
    # wait4, not communicate(): its rusage counts the process and every descendant it reaped.
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - started
    stop.set()
    sampler.join()
    process.stderr.close()
    cpu = usage.ru_utime + usage.ru_stime
    return Measured(
        elapsed, peak, process.returncode, stderr.decode(errors="replace")[-2000:], peak_temp, cpu
    )


class Bench:
    def __init__(self, source: SeaweedS3, target: SeaweedS3, workdir: Path) -> None:
        self.source = source
        self.target = target
        self.workdir = workdir
        self.src = source.client()
        self.dst = target.client()

    # -- data -----------------------------------------------------------------------------------

    def prepare(self, scenario: str, small_count: int, large_mib: int) -> tuple[int, int]:
        self.src.create_bucket(Bucket=f"{SOURCE_BUCKET}-{scenario}")
        bucket = f"{SOURCE_BUCKET}-{scenario}"
        if scenario == "large":
            data = os.urandom(large_mib * MIB)
            self.src.upload_fileobj(
                io.BytesIO(data),
                bucket,
                "large/1GiB.bin",
                Config=TransferConfig(multipart_chunksize=16 * MIB),
            )
            return 1, len(data)
        rng = random.Random(42)
        sizes = [rng.randint(4 * 1024, 64 * 1024) for _ in range(small_count)]
        blob = os.urandom(64 * 1024)

        def put(i: int) -> None:
            self.src.put_object(
                Bucket=bucket, Key=f"small/{i % 50:02d}/obj-{i:05d}.bin", Body=blob[: sizes[i]]
            )

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, range(small_count)))
        return small_count, sum(sizes)

    def fresh_target(self, name: str) -> str:
        """A new, empty target bucket, ready for writes. SeaweedFS allocates a bucket's volumes on
        its first write, which stalls the first writes 0.2 s, or 1 s when they come at once: a
        server's cost that would land at random on the contenders, not a cost of copying. Paid
        here, unmeasured (an empty object allocates nothing)."""
        self.dst.create_bucket(Bucket=name)
        self.dst.put_object(Bucket=name, Key="bench-warm-up", Body=b"w")
        self.dst.delete_object(Bucket=name, Key="bench-warm-up")
        return name

    def drop_target(self, bucket: str) -> tuple[int, int]:
        """Count what arrived, then empty and delete the bucket (keeps the disk small)."""
        count, size, keys = 0, 0, []
        for page in self.dst.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                count += 1
                size += obj["Size"]
                keys.append(obj["Key"])
        for start in range(0, len(keys), 1000):
            self.dst.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]]}
            )
        self.dst.delete_bucket(Bucket=bucket)
        return count, size

    # -- contenders -----------------------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        """The caller's environment without what would configure a contender: ours runs at its
        defaults whatever the shell running the bench has set (LOG_LEVEL, PART_SIZE_MIB, ...)."""
        ours = {name.upper() for name in Settings.model_fields}
        return {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "RCLONE_", "SOURCE_", "TARGET_")) and k.upper() not in ours
        }

    def ours_env(
        self,
        source_bucket: str,
        target_bucket: str,
        source_url: str | None = None,
        target_url: str | None = None,
    ) -> dict[str, str]:
        """The environment a user sets for `python -m migrate` (endpoints default to the servers)."""
        return self._base_env() | {
            "SOURCE_BUCKET": source_bucket,
            "SOURCE_ENDPOINT_URL": source_url or self.source.endpoint_url,
            "SOURCE_ACCESS_KEY_ID": self.source.access_key,
            "SOURCE_SECRET_ACCESS_KEY": self.source.secret_key,
            "SOURCE_ADDRESSING_STYLE": "path",
            "SOURCE_REGION": "us-east-1",
            "TARGET_BUCKET": target_bucket,
            "TARGET_ENDPOINT_URL": target_url or self.target.endpoint_url,
            "TARGET_ACCESS_KEY_ID": self.target.access_key,
            "TARGET_SECRET_ACCESS_KEY": self.target.secret_key,
            "ALLOW_HTTP_ENDPOINTS": "true",
        }

    def ours(self, source_bucket: str, target_bucket: str) -> tuple[list[str], dict[str, str]]:
        """`python -m migrate` exactly as the README runs it: no flags, INFO logs, progress on
        (log lines every few seconds, as on ECS: stderr is not a terminal here)."""
        return [sys.executable, "-m", "migrate"], self.ours_env(source_bucket, target_bucket)

    def ours_md5(self, source_bucket: str, target_bucket: str) -> tuple[list[str], dict[str, str]]:
        """The same with WHOLE_OBJECT_MD5=true: what the opt-in whole-object MD5 pass costs."""
        argv, env = self.ours(source_bucket, target_bucket)
        return argv, env | {"WHOLE_OBJECT_MD5": "true"}

    def servers_cpu(self) -> float:
        return sum(cpu_seconds(server.pid) for server in (self.source, self.target))

    def settle(self, timeout: float = 10.0) -> None:
        """Wait for the servers to go idle (the previous run's deletes, compactions), so that
        their background work is charged to no contender."""
        deadline = time.monotonic() + timeout
        before = self.servers_cpu()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = self.servers_cpu()
            if now - before < 0.01:  # under 4% of a core
                return
            before = now

    def rclone_env(self) -> dict[str, str]:
        """Two remotes, SRC: and DST:, for rclone started with `--config /dev/null`."""
        env = self._base_env()
        for name, server in (("SRC", self.source), ("DST", self.target)):
            env |= {
                f"RCLONE_CONFIG_{name}_TYPE": "s3",
                f"RCLONE_CONFIG_{name}_PROVIDER": "Other",
                f"RCLONE_CONFIG_{name}_ACCESS_KEY_ID": server.access_key,
                f"RCLONE_CONFIG_{name}_SECRET_ACCESS_KEY": server.secret_key,
                f"RCLONE_CONFIG_{name}_ENDPOINT": server.endpoint_url,
                f"RCLONE_CONFIG_{name}_REGION": "us-east-1",
                f"RCLONE_CONFIG_{name}_FORCE_PATH_STYLE": "true",
            }
        return env

    def rclone(self, source_bucket: str, target_bucket: str) -> tuple[list[str], dict[str, str]]:
        env = self.rclone_env()
        argv = [
            str(BIN / "rclone"),
            "copy",
            f"SRC:{source_bucket}",
            f"DST:{target_bucket}",
            "--config",
            "/dev/null",
            "--transfers",
            str(OBJECTS_IN_FLIGHT),
            "--checkers",
            str(OBJECTS_IN_FLIGHT),
            "--s3-upload-concurrency",
            str(PARTS_IN_FLIGHT),
            "--multi-thread-streams",
            str(PARTS_IN_FLIGHT),
            "--s3-chunk-size",
            f"{PART_MIB}M",
            "--multi-thread-chunk-size",
            f"{PART_MIB}M",
            "--s3-upload-cutoff",
            "8M",
        ]
        return argv, env

    def old_method(self, source_bucket: str, target_bucket: str) -> tuple[list[str], dict[str, str]]:
        local = self.workdir / "old-method"
        script = (
            f'rm -rf "{local}" && mkdir -p "{local}" && '
            f"AWS_ACCESS_KEY_ID={self.source.access_key} AWS_SECRET_ACCESS_KEY={self.source.secret_key} "
            f'"{BIN / "aws"}" s3 cp --recursive --only-show-errors --endpoint-url {self.source.endpoint_url} '
            f's3://{source_bucket} "{local}" && '
            f"AWS_ACCESS_KEY_ID={self.target.access_key} AWS_SECRET_ACCESS_KEY={self.target.secret_key} "
            f'"{BIN / "aws"}" s3 cp --recursive --only-show-errors --endpoint-url {self.target.endpoint_url} '
            f'"{local}" s3://{target_bucket} && rm -rf "{local}"'
        )
        config = self.workdir / "aws-config"
        config.write_text(
            "[default]\nregion = us-east-1\n"
            f"s3 =\n  max_concurrent_requests = {OBJECTS_IN_FLIGHT}\n  multipart_chunksize = {PART_MIB}MB\n"
            "request_checksum_calculation = when_required\nresponse_checksum_validation = when_required\n"
        )
        env = self._base_env() | {"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
        return ["bash", "-c", script], env


CONTENDERS = ("lyve-replicator", "rclone", "old-method", "lyve-replicator+md5")
OURS = ("lyve-replicator", "lyve-replicator+md5")
# What a copy to an S3 target imports before its first request, at the least (structlog as
# replicator.logs loads it: without rich's renderers, which we do not use).
S3_LIBRARIES = ("boto3", "pydantic_settings", "replicator.logs")


def library_import_seconds(modules: tuple[str, ...], runs: int = 5) -> float:
    """Median wall time of a bare interpreter importing `modules`, the libraries this product is
    built on: the least time any start-up of ours takes before its first request."""
    argv = [sys.executable, "-c", "import " + ", ".join(modules)]
    times = []
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run(argv, check=True)
        times.append(time.monotonic() - started)
    return statistics.median(times)


ONLY_LARGE = ("lyve-replicator+md5",)
CORES = len(
    os.sched_getaffinity(0)
)  # the cores this bench may use  # the MD5 pass concerns multipart copies only
# The copy scenarios, bench/listing.py's, bench/events.py's, bench/azure.py's.
SCENARIO_GROUPS = ("copies", "listing", "events", *azure.GROUPS)


def copy_scenarios(bench: Bench, args: argparse.Namespace) -> list[Measurement]:
    measurements: list[Measurement] = []
    scenarios = {
        "small": bench.prepare("small", args.small_count, 0),
        "large": bench.prepare("large", 0, args.large_mib),
    }
    for scenario, (objects, total) in scenarios.items():
        print(f"{scenario}: {objects} objects, {total / MIB:.1f} MiB in the source", flush=True)
        # One unmeasured copy first: the target's first writes allocate its volumes and
        # fill caches, a cost that would otherwise land on whoever runs first.
        warm_bucket = bench.fresh_target(f"t-{scenario}-warm-up")
        measure(*bench.rclone(f"{SOURCE_BUCKET}-{scenario}", warm_bucket))
        bench.drop_target(warm_bucket)
        for run_index in range(args.runs):
            order = [c for c in CONTENDERS if scenario == "large" or c not in ONLY_LARGE]
            order = order[run_index % len(order) :] + order[: run_index % len(order)]  # alternate
            for contender in order:
                target_bucket = bench.fresh_target(f"t-{scenario}-{contender.replace('+', '-')}-{run_index}")
                build = {
                    "lyve-replicator": bench.ours,
                    "lyve-replicator+md5": bench.ours_md5,
                    "rclone": bench.rclone,
                    "old-method": bench.old_method,
                }[contender]
                argv, env = build(f"{SOURCE_BUCKET}-{scenario}", target_bucket)
                bench.settle()
                servers_before = bench.servers_cpu()
                seconds, peak, code, stderr, _, cpu = measure(argv, env)
                servers = bench.servers_cpu() - servers_before
                arrived, size = bench.drop_target(target_bucket)
                ok = code == 0 and arrived == objects and size == total
                if not ok:
                    print(f"  {contender} FAILED (exit {code}, {arrived}/{objects}): {stderr}", flush=True)
                m = Measurement(
                    scenario, contender, run_index, seconds, peak / MIB, cpu, servers, objects, total, ok
                )
                measurements.append(m)
                print(
                    f"  run {run_index} {contender:16s} {seconds:7.2f}s {m.mb_per_s:8.1f} MB/s "
                    f"{m.objects_per_s:8.1f} obj/s  peak RSS {m.peak_rss_mib:7.1f} MiB  "
                    f"CPU {cpu:6.2f}s (servers {servers:6.2f}s)",
                    flush=True,
                )
    return measurements


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    measurements: list[Measurement] = []
    listing_result: dict[str, Any] | None = None
    events_result: dict[str, Any] | None = None
    azure_result: dict[str, Any] | None = None
    try:
        if "copies" in args.only:
            args.import_seconds = library_import_seconds(S3_LIBRARIES)
        if {"copies", "listing"} & set(args.only):
            with SeaweedS3() as source, SeaweedS3() as target:
                bench = Bench(source, target, workdir)
                if "copies" in args.only:
                    measurements = copy_scenarios(bench, args)
                if "listing" in args.only:
                    listing_result = listing.run_all(
                        bench, measure, args.runs, args.listing_keys, args.listing_small_keys
                    )
        if "events" in args.only:  # its own stack: moto, SeaweedFS, the invoker, two workers
            events_result = events.run(args.events_rates, args.events_seconds, args.events_burst)
        if set(azure.GROUPS) & set(args.only):  # its own servers: two SeaweedFS, Azurite
            azure_result = azure.run(args.only, args.runs, args.small_count, args.large_mib)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = summarize(measurements, args)
    if listing_result is not None:
        result["listing"] = listing_result
    if events_result is not None:
        result["events"] = events_result
    if azure_result is not None:
        result["azure"] = azure_result
    return result


def summarize(measurements: list[Measurement], args: argparse.Namespace) -> dict[str, Any]:
    table: dict[str, dict[str, dict[str, float]]] = {}
    for scenario in ("large", "small"):
        table[scenario] = {}
        for contender in CONTENDERS:
            runs = [m for m in measurements if m.scenario == scenario and m.contender == contender and m.ok]
            if not runs:
                continue
            table[scenario][contender] = {
                "seconds": statistics.median(m.seconds for m in runs),
                "mb_per_s": statistics.median(m.mb_per_s for m in runs),
                "objects_per_s": statistics.median(m.objects_per_s for m in runs),
                "peak_rss_mib": statistics.median(m.peak_rss_mib for m in runs),
                "cpu_seconds": statistics.median(m.cpu_seconds for m in runs),
                "servers_cpu_seconds": statistics.median(m.servers_cpu_seconds for m in runs),
                # Per GiB for the large object, per 1,000 objects for the small ones.
                "cpu_per_unit": statistics.median(
                    m.cpu_seconds / (m.bytes / 2**30 if scenario == "large" else m.objects / 1000)
                    for m in runs
                ),
                # The shortest this run could have taken with every CPU-second on the machine
                # (the contender's and both servers') spread perfectly over its cores.
                "floor_seconds": statistics.median(
                    (m.cpu_seconds + m.servers_cpu_seconds) / CORES for m in runs
                ),
                "runs": len(runs),
            }
            imports = getattr(args, "import_seconds", None)
            if contender in OURS and imports is not None:
                # Until its libraries are imported (one core), no request of ours reaches a
                # server: the rest of the CPU-seconds come after, over all the cores.
                table[scenario][contender]["start_floor_seconds"] = statistics.median(
                    imports + max(0.0, m.cpu_seconds + m.servers_cpu_seconds - imports) / CORES for m in runs
                )
        reference = table[scenario].get("rclone")
        ok_runs = [m for m in measurements if m.scenario == scenario and m.ok]
        rclone_seconds = {m.run: m.seconds for m in ok_runs if m.contender == "rclone"}
        for contender, row in table[scenario].items():
            if reference:
                row["ratio_to_rclone"] = row["mb_per_s"] / reference["mb_per_s"]
                row["cpu_ratio_to_rclone"] = row["cpu_per_unit"] / reference["cpu_per_unit"]
                if contender != "rclone":
                    # rclone's time as measured over this contender's floor: the best ratio to
                    # rclone its CPU and the servers' work for it allow on this machine.
                    row["ratio_at_floor"] = reference["seconds"] / row["floor_seconds"]
                    if "start_floor_seconds" in row:
                        row["ratio_at_start_floor"] = reference["seconds"] / row["start_floor_seconds"]
            if contender != "rclone":
                # Alternating pairs: in how many runs this contender finished before rclone did.
                paired = [
                    m.seconds < rclone_seconds[m.run]
                    for m in ok_runs
                    if m.contender == contender and m.run in rclone_seconds
                ]
                row["runs_ahead_of_rclone"] = sum(paired)
                row["paired_runs"] = len(paired)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
        "settings": {
            "runs": args.runs,
            "small_count": args.small_count,
            "large_mib": args.large_mib,
            "objects_in_flight": OBJECTS_IN_FLIGHT,
            "parts_in_flight": PARTS_IN_FLIGHT,
            "part_mib": PART_MIB,
            "import_seconds": getattr(args, "import_seconds", None),
        },
        "medians": table,
        "measurements": [
            asdict(m) | {"mb_per_s": m.mb_per_s, "objects_per_s": m.objects_per_s} for m in measurements
        ],
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"{result['date']}, {result['machine']['cores']} cores, Python {result['machine']['python']}; "
        f"medians of {result['settings']['runs']} alternating runs after one unmeasured warm-up copy; "
        "two SeaweedFS servers on loopback as source and target. Written by `make bench`.",
    ]
    if any(result["medians"].values()):
        lines += [
            "",
            "| scenario | contender | MB/s | objects/s | peak RSS (MiB) | x rclone | runs ahead of rclone |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
    titles = {
        "large": f"1 object of {result['settings']['large_mib']} MiB",
        "small": f"{result['settings']['small_count']} objects of 4-64 KiB",
    }
    for scenario, rows in result["medians"].items():
        for contender, row in rows.items():
            ratio = row.get("ratio_to_rclone")
            ratio_text = f"{ratio:.2f}" if ratio else "-"
            ahead = f"{row['runs_ahead_of_rclone']} of {row['paired_runs']}" if "paired_runs" in row else "-"
            lines.append(
                f"| {titles[scenario]} | {contender} | {row['mb_per_s']:.1f} | {row['objects_per_s']:.1f} | "
                f"{row['peak_rss_mib']:.0f} | {ratio_text} | {ahead} |"
            )
    if any(result["medians"].values()):
        lines += [
            "",
            "| scenario | contender | CPU s | CPU x rclone | servers' CPU s | floor s | wall s "
            "| best x rclone the floor allows | floor after our imports s | best x rclone it allows |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
    units = {"large": "per GiB", "small": "per 1,000 objects"}
    for scenario, rows in result["medians"].items():
        for contender, row in rows.items():
            if "cpu_per_unit" not in row:
                continue
            cpu_ratio = f"{row['cpu_ratio_to_rclone']:.2f}" if "cpu_ratio_to_rclone" in row else "-"
            at_floor = f"{row['ratio_at_floor']:.2f}" if "ratio_at_floor" in row else "-"
            start_floor = f"{row['start_floor_seconds']:.2f}" if "start_floor_seconds" in row else "-"
            at_start_floor = f"{row['ratio_at_start_floor']:.2f}" if "ratio_at_start_floor" in row else "-"
            lines.append(
                f"| {titles[scenario]} | {contender} | {row['cpu_per_unit']:.2f} {units[scenario]} "
                f"| {cpu_ratio} | {row['servers_cpu_seconds']:.2f} | {row['floor_seconds']:.2f} "
                f"| {row['seconds']:.2f} | {at_floor} | {start_floor} | {at_start_floor} |"
            )
    lines += [
        "",
        "Peak RSS is the resident memory of the contender's whole process tree, sampled every 50 ms.",
        "CPU is user + system time of the contender's process tree (wait4), servers' CPU that of the two "
        "SeaweedFS servers during the run (/proc). The floor is all of it over the machine's cores: no "
        "contender can finish sooner here, so rclone's time over a contender's floor is the best ratio "
        "to rclone it could reach.",
        *(
            [
                "Floor after our imports: a bare interpreter importing the libraries we are built on ("
                + ", ".join(S3_LIBRARIES)
                + "; the last is structlog without rich) took "
                + f"{result['settings']['import_seconds']:.2f} s here (median of 5, this run); "
                "until then no request of ours reaches a server, and the rest of the CPU-seconds "
                "follow over the cores (rclone, one Go binary, starts in hundredths of a second).",
            ]
            if result["settings"].get("import_seconds") is not None
            else []
        ),
        "Runs ahead of rclone: in how many of the alternating runs the contender finished first.",
        "The old method's figure includes its local disk round trip (`aws s3 cp` down, then up).",
        "",
    ]
    if "listing" in result:
        lines += listing.markdown(result["listing"])
    if "events" in result:
        lines += events.markdown(result["events"])
    if "azure" in result:
        lines += azure.markdown(result["azure"])
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "5")))
    parser.add_argument("--small-count", type=int, default=2000)
    parser.add_argument("--large-mib", type=int, default=1024)
    parser.add_argument("--listing-keys", type=int, default=100_000, help="keys in the listing pair")
    parser.add_argument(
        "--listing-small-keys", type=int, default=10_000, help="keys in the pair memory is compared with"
    )
    parser.add_argument(
        "--events-rates",
        type=float,
        nargs="+",
        default=list(events.DEFAULT_RATES),
        help="event path: steady rates, events a second",
    )
    parser.add_argument(
        "--events-seconds", type=float, default=events.DEFAULT_SECONDS, help="event path: seconds per rate"
    )
    parser.add_argument(
        "--events-burst", type=int, default=events.DEFAULT_BURST, help="event path: objects in the burst"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SCENARIO_GROUPS,
        default=list(SCENARIO_GROUPS),
        help="scenario groups to run (default: all)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench")
    args = parser.parse_args()
    # Bytecode for the project's modules, as an installed package (the image) has it: an editable
    # checkout under PYTHONDONTWRITEBYTECODE would compile them again at every start.
    for package in ("replicator", "migrate", "worker", "lambda_enqueue"):
        compileall.compile_dir(ROOT / package, quiet=1)
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2))
    (args.out / "results.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
