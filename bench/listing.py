"""The listing scenarios of `make bench`, run after the copy scenarios on the same two servers.

- check: `python -m migrate --check` of an identical 100,000-key pair against `rclone check` of
  the same pair (both sides listed, every key compared), taking turns at going first, at
  rclone's `--checkers` equal to our listing threads, plain and with `--fast-list`.
- shards: `--check --shard i/4` for each i, one after the other, through a LIST-counting proxy:
  each shard's LIST requests against a quarter of the unsharded run's, and every key compared
  exactly once (counts and the XOR of the shards' key digests).
- memory: peak RSS and peak temporary disk of `--check` on a 10,000-key pair and on the
  100,000-key pair (the check runs above).
- first copy: `python -m migrate` from the 100,000-key source into an empty target: seconds from
  the process start to the first object written, stopped with SIGTERM soon after.

The pairs are written once per bench run, both servers at once on keep-alive connections (the
project's lean PUT), and reused by every repetition; that time is reported apart from any figure.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import http.client
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from local_stack.seaweed import SeaweedS3
from migrate.listing import PAGE_KEYS
from migrate.walk import LISTING_THREADS
from replicator.lean_s3 import LeanS3

if TYPE_CHECKING:
    from bench.run import Bench, Measured

    Measure = Callable[[list[str], dict[str, str], Path | None], Measured]

MIB = 1024 * 1024
FLAT_PREFIX = "flat/"
FLAT_SHARE = 0.3  # 30,000 of 100,000 keys under one flat prefix, the rest spread over prefixes
SECOND_LEVEL = 25  # second-level prefixes under each top-level one
WRITER_THREADS = 32  # per server, while the pairs are written
SHARDS = 4
POLL_SECONDS = 0.02  # how often the target is looked at for the first copy
STOP_AFTER_FIRST_COPY = 2.0  # seconds the migration runs on after its first copy, then SIGTERM
EXIT_TIMEOUT = 120.0
EXIT_INTERRUPTED = 130
# rclone check at matched concurrency, plain and with --fast-list (one recursive listing per side
# instead of a walk of its directories: fewer requests, and on loopback faster).
RCLONE_CONTENDERS: dict[str, tuple[str, ...]] = {"rclone": (), "rclone --fast-list": ("--fast-list",)}

# Top-level prefixes: words, a date-like and a capitalised one, and names that sort between a
# prefix and its own keys ("logs-archive/" and "data.old/" next to "logs/" and "data/"), where
# byte order and a directory walk disagree.
TOP_LEVEL = (
    "Photos",
    "backups",
    "data",
    "data.old",
    "events",
    "exports",
    "images",
    "logs",
    "logs-archive",
    "models",
    "raw",
    "reports",
    "tmp",
    "users",
)
WORDS = (
    "alpha",
    "invoice",
    "summary",
    "thumbnail",
    "checkpoint",
    "manifest",
    "customer",
    "archive",
    "session",
    "export",
    "metrics",
)
NON_ASCII = ("résumé", "Straße", "報告書", "ñandú", "café au lait", "Ölpreis")


# -- the key set ----------------------------------------------------------------------------------


def _hex(text: str, nbytes: int) -> str:
    return hashlib.blake2b(text.encode(), digest_size=nbytes).hexdigest()


def _prefixes() -> list[tuple[str, str]]:
    """(prefix, kind) at two levels: dates, hex and words under each top-level name."""
    out = []
    for t, top in enumerate(TOP_LEVEL):
        for j in range(SECOND_LEVEL):
            kind = ("date", "hex", "word")[(j + t) % 3]
            if kind == "date":
                name = (dt.date(2024, 1, 1) + dt.timedelta(days=7 * j + t)).isoformat()
            elif kind == "hex":
                name = _hex(f"{top}/{j}", 3)
            else:
                name = f"{WORDS[j % len(WORDS)]}-{j:02d}"
            out.append((f"{top}/{name}/", kind))
    return out


def _name(prefix: str, kind: str, n: int, rng: random.Random) -> str:
    if kind == "date":
        clock = f"{rng.randrange(24):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}"
        return f"{prefix}{clock}-{_hex(str(n), 4)}.json.gz"
    if kind == "hex":
        return f"{prefix}{_hex(str(n), 16)}"
    if n % 40 == 0:
        return f"{prefix}{rng.choice(NON_ASCII)}-{n:06d}.txt"
    return f"{prefix}{rng.choice(WORDS)}-{n:06d}.csv"


def key_set(total: int, seed: int = 11) -> list[str]:
    """`total` distinct keys, the same for a given total and seed: a share under `flat/`, the
    rest over several hundred prefixes of unequal sizes (date, hex and word names, some of them
    non-ASCII or with spaces)."""
    rng = random.Random(seed)
    prefixes = _prefixes()
    weights = [rng.randint(1, 10) for _ in prefixes]
    spread = total - round(total * FLAT_SHARE)
    keys: dict[str, None] = {}  # insertion-ordered set
    n = 0
    while len(keys) < spread:
        for prefix, kind in rng.choices(prefixes, weights, k=spread - len(keys)):
            keys.setdefault(_name(prefix, kind, n, rng))
            n += 1
    i = 0
    while len(keys) < total:
        keys.setdefault(f"{FLAT_PREFIX}{_hex(f'flat-{i}', 8)}")
        i += 1
    return list(keys)


def body(key: str) -> bytes:
    """A few bytes, a function of the key: both sides get the same, so their ETags match."""
    digest = _hex(key, 16)
    return digest[: 4 + int(digest[0], 16) % 12].encode()


def keys_digest(keys: Sequence[str]) -> str:
    """XOR of the 64-bit blake2b of every key (UTF-8), as hex: disjoint subsets XOR to the whole."""
    value = 0
    for key in keys:
        value ^= int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    return f"{value:016x}"


# -- writing and reading the pairs ----------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """The same keys and bytes in one bucket of the source and one of the target."""

    bucket: str
    keys: int
    digest: str  # keys_digest of its keys
    seconds: float  # time to write both sides (not part of any figure)


def _lean_writer(server: SeaweedS3, bucket: str) -> LeanS3:
    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path", "payload_signing_enabled": False}),
    )
    return LeanS3(client, bucket, connect_timeout=10, read_timeout=60)


@retry(
    retry=retry_if_exception_type((ClientError, OSError)),
    stop=stop_after_attempt(5),
    wait=wait_exponential(multiplier=0.1, max=2),
    reraise=True,
)
def _put(writer: LeanS3, key: str, data: bytes) -> None:
    writer.put_object(key, data, {})


def write_pair(source: SeaweedS3, target: SeaweedS3, bucket: str, keys: Sequence[str]) -> Pair:
    """Write every key to `bucket` on both servers at once, then check both list all of them."""
    started = time.monotonic()
    writers = []
    for server in (source, target):
        server.create_bucket(bucket)
        writers.append(_lean_writer(server, bucket))
    workers = WRITER_THREADS * len(writers)

    def write(part: int) -> None:
        for key in keys[part::workers]:
            data = body(key)
            for writer in writers:
                _put(writer, key, data)

    with ThreadPoolExecutor(workers, thread_name_prefix="bench-writer") as pool:
        for future in [pool.submit(write, part) for part in range(workers)]:
            future.result()
    seconds = time.monotonic() - started
    for side, server in (("source", source), ("target", target)):
        listed = count_objects(server, bucket)
        if listed != len(keys):
            raise RuntimeError(f"the {side} bucket {bucket!r} lists {listed} keys, {len(keys)} written")
    return Pair(bucket, len(keys), keys_digest(keys), seconds)


def count_objects(server: SeaweedS3, bucket: str) -> int:
    client = server.client()
    return sum(
        page.get("KeyCount", 0) for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    )


def empty_bucket(server: SeaweedS3, bucket: str) -> int:
    """Delete every object in the bucket; returns how many there were."""
    client = server.client()
    deleted = 0
    while True:
        page = client.list_objects_v2(Bucket=bucket, MaxKeys=1000)
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if not keys:
            return deleted
        client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        deleted += len(keys)


# -- counting LIST requests outside the migration -------------------------------------------------

# Query parameters of ListObjects (V1 and V2): a GET on a bucket with nothing else is a listing;
# any other parameter (uploads, location, versioning, ...) makes it another operation.
LIST_PARAMETERS = frozenset(
    {
        "list-type",
        "prefix",
        "delimiter",
        "max-keys",
        "start-after",
        "continuation-token",
        "marker",
        "encoding-type",
        "fetch-owner",
    }
)


def is_list_request(method: str, target: str) -> bool:
    """A path-style ListObjects or ListObjectsV2 request."""
    parts = urlsplit(target)
    bucket_path = parts.path.strip("/")
    if method != "GET" or not bucket_path or "/" in bucket_path:
        return False
    return {name for name, _ in parse_qsl(parts.query, keep_blank_values=True)} <= LIST_PARAMETERS


_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)


class ListCounter:
    """A proxy on loopback in front of one server, counting the LIST requests it forwards.

    It answers with the server's own status and headers only: a Server or Date header of its own
    would be joined with the server's ("BaseHTTP/0.6 ..., SeaweedFS ..."), and the migration
    tells the store's listing order from that header. Bodies are forwarded whole (Content-Length
    only), which is all a `--check` sends.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.lists = 0
        self._lock = threading.Lock()
        counter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _forward(self) -> None:
                counter.forward(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="list-counter", daemon=True)

    def __enter__(self) -> ListCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def forward(self, request: BaseHTTPRequestHandler) -> None:
        if is_list_request(request.command, request.path):
            with self._lock:
                self.lists += 1
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        upstream = http.client.HTTPConnection(
            self.upstream.hostname or "127.0.0.1", self.upstream.port, timeout=EXIT_TIMEOUT
        )
        try:
            upstream.request(request.command, request.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
        finally:
            upstream.close()
        request.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                request.send_header(name, value)
        # A HEAD answer carries the object's length and no body.
        length_header = response.getheader("Content-Length") if request.command == "HEAD" else None
        request.send_header("Content-Length", length_header or str(len(payload)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(payload)


# -- the scenarios --------------------------------------------------------------------------------


@dataclass
class Run:
    scenario: str
    contender: str
    run: int
    seconds: float
    peak_rss_mib: float
    peak_temp_mib: float
    exit_code: int
    ok: bool
    keys: int
    detail: dict[str, Any] = field(default_factory=dict)


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def _exited(pid: int) -> bool:
    """Whether a child has exited, without reaping it (its pid, and group id, stay reserved)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _matching(stderr: str) -> int | None:
    """The count in rclone check's closing line 'N matching files'."""
    found = re.findall(r"(\d+) matching files", stderr)
    return int(found[-1]) if found else None


class ListingScenarios:
    def __init__(self, bench: Bench, measure: Measure, runs: int, workdir: Path) -> None:
        self.bench = bench
        self.measure = measure
        self.runs = runs
        self.workdir = workdir
        self.results: list[Run] = []
        self._serial = 0

    # -- contenders -------------------------------------------------------------------------------

    def _scratch(self, label: str) -> tuple[Path, Path]:
        """A fresh TMPDIR and a report path for one run."""
        self._serial += 1
        tmp = self.workdir / f"{label}-{self._serial}-tmp"
        tmp.mkdir()
        return tmp, self.workdir / f"{label}-{self._serial}-report.json"

    def _ours(
        self,
        scenario: str,
        run: int,
        pair: Pair,
        extra: Sequence[str] = (),
        urls: tuple[str, str] | None = None,
    ) -> Run:
        """`python -m migrate --check` as the README shows it (default settings, log level and
        progress); the report is how the bench reads what it compared."""
        tmp, report_path = self._scratch(scenario)
        argv = [sys.executable, "-m", "migrate", "--check", *extra, "--report", str(report_path)]
        source_url, target_url = urls or (None, None)
        env = self.bench.ours_env(pair.bucket, pair.bucket, source_url, target_url) | {"TMPDIR": str(tmp)}
        measured = self.measure(argv, env, tmp)
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
        listing = report.get("listing") or {}
        problems = []
        if measured.code != 0:
            problems.append(f"exit {measured.code}")
        if report.get("differences"):
            problems.append(f"{len(report['differences'])} differences")
        compared = listing.get("keys_compared")
        if not isinstance(compared, int):
            problems.append("no listing.keys_compared in the report")
        elif not extra and compared != pair.keys:
            problems.append(f"keys_compared {compared} != {pair.keys}")
        if problems:
            print(f"  lyve-replicator FAILED ({', '.join(problems)}): {measured.stderr}", flush=True)
        result = Run(
            scenario,
            "lyve-replicator",
            run,
            measured.seconds,
            measured.peak_rss / MIB,
            measured.peak_temp / MIB,
            measured.code,
            not problems,
            pair.keys,
            {"listing": listing, "problems": problems},
        )
        self.results.append(result)
        return result

    def _rclone(self, run: int, pair: Pair, contender: str) -> Run:
        tmp, _ = self._scratch("rclone")
        argv = [
            str(Path(sys.executable).parent / "rclone"),
            "check",
            f"SRC:{pair.bucket}",
            f"DST:{pair.bucket}",
            "--config",
            "/dev/null",
            "--checkers",
            str(LISTING_THREADS),
            *RCLONE_CONTENDERS[contender],
        ]
        measured = self.measure(argv, self.bench.rclone_env() | {"TMPDIR": str(tmp)}, tmp)
        matching = _matching(measured.stderr)
        ok = measured.code == 0 and matching == pair.keys
        if not ok:
            problem = f"exit {measured.code}, {matching} matching"
            print(f"  {contender} FAILED ({problem}): {measured.stderr}", flush=True)
        result = Run(
            "check",
            contender,
            run,
            measured.seconds,
            measured.peak_rss / MIB,
            measured.peak_temp / MIB,
            measured.code,
            ok,
            pair.keys,
            {"matching": matching},
        )
        self.results.append(result)
        return result

    @staticmethod
    def _print(result: Run) -> None:
        print(
            f"  {result.scenario} run {result.run} {result.contender:16s} {result.seconds:7.2f}s "
            f"peak RSS {result.peak_rss_mib:6.1f} MiB  peak temp {result.peak_temp_mib:6.1f} MiB"
            f"{'' if result.ok else '  FAILED'}",
            flush=True,
        )

    # -- scenarios --------------------------------------------------------------------------------

    def check(self, pair: Pair) -> None:
        """Ours and rclone's checks of the same pair, taking turns at going first."""
        contenders = ["lyve-replicator", *RCLONE_CONTENDERS]
        for run in range(self.runs):
            turn = run % len(contenders)
            for contender in contenders[turn:] + contenders[:turn]:
                result = (
                    self._ours("check", run, pair)
                    if contender == "lyve-replicator"
                    else self._rclone(run, pair, contender)
                )
                self._print(result)

    def memory(self, pair: Pair) -> None:
        """Ours' check of the small pair; the large pair's runs are those of `check`."""
        for run in range(self.runs):
            self._print(self._ours("memory", run, pair))

    def shards(self, pair: Pair) -> None:
        """The unsharded check and each shard's, one after the other, through counting proxies."""
        src = ListCounter(self.bench.source.endpoint_url)
        dst = ListCounter(self.bench.target.endpoint_url)
        with src, dst:
            for shard in (None, *range(SHARDS)):
                before = (src.lists, dst.lists)
                extra = () if shard is None else ("--shard", f"{shard}/{SHARDS}")
                result = self._ours(
                    "shards",
                    -1 if shard is None else shard,
                    pair,
                    extra,
                    (src.endpoint_url, dst.endpoint_url),
                )
                result.contender = "unsharded" if shard is None else f"shard {shard}/{SHARDS}"
                result.detail["proxy_lists"] = {
                    "source": src.lists - before[0],
                    "target": dst.lists - before[1],
                }
                self._print(result)

    def first_copy(self, source: Pair, target_bucket: str) -> None:
        """`python -m migrate` into an empty target: seconds to its first object, from spawn
        (measured here) and from process start (its report); stopped soon after."""
        client = self.bench.target.client()
        client.create_bucket(Bucket=target_bucket)
        # The first write into a new bucket allocates its volumes: not the migration's cost.
        client.put_object(Bucket=target_bucket, Key="warm-up", Body=b"x")
        empty_bucket(self.bench.target, target_bucket)
        for run in range(self.runs):
            self.results.append(self._first_copy_run(run, source, target_bucket, client))

    def _first_copy_run(self, run: int, pair: Pair, target_bucket: str, client: Any) -> Run:
        tmp, report_path = self._scratch("first-copy")
        argv = [sys.executable, "-m", "migrate", "--report", str(report_path)]
        env = self.bench.ours_env(pair.bucket, target_bucket) | {"TMPDIR": str(tmp)}
        started = time.monotonic()
        process = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: nothing of it outlives the run
        )
        stderr_tail: list[bytes] = []
        reader = threading.Thread(
            target=lambda: stderr_tail.append(process.stderr.read() if process.stderr else b"")
        )
        reader.start()
        seen: float | None = None
        problems = []
        try:
            deadline = started + EXIT_TIMEOUT
            while seen is None and not _exited(process.pid) and time.monotonic() < deadline:
                with contextlib.suppress(BotoCoreError, ClientError):
                    if client.list_objects_v2(Bucket=target_bucket, MaxKeys=1).get("KeyCount"):
                        seen = time.monotonic() - started
                        break
                time.sleep(POLL_SECONDS)
            if seen is None:
                problems.append("no object reached the target")
            else:
                time.sleep(STOP_AFTER_FIRST_COPY)
            if not _exited(process.pid):
                process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + EXIT_TIMEOUT
            while not _exited(process.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not _exited(process.pid):
                problems.append(f"still running {EXIT_TIMEOUT:.0f}s after SIGTERM")
        finally:
            # The group's leader is not reaped yet, so the group id is still its own: whatever
            # of the run is left (a stray child) goes, and nothing else can.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            code = process.wait()
            reader.join()
        copied = empty_bucket(self.bench.target, target_bucket)
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
        reported = (report.get("listing") or {}).get("first_copy_seconds")
        if code != EXIT_INTERRUPTED:
            problems.append(f"exit {code}, not {EXIT_INTERRUPTED}")
        if reported is None:
            problems.append("no listing.first_copy_seconds in the report")
        if problems:
            tail = b"".join(stderr_tail).decode(errors="replace")[-2000:]
            print(f"  first copy FAILED ({', '.join(problems)}): {tail}", flush=True)
        result = Run(
            "first-copy",
            "lyve-replicator",
            run,
            seen or 0.0,
            0.0,
            0.0,
            code,
            not problems,
            pair.keys,
            {"first_copy_seconds": reported, "spawn_to_first_object": seen, "objects_copied": copied},
        )
        print(
            f"  first-copy run {run}: report {reported} s, seen from outside "
            f"{'-' if seen is None else f'{seen:.2f}'} s, {copied} objects copied before the stop"
            f"{'' if result.ok else '  FAILED'}",
            flush=True,
        )
        return result

    # -- summary ----------------------------------------------------------------------------------

    def _ok(self, scenario: str, contender: str = "lyve-replicator") -> list[Run]:
        return [r for r in self.results if r.scenario == scenario and r.contender == contender and r.ok]

    def _failed(self, scenario: str) -> int:
        return sum(1 for r in self.results if r.scenario == scenario and not r.ok)

    def summary(self, pairs: dict[str, Pair]) -> dict[str, Any]:
        return {
            "settings": {
                "keys": pairs["large"].keys,
                "small_keys": pairs["small"].keys,
                "flat_share": FLAT_SHARE,
                "prefixes": len(_prefixes()) + 1,
                "rclone_checkers": LISTING_THREADS,
                "shards": SHARDS,
                "runs": self.runs,
            },
            "generation": {
                name: {"keys": p.keys, "puts": 2 * p.keys, "seconds": round(p.seconds, 1)}
                for name, p in pairs.items()
            },
            "check": self._check_summary(),
            "memory": self._memory_summary(pairs),
            "shards": self._shards_summary(pairs["large"]),
            "first_copy": self._first_copy_summary(),
            "runs": [asdict(r) for r in self.results],
        }

    def _check_summary(self) -> dict[str, Any]:
        ours = self._ok("check")
        rows: dict[str, dict[str, Any]] = {}
        for name in ("lyve-replicator", *RCLONE_CONTENDERS):
            runs = self._ok("check", name)
            row: dict[str, Any] = {
                "seconds": _median([r.seconds for r in runs]),
                "peak_rss_mib": _median([r.peak_rss_mib for r in runs]),
                "runs": len(runs),
            }
            if name != "lyve-replicator":
                # > 1: we are faster.
                row["over_ours"] = _ratio(row["seconds"], rows["lyve-replicator"]["seconds"])
                theirs = {r.run: r.seconds for r in runs}
                won = [r.seconds < theirs[r.run] for r in ours if r.run in theirs]
                row["ours_won"], row["paired_runs"] = sum(won), len(won)
            rows[name] = row
        return {
            "contenders": rows,
            "rclone_over_ours": rows["rclone"]["over_ours"],
            "goal": 1.5,
            "failed_runs": self._failed("check"),
            "listing": ours[0].detail["listing"] if ours else None,
        }

    def _memory_summary(self, pairs: dict[str, Pair]) -> dict[str, Any]:
        sides = {}
        for name, runs in (("small", self._ok("memory")), ("large", self._ok("check"))):
            sides[name] = {
                "keys": pairs[name].keys,
                "peak_rss_mib": _median([r.peak_rss_mib for r in runs]),
                "peak_temp_mib": _median([r.peak_temp_mib for r in runs]),
                "runs": len(runs),
            }
        small, large = sides["small"], sides["large"]
        return {
            **sides,
            "rss_ratio": _ratio(large["peak_rss_mib"], small["peak_rss_mib"]),
            # No temporary disk at either size is no growth.
            "temp_ratio": 1.0
            if small["peak_temp_mib"] == 0 and large["peak_temp_mib"] == 0
            else _ratio(large["peak_temp_mib"], small["peak_temp_mib"]),
            "goal": 1.2,
            "failed_runs": self._failed("memory"),
        }

    def _shards_summary(self, pair: Pair) -> dict[str, Any]:
        def row(result: Run) -> dict[str, Any]:
            listing = result.detail["listing"]
            numbers = {
                name: listing.get(name)
                for name in (
                    "source_requests",
                    "target_requests",
                    "discovery_requests",
                    "ranges",
                    "keys_compared",
                )
            }
            lists = (
                numbers["source_requests"] + numbers["target_requests"]
                if numbers["source_requests"] is not None and numbers["target_requests"] is not None
                else None
            )
            proxy = result.detail["proxy_lists"]
            return {
                "run": result.contender,
                "ok": result.ok,
                "seconds": round(result.seconds, 2),
                **numbers,
                "lists": lists,
                "keys_digest": listing.get("keys_digest"),
                "proxy_lists": proxy,
                # The proxy sees every LIST the run made, whichever of our counters holds it.
                "proxy_minus_ours": proxy["source"] + proxy["target"] - lists if lists is not None else None,
            }

        rows = [row(r) for r in self.results if r.scenario == "shards"]
        whole = next((r for r in rows if r["run"] == "unsharded"), None)
        shards = [r for r in rows if r["run"] != "unsharded"]
        share = whole["lists"] / SHARDS if whole and whole["lists"] is not None else None
        for shard in shards:
            # The goal's bound: a shard's own LISTs (its report counts discovery among them,
            # and states it apart) against a quarter of the unsharded run's.
            own = shard["lists"] - (shard["discovery_requests"] or 0) if shard["lists"] is not None else None
            shard["lists_over_share"] = _ratio(own, share)
            # Beside it: against the fewest a quarter of the pair needs (one request per 1,000
            # keys and side), and the shard's share of the keys (what discovery's balance gave).
            shard["lists_over_ideal"] = _ratio(own, 2 * pair.keys / PAGE_KEYS / SHARDS)
            compared = shard["keys_compared"]
            shard["keys_share"] = _ratio(compared, pair.keys / SHARDS) if compared is not None else None
        counted = [s["keys_compared"] for s in shards]
        digests = [s["keys_digest"] for s in shards]
        total = sum(counted) if counted and None not in counted else None
        xor = None
        if digests and None not in digests:
            value = 0
            for digest in digests:
                value ^= int(digest, 16)
            xor = f"{value:016x}"
        unsharded_digest = whole["keys_digest"] if whole else None
        return {
            "mode": f"{SHARDS} shards one after the other, then compared with one unsharded run",
            "runs": rows,
            "unsharded_lists_share": share,
            "keys_compared_sum": total,
            "every_key_once": total == pair.keys and xor is not None and xor == unsharded_digest,
            "digest_xor": xor,
            "unsharded_digest": unsharded_digest,
            "digest_of_keys_written": pair.digest,
            "unsharded_digest_matches_keys_written": unsharded_digest is not None
            and int(unsharded_digest, 16) == int(pair.digest, 16),
        }

    def _first_copy_summary(self) -> dict[str, Any]:
        runs = self._ok("first-copy")
        return {
            "first_copy_seconds": _median([r.detail["first_copy_seconds"] for r in runs]),
            "spawn_to_first_object_seconds": _median([r.detail["spawn_to_first_object"] for r in runs]),
            "goal": 1.0,
            "runs": len(runs),
            "failed_runs": self._failed("first-copy"),
        }


def _num(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def markdown(result: dict[str, Any]) -> list[str]:
    """The listing scenarios' part of bench/results.md."""
    settings, check, memory = result["settings"], result["check"], result["memory"]
    shards, first = result["shards"], result["first_copy"]
    keys = settings["keys"]
    lines = [
        "",
        "## Listing",
        "",
        f"An identical pair of {keys:,} keys ({settings['flat_share']:.0%} under one flat prefix, the rest "
        f"over {settings['prefixes'] - 1} prefixes at two levels), objects of a few bytes. Writing the "
        "pairs (not part of any figure): "
        + ", ".join(
            f"{g['keys']:,} keys on both servers in {g['seconds']:.0f}s"
            for g in result["generation"].values()
        )
        + ".",
        "",
        f"`python -m migrate --check --report FILE` (no other flag: default settings, log level and "
        f"progress) against `rclone check --checkers "
        f"{settings['rclone_checkers']}` (our listing threads), plain and with `--fast-list`, "
        f"{settings['runs']} runs each, taking turns at going first, after one unmeasured listing of "
        "both sides (the check that each holds every key):",
        "",
        "| contender | median seconds | peak RSS (MiB) | runs | its time / ours | ours faster in |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in check["contenders"].items():
        won = f"{row['ours_won']} of {row['paired_runs']}" if "paired_runs" in row else "-"
        lines.append(
            f"| {name} | {_num(row['seconds'])} | {_num(row['peak_rss_mib'], '.0f')} | {row['runs']} | "
            f"{_num(row.get('over_ours'))} | {won} |"
        )
    ours = check["listing"] or {}
    lines += [
        "",
        f"rclone / ours: **{_num(check['rclone_over_ours'])}** (goal >= {check['goal']}; > 1: we are "
        f"faster); failed runs: {check['failed_runs']}. Our listing: order {ours.get('order', '-')}, "
        f"{ours.get('ranges', '-')} ranges, {ours.get('source_requests', '-')} source and "
        f"{ours.get('target_requests', '-')} target LIST requests.",
        "",
        f"Shards ({shards['mode']}; each through a proxy counting LIST requests):",
        "",
        "| run | source LISTs | target LISTs | discovery | ranges | keys compared | keys / (keys / "
        f"{settings['shards']}) | (LISTs - discovery) / (unsharded / {settings['shards']}) "
        f"| (LISTs - discovery) / (2 x keys / 1,000 / {settings['shards']}) "
        "| proxy LISTs (source + target) | proxy - ours |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in shards["runs"]:
        proxy = row["proxy_lists"]
        lines.append(
            f"| {row['run']}{'' if row['ok'] else ' (failed)'} | {_num(row['source_requests'], 'd')} | "
            f"{_num(row['target_requests'], 'd')} | {_num(row['discovery_requests'], 'd')} | "
            f"{_num(row['ranges'], 'd')} | {_num(row['keys_compared'], ',')} | "
            f"{_num(row.get('keys_share'))} | "
            f"{_num(row.get('lists_over_share'))} | {_num(row.get('lists_over_ideal'))} | "
            f"{proxy['source']} + {proxy['target']} | "
            f"{_num(row['proxy_minus_ours'], 'd')} |"
        )
    lines += [
        "",
        "LISTs: source + target requests as the run's report counts them, discovery included; discovery: "
        "its `discovery_requests` (the source requests that found the shards' ranges); proxy: the LIST "
        "requests an HTTP proxy between the run and each server "
        "forwarded.",
        "",
        f"Every key compared exactly once: **{'yes' if shards['every_key_once'] else 'NO'}** (sum of the "
        f"shards' keys compared {_num(shards['keys_compared_sum'], ',')} of {keys:,}; XOR of their digests "
        f"{shards['digest_xor']}, unsharded {shards['unsharded_digest']}, keys written "
        f"{shards['digest_of_keys_written']}).",
        "",
        "Memory and temporary disk of `--check` (TMPDIR a fresh directory, sampled every 50 ms, files "
        "still open after unlinking included):",
        "",
        "| pair | peak RSS (MiB) | peak temporary disk (MiB) | runs |",
        "|---|---:|---:|---:|",
    ]
    for name in ("small", "large"):
        row = memory[name]
        lines.append(
            f"| {row['keys']:,} keys | {_num(row['peak_rss_mib'], '.0f')} | "
            f"{_num(row['peak_temp_mib'], '.1f')} | {row['runs']} |"
        )
    lines += [
        "",
        f"{keys:,} keys / {settings['small_keys']:,} keys: RSS x{_num(memory['rss_ratio'])}, temporary disk "
        f"x{_num(memory['temp_ratio'])} (goal: within x{memory['goal']}).",
        "",
        f"Time to the first copy (`python -m migrate` into an empty target, stopped "
        f"{STOP_AFTER_FIRST_COPY:.0f}s after it): median **{_num(first['first_copy_seconds'])}s** from "
        f"process start (its report), {_num(first['spawn_to_first_object_seconds'])}s from spawn to the "
        f"object seen on the target (polled every {POLL_SECONDS * 1000:.0f} ms); goal < {first['goal']:.0f}s;"
        f" runs: {first['runs']}, failed: {first['failed_runs']}.",
        "",
    ]
    return lines


def run_all(bench: Bench, measure: Measure, runs: int, keys: int, small_keys: int) -> dict[str, Any]:
    """Write the pairs, run every listing scenario, summarise."""
    with tempfile.TemporaryDirectory(prefix="bench-listing-") as scratch:
        scenarios = ListingScenarios(bench, measure, runs, Path(scratch))
        pairs = {}
        for name, count in (("large", keys), ("small", small_keys)):
            pair = write_pair(bench.source, bench.target, f"listing-{name}", key_set(count))
            print(f"listing: {pair.keys:,} keys written to both servers in {pair.seconds:.1f}s", flush=True)
            pairs[name] = pair
        scenarios.check(pairs["large"])
        scenarios.memory(pairs["small"])
        scenarios.shards(pairs["large"])
        scenarios.first_copy(pairs["large"], "listing-first-copy")
        return scenarios.summary(pairs)
