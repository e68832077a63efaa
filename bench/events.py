"""The event-path scenario of `make bench`: S3 events through the real pipeline, at steady rates.

One local stack (local_stack.stack.LocalStack): moto as AWS (the source bucket, its notifications,
the FIFO queue), the real Lambda handler fed by the stack's invoker, SeaweedFS as the target, and
two worker processes started as users run them (`python -m worker`, default settings; the stack's
environment only points them at the servers). Objects of 4-64 KiB are written to the source
bucket at steady rates (5, 20, 60 and 100 a second for a minute each by default), then as a burst
(2,000 as fast as the writers go). A rate whose backlog grows past ten seconds of events is lost:
its remaining writes are called off, so that the next phase starts on an empty pipeline.

Latency, per object: from the S3 event's `eventTime` to the object written to the target. Both
ends come from the worker's own `reconciled` log line: its `latency_seconds` runs from the event
time in the message (moto stamps it, in milliseconds, while it handles the PUT, as S3 does) to
the moment the target had answered the object's PUT, i.e. the object was readable there. No
poller of ours stands between, so the resolution is the event time's millisecond. The event time
rather than the time the writer's PUT returned: it is what the worker reports to CloudWatch
(ReplicationLatency) and what a user of S3 events sees; the PUT-returned figure is kept in the
JSON beside it. Every object is also listed on the target at the end of its phase, with its size,
so that nothing counted is taken on the worker's word alone.

Three processes besides the workers and SeaweedFS, so that each party's CPU is its own:
- this one: moto's server (ThreadedMotoServer: a thread per connection) and the main thread,
  which only reads the workers' logs and /proc;
- the invoker (local_stack.invoker.LambdaInvoker, the handler and its boto3 client), in a process
  of its own: Lambda does not share moto's interpreter lock, and in this process it would slow
  moto down. It notes when each key's SendMessageBatch returned, which splits the latency into
  event -> enqueued (the notification queue, the invoker's 0.2 s poll, the handler) and
  enqueued -> readable (the FIFO queue, the worker's receive and the copy);
- the writers, PUTting on keep-alive connections (the project's lean PUT), for the same reason.

CPU, utime + stime from /proc over each phase (its first write to its last object on the
target): workers (both processes), moto (this process less its main thread), invoker, writers,
SeaweedFS (the `weed mini` process).

Requests: every request moto answers over each phase, by API call (RequestCounter wraps the WSGI
application of moto's server in this process), and the invoker's own calls (counted in its
process), so that the workers' share is known: all but the writers' PUTs and the invoker's calls.
"""

from __future__ import annotations

import json
import math
import os
import queue
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

from botocore.config import Config
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

from local_stack.aws import moto_client
from local_stack.invoker import LambdaInvoker
from local_stack.stack import LocalStack
from replicator.lean_s3 import LeanS3

ROOT = Path(__file__).resolve().parents[1]
KIB = 1024
DEFAULT_RATES = (5, 20, 60, 100)
DEFAULT_SECONDS = 60.0
DEFAULT_BURST = 2000
WORKERS = 2
WRITER_THREADS = 16  # PUTs in flight: enough to keep 100/s on schedule while moto is busy
GOAL_P99_SECONDS = 2.0
HELD_SHARE = 0.95  # a rate is held when the writers kept at least this share of it
WARM_UP_OBJECTS = 20  # written and replicated before any phase, not measured
MAX_BACKLOG_SECONDS = 10.0  # a rate's writes are called off beyond this many seconds of backlog
READY_TIMEOUT = 60.0
CHILD_TIMEOUT = 30.0
POLL_SECONDS = 0.25  # how often the workers' logs are read while a phase runs
TICKS = os.sysconf("SC_CLK_TCK")


# -- CPU from /proc -----------------------------------------------------------------------------


