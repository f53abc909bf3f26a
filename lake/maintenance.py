"""Delta housekeeping of the lake's tables: compaction, checkpoints, vacuum, and the expiry of
history that erasure needs. tasks/upkeep/ decides when; this module is how."""

from __future__ import annotations

from deltalake import CommitProperties

from lake.tables import WRITER_PROPERTIES, LakeTables
from schemas.tables import TABLES

__all__ = ["ORPHAN_MIN_HOURS", "erase_history", "optimize_tables"]

ORPHAN_MIN_HOURS = 24
"""Files in a table's folder that its log does not reference are deleted only once this old,
whatever the vacuum setting: one of them may be a concurrent writer's, about to be committed."""


def optimize_tables(tables: LakeTables, *, vacuum_hours: int, run_id: str) -> dict[str, dict]:
    """Compact small files (events ordered by trace, for one-trace reads), checkpoint, vacuum."""
    out = {}
    for name in TABLES:
        dt = tables.open(name)
        if dt is None:
            continue
        props = CommitProperties(custom_metadata={"pipeline_run_id": run_id, "prt_operation": "maintain"})
        if name == "events":  # by trace alone: interleaving seq's bits would scatter a trace's rows
            stats = dt.optimize.z_order(["trace_id"], writer_properties=WRITER_PROPERTIES, commit_properties=props)
        else:
            stats = dt.optimize.compact(writer_properties=WRITER_PROPERTIES, commit_properties=props)
        dt = tables.open(name)
        dt.create_checkpoint()
        # Files the log removed go after `vacuum_hours` (0 allowed). Files the log does not know
        # (what a failed writer left, or what a writer is committing right now) go only by age, and
        # never before ORPHAN_MIN_HOURS: at 0 a full vacuum deleted an ingest's freshly written file.
        vacuumed = dt.vacuum(
            retention_hours=vacuum_hours, dry_run=False, enforce_retention_duration=False, full=False, commit_properties=props
        )
        vacuumed += dt.vacuum(
            retention_hours=max(vacuum_hours, ORPHAN_MIN_HOURS),
            dry_run=False,
            enforce_retention_duration=False,
            full=True,
            commit_properties=props,
        )
        dt.cleanup_metadata()
        out[name] = {
            "files_removed": stats.get("numFilesRemoved", 0),
            "files_added": stats.get("numFilesAdded", 0),
            "vacuumed": len(vacuumed),
            "version": tables.open(name).version(),
        }
    return out


def erase_history(tables: LakeTables, *, run_id: str) -> int:
    """Make deleted rows unrecoverable: vacuum the files they lived in (tombstones only, so files of
    writers still in flight are safe) and expire every log entry before a fresh checkpoint."""
    props = CommitProperties(custom_metadata={"pipeline_run_id": run_id, "prt_operation": "erase"})
    removed = 0
    for name in TABLES:
        dt = tables.open(name)
        if dt is None:
            continue
        removed += len(
            dt.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False, full=False, commit_properties=props)
        )
        keep = dt.metadata().configuration.get("delta.logRetentionDuration", "interval 30 days")
        dt.alter.set_table_properties({"delta.logRetentionDuration": "interval 0 seconds"})
        dt = tables.open(name)
        dt.create_checkpoint()
        dt.cleanup_metadata()
        dt.alter.set_table_properties({"delta.logRetentionDuration": keep})
    return removed
