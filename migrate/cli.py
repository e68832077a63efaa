"""`python -m migrate`: copy what is missing or different from source to target, then prove it.

Exit codes: 0 done (or --check found no difference), 1 differences found / copies failed / keys
the target cannot store, 2 bad configuration or arguments, 3 endpoints unusable (also: the source
bucket went missing), 4 deletes refused (--max-delete exceeded, or an empty source), 130
interrupted. Archived source objects are reported but do not change the exit code.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from migrate.filters import KeyFilter, parse_shard, parse_size, parse_when
from migrate.plan import Action
from migrate.progress import Progress
from migrate.records import Records
from migrate.run_metrics import emf_document, emit, run_dimensions
from migrate.runner import (
    DEFAULT_MAX_DELETE,
    Migration,
    Options,
    ShardSplitsError,
    Summary,
    default_processes,
)
from migrate.uploads import cleanup_uploads
from replicator.clients import Clients
from replicator.runtime import EXIT_CONFIG, EXIT_STARTUP, Runtime, start
from replicator.settings import Settings
from replicator.targets import S3Target, Target
from replicator.transfer import TransferEngine

if TYPE_CHECKING:
    from migrate.inventory import InventoryListing

DEFAULT_CONCURRENCY = 32  # objects in flight
EXIT_DIFFERENT = 1
EXIT_DELETES_REFUSED = 4
EXIT_INTERRUPTED = 130
LISTED = 50  # keys printed per category; the report has them all


def parse_max_delete(text: str) -> int | None:
    """A count, or 'unlimited'."""
    if text.strip().lower() == "unlimited":
        return None
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is neither a count (0, 1000, ...) nor 'unlimited'")
    return int(text)


def parse_splits(text: str) -> tuple[str, ...]:
    """A JSON list of keys."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--splits is not JSON: {exc}") from None
    if not isinstance(value, list) or not all(isinstance(key, str) for key in value):
        raise argparse.ArgumentTypeError("--splits must be a JSON list of keys (from --plan-shards)")
    return tuple(value)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m migrate",
        description="Migrate the source bucket to the target (settings from the environment).",
    )
    mode = p.add_argument_group("mode")
    mode.add_argument("--check", action="store_true", help="compare only; exit 1 on any difference")
    mode.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    mode.add_argument(
        "--delete",
        action="store_true",
        help="delete target objects absent from the source (each checked again at the source "
        "just before its delete)",
    )
    mode.add_argument(
        "--max-delete",
        type=parse_max_delete,
        default=DEFAULT_MAX_DELETE,
        metavar="N",
        help=f"refuse all deletes when more than N would be made (default {DEFAULT_MAX_DELETE}; "
        "'unlimited' lifts the cap); exit code 4",
    )
    mode.add_argument(
        "--allow-empty-source",
        action="store_true",
        help="with --delete: mirror even a source that lists no object (refused otherwise, "
        "exit code 4: a wrong bucket or a --reverse mix-up must not empty the target)",
    )
    mode.add_argument("--reverse", action="store_true", help="swap source and target (Lyve Cloud -> S3)")
    mode.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME",
        help="only this target of TARGETS (repeatable; default: every target, together: the source "
        "listed and read once)",
    )
    mode.add_argument(
        "--cleanup-uploads",
        action="store_true",
        help="abort incomplete multipart uploads on the target (with --older-than)",
    )
    f = p.add_argument_group("filters")
    f.add_argument(
        "--source-inventory",
        metavar="URI",
        help="list the source from this S3 Inventory report (s3://BUCKET/KEY/manifest.json or a "
        "local path; CSV) instead of LIST requests",
    )
    f.add_argument("--prefix", default="", help="only keys under this prefix")
    f.add_argument("--include", action="append", default=[], metavar="GLOB", help="only keys matching")
    f.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="skip keys matching")
    f.add_argument("--min-size", type=parse_size, metavar="SIZE", help="e.g. 1M")
    f.add_argument("--max-size", type=parse_size, metavar="SIZE", help="e.g. 5G")
    f.add_argument(
        "--newer-than", type=parse_when, metavar="AGE|DATE", help="modified since (7d, 2026-01-31)"
    )
    f.add_argument("--older-than", type=parse_when, metavar="AGE|DATE", help="modified before")
    f.add_argument(
        "--shard",
        type=parse_shard,
        default=(0, 1),
        metavar="I/N",
        help="only key range I of N (split across N tasks; see --splits)",
    )
    f.add_argument(
        "--splits",
        type=parse_splits,
        metavar="JSON",
        help="with --shard: the N-1 split points from --plan-shards N, the same for every shard "
        "(without it each shard finds them itself: fine for a bucket nobody writes to meanwhile)",
    )
    mode.add_argument(
        "--plan-shards",
        type=int,
        metavar="N",
        help="print the split points for N shards as JSON (a few requests to the source) and exit",
    )
    t = p.add_argument_group("tuning")
    t.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"objects in flight (default {DEFAULT_CONCURRENCY})",
    )
    t.add_argument(
        "--processes",
        type=int,
        default=default_processes(),
        help="processes copying small objects (default: cores, at most 4)",
    )
    t.add_argument(
        "--stream-target-listing",
        action="store_true",
        help="trust the target to list in byte order (AWS S3 does) instead of sorting on disk",
    )
    o = p.add_argument_group("output")
    o.add_argument("--report", type=Path, metavar="FILE", help="write a JSON report here")
    o.add_argument("--progress", choices=["auto", "bar", "log", "none"], default="auto")
    o.add_argument(
        "--metrics",
        action="store_true",
        help="print the run's result as one CloudWatch EMF line on stdout (scheduled repairs)",
    )
    return p


