"""Make every target's copy of one key match the source as it is now.

Every queue message means "reconcile this key", so duplicated, reordered or lost intermediate
events all converge to the source's current state. The source is looked at once (for a small
object one GET, whose bytes serve every target); then each target converges on its own, in
parallel: one target's failure leaves the others' results standing. Nothing is deleted on a
target unless the source is known, at that moment, not to hold the key.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from botocore.exceptions import ClientError

from replicator.errors import (
    SourceChangedError,
    describe,
    is_retryable,
    object_retrying,
    self_copy_refused,
)
from replicator.logs import get_logger
from replicator.looks import head, source_absent
from replicator.objects import ObjectInfo, metadata_matches, target_matches
from replicator.settings import Settings
from replicator.targets import S3Target, Target
from replicator.transfer import CopyResult, TransferEngine

log = get_logger(__name__)

__all__ = ["Outcome", "ReconcileResult", "Reconciler", "head", "source_absent"]


class Outcome(enum.StrEnum):
    COPIED = "copied"
    DELETED = "deleted"
    UNCHANGED = "unchanged"
    # Same bytes, new content headers or user metadata (an in-place CopyObject on the source).
    METADATA_UPDATED = "metadata_updated"


@dataclass(frozen=True)
class ReconcileResult:
    key: str
    outcome: Outcome
    size: int = 0
    copy: CopyResult | None = None


@dataclass(frozen=True)
class Look:
    """The source's key as looked at: its object (None: known absent, now) and, when one GET
    read them, its bytes (`started`: time.monotonic() when the read began)."""

    source: ObjectInfo | None
    data: bytes | None = None
    started: float = 0.0


# Per target name: its result, or the exception its reconcile ended with.
Results = dict[str, ReconcileResult | BaseException]


class Reconciler:
    def __init__(
        self,
        engine: TransferEngine,
        settings: Settings | None = None,
        targets: Mapping[str, Target] | None = None,
        fanout_threads: int | None = None,
    ) -> None:
        """`engine` reads the source; `targets` by name (default: the engine's own S3 target,
        named TARGET_NAME). `fanout_threads`: keys reconciled at once (WORKER_CONCURRENCY)."""
        self.engine = engine
        self.settings = settings or engine.settings
        if targets is None:
            name = self.settings.target_name
            targets = {name: S3Target(name, engine)}
        self.targets = dict(targets)
        self._retrying = object_retrying(
            self.settings.source_changed_restarts, self.settings.integrity_restarts
        )
        # Targets after the first run on threads of their own (the first on the caller's).
        self._fanout = (
            ThreadPoolExecutor(
                (fanout_threads or self.settings.worker_concurrency) * (len(self.targets) - 1),
                thread_name_prefix="target",
            )
            if len(self.targets) > 1
            else None
        )

    def close(self) -> None:
        """Stop the threads of the targets after the first (the targets are their owner's)."""
        if self._fanout is not None:
            self._fanout.shutdown(wait=True, cancel_futures=True)

    def reconcile(
        self, key: str, cancel: threading.Event | None = None, expected_size: int | None = None
    ) -> ReconcileResult:
        """reconcile_each() for a deployment with one target: its result, or its exception."""
        if len(self.targets) != 1:
            raise ValueError("reconcile() is for one target; use reconcile_each()")
        (result,) = self.reconcile_each(key, None, cancel, expected_size).values()
        if isinstance(result, BaseException):
            raise result
        return result

    def reconcile_each(
        self,
        key: str,
        names: Sequence[str] | None = None,
        cancel: threading.Event | None = None,
        expected_size: int | None = None,
        absent: Collection[str] = (),
    ) -> Results:
        """Reconcile `key` on the targets named (all by default). `absent`: targets a listing
        made just now shows without the key (migrate): not asked again before the copy.

        `expected_size`: the object's size as its newest event reported it, when one did. Below
        the multipart threshold one GET of the source stands in for its HEAD and carries the
        bytes, for every target (see _look_by_get). A failure to look at the source is every
        target's failure and is raised; a target's own failure is its entry in the result.
        """
        targets = [self.targets[name] for name in (names if names is not None else self.targets)]
        with contextlib.ExitStack() as held:
            look = self._retrying(lambda: self._look(key, targets, expected_size, held))
            runs = [self._for_target(target, key, look, cancel, target.name in absent) for target in targets]
            futures: list[Future[ReconcileResult]] = []
            if self._fanout is not None:
                futures = [self._fanout.submit(run) for run in runs[1:]]
            results: Results = {}
            try:
                results[targets[0].name] = runs[0]()
            except Exception as exc:
                results[targets[0].name] = exc
            for target, future in zip(targets[1:], futures, strict=True):
                error = future.exception()
                results[target.name] = error if error is not None else future.result()
            return results

    # -- the source ---------------------------------------------------------------------------

    def _look(
        self, key: str, targets: Sequence[Target], expected_size: int | None, held: contextlib.ExitStack
    ) -> Look:
        threshold = self.settings.multipart_threshold
        # A key every target refuses is not worth its bytes: the HEAD path raises the refusal.
        if (
            expected_size is not None
            and expected_size < threshold
            and any(target.refusal(key) is None for target in targets)
        ):
            return self._look_by_get(key, expected_size, held)
        return self._look_by_head(key)

    def _look_by_head(self, key: str) -> Look:
        source = head(self.engine.source, key)
        if source is None:
            source = self._listed_after_404(key)
        return Look(source)

    def _look_by_get(self, key: str, size: int, held: contextlib.ExitStack) -> Look:
        """_look_by_head with a GET where the HEAD was. Its 404 is taken as a HEAD's (a listing
        decides); a refusal other than a 404 or a retryable one is left to the HEAD path, which
        tells the archived, SSE-C and SSE-KMS cases apart and answers them as always. If the
        targets already hold the object the bytes were read for nothing, at the cost of the HEAD
        they replace. The bytes stay in buffer space until `held` closes."""
        started = time.monotonic()
        try:
            read = held.enter_context(self.engine.read_first(key, size))
        except ClientError as exc:
            if is_retryable(exc):
                raise
            log.info("source_get_refused", key=key, error=describe(exc), then="head")
            return self._look_by_head(key)
        if read is not None:
            source, data = read
            return Look(source, data, started)
        return Look(self._listed_after_404(key))

    def _listed_after_404(self, key: str) -> ObjectInfo | None:
        """After the source answered 404 for the key: None when a one-key listing proves it
        absent now (the targets' copies go); its HEAD when it is listed after all."""
        source_end = self.engine.source
        if source_absent(source_end, key):
            return None
        # Listed although the source said 404: written in between. Look at it again.
        source = head(source_end, key)
        if source is None:
            raise SourceChangedError(f"{key!r}: HEAD finds nothing but the listing shows the key")
        return source

    # -- one target ---------------------------------------------------------------------------

    def _for_target(
        self, target: Target, key: str, look: Look, cancel: threading.Event | None, absent: bool = False
    ) -> Callable[[], ReconcileResult]:
        """The target's reconcile, restarted as the settings allow (SOURCE_CHANGED_RESTARTS,
        INTEGRITY_RESTARTS); a restart looks at the source again, for this target alone, and
        at the target too."""

        def run() -> ReconcileResult:
            looks = iter((look,))

            def attempt() -> ReconcileResult:
                first = next(looks, None)
                current = first or self._look_by_head(key)
                return self._converge(target, key, current, cancel, absent and first is not None)

            result: ReconcileResult = self._retrying(attempt)
            return result

        return run

    def _converge(
        self, target: Target, key: str, look: Look, cancel: threading.Event | None, absent: bool = False
    ) -> ReconcileResult:
        source = look.source
        if source is None:
            target.delete(key)
            return ReconcileResult(key, Outcome.DELETED)
        # A key the target cannot hold fails here, before anything is asked of the target.
        refusal = target.refusal(key)
        if refusal is not None:
            raise refusal
        existing = None if absent else target.head(key)
        if existing is not None and target_matches(source, existing):
            if metadata_matches(source, existing):
                return ReconcileResult(key, Outcome.UNCHANGED, source.size)
            try:
                target.update_metadata(source, existing)
                return ReconcileResult(key, Outcome.METADATA_UPDATED, source.size)
            except ClientError as exc:
                if not self_copy_refused(exc):
                    raise
                # Some stores refuse a copy of an object onto itself (or UploadPartCopy): send
                # the bytes again instead, which carries the new headers and metadata too.
                log.info("metadata_update_refused", key=key, error=describe(exc), fallback="copy")
        if look.data is not None:
            result = target.copy_read(source, look.data, look.started, cancel)
        else:
            result = target.copy(source, cancel)
        return ReconcileResult(key, Outcome.COPIED, source.size, result)
