"""How the runner retries and classifies each copy, in the parent and in the child processes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from migrate import runner
from migrate.plan import Action, Decision
from migrate.runner import CopyOutcome, Migration, Options, Summary, outcome_of
from replicator.clients import Endpoint
from replicator.errors import (
    ArchivedObjectError,
    IntegrityError,
    SourceBucketMissingError,
    SourceChangedError,
    UnstorableKeyError,
)
from replicator.objects import ObjectInfo
from replicator.settings import Settings
from replicator.transfer import CopyResult


def settings(**tuning: Any) -> Settings:
    return Settings(
        source_bucket="source-bucket",
        target_bucket="target-bucket",
        target_endpoint_url="https://s3.example.com",
        target_access_key_id="key",
        target_secret_access_key="secret",
        **tuning,
    )


class FailingEngine:
    """Fails each copy with the errors given, in turn, then succeeds."""

    def __init__(self, settings: Settings, *errors: Exception) -> None:
        self.settings = settings
        self.errors = list(errors)
        self.calls = 0
        self.source = Endpoint("source", "source-bucket", None, "s")  # type: ignore[arg-type]
        self.target = Endpoint("target", "target-bucket", None, "t")  # type: ignore[arg-type]

    def copy(self, obj: ObjectInfo, cancel: threading.Event | None = None) -> CopyResult:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return CopyResult(key=obj.key, size=obj.size, md5=None, parts=1, seconds=0.0, source_etag="e")


def decision(key: str = "k") -> Decision:
    return Decision(Action.COPY, key, ObjectInfo(key=key, size=3, etag="e", complete=False), None)


@pytest.mark.parametrize(
    ("error", "restarts"),
    [
        (SourceChangedError("changed"), {"source_changed_restarts": 2}),
        (IntegrityError("bad"), {"integrity_restarts": 1}),
    ],
)
def test_a_copy_starts_over_as_often_as_the_settings_say(error: Exception, restarts: dict[str, int]) -> None:
    count = next(iter(restarts.values()))
    engine = FailingEngine(settings(**restarts), *([error] * 10))
    migration = Migration(engine, Options(concurrency=1))  # type: ignore[arg-type]
    migration._copy(decision())
    summary = migration.summary.settle()
    assert engine.calls == count + 1
    assert summary.failures and not summary.done


def test_permanent_errors_are_reported_apart_and_never_retried() -> None:
    engine = FailingEngine(
        settings(source_changed_restarts=3),
        UnstorableKeyError("target cannot store 'a': an object and a prefix of the same name cannot coexist"),
        ArchivedObjectError("archived in GLACIER"),
    )
    migration = Migration(engine, Options(concurrency=1))  # type: ignore[arg-type]
    migration._copy(decision("a"))
    migration._copy(decision("cold"))
    summary = migration.summary.settle()
    assert engine.calls == 2
    assert summary.unstorable == [
        {
            "key": "a",
            "reason": "target cannot store 'a': an object and a prefix of the same name cannot coexist",
        }
    ]
    assert summary.archived == [{"key": "cold", "reason": "archived in GLACIER"}]
    assert summary.failures == []


@pytest.fixture
def child(monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    with mock_aws():
        child_settings = settings(source_changed_restarts=1)
        runner._child_init(child_settings, None, 2)
        yield child_settings
    runner._child["threads"].shutdown()
    runner._child.clear()


def test_a_child_process_carries_each_outcome_and_its_reason_back(child: Settings) -> None:
    engine = FailingEngine(child)
    runner._child["engine"] = engine
    outcomes = runner._child_copy([("ok", 3, "e")])
    assert outcomes == [CopyOutcome("ok", 3, "done")]
    for error, kind in (
        (UnstorableKeyError("segment over 255 bytes"), "unstorable"),
        (ArchivedObjectError("archived in DEEP_ARCHIVE"), "archived"),
        (ValueError("boom"), "failed"),
    ):
        engine.errors = [error]
        [outcome] = runner._child_copy([("k", 3, "e")])
        assert (outcome.kind, outcome.key) == (kind, "k")
        assert str(error) in outcome.detail
    engine.errors, engine.calls = [SourceChangedError("x")] * 5, 0
    assert runner._child_copy([("k", 3, "e")])[0].kind == "failed"
    assert engine.calls == 2  # source_changed_restarts=1: the settings reach the children


def test_outcome_of_sorts_errors_in_one_place() -> None:
    assert outcome_of("k", 1, ArchivedObjectError("a")).kind == "archived"
    assert outcome_of("k", 1, UnstorableKeyError("u")).kind == "unstorable"
    assert outcome_of("k", 1, OSError("o")) == CopyOutcome("k", 1, "failed", "OSError: o")


class Reordering:
    """An S3 client whose listings come back in reverse order (a store with its own order)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.listings: list[dict[str, Any]] = []

    def list_objects_v2(self, **args: Any) -> Any:
        self.listings.append(args)
        page = self.client.list_objects_v2(**args)
        page["Contents"] = list(reversed(page.get("Contents", [])))
        return page


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="source-bucket")
        yield client


