"""The Azure Blob scenarios of `make bench`: S3 (SeaweedFS) -> Azure Blob (Azurite).

Same loads as the copy scenarios of bench/run.py (Bench.prepare: one 1 GiB object, and 2,000
objects of 4-64 KiB), on servers of their own: two SeaweedFS servers (the source, and an S3
target for the two-target scenario) and Azurite, the Azure Storage server, in memory.

`azure`: `python -m migrate` (no flag, TARGETS naming one Azure target) against `rclone copy` to
an azureblob remote, flags matched to our defaults: 32 objects in flight (--transfers, --checkers),
16 MiB blocks (--azureblob-chunk-size), 8 blocks of one blob in flight
(--azureblob-upload-concurrency, --multi-thread-streams). Checksums, comparable on both sides and
left at defaults: on both sides every block carries its Content-MD5, which the service checks. A
small object goes in one Put Blob: ours with the MD5 of the bytes read (compared with the
source's ETag first) as its Content-MD5, which the service checks; rclone's with the source's MD5
stored as the blob's, then a HEAD and a comparison of size and MD5. Neither computes a
whole-object MD5 for the 1 GiB object (its source ETag is a multipart one); both HEAD it after
the commit (ours: size and recorded source ETag; rclone: size).

`two-targets`: ours only, TARGETS with the S3 target alone, the Azure target alone, and both: how
much longer two targets take than the slower single one (goal: at most 1.2x), and than the sum
of the two (near 1: the targets are copied one after another).

Each measured run gets a fresh Azurite (its in-memory store frees deleted blobs only every ten
minutes: a run's 1 GiB would otherwise pile up over the runs) and a fresh container, warmed by
a few unmeasured requests; each run is checked afterwards (count and total bytes of every
target) and counts as failed otherwise.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azure.storage.blob import BlobBlock

from local_stack.azurite import Azurite, azurite_blob_script
from local_stack.seaweed import SeaweedS3

if TYPE_CHECKING:
    from bench.run import Bench

MIB = 1024 * 1024
GROUPS = ("azure", "two-targets")
AZURE_CONTENDERS = ("lyve-replicator", "rclone")
TWO_TARGET_CONTENDERS = ("s3-only", "azure-only", "both")
S3_TARGET, AZURE_TARGET = "lyve", "azure"  # the names in TARGETS
RSS_GOAL_MIB = 300
TWO_TARGETS_GOAL = 1.2  # both / the slower single target
LOADS = ("large", "small")
# What a copy to Azure imports before its first request, at the least.
AZURE_LIBRARIES = ("boto3", "azure.storage.blob", "pydantic_settings", "replicator.logs")


@dataclass
class Run:
    scenario: str  # "azure" or "two-targets"
    load: str  # "large" or "small"
    contender: str
    run: int
    seconds: float
    peak_rss_mib: float
    cpu_seconds: float  # the contender's process tree
    source_cpu_seconds: float  # the source SeaweedFS, during the run
    azurite_cpu_seconds: float
    s3_target_cpu_seconds: float  # the target SeaweedFS (two-targets)
    objects: int
    bytes: int
    ok: bool
    error: str = ""
    # From the launch to Azurite's first work for the contender (its main thread's CPU time).
    first_request_seconds: float | None = None

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6

    @property
    def objects_per_s(self) -> float:
        return self.objects / self.seconds

    @property
    def cpu_per_unit(self) -> float:
        """CPU seconds per GiB (the large load) or per 1,000 objects (the small one)."""
        return self.cpu_seconds / (self.bytes / 2**30 if self.load == "large" else self.objects / 1000)


# -- processes ---------------------------------------------------------------------------------------


def _children_of(pid: int) -> dict[int, str]:
    """Live child processes of `pid` and their command lines (from /proc)."""
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry)] = command
    return found


def azurite_pid(server: Azurite) -> int:
    """The node process serving Azurite's blob service, started by this process."""
    script = str(azurite_blob_script(server.root)[0])
    pids = [pid for pid, command in _children_of(os.getpid()).items() if script in command]
    if len(pids) != 1:
        raise RuntimeError(f"expected one Azurite process under this one, found {len(pids)}")
    return pids[0]


