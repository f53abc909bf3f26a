"""ingest_inbox: complete traces in the inbox become validated rows of the lake's Delta tables."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from lake.storage import fs_for
from lake.tables import LakeTables
from schemas.settings import DEV_PSEUDONYM_KEY, get_ingest_settings, get_settings
from tasks.claims import BatchInfo, Claims, claim_batch, recover_batches, safe_key
from tasks.inbox import TraceListing, scan_inbox_task, scan_parts
from tasks.ingest import (
    BatchReport,
    IngestSummary,
    Stopwatch,
    archive_batch_task,
    build_batch_task,
    clean_batch_task,
    commit_batch_task,
    plan_batches,
    plan_last_batches,
    prepare_batch_task,
    stray_listing,
)
from tasks.pool import BatchPool, ingest_batch_task
from tasks.publish import publish_run_artifacts

__all__ = ["ingest_inbox"]


@flow(name="ingest-inbox", log_prints=True)
def ingest_inbox(
    inbox: str | None = None,
    lake: str | None = None,
    grace_period_s: float | None = None,
    batch_max_traces: int | None = None,
    batch_max_events: int | None = None,
    workers: int | None = None,
    batch_max_bytes: int | None = None,
) -> IngestSummary:
    """Assemble, validate, redact and write every complete trace in the inbox; quarantine the bad ones.

    Safe to run at any time and from many workers at once: claims keep two runs off the same
    trace, and a run resumes any batch that a crashed run left behind. With `workers` > 1,
    batches run in that many processes at once (tasks/pool.py).
    """
    inbox = inbox or get_settings().inbox
    lake = lake or get_settings().lake
    overrides = {
        "grace_period_s": grace_period_s,
        "batch_max_traces": batch_max_traces,
        "batch_max_events": batch_max_events,
        "batch_max_bytes": batch_max_bytes,
        "workers": workers,
    }
    settings = get_ingest_settings().model_copy(update={k: v for k, v in overrides.items() if v is not None})
    run_id = flow_run.get_id() or "local"
    logger = get_run_logger()
    if settings.pseudonym_key.get_secret_value() == DEV_PSEUDONYM_KEY:
        logger.warning("PRT_PSEUDONYM_KEY is not set: participant pseudonyms use the public development key")

    inbox_fs, inbox_root = fs_for(inbox)
    lake_fs, lake_root = fs_for(lake)
    tables = LakeTables(lake)
    claims = Claims(lake_fs, lake_root, lease_s=settings.lease_s)
    summary = IngestSummary()

    planned: dict[str, TraceListing] = {}
    planned_batches: list[str] = []
    handed_back: list[TraceListing] = []

    def batches() -> Iterator[tuple[BatchInfo, list[str], dict[str, TraceListing], bool] | None]:
        """(batch, members, listings, resumed) for every batch of this run, orphans first; each
        new batch is claimed only when it is about to run, and the first ones run while the rest
        of the inbox is still being scanned (tasks.inbox.scan_parts). Then None, for the caller
        to finish every running batch: traces they handed back (`PreparedBatch.deferred`) are
        planned again with their measured size, until none is left."""
        orphans = recover_batches(claims)
        if orphans:
            scan = scan_inbox_task(inbox_fs, inbox_root, settings)
            planned.update(scan.traces)
            for info, members in orphans:
                logger.info("resuming batch %s left by an earlier run (%d traces)", info.batch_id, len(members))
                planned_batches.append(info.batch_id)
                yield info, members, scan.traces, True

        def claimed_batch(group: list[TraceListing]) -> tuple[BatchInfo, list[str], dict[str, TraceListing], bool]:
            info, won = claim_batch(claims, run_id, [t.trace_id for t in group], logger=logger)
            planned.update((t.trace_id, t) for t in group)
            planned_batches.append(info.batch_id)
            return info, won, {t.trace_id: t for t in group}, False

        claimed = claims.claimed()
        waiting: list[TraceListing] = []  # the last, perhaps not full, batch of a part: joins the next part
        parts = scan_parts(inbox_fs, inbox_root)
        for n, part in enumerate(parts, 1):
            scan = scan_inbox_task(inbox_fs, inbox_root, settings, part=quote(part))
            candidates = [t for t in scan.traces.values() if t.status in ("ready", "rejected", "expired")]
            candidates += [stray_listing(inbox_root, obj) for obj in scan.stray]
            summary.in_progress += sorted(t.trace_id for t in candidates if safe_key(t.trace_id) in claimed)
            summary.pending += sorted(t.trace_id for t in scan.by_status("pending"))
            todo = waiting + [t for t in candidates if safe_key(t.trace_id) not in claimed]
            if n < len(parts):
                groups = plan_batches(todo, settings)
                waiting = groups.pop() if groups else []
            else:  # the rest of the inbox, known now: batches that end the run level on the workers
                groups = plan_last_batches(todo, settings, workers=settings.workers, planned=len(planned_batches))
            for group in groups:
                yield claimed_batch(group)
        while True:
            yield None
            if not handed_back:
                return
            # Every worker is idle here: these batches alone should end level on them.
            groups = plan_last_batches(handed_back, settings, workers=settings.workers, planned=0)
            handed_back.clear()
            for group in groups:
                yield claimed_batch(group)

    def record(report: BatchReport) -> None:
        summary.add(report)
        logger.info("batch %s: %d ingested, %d quarantined", report.batch_id, len(report.ingested), len(report.quarantined))
        for tid, size in report.deferred:
            planned[tid].read_bytes = size
            handed_back.append(planned[tid])
        if report.deferred:
            logger.info(
                "batch %s: %d trace(s) decompress to more than planned; they go to later batches: %s",
                report.batch_id,
                len(report.deferred),
                ", ".join(tid for tid, _ in report.deferred[:10]),
            )

    if settings.workers == 1:
        for batch in batches():
            if batch is None:
                continue  # every batch so far is done
            info, members, listings, resumed = batch
            watch = Stopwatch()
            prep = prepare_batch_task(
                info, members, quote(listings), inbox_fs, lake_fs, lake_root, tables, settings, resumed=resumed
            )
            watch.lap("prepare")
            out = build_batch_task(quote(prep), settings)
            watch.lap("build")
            commit_batch_task(quote(prep), quote(out), tables, claims)
            watch.lap("commit")
            archive_batch_task(quote(prep), quote(out), inbox_fs, lake_fs, lake_root, settings)
            watch.lap("archive")
            clean_batch_task(quote(prep), inbox_fs, claims)
            watch.lap("clean")
            record(BatchReport.of(prep, out, watch.seconds))
    else:
        with BatchPool(settings.workers) as pool:
            running: deque = deque()
            for batch in batches():
                if batch is None:
                    while running:
                        record(running.popleft().result())
                    continue
                info, members, listings, resumed = batch
                # One batch more than there are workers: it waits in the pool's queue, claimed and
                # ready, so a worker that finishes starts the next batch at once instead of idling
                # while this process claims one (or scans the next part of the inbox: that happens
                # above, while the workers are busy). Its data is read only when a worker takes it.
                while len(running) > settings.workers:
                    record(running.popleft().result())
                own = {t: listings[t] for t in members if t in listings}
                running.append(
                    ingest_batch_task.submit(pool, info, members, quote(own), inbox, lake, settings, claims, resumed=resumed)
                )

    publish_run_artifacts("ingest", summary.rows(), summary.markdown(), f"ingest of {inbox} into {lake}")
    logger.info(
        "ingested %d traces (%d events), quarantined %d, pending %d",
        len(summary.ingested),
        summary.events,
        len(summary.quarantined),
        len(summary.pending),
    )
    return summary