def _print_summary(summary: Summary, options: Options) -> None:
    # rich is imported here, at the end, to keep it off the start-up path.
    from rich.console import Console  # noqa: PLC0415
    from rich.markup import escape  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    console = Console(stderr=True)
    title = "Check" if options.check else ("Plan (dry run)" if options.dry_run else "Migration")
    table = Table(title=f"{title} in {summary.seconds:.1f}s")
    table.add_column("action")
    table.add_column("objects", justify="right")
    table.add_column("bytes", justify="right")
    table.add_column("done", justify="right")
    for action in Action:
        if action is Action.ARCHIVED:
            continue  # listed below: never copied
        planned = summary.planned.get(action.value, 0)
        if planned or summary.done.get(action.value, 0):
            table.add_row(
                action.value,
                str(planned),
                str(summary.planned_bytes.get(action.value, 0)),
                str(summary.done.get(action.value, 0)),
            )
    console.print(table)

    def listed(items: Records[dict[str, str]], label: str, field: str) -> None:
        for item in items.head(LISTED):
            console.print(f"{label}: {escape(repr(item['key']))}: {escape(item[field])}")
        if len(items) > LISTED:
            console.print(f"... and {len(items) - LISTED} more (see --report)")

    for diff in summary.differences.head(LISTED):
        console.print(f"DIFF {diff['difference']}: {escape(repr(diff['key']))}")
    if len(summary.differences) > LISTED:
        console.print(f"... and {len(summary.differences) - LISTED} more differences (see --report)")
    listed(summary.failures, "[red]FAILED[/]", "error")
    if summary.unstorable:
        console.print(f"[red]{len(summary.unstorable)} object(s) cannot be stored on the target[/]:")
        listed(summary.unstorable, "cannot be stored on the target", "reason")
    if summary.archived:
        console.print(
            f"{len(summary.archived)} object(s) archived, not copied (restore them at the source "
            "first; they alone do not change the exit code):"
        )
        listed(summary.archived, "archived, not copied", "reason")
    if summary.done.get(Action.METADATA.value):
        console.print(
            f"{summary.done[Action.METADATA.value]} object(s): metadata updated (headers and user "
            "metadata rewritten on the target, bytes not sent again)"
        )
    if summary.unverified:
        console.print(f"{summary.unverified} object(s) matched by size only (no checksum on both sides)")
    if summary.gone:
        console.print(
            f"{len(summary.gone)} object(s) deleted at the source since listed, not copied (not a "
            "failure: the event pipeline, or the next run, settles their keys on the target)"
        )
        for key in summary.gone.head(LISTED):
            console.print(f"gone since listed: {escape(repr(key))}")
    if summary.deletes_skipped:
        console.print(f"{len(summary.deletes_skipped)} deletes skipped: source has the key again")
        for key in summary.deletes_skipped.head(LISTED):
            console.print(f"deletes skipped: source has the key again: {escape(repr(key))}")
    if summary.deletes_refused:
        console.print(
            f"[red]refused[/] all {summary.deletes_refused} deletes: "
            f"{escape(summary.deletes_refused_reason)}; nothing was deleted"
        )
    if summary.source_missing:
        console.print(f"[red]stopped[/]: {escape(summary.source_missing)}; nothing more was deleted")