class FirstWork:
    """When a server first works after `start()`: the on-CPU time of its main thread (the one
    that serves Azurite's requests), from /proc/<pid>/schedstat in nanoseconds, sampled every
    5 ms by a thread of its own."""

    def __init__(self, pid: int) -> None:
        self.path = f"/proc/{pid}/schedstat"
        self.started = 0.0
        self.at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _on_cpu(self) -> int:
        with open(self.path) as stat:
            return int(stat.read().split()[0])

    def _watch(self) -> None:
        base = self._on_cpu()
        while not self._stop.wait(0.005):
            if self._on_cpu() - base > 200_000:  # 0.2 ms: a request, not a timer tick
                self.at = time.monotonic() - self.started
                return

    def start(self) -> FirstWork:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> float | None:
        self._stop.set()
        self._thread.join()
        return self.at


# -- the bench ---------------------------------------------------------------------------------------


class AzureBench:
    """The servers, the contenders' command lines and one measured run."""

    def __init__(
        self, bench: Bench, measure: Callable[..., Any], cpu_seconds: Callable[[int], float]
    ) -> None:
        self.bench = bench
        self.measure = measure
        self.cpu_seconds = cpu_seconds
        self.azurite: Azurite | None = None
        self.azurite_pid = 0

    # -- Azurite ---------------------------------------------------------------------------------

    def fresh_azurite(self) -> Azurite:
        """A new, empty Azurite, warmed up: a few blobs of both kinds (a Put Blob, staged blocks
        and their commit), listed and deleted, so that its start-up work lands on no contender."""
        self.stop_azurite()
        server = Azurite().start()
        self.azurite = server
        self.azurite_pid = azurite_pid(server)
        container = server.client().get_container_client("bench-warm-up")
        container.create_container()
        blob = os.urandom(64 * 1024)
        for i in range(20):
            container.upload_blob(f"small-{i}", blob[: 4096 * (i + 1)])
        block = os.urandom(4 * MIB)
        big = container.get_blob_client("large")
        for i in range(2):
            big.stage_block(f"{i:05d}", block)
        big.commit_block_list([BlobBlock(block_id=f"{i:05d}") for i in range(2)])
        sum(1 for _ in container.list_blobs())
        container.delete_container()
        return server

    def stop_azurite(self) -> None:
        if self.azurite is not None:
            self.azurite.stop()
            self.azurite = None
            self.azurite_pid = 0

    def container(self, name: str) -> str:
        assert self.azurite is not None
        self.azurite.create_container(name)
        return name

    def count_container(self, name: str) -> tuple[int, int]:
        """Blobs and their total bytes in the container (committed blobs only, as listed)."""
        assert self.azurite is not None
        count = size = 0
        for blob in self.azurite.client().get_container_client(name).list_blobs():
            count += 1
            size += int(blob.size)
        return count, size

    def servers_cpu(self) -> tuple[float, float, float]:
        """(source SeaweedFS, Azurite, target SeaweedFS) CPU seconds so far."""
        azurite = self.cpu_seconds(self.azurite_pid) if self.azurite_pid else 0.0
        return (
            self.cpu_seconds(self.bench.source.pid),
            azurite,
            self.cpu_seconds(self.bench.target.pid),
        )

    def settle(self, timeout: float = 10.0) -> None:
        """Wait for the three servers to go idle (bench.run's Bench.settle, with Azurite)."""
        deadline = time.monotonic() + timeout
        before = sum(self.servers_cpu())
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = sum(self.servers_cpu())
            if now - before < 0.01:
                return
            before = now

    # -- contenders ------------------------------------------------------------------------------

    def targets_env(self, source_bucket: str, targets: dict[str, dict[str, str]]) -> dict[str, str]:
        """What a user sets for `python -m migrate` with TARGETS: the source, the targets, http
        allowed (loopback); no TARGET_* variable."""
        env = self.bench.ours_env(source_bucket, "unused")
        env = {k: v for k, v in env.items() if not k.startswith("TARGET_")}
        return env | {"TARGETS": json.dumps(targets)}

    def azure_target(self, container: str) -> dict[str, str]:
        assert self.azurite is not None
        return {"type": "azure", "container": container, "connection_string": self.azurite.connection_string}

    def s3_target(self, bucket: str) -> dict[str, str]:
        target = self.bench.target
        return {
            "type": "s3",
            "bucket": bucket,
            "endpoint_url": target.endpoint_url,
            "access_key_id": target.access_key,
            "secret_access_key": target.secret_key,
        }

    def ours(
        self, source_bucket: str, targets: dict[str, dict[str, str]]
    ) -> tuple[list[str], dict[str, str]]:
        """`python -m migrate`, no flag (defaults, INFO logs, progress on), as users run it."""
        return [sys.executable, "-m", "migrate"], self.targets_env(source_bucket, targets)

    def rclone(self, source_bucket: str, container: str) -> tuple[list[str], dict[str, str]]:
        """`rclone copy SRC:bucket AZ:container`, the flags matched to our defaults."""
        from bench.run import BIN, OBJECTS_IN_FLIGHT, PART_MIB, PARTS_IN_FLIGHT  # noqa: PLC0415

        assert self.azurite is not None
        env = {k: v for k, v in self.bench.rclone_env().items() if not k.startswith("RCLONE_CONFIG_DST_")}
        env |= {
            "RCLONE_CONFIG_AZ_TYPE": "azureblob",
            "RCLONE_CONFIG_AZ_ACCOUNT": self.azurite.account_name,
            "RCLONE_CONFIG_AZ_KEY": self.azurite.account_key,
            "RCLONE_CONFIG_AZ_ENDPOINT": self.azurite.blob_endpoint,
        }
        argv = [
            str(BIN / "rclone"),
            "copy",
            f"SRC:{source_bucket}",
            f"AZ:{container}",
            "--config",
            "/dev/null",
            "--transfers",
            str(OBJECTS_IN_FLIGHT),
            "--checkers",
            str(OBJECTS_IN_FLIGHT),
            "--azureblob-chunk-size",
            f"{PART_MIB}M",
            "--azureblob-upload-concurrency",
            str(PARTS_IN_FLIGHT),
            "--multi-thread-streams",
            str(PARTS_IN_FLIGHT),
            "--multi-thread-chunk-size",
            f"{PART_MIB}M",
        ]
        return argv, env

    # -- one run ---------------------------------------------------------------------------------

    def run_once(
        self, scenario: str, load: str, contender: str, run_index: int, objects: int, total: int
    ) -> Run:
        from bench.run import SOURCE_BUCKET  # noqa: PLC0415

        source_bucket = f"{SOURCE_BUCKET}-{load}"
        name = f"t-{load}-{contender}-{run_index}"
        self.fresh_azurite()
        container = bucket = None
        if scenario == "azure":
            container = self.container(name)
            if contender == "rclone":
                argv, env = self.rclone(source_bucket, container)
            else:
                argv, env = self.ours(source_bucket, {AZURE_TARGET: self.azure_target(container)})
        else:
            targets: dict[str, dict[str, str]] = {}
            if contender in ("s3-only", "both"):
                bucket = self.bench.fresh_target(name)
                targets[S3_TARGET] = self.s3_target(bucket)
            if contender in ("azure-only", "both"):
                container = self.container(name)
                targets[AZURE_TARGET] = self.azure_target(container)
            argv, env = self.ours(source_bucket, targets)
        self.settle()
        before = self.servers_cpu()
        first_work = FirstWork(self.azurite_pid).start() if scenario == "azure" else None
        try:
            seconds, peak, code, stderr, _, cpu = self.measure(argv, env)
        finally:
            first_request = first_work.stop() if first_work is not None else None
        source_cpu, azurite_cpu, s3_target_cpu = (
            after - first for after, first in zip(self.servers_cpu(), before, strict=True)
        )
        problems = [] if code == 0 else [f"exit {code}"]
        for where, counted in (
            (f"container {container}", self.count_container(container) if container else None),
            (f"bucket {bucket}", self.bench.drop_target(bucket) if bucket else None),
        ):
            if counted is not None and counted != (objects, total):
                problems.append(f"{where}: {counted[0]}/{objects} objects, {counted[1]}/{total} bytes")
        self.stop_azurite()  # its memory back at once
        ok = not problems
        error = "" if ok else "; ".join(problems) + ": " + stderr[-600:]
        if not ok:
            print(f"  {contender} FAILED ({'; '.join(problems)}): {stderr[-1500:]}", flush=True)
        return Run(
            scenario,
            load,
            contender,
            run_index,
            seconds,
            peak / MIB,
            cpu,
            source_cpu,
            azurite_cpu,
            s3_target_cpu,
            objects,
            total,
            ok,
            error,
            first_request,
        )


