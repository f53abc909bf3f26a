"""ingest_inbox: complete traces in the inbox become validated rows of the lake's Delta tables."""

from __future__ import annotations

from client.storage import fs_for
from schemas.settings import DEV_PSEUDONYM_KEY, get_ingest_settings, get_settings
from tasks.ingest import IngestSummary, Schedule, run_batch
from tasks.ingest.claims import Claims
from tasks.ingest.pool import run_in_pool
from tasks.publish import publish_run_artifacts
from tasks.stage import run_id as current_run_id
from tasks.stage import run_logger

__all__ = ["ingest_inbox"]


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
    batches run in that many processes at once (tasks/ingest/pool.py).
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
    run_id = current_run_id()
    logger = run_logger("ingest")
    if settings.pseudonym_key.get_secret_value() == DEV_PSEUDONYM_KEY:
        logger.warning("PRT_PSEUDONYM_KEY is not set: participant pseudonyms use the public development key")

    inbox_fs, inbox_root = fs_for(inbox)
    lake_fs, lake_root = fs_for(lake)
    claims = Claims(lake_fs, lake_root, lease_s=settings.lease_s)
    schedule = Schedule(inbox_fs, inbox_root, claims, settings, run_id=run_id, logger=logger)
    if settings.workers == 1:  # each stage of each batch its own task run, in this process
        for batch in schedule:
            if batch is not None:
                schedule.record(run_batch(batch, inbox, lake, settings, claims, as_tasks=True))
    else:
        run_in_pool(schedule, settings.workers, inbox, lake, settings, claims)

    summary = schedule.summary
    publish_run_artifacts("ingest", summary.rows(), summary.markdown(), f"ingest of {inbox} into {lake}")
    logger.info(
        "ingested %d traces (%d events), quarantined %d, pending %d",
        len(summary.ingested),
        summary.events,
        len(summary.quarantined),
        len(summary.pending),
    )
    return summary