def _stat(path: str) -> list[str] | None:
    try:
        with open(path) as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cpu(path: str) -> float:
    """utime + stime of one /proc stat file, in seconds (0 when the process or thread is gone)."""
    fields = _stat(path)
    return (int(fields[11]) + int(fields[12])) / TICKS if fields else 0.0


def tree_cpu(root_pid: int) -> float:
    """CPU seconds of a live process and its live descendants, with what their waited-for
    children used (cutime + cstime)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(f"/proc/{entry}/stat")):
            children.setdefault(int(fields[1]), []).append(int(entry))
    total, stack = 0.0, [root_pid]
    while stack:
        pid = stack.pop()
        fields = _stat(f"/proc/{pid}/stat")
        if fields:
            total += sum(int(v) for v in fields[11:15]) / TICKS
        stack.extend(children.get(pid, []))
    return total


@dataclass(frozen=True)
class CpuSnapshot:
    wall: float
    workers: float
    seaweed: float
    process: float  # this process: moto's threads and the main thread
    main: float
    invoker: float
    writers: float


@dataclass(frozen=True)
class CpuMeter:
    worker_pids: list[int]
    seaweed_pid: int
    invoker_pid: int
    writer_pid: int
    main_tid: int

    def snapshot(self) -> CpuSnapshot:
        return CpuSnapshot(
            wall=time.monotonic(),
            workers=sum(tree_cpu(pid) for pid in self.worker_pids),
            seaweed=tree_cpu(self.seaweed_pid),
            process=_cpu("/proc/self/stat"),
            main=_cpu(f"/proc/self/task/{self.main_tid}/stat"),
            invoker=tree_cpu(self.invoker_pid),
            writers=tree_cpu(self.writer_pid),
        )


def cpu_between(start: CpuSnapshot, end: CpuSnapshot, events: int) -> dict[str, Any]:
    """CPU seconds of each party over the interval, per event in milliseconds, and cores used."""
    wall = end.wall - start.wall
    parts = {
        "workers": end.workers - start.workers,
        "moto": (end.process - start.process) - (end.main - start.main),
        "invoker": end.invoker - start.invoker,
        "seaweed": end.seaweed - start.seaweed,
        "writers": end.writers - start.writers,
        "bench_main": end.main - start.main,
    }
    return {
        "wall_seconds": wall,
        "seconds": parts,
        "ms_per_event": {k: 1000 * v / events if events else None for k, v in parts.items()},
        "cores": {k: v / wall if wall > 0 else None for k, v in parts.items()},
    }


# -- moto's requests ------------------------------------------------------------------------------


def request_name(environ: dict[str, Any]) -> str:
    """The API call a request to moto stands for: the X-Amz-Target of a JSON-protocol call (SQS,
    Secrets Manager), else the S3 method, with `list` for a listing, `bucket` for another call on
    a bucket (a path-style path without a key) and `part` for a part."""
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return str(target).rsplit(".", 1)[-1]
    query = str(environ.get("QUERY_STRING", ""))
    method = str(environ.get("REQUEST_METHOD", "?"))
    if "list-type" in query:
        return f"S3 {method} list"
    if "/" not in str(environ.get("PATH_INFO", "")).strip("/"):
        return f"S3 {method} bucket"
    return f"S3 {method}{' part' if 'partNumber' in query else ''}"


class RequestCounter:
    """Counts the requests moto's server answers in this process, by API call, while installed
    (it wraps the WSGI application every ThreadedMotoServer builds)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._original: Any = None

    def install(self) -> RequestCounter:
        original = DomainDispatcherApplication.__call__
        counter = self

        def counted(app: Any, environ: dict[str, Any], start_response: Any) -> Any:
            name = request_name(environ)
            with counter._lock:
                counter.counts[name] = counter.counts.get(name, 0) + 1
            return original(app, environ, start_response)

        self._original = original
        DomainDispatcherApplication.__call__ = counted  # type: ignore[method-assign]
        return self

    def uninstall(self) -> None:
        if self._original is not None:
            DomainDispatcherApplication.__call__ = self._original  # type: ignore[method-assign]
            self._original = None

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