def _alternate(contenders: tuple[str, ...], run_index: int) -> list[str]:
    shift = run_index % len(contenders)
    return list(contenders[shift:] + contenders[:shift])


def run_scenarios(
    azure_bench: AzureBench, groups: list[str], runs: int, loads: dict[str, tuple[int, int]]
) -> list[Run]:
    from bench.run import SOURCE_BUCKET  # noqa: PLC0415

    measured: list[Run] = []
    for load, (objects, total) in loads.items():
        print(f"azure {load}: {objects} objects, {total / MIB:.1f} MiB in the source", flush=True)
        # One unmeasured copy first, as bench.run does: the source's first reads fill its caches.
        azure_bench.fresh_azurite()
        warm = azure_bench.container(f"t-{load}-warm-up")
        azure_bench.measure(*azure_bench.rclone(f"{SOURCE_BUCKET}-{load}", warm))
        azure_bench.stop_azurite()
        for scenario, contenders in (("azure", AZURE_CONTENDERS), ("two-targets", TWO_TARGET_CONTENDERS)):
            if scenario not in groups:
                continue
            for run_index in range(runs):
                for contender in _alternate(contenders, run_index):
                    m = azure_bench.run_once(scenario, load, contender, run_index, objects, total)
                    measured.append(m)
                    print(
                        f"  {scenario} run {run_index} {contender:16s} {m.seconds:7.2f}s "
                        f"{m.mb_per_s:8.1f} MB/s {m.objects_per_s:8.1f} obj/s  peak RSS "
                        f"{m.peak_rss_mib:7.1f} MiB  CPU {m.cpu_seconds:6.2f}s (source "
                        f"{m.source_cpu_seconds:5.2f}s, Azurite {m.azurite_cpu_seconds:5.2f}s, "
                        f"S3 target {m.s3_target_cpu_seconds:5.2f}s){'' if m.ok else '  FAILED'}",
                        flush=True,
                    )
    return measured