def test_a_source_listing_out_of_order_falls_back_to_one_look_per_key(s3: Any) -> None:
    for key in ("d/a", "d/b", "d/c"):
        s3.put_object(Bucket="source-bucket", Key=key, Body=b"")
    engine = FailingEngine(settings())
    source = Reordering(s3)
    engine.source = Endpoint("source", "source-bucket", source, "moto")  # type: ignore[arg-type]
    migration = Migration(engine, Options(concurrency=1))  # type: ignore[arg-type]
    assert migration._still_at_source(["d/a", "d/b", "d/x"]) == {"d/a", "d/b"}
    # One listing found out of order, then one exact look per key (reconcile.source_absent).
    assert [args.get("Delimiter") for args in source.listings] == ["/", None, None, None]
    assert migration._still_at_source(["d/c", "d/y"]) == {"d/c"}
    assert len(source.listings) == 6  # the store's order is remembered: no listing tried again


def test_a_missing_source_bucket_stops_the_deletes(s3: Any) -> None:
    engine = FailingEngine(settings())
    engine.source = Endpoint("source", "no-such-bucket", s3, "moto")
    migration = Migration(engine, Options(concurrency=1))  # type: ignore[arg-type]
    with pytest.raises(SourceBucketMissingError, match="no-such-bucket"):
        migration._delete_batch(["a", "b"])
    migration._listing_proves_absence = False  # the per-key look says the same
    with pytest.raises(SourceBucketMissingError, match="no-such-bucket"):
        migration._delete_batch(["a", "b"])


# -- a key deleted at the source during the run ---------------------------------------------------


def test_a_copy_of_a_key_deleted_at_the_source_since_listed_is_not_a_failure(s3: Any) -> None:
    s3.put_object(Bucket="source-bucket", Key="still-here", Body=b"abc")
    engine = FailingEngine(settings(source_changed_restarts=0), *([SourceChangedError("vanished")] * 2))
    engine.source = Endpoint("source", "source-bucket", s3, "moto")
    migration = Migration(engine, Options(concurrency=1))  # type: ignore[arg-type]
    migration._copy(decision("deleted-meanwhile"))
    migration._copy(decision("still-here"))  # the source has it: the failure stands
    summary = migration.summary.settle()
    assert summary.gone == ["deleted-meanwhile"]
    assert [f["key"] for f in summary.failures] == ["still-here"]
    assert summary.as_dict()["gone_since_listed"] == ["deleted-meanwhile"]


def test_a_child_process_reports_a_key_gone_since_listed(child: Settings) -> None:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket="source-bucket")
    engine = FailingEngine(child, *([SourceChangedError("vanished")] * 2))
    engine.source = Endpoint("source", "source-bucket", client, "moto")  # type: ignore[arg-type]
    runner._child["engine"] = engine
    assert runner._child_copy([("k", 3, "e")]) == [CopyOutcome("k", 3, "gone", runner.GONE)]