def exit_code(summary: Summary) -> int:
    if summary.cancelled:
        return EXIT_INTERRUPTED
    if summary.source_missing:
        return EXIT_STARTUP
    if summary.deletes_refused:
        return EXIT_DELETES_REFUSED
    if summary.failures or summary.differences or summary.unstorable:
        return EXIT_DIFFERENT
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.check and (args.delete or args.dry_run):
        parser.error("--check compares only; it does not combine with --delete or --dry-run")
    if args.concurrency < 1 or args.processes < 1:
        parser.error("--concurrency and --processes must be at least 1")
    if args.splits is not None and len(args.splits) != args.shard[1] - 1:
        parser.error(f"--shard {args.shard[0]}/{args.shard[1]} needs {args.shard[1] - 1} --splits keys")
    if args.plan_shards is not None and args.plan_shards < 1:
        parser.error("--plan-shards needs a count of at least 1")
    if args.source_inventory and args.reverse:
        parser.error("--source-inventory describes the AWS source: it does not combine with --reverse")
    runtime = start(reverse=args.reverse)
    if isinstance(runtime, int):
        return runtime
    unknown = [name for name in args.target if name not in runtime.targets]
    if unknown:
        runtime.close()
        parser.error(f"--target {unknown[0]}: not a target of this deployment ({', '.join(runtime.targets)})")
    names = list(dict.fromkeys(args.target)) or list(runtime.targets)
    try:
        if len(names) == 1 and isinstance(runtime.targets[names[0]], S3Target):
            target = runtime.targets[names[0]]
            assert isinstance(target, S3Target)
            assert target.clients is not None
            return _migrate(args, parser, runtime, target.engine, target.clients)
        if not _s3_only_options(args):
            # Every target named, together: the source listed and read once (store_run).
            return _migrate_store(args, runtime, [runtime.targets[name] for name in names])
        # Options of the S3 path (shards, S3 Inventory, upload cleanup): each S3 target in turn.
        codes: list[int] = []
        for name in names:
            if EXIT_INTERRUPTED in codes:
                break  # Ctrl-C / SIGTERM stops the run, not just this target's
            print(f"== target {name}", file=sys.stderr)
            target = runtime.targets[name]
            if not isinstance(target, S3Target):
                # A scheduled repair with shards names every target: the others go on.
                print(
                    f"warning: target {name} skipped: {_s3_only_options(args)} apply to S3 targets only",
                    file=sys.stderr,
                )
                continue
            assert target.clients is not None
            codes.append(_migrate(args, parser, runtime, target.engine, target.clients, name))
        return max(codes, key=_SEVERITY.index) if codes else EXIT_CONFIG
    finally:
        runtime.close()


# Exit codes of several targets' runs: the worst one is the run's.
_SEVERITY = [0, EXIT_DIFFERENT, EXIT_CONFIG, EXIT_DELETES_REFUSED, EXIT_STARTUP, EXIT_INTERRUPTED]


def _s3_only_options(args: argparse.Namespace) -> str:
    """The options given that only runner.Migration (one S3 target) supports, as text."""
    given = [
        ("--cleanup-uploads", args.cleanup_uploads),
        ("--plan-shards", args.plan_shards is not None),
        ("--source-inventory", bool(args.source_inventory)),
        ("--shard", args.shard != (0, 1)),
        ("--stream-target-listing", args.stream_target_listing),
    ]
    return ", ".join(name for name, on in given if on)


def _options(args: argparse.Namespace) -> Options:
    return Options(
        key_filter=KeyFilter(
            prefix=args.prefix,
            include=tuple(args.include),
            exclude=tuple(args.exclude),
            min_size=args.min_size,
            max_size=args.max_size,
            newer_than=args.newer_than,
            older_than=args.older_than,
            shard=args.shard,
        ),
        delete=args.delete,
        max_delete=args.max_delete,
        allow_empty_source=args.allow_empty_source,
        dry_run=args.dry_run,
        check=args.check,
        concurrency=args.concurrency,
        processes=args.processes,
        stream_target_listing=args.stream_target_listing,
        splits=args.splits,
    )


def _migrate_store(args: argparse.Namespace, runtime: Runtime, targets: list[Target]) -> int:
    """Several targets together, or one that is not S3-compatible (Azure Blob): store_run."""
    from migrate.store_run import StoreMigration  # noqa: PLC0415 - off the one-S3-target path

    options = _options(args)
    with Progress(args.progress) as progress:
        migration = StoreMigration(runtime.engine, targets, options, progress)
        signal.signal(signal.SIGTERM, migration.stop)
        signal.signal(signal.SIGINT, migration.stop)
        summary = migration.run()
    return _conclude(args, summary, options, runtime.settings)