# -- summary -----------------------------------------------------------------------------------------


def _row(runs: list[Run], failed: list[Run]) -> dict[str, Any]:
    row: dict[str, Any] = {"runs": len(runs), "failed_runs": len(failed)}
    if failed:
        row["first_error"] = failed[0].error
    if runs:
        row |= {
            "seconds": statistics.median(m.seconds for m in runs),
            "mb_per_s": statistics.median(m.mb_per_s for m in runs),
            "objects_per_s": statistics.median(m.objects_per_s for m in runs),
            "peak_rss_mib": statistics.median(m.peak_rss_mib for m in runs),
            "max_peak_rss_mib": max(m.peak_rss_mib for m in runs),
            "cpu_seconds": statistics.median(m.cpu_seconds for m in runs),
            "cpu_per_unit": statistics.median(m.cpu_per_unit for m in runs),
            "source_cpu_seconds": statistics.median(m.source_cpu_seconds for m in runs),
            "azurite_cpu_seconds": statistics.median(m.azurite_cpu_seconds for m in runs),
            "s3_target_cpu_seconds": statistics.median(m.s3_target_cpu_seconds for m in runs),
        }
        firsts = [m for m in runs if m.first_request_seconds is not None]
        if firsts:
            row["first_request_seconds"] = statistics.median(m.first_request_seconds or 0.0 for m in firsts)
            row["after_first_request_seconds"] = statistics.median(
                m.seconds - (m.first_request_seconds or 0.0) for m in firsts
            )
        row["rss_within_goal"] = row["max_peak_rss_mib"] < RSS_GOAL_MIB
    return row