def test_a_source_bucket_gone_keeps_the_failure(s3: Any) -> None:
    engine = FailingEngine(settings(source_changed_restarts=0), SourceChangedError("vanished"))
    engine.source = Endpoint("source", "no-such-bucket", s3, "moto")
    migration = Migration(engine, Options(concurrency=1))  # type: ignore[arg-type]
    migration._copy(decision("k"))
    summary = migration.summary.settle()
    assert summary.gone == [] and [f["key"] for f in summary.failures] == ["k"]


# -- a target that will not copy an object onto itself --------------------------------------------


def client_error(status: int, code: str, operation: str = "CopyObject") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},  # type: ignore[typeddict-item]
        operation,
    )


class MetadataEngine(FailingEngine):
    def __init__(self, settings: Settings, refusal: Exception) -> None:
        super().__init__(settings)
        self.refusal = refusal
        self.copied: list[str] = []

    def update_metadata(self, source: ObjectInfo, target: ObjectInfo | None = None) -> None:
        assert target is not None and target.complete  # the runner's fresh HEAD is passed on
        raise self.refusal

    def copy(self, obj: ObjectInfo, cancel: threading.Event | None = None) -> CopyResult:
        self.copied.append(obj.key)
        return super().copy(obj, cancel)


def metadata_decision(monkeypatch: pytest.MonkeyPatch, key: str = "doc") -> tuple[Decision, ObjectInfo]:
    source = ObjectInfo(key=key, size=3, etag="e", headers={"ContentType": "text/markdown"})
    target = ObjectInfo(
        key=key,
        size=3,
        etag="t",
        metadata={"replica-source-etag": "e"},
        headers={"ContentType": "text/plain"},
    )
    monkeypatch.setattr(runner, "head", lambda endpoint, _key: source)
    return Decision(Action.VERIFY, key, source, target), target


@pytest.mark.parametrize(
    "refusal",
    [
        client_error(501, "NotImplemented"),
        client_error(400, "InvalidRequest"),
        client_error(403, "AccessDenied"),
    ],
    ids=["501", "InvalidRequest", "AccessDenied"],
)
def test_a_refused_metadata_update_copies_the_bytes_instead(
    monkeypatch: pytest.MonkeyPatch, refusal: ClientError
) -> None:
    engine = MetadataEngine(settings(), refusal)
    migration = Migration(engine, Options(concurrency=1))  # type: ignore[arg-type]
    decided, target = metadata_decision(monkeypatch)
    migration._check_metadata(decided, target)
    summary = migration.summary.settle()
    assert engine.copied == ["doc"]
    assert summary.failures == []
    assert summary.done == {"replace": 1}
    assert summary.planned == {"replace": 1}  # one key, one planned action