def _migrate(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    runtime: Runtime,
    engine: TransferEngine,
    clients: Clients,
    name: str | None = None,
) -> int:
    """One S3-compatible target: `engine` copies to it, `clients` reach it."""
    if args.cleanup_uploads:
        if args.older_than is None:
            parser.error("--cleanup-uploads needs --older-than AGE (e.g. 1d)")
        assert clients.target is not None
        aborted = cleanup_uploads(clients.target, args.older_than, args.prefix, args.dry_run)
        verb = "would abort" if args.dry_run else "aborted"
        print(
            f"{verb} {len(aborted)} incomplete upload(s) older than {args.older_than.isoformat()}",
            file=sys.stderr,
        )
        return 0

    options = _options(args)
    inventory: InventoryListing | None = None
    if args.source_inventory:
        # Off the default path: its models and parsers cost start-up time every run would pay.
        from migrate.inventory import InventoryError, open_inventory  # noqa: PLC0415

        try:
            inventory = open_inventory(
                args.source_inventory,
                runtime.clients.source.client,
                runtime.clients.source.bucket,
                keep=options.key_filter.key_selected,
                attempts=runtime.settings.max_attempts,
            )
        except InventoryError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    try:
        if args.plan_shards is not None:
            planner = Migration(engine, options, clients=clients, source_listing=inventory)
            splits = planner.plan_shards(args.plan_shards)
            requests = planner.summary.listing["discovery_requests"]
            print(json.dumps({"shards": args.plan_shards, "splits": splits, "discovery_requests": requests}))
            return 0
        with Progress(args.progress) as progress:
            migration = Migration(engine, options, progress, clients=clients, source_listing=inventory)
            signal.signal(signal.SIGTERM, migration.stop)
            signal.signal(signal.SIGINT, migration.stop)
            try:
                summary = migration.run()
            except ShardSplitsError as exc:
                print(f"error: {exc}", file=sys.stderr)
                if args.metrics:
                    _emit_metrics(migration.summary.settle(), runtime.settings, args.check, failed=True)
                return EXIT_CONFIG
            except BaseException:
                # A run that died still reports (a failure): a silent shard must not look clean.
                if args.metrics:
                    _emit_metrics(migration.summary.settle(), runtime.settings, args.check, failed=True)
                raise
    finally:
        if inventory is not None:
            inventory.close()
    if inventory is not None:
        summary.listing["inventory_created"] = inventory.created.isoformat()
    return _conclude(args, summary, options, runtime.settings, name)


def _conclude(
    args: argparse.Namespace, summary: Summary, options: Options, settings: Settings, name: str | None = None
) -> int:
    """The summary on stderr, --report, --metrics; the exit code. The findings' files go after."""
    try:
        _print_summary(summary, options)
        if args.report:
            _write_report(args, summary, name)
        if args.metrics:
            _emit_metrics(summary, settings, args.check)
        return exit_code(summary)
    finally:
        summary.close()


def _write_report(args: argparse.Namespace, summary: Summary, name: str | None) -> None:
    """--report FILE; with several targets, one file per target (FILE's name + .<target>)."""
    path: Path = args.report
    if name is not None:
        path = path.with_name(f"{path.stem}.{name}{path.suffix}")
    report = {
        "finished_at": datetime.now(UTC).isoformat(),
        "options": {
            "check": args.check,
            "dry_run": args.dry_run,
            "delete": args.delete,
            "max_delete": args.max_delete,
            "allow_empty_source": args.allow_empty_source,
            "prefix": args.prefix,
            "shard": f"{args.shard[0]}/{args.shard[1]}",
            "reverse": args.reverse,
        },
        **({"target": name} if name else {}),
        **summary.as_dict(),
    }
    # Streamed: the findings (every difference of a --check, say) are read back from disk one
    # at a time, never held together.
    with path.open("w", encoding="utf-8") as out:
        out.write("{")
        for number, (field, value) in enumerate(report.items()):
            out.write(("," if number else "") + f"\n  {json.dumps(field)}: ")
            if isinstance(value, Records):
                value.write_json(out)
            else:
                out.write(json.dumps(value, default=str))
        out.write("\n}\n")


def _emit_metrics(summary: Summary, settings: Settings, check: bool, failed: bool = False) -> None:
    report = summary.as_dict()
    if failed:
        report["cancelled"] = True  # counted as a failed run
    emit(
        emf_document(
            report,
            namespace=settings.metrics_namespace,
            dimensions=run_dimensions(settings.queue_url),
            check=check,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