def requests_between(start: dict[str, int], end: dict[str, int], events: int) -> dict[str, Any]:
    """moto's requests over an interval, by call, and per event."""
    by_call = {name: n - start.get(name, 0) for name, n in sorted(end.items()) if n > start.get(name, 0)}
    total = sum(by_call.values())
    return {
        "by_call": by_call,
        "total": total,
        "per_event": total / events if events else None,
        "per_event_by_call": {k: v / events for k, v in by_call.items()} if events else {},
    }


# -- reading the workers' logs ------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    """One `reconciled` line: the object is on the target."""

    at: float  # epoch seconds of the log line (written once the target's PUT answered)
    latency: float  # seconds from the S3 event time
    copy_seconds: float | None
    worker: int


@dataclass
class WorkerLogs:
    """Follows the JSON log files of the workers, keeping the first `copied` line of each key."""

    paths: list[Path]
    arrivals: dict[str, Arrival] = field(default_factory=dict)
    started: set[int] = field(default_factory=set)
    problems: dict[str, int] = field(default_factory=dict)  # warning and error events by name
    _files: list[IO[bytes]] = field(default_factory=list)
    _partial: list[bytes] = field(default_factory=list)

    def poll(self) -> None:
        if not self._files:
            self._files = [open(p, "rb") for p in self.paths]  # noqa: SIM115 (closed in close())
            self._partial = [b""] * len(self.paths)
        for index, handle in enumerate(self._files):
            lines = (self._partial[index] + handle.read()).split(b"\n")
            self._partial[index] = lines.pop()  # a line still being written
            for line in lines:
                self._line(index, line)

    def _line(self, worker: int, line: bytes) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            return  # not a log line (an interpreter message before logging was set up)
        if not isinstance(record, dict):
            return
        event = record.get("event")
        if event == "worker_started":
            self.started.add(worker)
        elif event == "reconciled" and record.get("outcome") == "copied":
            key, latency = record.get("key"), record.get("latency_seconds")
            if isinstance(key, str) and latency is not None and key not in self.arrivals:
                at = datetime.fromisoformat(record["timestamp"]).timestamp()
                self.arrivals[key] = Arrival(at, float(latency), record.get("seconds"), worker)
        elif record.get("level") in ("warning", "error", "critical"):
            self.problems[str(event)] = self.problems.get(str(event), 0) + 1

    def close(self) -> None:
        for handle in self._files:
            handle.close()


# -- the invoker's process ------------------------------------------------------------------------


class EnqueueClock:
    """Wraps the invoker's SQS client: when each key's SendMessageBatch (the handler's) returned,
    and how many calls of each kind the invoker made (its share of moto's requests)."""

    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs
        self.enqueued: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._lock:
            self.calls[name] = self.calls.get(name, 0) + 1

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._sqs, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._count(name)
            return attribute(*args, **kwargs)

        return counted

    def send_message_batch(self, **kwargs: Any) -> Any:
        self._count("send_message_batch")
        response = self._sqs.send_message_batch(**kwargs)
        now = time.time()
        failed = {f["Id"] for f in response.get("Failed", [])}
        with self._lock:
            for entry in kwargs["Entries"]:
                if entry["Id"] not in failed:
                    self.enqueued.setdefault(json.loads(entry["MessageBody"])["key"], now)
        return response

    def take(self) -> tuple[dict[str, float], dict[str, int]]:
        """The enqueue times noted since the last call, and the calls made so far."""
        with self._lock:
            taken, self.enqueued = self.enqueued, {}
            return taken, dict(self.calls)