@pytest.mark.parametrize(
    "error",
    [
        client_error(412, "PreconditionFailed"),
        client_error(503, "SlowDown"),
        client_error(500, "InternalError"),
        UnstorableKeyError("target cannot store 'doc'"),
    ],
    ids=["PreconditionFailed", "SlowDown", "500", "unstorable"],
)
def test_other_metadata_update_failures_send_no_bytes(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    engine = MetadataEngine(settings(), error)
    migration = Migration(engine, Options(concurrency=1))  # type: ignore[arg-type]
    decided, target = metadata_decision(monkeypatch)
    migration._check_metadata(decided, target)
    summary = migration.summary.settle()
    assert engine.copied == []
    assert not summary.done
    assert summary.failures or summary.unstorable


def test_a_metadata_update_that_turns_into_a_copy_is_planned_once_as_a_replace() -> None:
    """A target that refuses to copy an object onto itself gets the bytes again: the key is one
    replacement in the plan, not a metadata update left undone plus a replacement."""
    summary = Summary()
    summary.plan(Action.METADATA, 10)
    summary.unplan(Action.METADATA, 10)
    summary.plan(Action.REPLACE, 10)
    summary.finish(Action.REPLACE, 10)
    summary.settle()
    assert summary.planned == {"replace": 1}
    assert summary.planned_bytes == {"replace": 10}
    assert summary.done == {"replace": 1}


class MemoryListing:
    """A listing from a dict of key -> ETag, in the order given (maybe not byte order)."""

    def __init__(self, side: str, objects: dict[str, str], order: list[str] | None = None) -> None:
        self.side = side
        self.objects = objects
        self.order = order
        self.requests = 0

    def pages(
        self, prefix: str, start_after: str | None, max_keys: int = 1000
    ) -> Iterator[list[dict[str, Any]]]:
        self.requests += 1
        keys = self.order if self.order is not None else sorted(self.objects, key=str.encode)
        yield [
            {"Key": k, "Size": 3, "ETag": f'"{self.objects[k]}"'}
            for k in keys
            if k in self.objects and k.startswith(prefix) and (start_after is None or k > start_after)
        ]


class CopyingEngine(FailingEngine):
    def __init__(self, settings: Settings, target: dict[str, str], *errors: Exception) -> None:
        super().__init__(settings, *errors)
        self.target_objects = target
        self.copied: list[str] = []

    def copy(self, obj: ObjectInfo, cancel: threading.Event | None = None) -> CopyResult:
        result = super().copy(obj, cancel)
        self.copied.append(obj.key)
        self.target_objects[obj.key] = obj.etag
        return result


def test_a_listing_out_of_its_known_order_starts_over_sorted_and_copies_each_key_once() -> None:
    """The source answers out of byte order after a key was decided: the run starts over with
    both sides sorted, copies nothing twice, and counts each key's copy once."""
    etag = "0" * 32
    source = {k: etag for k in ("a", "b", "c", "d")}
    target: dict[str, str] = {"a": etag}
    out_of_order = MemoryListing("source", source, ["a", "b", "d", "c"])
    engine = CopyingEngine(settings(), target)
    migration = Migration(engine, Options(concurrency=1, processes=1))  # type: ignore[arg-type]
    migration._listers = (out_of_order, MemoryListing("target", target))
    summary = migration.run().settle()
    assert summary.listing_restarts == 1
    assert sorted(engine.copied) == ["b", "c", "d"]
    assert summary.done.get("copy") == 3
    assert summary.failures == []
    assert set(target) == set(source)


def test_a_check_that_starts_over_reports_only_what_the_sorted_pass_finds() -> None:
    etag = "0" * 32
    source = {k: etag for k in ("a", "b", "c")}
    target = dict(source)
    migration = Migration(FailingEngine(settings()), Options(concurrency=1, processes=1, check=True))  # type: ignore[arg-type]
    # Out of order on the target: "c" before "b" makes a one-pass merge call "b" missing.
    migration._listers = (MemoryListing("source", source), MemoryListing("target", target, ["a", "c", "b"]))
    summary = migration.run().settle()
    assert summary.listing_restarts == 1
    assert summary.differences == []
    assert summary.done == {"skip": 3}


def test_a_failure_before_a_start_over_is_decided_again_not_reported_stale() -> None:
    """The first copy of "a" fails, then the source answers out of order: the sorted pass copies
    "a" and the run ends clean, without the first pass's failure."""
    etag = "0" * 32
    source = {k: etag for k in ("a", "b", "c", "d")}
    target: dict[str, str] = {}
    engine = CopyingEngine(settings(), target, RuntimeError("connection reset"))
    migration = Migration(engine, Options(concurrency=1, processes=1))  # type: ignore[arg-type]
    migration._listers = (
        MemoryListing("source", source, ["a", "b", "d", "c"]),
        MemoryListing("target", target),
    )
    summary = migration.run().settle()
    assert summary.listing_restarts == 1
    assert summary.failures == []
    # Each key copied once; what the first pass copied the sorted pass finds again (skipped).
    assert summary.planned["copy"] == summary.done["copy"] == 4
    assert summary.planned == summary.done
    assert summary.done["skip"] >= 1  # "b", copied before the start over
    assert sorted(engine.copied) == ["a", "b", "c", "d"]
    assert set(target) == set(source)