def _medians(measured: list[Run], scenario: str, contenders: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for load in LOADS:
        rows = {}
        for contender in contenders:
            mine = [
                m for m in measured if m.scenario == scenario and m.load == load and m.contender == contender
            ]
            if mine:
                rows[contender] = _row([m for m in mine if m.ok], [m for m in mine if not m.ok])
        if rows:
            table[load] = rows
    return table


def summarize(measured: list[Run], settings: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"settings": settings}
    azure = _medians(measured, "azure", AZURE_CONTENDERS)
    if azure:
        for load, rows in azure.items():
            ours, rclone = rows.get("lyve-replicator"), rows.get("rclone")
            if ours and rclone and "seconds" in ours and "seconds" in rclone:
                ours["ratio_to_rclone"] = ours["mb_per_s"] / rclone["mb_per_s"]
                ours["cpu_ratio_to_rclone"] = ours["cpu_per_unit"] / rclone["cpu_per_unit"]
            rclone_seconds = {
                m.run: m.seconds
                for m in measured
                if m.scenario == "azure" and m.load == load and m.contender == "rclone" and m.ok
            }
            paired = [
                m.seconds < rclone_seconds[m.run]
                for m in measured
                if m.scenario == "azure"
                and m.load == load
                and m.contender == "lyve-replicator"
                and m.ok
                and m.run in rclone_seconds
            ]
            if ours is not None:
                ours["runs_ahead_of_rclone"] = sum(paired)
                ours["paired_runs"] = len(paired)
        result["azure"] = {"medians": azure}
    two = _medians(measured, "two-targets", TWO_TARGET_CONTENDERS)
    if two:
        ratios: dict[str, dict[str, Any]] = {}
        for load, rows in two.items():
            seconds = {c: r["seconds"] for c, r in rows.items() if "seconds" in r}
            if {"s3-only", "azure-only", "both"} <= set(seconds):
                singles = (seconds["s3-only"], seconds["azure-only"])
                ratio = seconds["both"] / max(singles)
                ratios[load] = {
                    "both_over_slower_single": ratio,
                    "both_over_sum_of_singles": seconds["both"] / sum(singles),
                    "within_goal": ratio <= TWO_TARGETS_GOAL,
                }
            else:
                ratios[load] = {"both_over_slower_single": None, "within_goal": False}
        result["two_targets"] = {"medians": two, "ratios": ratios, "goal": TWO_TARGETS_GOAL}
    result["measurements"] = [
        asdict(m) | {"mb_per_s": m.mb_per_s, "objects_per_s": m.objects_per_s, "cpu_per_unit": m.cpu_per_unit}
        for m in measured
    ]
    return result


def run(groups: list[str], runs: int, small_count: int, large_mib: int) -> dict[str, Any]:
    """Start the servers (two SeaweedFS, Azurite per run), write the loads, run the selected
    scenario sets, stop everything; the summary."""
    from bench.run import (  # noqa: PLC0415 (bench.run imports this module)
        Bench,
        cpu_seconds,
        library_import_seconds,
        measure,
    )
    from migrate.cli import DEFAULT_CONCURRENCY  # noqa: PLC0415
    from replicator.settings import Settings  # noqa: PLC0415

    selected = [g for g in GROUPS if g in groups]
    measured: list[Run] = []
    imports = library_import_seconds(AZURE_LIBRARIES) if "azure" in selected else None
    with (
        tempfile.TemporaryDirectory(prefix="bench-azure-") as workdir,
        SeaweedS3() as source,
        SeaweedS3() as target,
    ):
        bench = Bench(source, target, Path(workdir))
        azure_bench = AzureBench(bench, measure, cpu_seconds)
        try:
            loads = {
                "large": bench.prepare("large", 0, large_mib),
                "small": bench.prepare("small", small_count, 0),
            }
            measured = run_scenarios(azure_bench, selected, runs, loads)
        finally:
            azure_bench.stop_azurite()
    azurite_version = azurite_blob_script()[1]
    fields = Settings.model_fields
    settings = {
        "groups": selected,
        "runs": runs,
        "small_count": small_count,
        "large_mib": large_mib,
        "objects_in_flight": DEFAULT_CONCURRENCY,
        "parts_in_flight": fields["part_concurrency"].default,
        "part_mib": fields["part_size_mib"].default,
        "azurite": azurite_version,
        "library_import_seconds": imports,
    }
    return summarize(measured, settings)


# -- report ------------------------------------------------------------------------------------------


def _num(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def _title(load: str, settings: dict[str, Any]) -> str:
    if load == "large":
        return f"1 object of {settings['large_mib']} MiB"
    return f"{settings['small_count']} objects of 4-64 KiB"


def markdown(result: dict[str, Any]) -> list[str]:
    """The Azure scenarios' part of bench/results.md."""
    settings = result["settings"]
    units = {"large": "s per GiB", "small": "s per 1,000 objects"}
    lines: list[str] = []
    if "azure" in result:
        lines += [
            "",
            "## S3 -> Azure Blob",
            "",
            f"SeaweedFS (source) to Azurite {settings['azurite']} (in memory, a fresh server and container "
            f"per run), medians of {settings['runs']} alternating runs. Ours: `python -m migrate`, no flag, "
            "TARGETS naming one Azure target. rclone: `rclone copy` to an azureblob remote with "
            f"`--transfers {settings['objects_in_flight']} --checkers {settings['objects_in_flight']} "
            f"--azureblob-chunk-size {settings['part_mib']}M --azureblob-upload-concurrency "
            f"{settings['parts_in_flight']} --multi-thread-streams {settings['parts_in_flight']}`, "
            "checksums at its defaults (every block and small blob checked by MD5 on both sides; "
            "see bench/azure.py).",
            "",
            "| load | contender | MB/s | objects/s | peak RSS (MiB) | x rclone | runs ahead of rclone "
            "| CPU | CPU x rclone | Azurite CPU s | source CPU s | first request at (s) | after it (s) "
            "| failed runs |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for load, rows in result["azure"]["medians"].items():
            for contender, row in rows.items():
                ahead = (
                    f"{row['runs_ahead_of_rclone']} of {row['paired_runs']}" if "paired_runs" in row else "-"
                )
                cpu = f"{row['cpu_per_unit']:.2f} {units[load]}" if "cpu_per_unit" in row else "-"
                lines.append(
                    f"| {_title(load, settings)} | {contender} | {_num(row.get('mb_per_s'), '.1f')} "
                    f"| {_num(row.get('objects_per_s'), '.1f')} | {_num(row.get('peak_rss_mib'), '.0f')} "
                    f"| {_num(row.get('ratio_to_rclone'))} | {ahead} | {cpu} "
                    f"| {_num(row.get('cpu_ratio_to_rclone'))} | {_num(row.get('azurite_cpu_seconds'))} "
                    f"| {_num(row.get('source_cpu_seconds'))} | {_num(row.get('first_request_seconds'))} "
                    f"| {_num(row.get('after_first_request_seconds'))} | {row['failed_runs']} |"
                )
        lines += _failures(result["azure"]["medians"])
        lines += [
            "",
            f"Peak RSS goal: under {RSS_GOAL_MIB} MiB (the contender's whole process tree, sampled every "
            "50 ms). Runs ahead of rclone: in how many of the alternating runs ours finished first.",
            "First request at: from the contender's launch to Azurite's first work for it (the on-CPU "
            "time of its main thread, /proc/<pid>/schedstat, sampled every 5 ms); after it: the rest "
            "of the run.",
        ]
        if settings.get("library_import_seconds") is not None:
            lines.append(
                "A bare interpreter importing the libraries this product is built on (boto3, the Azure "
                "SDK, pydantic-settings, structlog as replicator.logs loads it) took "
                f"{settings['library_import_seconds']:.2f} s (median of 5, same machine, same run)."
            )
    if "two_targets" in result:
        two = result["two_targets"]
        lines += [
            "",
            "## Two targets",
            "",
            "`python -m migrate`, no flag, TARGETS naming the S3 target (SeaweedFS) alone, the Azure "
            f"target (Azurite) alone, and both; medians of {settings['runs']} alternating runs. Both / "
            "the sum of the two singles near 1 means the targets were copied one after another.",
            "",
            "| load | TARGETS | seconds | peak RSS (MiB) | CPU | failed runs |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for load, rows in two["medians"].items():
            for contender, row in rows.items():
                cpu = f"{row['cpu_per_unit']:.2f} {units[load]}" if "cpu_per_unit" in row else "-"
                lines.append(
                    f"| {_title(load, settings)} | {contender} | {_num(row.get('seconds'))} "
                    f"| {_num(row.get('peak_rss_mib'), '.0f')} | {cpu} | {row['failed_runs']} |"
                )
        lines += ["", f"Both / the slower single target (goal at most {two['goal']}):", ""]
        for load, ratio in two["ratios"].items():
            value = ratio.get("both_over_slower_single")
            verdict = "within the goal" if ratio.get("within_goal") else "not within the goal"
            summed = ratio.get("both_over_sum_of_singles")
            lines.append(
                f"- {_title(load, settings)}: **{_num(value)}** ({verdict}"
                + (f"; both / the sum of the two singles: {summed:.2f}" if summed is not None else "")
                + ")"
            )
        lines += _failures(two["medians"])
    return [*lines, ""]


def _failures(medians: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for load, rows in medians.items():
        for contender, row in rows.items():
            if row.get("first_error"):
                error = " ".join(row["first_error"].split())[-300:]
                lines.append(f"- {load}, {contender}: {row['failed_runs']} failed run(s); first: `{error}`")
    return ["", "Failed runs:", "", *lines] if lines else []