def _invoker_main(conn: Connection, endpoint_url: str, notification_queue_url: str, queue_url: str) -> None:
    """The stack's invoker, polling the notification queue until told to stop; answers "times"
    with the enqueue times noted since the last answer and its calls so far."""
    sqs = moto_client(endpoint_url, "sqs")
    clock = EnqueueClock(sqs)
    invoker = LambdaInvoker(clock, notification_queue_url, queue_url).start()
    conn.send("ready")
    try:
        while (command := conn.recv()) != "stop":
            if command == "times":
                conn.send(clock.take())
    finally:
        invoker.stop()
        conn.send({"invocations": invoker.invocations, "errors": invoker.errors})


# -- the writers' process -------------------------------------------------------------------------


@dataclass(frozen=True)
class Put:
    key: str
    size: int
    due: float  # time.monotonic() (the same clock in every process); 0: at once


@dataclass(frozen=True)
class Written:
    key: str
    size: int
    late: float  # seconds the PUT started after its due time
    returned: float  # epoch seconds


def _writer_main(conn: Connection, endpoint_url: str, bucket: str, threads: int) -> None:
    """PUT each batch of objects received, each at its due time, and answer with what was
    written; until told to stop. Told to call a batch off, it skips the rest of it."""
    client = moto_client(
        endpoint_url, "s3", Config(s3={"addressing_style": "path", "payload_signing_enabled": False})
    )
    lean = LeanS3(client, bucket, connect_timeout=10, read_timeout=60)
    blob = os.urandom(64 * KIB)
    jobs: queue.Queue[Put | None] = queue.Queue()
    written: list[Written] = []
    failures: list[str] = []
    lock = threading.Lock()
    abort = threading.Event()

    def write() -> None:
        while (job := jobs.get()) is not None:
            try:
                delay = job.due - time.monotonic()
                if delay > 0 and abort.wait(delay):
                    continue
                if abort.is_set():
                    continue
                late = max(0.0, time.monotonic() - job.due) if job.due else 0.0
                lean.put_object(job.key, blob[: job.size], {})
                with lock:
                    written.append(Written(job.key, job.size, late, time.time()))
            except Exception as exc:  # reported: the object never reaches the target
                with lock:
                    failures.append(f"{job.key}: {exc}")
            finally:
                jobs.task_done()

    pool = [threading.Thread(target=write, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    conn.send("ready")
    while (puts := conn.recv()) != "stop":
        if puts == "abort":
            continue  # sent just as the batch ended
        for put in puts:
            jobs.put(put)
        while jobs.unfinished_tasks:
            if conn.poll(0.05) and conn.recv() == "abort":
                abort.set()
        abort.clear()
        with lock:
            conn.send((list(written), list(failures)))
            written.clear()
            failures.clear()
    for _ in pool:
        jobs.put(None)


class Child:
    """A helper process of this module (a fresh interpreter: no copy of moto's threads or locks)
    and its end of a socket pair, carrying pickled messages."""

    def __init__(self, role: str, *args: str) -> None:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import bench.events as e; e.child_main()",
                    role,
                    str(theirs.fileno()),
                    *args,
                ],
                pass_fds=(theirs.fileno(),),
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
            )
            self.conn = Connection(ours.detach())
        self.role = role
        try:
            self.receive(READY_TIMEOUT)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def receive(self, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise RuntimeError(f"no answer from the {self.role} process in {timeout:.0f}s")
        return self.conn.recv()

    def stop(self) -> Any:
        """Ask it to stop; its last word, if any."""
        last = None
        try:
            self.conn.send("stop")
            if self.conn.poll(CHILD_TIMEOUT):
                last = self.conn.recv()
        except (OSError, EOFError):
            pass
        try:
            self.process.wait(CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.conn.close()
        return last


def child_main() -> None:
    """Entry point of a Child: `-c ... ROLE FD ARGS...`."""
    role, fd, *args = sys.argv[1:]
    conn = Connection(int(fd))
    if role == "writer":
        _writer_main(conn, args[0], args[1], int(args[2]))
    else:
        _invoker_main(conn, *args)


# -- figures --------------------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest rank: a latency that was observed, never one between two of them."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def spread(values: Sequence[float]) -> dict[str, float | None]:
    return {
        "p50": percentile(values, 0.50),
        "p99": percentile(values, 0.99),
        "max": max(values) if values else None,
        "mean": statistics.fmean(values) if values else None,
    }


# -- the scenario ---------------------------------------------------------------------------------


class EventScenario:
    def __init__(self, stack: LocalStack, workdir: Path, requests: RequestCounter | None = None) -> None:
        self.stack = stack
        self.requests = requests or RequestCounter()
        self.logs = WorkerLogs([workdir / f"worker-{i}.log" for i in range(WORKERS)])
        self.target = stack.target()
        self.rng = random.Random(7)
        self.enqueued: dict[str, float] = {}
        self.invoker: Child | None = None
        self.writers: Child | None = None
        self.meter: CpuMeter | None = None
        self.invoker_counts: dict[str, int] | None = None
        self.invoker_calls: dict[str, int] = {}  # the invoker's calls so far, by boto3 method

    def start(self) -> None:
        """The invoker and the writers, then the two workers; waits until both workers run."""
        aws = self.stack.aws
        self.invoker = Child("invoker", aws.endpoint_url, aws.notification_queue_url, aws.queue_url)
        self.writers = Child("writer", aws.endpoint_url, self.stack.source_bucket, str(WRITER_THREADS))
        env = self.stack.env()
        for path in self.logs.paths:
            with open(path, "wb") as log_file:
                self.stack.start_worker(env=env, stdout=log_file, stderr=log_file)
        deadline = time.monotonic() + READY_TIMEOUT
        while len(self.logs.started) < WORKERS:
            self._check_workers()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the workers did not start in {READY_TIMEOUT:.0f}s")
            time.sleep(POLL_SECONDS)
            self.logs.poll()
        lyve = self.stack.lyve._process
        self.meter = CpuMeter(
            worker_pids=[p.pid for p in self.stack._workers],
            seaweed_pid=lyve.pid if lyve else 0,
            invoker_pid=self.invoker.pid,
            writer_pid=self.writers.pid,
            main_tid=threading.get_native_id(),
        )

    def _check_workers(self) -> None:
        for index, process in enumerate(self.stack._workers):
            if process.poll() is not None:
                tail = self.logs.paths[index].read_text(errors="replace")[-2000:]
                raise RuntimeError(f"worker {index} exited with {process.returncode}: {tail}")

    def _puts(self, label: str, count: int, rate: float | None) -> list[Put]:
        start = time.monotonic() + 0.2  # time for the batch to reach the writers
        return [
            Put(
                f"events/{label}/{i:06d}.bin",
                self.rng.randint(4 * KIB, 64 * KIB),
                start + i / rate if rate else 0.0,
            )
            for i in range(count)
        ]

    def _wait_written(self, puts: list[Put], rate: float | None) -> tuple[list[Written], list[str], bool]:
        """The writers' answer, reading the workers' logs meanwhile. At a steady rate, the rest
        of the writes is called off once the objects not yet on the target stand for more than
        MAX_BACKLOG_SECONDS of events: the rate is lost, and going on would only queue more work
        for the next phase. (written, failures, called off)"""
        assert self.writers is not None
        deadline = time.monotonic() + len(puts) / (rate or 50) + 120
        called_off = False
        while not self.writers.conn.poll(POLL_SECONDS):
            self.logs.poll()
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError(f"the writers did not finish {len(puts)} PUTs in time")
            if rate and not called_off:
                due = sum(1 for p in puts if p.due <= now)
                arrived = sum(1 for p in puts[:due] if p.key in self.logs.arrivals)
                if due - arrived > rate * MAX_BACKLOG_SECONDS:
                    called_off = True
                    self.writers.conn.send("abort")
        written, failures = self.writers.conn.recv()
        return written, failures, called_off

    def phase(self, label: str, count: int, rate: float | None, drain_seconds: float) -> dict[str, Any]:
        """Write `count` objects (at `rate` a second, or at once), wait for all of them on the
        target (at most `drain_seconds` after the last write), and measure."""
        assert self.meter is not None
        assert self.writers is not None
        assert self.invoker is not None
        puts = self._puts(label, count, rate)
        problems_before = dict(self.logs.problems)
        cpu_start = self.meter.snapshot()
        requests_start = self.requests.snapshot()
        started = time.time()
        self.writers.conn.send(puts)
        written, failures, called_off = self._wait_written(puts, rate)
        write_seconds = time.time() - started
        keys = {w.key for w in written}
        deadline = time.monotonic() + drain_seconds
        while not keys <= self.logs.arrivals.keys() and time.monotonic() < deadline:
            self._check_workers()
            time.sleep(POLL_SECONDS)
            self.logs.poll()
        cpu_end = self.meter.snapshot()
        requests_end = self.requests.snapshot()
        self.invoker.conn.send("times")
        times, invoker_calls = self.invoker.receive(CHILD_TIMEOUT)
        self.enqueued.update(times)
        calls_before, self.invoker_calls = self.invoker_calls, invoker_calls

        arrivals = {k: self.logs.arrivals[k] for k in keys if k in self.logs.arrivals}
        event_at = {k: a.at - a.latency for k, a in arrivals.items()}
        enqueued = {k: self.enqueued[k] for k in arrivals if k in self.enqueued}
        returned = {w.key: w.returned for w in written}
        on_target = self._listed(f"events/{label}/")
        result: dict[str, Any] = {
            "label": label,
            "rate": rate,
            "planned": count,
            "called_off": called_off,
            "written": len(written),
            "write_failures": len(failures),
            "done": len(arrivals),
            "on_target": sum(1 for w in written if on_target.get(w.key) == w.size),
            "write_seconds": write_seconds,
            "writers_late_p99": percentile([w.late for w in written], 0.99),
            "latency": spread([a.latency for a in arrivals.values()]),
            "put_returned_to_readable": spread([a.at - returned[k] for k, a in arrivals.items()]),
            "enqueue_times_noted": len(enqueued),
            "event_to_enqueued": spread([t - event_at[k] for k, t in enqueued.items()]),
            "enqueued_to_readable": spread([arrivals[k].at - t for k, t in enqueued.items()]),
            "copy_seconds": spread([a.copy_seconds for a in arrivals.values() if a.copy_seconds is not None]),
            "cpu": cpu_between(cpu_start, cpu_end, len(arrivals)),
            "moto_requests": requests_between(requests_start, requests_end, len(arrivals)),
            "invoker_calls": {k: n - calls_before.get(k, 0) for k, n in invoker_calls.items()},
            "worker_problems": {
                k: n - problems_before.get(k, 0)
                for k, n in self.logs.problems.items()
                if n > problems_before.get(k, 0)
            },
        }
        # The workers' share of moto's requests: all of them but the writers' PUTs and the invoker's.
        moto = result["moto_requests"]
        theirs = moto["by_call"].get("S3 PUT", 0) + sum(result["invoker_calls"].values())
        result["worker_requests_per_event"] = (moto["total"] - theirs) / len(arrivals) if arrivals else None
        # Every object written is on the target, and the worker said so.
        result["complete"] = not failures and result["done"] == result["on_target"] == len(written)
        if rate:
            times = sorted(returned.values())
            span = times[-1] - times[0] if times else 0.0
            result["rate_kept"] = (len(times) - 1) / span if span > 0 else None
            p99 = result["latency"]["p99"]
            result["held"] = bool(
                result["complete"]
                and not called_off
                and p99 is not None
                and p99 < GOAL_P99_SECONDS
                and (result["rate_kept"] or 0) >= HELD_SHARE * rate
            )
        elif event_at:
            first, last = min(event_at.values()), max(a.at for a in arrivals.values())
            result["first_event_to_last_object"] = last - first
            result["objects_per_second"] = len(arrivals) / (last - first) if last > first else None
        return result

    def _listed(self, prefix: str) -> dict[str, int]:
        sizes: dict[str, int] = {}
        paginator = self.target.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.stack.target_bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                sizes[entry["Key"]] = entry["Size"]
        return sizes

    def close(self) -> None:
        if self.writers is not None:
            self.writers.stop()
        if self.invoker is not None:
            self.invoker_counts = self.invoker.stop()
        self.logs.close()


def _print(result: dict[str, Any]) -> None:
    lat, cpu = result["latency"], result["cpu"]["ms_per_event"]
    rate = f"{result['rate']:g}/s" if result["rate"] else "burst"
    print(
        f"  events {rate:>6s}: {result['on_target']}/{result['written']} on the target"
        f"{' (writes called off)' if result['called_off'] else ''}, "
        f"p50 {_num(lat['p50'])}s p99 {_num(lat['p99'])}s max {_num(lat['max'])}s; CPU ms/event: "
        f"workers {_num(cpu['workers'], '.1f')}, moto {_num(cpu['moto'], '.1f')}, "
        f"invoker {_num(cpu['invoker'], '.1f')}, SeaweedFS {_num(cpu['seaweed'], '.1f')}; "
        f"moto requests/event {_num(result['moto_requests']['per_event'], '.2f')} "
        f"(the workers' {_num(result['worker_requests_per_event'], '.2f')})",
        flush=True,
    )


def run(
    rates: Sequence[float] = DEFAULT_RATES,
    seconds: float = DEFAULT_SECONDS,
    burst: int = DEFAULT_BURST,
) -> dict[str, Any]:
    """Start the stack, the invoker, the writers and two workers; run every rate, then the
    burst; stop everything."""
    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    burst_result: dict[str, Any] | None = None
    requests = RequestCounter().install()
    with tempfile.TemporaryDirectory(prefix="bench-events-") as scratch:
        # The stack's own invoker thread stays off: the scenario runs it in a process of its own.
        stack = LocalStack().start(invoker_thread=False)
        scenario = EventScenario(stack, Path(scratch), requests)
        try:
            scenario.start()
            scenario.phase("warm-up", WARM_UP_OBJECTS, 20, 60)
            for rate in rates:
                count = max(1, round(rate * seconds))
                results.append(scenario.phase(f"rate-{rate:g}", count, rate, max(60.0, 3 * seconds)))
                _print(results[-1])
            if burst:
                burst_result = scenario.phase("burst", burst, None, max(120.0, burst / 5))
                _print(burst_result)
        finally:
            try:
                scenario.close()
            finally:
                try:
                    stack.stop()
                finally:
                    requests.uninstall()
    held = [r["rate"] for r in results if r.get("held")]
    return {
        "settings": {
            "rates": list(rates),
            "seconds_per_rate": seconds,
            "burst": burst,
            "workers": WORKERS,
            "writer_threads": WRITER_THREADS,
            "object_sizes_kib": [4, 64],
            "goal_p99_seconds": GOAL_P99_SECONDS,
        },
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "rates": results,
        "burst": burst_result,
        "highest_rate_held": max(held) if held else None,
        "invoker": scenario.invoker_counts,
    }


# -- the report -----------------------------------------------------------------------------------


def _num(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def markdown(result: dict[str, Any]) -> list[str]:
    """The event-path part of bench/results.md."""
    settings, load = result["settings"], result["load_average"]
    lines = [
        "",
        "## Event path",
        "",
        f"Objects of 4-64 KiB written to moto's S3 at steady rates, {settings['seconds_per_rate']:g}s each, "
        f"then {settings['burst']:,} at once; each S3 event through the real handler (the stack's invoker "
        "polling moto's notification queue every 0.2 s, as Lambda would be invoked), moto's FIFO queue "
        f"and {settings['workers']} workers (`python -m worker`, default settings) into SeaweedFS. "
        f"Load average (1 min) {load['before'][0]:.2f} before, {load['after'][0]:.2f} after.",
        "",
        "| events/s | kept | written | on the target | p50 (s) | p99 (s) | max (s) | event -> enqueued p99 "
        "| enqueued -> readable p99 | workers ms/event | moto ms/event | invoker ms/event "
        "| SeaweedFS ms/event | workers cores | moto cores | moto requests/event (the workers') |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in [*result["rates"], *([result["burst"]] if result["burst"] else [])]:
        lat, cpu = row["latency"], row["cpu"]
        ms, cores = cpu["ms_per_event"], cpu["cores"]
        rate = f"{row['rate']:g}" if row["rate"] else "burst"
        kept = _num(row.get("rate_kept"), ".1f") if row["rate"] else f"{row['write_seconds']:.1f}s"
        written = f"{row['written']}{' (called off)' if row['called_off'] else ''}"
        lines.append(
            f"| {rate} | {kept} | {written} | {row['on_target']} | {_num(lat['p50'])} | "
            f"{_num(lat['p99'])} | {_num(lat['max'])} | {_num(row['event_to_enqueued']['p99'])} | "
            f"{_num(row['enqueued_to_readable']['p99'])} | {_num(ms['workers'], '.1f')} | "
            f"{_num(ms['moto'], '.1f')} | {_num(ms['invoker'], '.1f')} | {_num(ms['seaweed'], '.1f')} | "
            f"{_num(cores['workers'])} | {_num(cores['moto'])} | "
            f"{_num(row.get('moto_requests', {}).get('per_event'))} "
            f"({_num(row.get('worker_requests_per_event'))}) |"
        )
    held = result["highest_rate_held"]
    lines += [
        "",
        f"Highest rate held with p99 under {settings['goal_p99_seconds']:g}s: "
        f"**{'none' if held is None else f'{held:g} events/s'}** (every object on the target, the writers "
        f"at {HELD_SHARE:.0%} of the rate or more).",
    ]
    if result["burst"]:
        b = result["burst"]
        lines.append(
            f"Burst: {b['written']:,} objects written in {b['write_seconds']:.1f}s; "
            f"{_num(b.get('first_event_to_last_object'), '.1f')}s from the first event to the last object "
            f"on the target ({_num(b.get('objects_per_second'), '.0f')} objects/s end to end)."
        )
    lines += [
        "",
        "Latency: from the S3 event time (moto's eventTime, milliseconds) to the target's answer to the "
        "object's PUT, as the worker's `reconciled` log line reports it; no poller in between. Kept: the "
        "rate the writers kept (for the burst, their time). Called off: the rest of the rate's writes "
        f"were skipped once the objects not yet on the target stood for over {MAX_BACKLOG_SECONDS:g}s of "
        "events. On the target: listed there with the size written. Event -> enqueued: until the "
        "handler's SendMessageBatch returned (moto's notification, the invoker's poll, the handler); "
        "enqueued -> readable: the FIFO queue, the worker's receive and the copy.",
        "",
        "CPU per object, utime + stime from /proc over each phase, from its first write to its last "
        "object on the target. Workers: both worker processes. Moto: its server, which runs in the bench "
        "process (a thread per connection), less the bench's main thread (it only reads logs and /proc). "
        "Invoker: the stand-in for Lambda (the handler and its boto3 client), a process of its own. "
        "SeaweedFS: the `weed mini` process. Cores: CPU seconds per wall second; moto serves every "
        "request in one interpreter, so near one core it can take no more. The writers (a process of "
        "their own, keep-alive PUTs) are in the JSON. Moto requests/event: every request moto answered "
        "over the phase (the writers' PUTs, the invoker's and the workers' calls), per object, and in "
        "brackets the workers' share (all but the PUTs and the invoker's calls); the JSON has them by "
        "API call.",
        "",
    ]
    return lines
