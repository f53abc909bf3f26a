"""maintain_lake (nightly) and forget_participant (on demand)."""

from __future__ import annotations

from client.storage import fs_for
from lake.read import Lake
from schemas.errors import ConfigError
from schemas.settings import get_sandbox_settings, get_settings
from tasks.ingest.privacy import PSEUDONYM
from tasks.publish import publish_run_artifacts
from tasks.qa.cache import prune_qa_cache, qa_workdir
from tasks.stage import run_id as current_run_id
from tasks.stage import run_logger
from tasks.upkeep.maintain import ForgetResult, MaintainResult, forget_task, optimize_task, remove_artifacts_task, retention_task

__all__ = ["forget_participant", "maintain_lake"]


def maintain_lake(
    lake: str | None = None, retention_days: int | None = None, vacuum_retention_hours: int | None = None
) -> MaintainResult:
    """Retention (traces older than retention_days leave every table, the raw archive and the
    quarantine), unreferenced artifacts, compaction (events z-ordered by trace), checkpoints, vacuum."""
    logger = run_logger("maintain")
    settings = get_settings()
    lake = lake or settings.lake
    run_id = current_run_id()
    lk = Lake(lake, create=True)
    lake_fs, lake_root = fs_for(lake)
    days = retention_days or settings.retention_days
    result = retention_task(lk, lake_fs, lake_root, retention_days=days, run_id=run_id)
    result.artifacts_removed = remove_artifacts_task(lk, lake_fs, lake_root, min_age_s=settings.artifact_grace_s)
    hours = settings.vacuum_retention_hours if vacuum_retention_hours is None else vacuum_retention_hours
    result.tables = optimize_task(lk.tables, vacuum_hours=hours, run_id=run_id)
    rows = [{"trace_id": t, "action": f"removed (ingested over {days} days ago)"} for t in result.expired_traces]
    md = "\n".join(
        [
            "# Lake maintenance",
            "",
            f"- retention {days} days: **{len(result.expired_traces)}** traces and {result.expired_quarantine} quarantine records removed",
            f"- unreferenced artifacts removed: {result.artifacts_removed}",
            "",
            "| table | files compacted | files vacuumed | version |",
            "| --- | --- | --- | --- |",
            *[
                f"| {n} | {t['files_removed']} -> {t['files_added']} | {t['vacuumed']} | {t['version']} |"
                for n, t in result.tables.items()
            ],
        ]
    )
    publish_run_artifacts("maintain", rows, md + "\n", f"maintenance of {lake}")
    logger.info("maintenance: %d traces expired, %d artifacts removed", len(result.expired_traces), result.artifacts_removed)
    return result


def forget_participant(participant: str, lake: str | None = None) -> ForgetResult:
    """Erase a participant who withdrew consent: every row and raw object of theirs, the artifacts
    only they used, the old Delta files and log entries, and this host's QA cache of their repos,
    so the content is no longer on disk.

    `participant` is their pseudonym (`prt pseudonym ID` prints it): the id itself is never a
    parameter, since Prefect keeps every run's parameters."""
    logger = run_logger("forget")
    if not PSEUDONYM.fullmatch(participant):
        raise ConfigError(
            f"forget-participant: {participant!r} is not a pseudonym (p_ and 32 hex digits); "
            "`prt pseudonym ID` prints the one for a participant id (`prt forget --participant ID` passes it for you)"
        )
    lake = lake or get_settings().lake
    run_id = current_run_id()
    lake_fs, lake_root = fs_for(lake)
    result = forget_task(participant, Lake(lake, create=True), lake_fs, lake_root, run_id=run_id)
    result.qa_cache = str(prune_qa_cache(qa_workdir(get_sandbox_settings()), erased=result.snapshots))
    if not result.matched:
        logger.warning(
            "forget: nothing matched participant %s (no trace, no quarantine record); "
            "was the id spelled as the client sent it, and is PRT_PSEUDONYM_KEY the key ingest used?",
            participant,
        )
    md = (
        f"# Erasure of participant `{result.participant}`\n\n"
        + ("**Nothing matched this pseudonym.**\n\n" if not result.matched else "")
        + f"- traces removed: **{len(result.traces)}**, quarantine records: {result.quarantined}\n"
        f"- rows deleted: {sum(result.rows_deleted.values())} ({', '.join(f'{k} {v}' for k, v in sorted(result.rows_deleted.items()))})\n"
        f"- lake objects deleted: {result.objects_deleted}, artifacts: {result.artifacts_removed}, old data files vacuumed: {result.files_vacuumed}\n"
        f"- removed from this host's QA cache: {result.qa_cache}\n"
    )
    publish_run_artifacts(
        "forget", [{"trace_id": t, "action": "erased"} for t in result.traces], md, "erasure of a participant (pseudonym only)"
    )
    return result
