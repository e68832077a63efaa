"""Progress of a migration: a rich bar on a terminal, a structured log line every few seconds
otherwise (ECS), the same counters either way."""

from __future__ import annotations

import queue
import sys
import threading
import time
from typing import Any

from migrate.plan import Action, Decision
from replicator.logs import get_logger

log = get_logger("migrate.progress")


class Progress:
    def __init__(self, mode: str = "auto", interval: float = 5.0) -> None:
        self.mode = "bar" if mode == "auto" and sys.stderr.isatty() else ("log" if mode == "auto" else mode)
        self.interval = interval
        self.objects_total = 0
        self.objects_done = 0
        self.bytes_total = 0
        self.bytes_done = 0
        self.failed = 0
        self.listing_complete = False
        self._finished: queue.SimpleQueue[tuple[int, bool, int]] = queue.SimpleQueue()
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._bar: Any = None
        self._objects_task: Any = None
        self._bytes_task: Any = None
        self._ticker: threading.Thread | None = None

    @classmethod
    def quiet(cls) -> Progress:
        return cls(mode="none")

    def __enter__(self) -> Progress:
        if self.mode == "bar":
            # rich costs ~50 ms of start-up: imported only when there is a terminal to draw on.
            from rich.progress import (  # noqa: PLC0415
                BarColumn,
                DownloadColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as RichProgress  # noqa: PLC0415

            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._bar.start()
            self._objects_task = self._bar.add_task("objects", total=None)
            self._bytes_task = self._bar.add_task("bytes  ", total=None)
        if self.mode in ("bar", "log"):
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._bar is not None:
            self._refresh()
            self._bar.stop()
        if self.mode == "log":
            self._settle()
            self._log_line()

    def planned(self, decision: Decision) -> None:
        # Called from the merge loop only.
        self.objects_total += 1
        if decision.action not in (Action.DELETE, Action.SKIP, Action.ARCHIVED):
            self.bytes_total += decision.size

    def done(self, decision: Decision, size: int, failed: bool = False) -> None:
        # Called from copy threads: no lock (it convoys under the GIL); the ticker folds these in.
        self._finished.put((size, failed, 1))

    def skipped(self, count: int) -> None:
        """Identical pairs counted together (from the merge loop)."""
        self.objects_total += count
        self._finished.put((0, False, count))

    def _settle(self) -> None:
        while True:
            try:
                size, failed, count = self._finished.get_nowait()
            except queue.Empty:
                return
            self.objects_done += count
            self.bytes_done += size
            self.failed += int(failed)

    def listing_done(self) -> None:
        self.listing_complete = True

    def _refresh(self) -> None:
        self._settle()
        if self._bar is None:
            return
        total_objects = self.objects_total if self.listing_complete else None
        total_bytes = self.bytes_total if self.listing_complete else None
        self._bar.update(self._objects_task, completed=self.objects_done, total=total_objects)
        self._bar.update(self._bytes_task, completed=self.bytes_done, total=total_bytes)

    def _tick(self) -> None:
        every = 0.2 if self.mode == "bar" else self.interval
        while not self._stop.wait(every):
            self._refresh()
            if self.mode == "log":
                self._log_line()

    def _log_line(self) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        log.info(
            "progress",
            objects_done=self.objects_done,
            objects_seen=self.objects_total,
            bytes_done=self.bytes_done,
            bytes_seen=self.bytes_total,
            failed=self.failed,
            listing_complete=self.listing_complete,
            mb_per_s=round(self.bytes_done / elapsed / 1e6, 2),
            objects_per_s=round(self.objects_done / elapsed, 1),
            elapsed_s=round(elapsed, 1),
        )
