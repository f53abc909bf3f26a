"""Lake upkeep and erasure: retention, unreferenced artifacts, compaction, checkpoints, vacuum,
and forgetting a participant so that nothing of their content stays on disk.

Erasure works because the lake keeps content only in three places, all handled here: rows of the
Delta tables (deleted, then the old data files vacuumed with no retention and the log expired up to
a fresh checkpoint, so no earlier version can be read back), the raw archive and quarantine copies
(deleted), and artifacts (deleted when nothing else references them). The Delta log itself never
holds text content: statistics are kept only for keys, dates and numbers (schemas/tables.py).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import polars as pl
from fsspec import AbstractFileSystem

from client.storage import join, list_files, mtime_of, read_many
from lake.maintenance import erase_history, optimize_tables
from lake.read import Lake
from lake.tables import LakeTables
from schemas.tables import EVENTS, METRICS, QA_RUNS, QUARANTINE, SCORES, TRACES
from tasks.stage import stage_task

__all__ = [
    "ForgetResult",
    "MaintainResult",
    "delete_traces",
    "forget",
    "referenced_artifacts",
    "remove_artifacts",
    "retention",
]

_DERIVED = (SCORES, QA_RUNS, METRICS, EVENTS, TRACES)  # traces last: until then a trace still looks present


@dataclass
class MaintainResult:
    expired_traces: list[str] = field(default_factory=list)
    expired_quarantine: int = 0
    artifacts_removed: int = 0
    tables: dict[str, dict] = field(default_factory=dict)
    """Per table: files compacted, files vacuumed, version."""


@dataclass
class ForgetResult:
    participant: str
    traces: list[str] = field(default_factory=list)
    quarantined: int = 0
    rows_deleted: dict[str, int] = field(default_factory=dict)
    objects_deleted: int = 0
    artifacts_removed: int = 0
    files_vacuumed: int = 0
    snapshots: set[str] = field(default_factory=set)
    """sha256 of the snapshots of their traces (QA hosts drop their cached copies)."""
    qa_cache: str = ""
    """What was removed from this host's QA cache."""

    @property
    def matched(self) -> bool:
        return bool(self.traces or self.quarantined)


def _rm_tree(fs: AbstractFileSystem, path: str) -> int:
    fs.invalidate_cache(path)
    try:
        found = fs.find(path)
    except FileNotFoundError:
        return 0
    if found:
        fs.rm(found)
    with contextlib.suppress(OSError):  # object stores have no folders left to remove
        fs.rm(path, recursive=True)
    return len(found)


def delete_traces(
    trace_ids: list[str], tables: LakeTables, lake_fs: AbstractFileSystem, lake_root: str, *, metadata: dict
) -> tuple[dict[str, int], int]:
    """Every row of the traces in every table, and their raw archives. Returns rows per table and objects removed."""
    rows = {spec.name: tables.delete_rows(spec, "trace_id", trace_ids, metadata=metadata) for spec in _DERIVED}
    objects = sum(_rm_tree(lake_fs, join(lake_root, "raw", t)) for t in trace_ids)
    return rows, objects


def referenced_artifacts(lake: Lake) -> set[str]:
    """Hex names of every artifact a row still points to."""
    refs: set[str] = set()
    frames = [
        lake.traces().select(pl.col("snapshot_ref").alias("ref")),
        lake.events().select(pl.col("stdout_ref").alias("ref")),
        lake.events().select(pl.col("stderr_ref").alias("ref")),
        *[
            lake.qa_runs().select(pl.col(c).alias("ref"))
            for c in ("junit_before_ref", "junit_after_ref", "log_before_ref", "log_after_ref")
        ],
    ]
    for f in frames:
        refs.update(r.removeprefix("sha256:") for r in f.drop_nulls().unique().collect()["ref"].to_list())
    return refs


def remove_artifacts(
    lake: Lake, lake_fs: AbstractFileSystem, lake_root: str, *, min_age_s: float, only: set[str] | None = None
) -> int:
    """Delete artifacts that no row references and that are older than `min_age_s` (a writer may be
    about to reference a newer one). `only` limits the candidates (erasure)."""
    keep = referenced_artifacts(lake)
    folder = join(lake_root, "artifacts")
    lake_fs.invalidate_cache(folder)
    now = datetime.now(UTC).timestamp()
    doomed = []
    for path, info in list_files(lake_fs, folder).items():
        name = path.rsplit("/", 1)[-1]
        if name in keep or (only is not None and name not in only):
            continue
        if now - mtime_of(info) >= min_age_s:
            doomed.append(path)
    if doomed:
        lake_fs.rm(doomed)
    return len(doomed)


def retention(
    lake: Lake, lake_fs: AbstractFileSystem, lake_root: str, *, retention_days: int, today: date | None = None, run_id: str
) -> MaintainResult:
    """Remove traces (and quarantine records) ingested more than `retention_days` ago, everywhere."""
    today = today or datetime.now(UTC).date()
    cutoff = today - timedelta(days=retention_days)
    meta = {"pipeline_run_id": run_id, "prt_operation": "retention"}
    result = MaintainResult()
    result.expired_traces = sorted(
        lake.traces().filter(pl.col("ingest_date") < cutoff).select("trace_id").collect()["trace_id"].to_list()
    )
    if result.expired_traces:
        delete_traces(result.expired_traces, lake.tables, lake_fs, lake_root, metadata=meta)
    old_q = lake.quarantine().filter(pl.col("ingest_date") < cutoff).select("quarantine_id", "raw_prefix").collect()
    if old_q.height:
        lake.tables.delete_rows(QUARANTINE, "quarantine_id", old_q["quarantine_id"].to_list(), metadata=meta)
        for prefix in old_q["raw_prefix"].drop_nulls().to_list():
            _rm_tree(lake_fs, join(lake_root, prefix))
        result.expired_quarantine = old_q.height
    return result


def _quarantined_by(lake: Lake, lake_fs: AbstractFileSystem, lake_root: str, who: str) -> pl.DataFrame:
    """Quarantine records of participant `who`: by their row, or, where the row could not name them
    (a manifest that failed its schema), by the pseudonym in the record's copy of the manifest."""
    q = lake.quarantine().select("trace_id", "quarantine_id", "raw_prefix", "participant").collect()
    unnamed = q.filter(pl.col("participant").is_null() & pl.col("raw_prefix").is_not_null())
    found = set()
    if unnamed.height:
        paths = {join(lake_root, p, "objects", "manifest.json"): p for p in unnamed["raw_prefix"].to_list()}
        for path, body in read_many(lake_fs, list(paths)).items():
            if isinstance(body, bytes) and _manifest_participant(body) == who:
                found.add(paths[path])
    return q.filter((pl.col("participant") == who) | pl.col("raw_prefix").is_in(sorted(found))).drop("participant")


def _manifest_participant(body: bytes) -> str | None:
    with contextlib.suppress(ValueError, UnicodeDecodeError, RecursionError):
        session = json.loads(body).get("session")
        if isinstance(session, dict) and isinstance(session.get("participant_id"), str):
            return session["participant_id"]
    return None


def forget(who: str, lake: Lake, lake_fs: AbstractFileSystem, lake_root: str, *, run_id: str) -> ForgetResult:
    """Erase participant `who` (their pseudonym: the id itself never reaches the pipeline): rows,
    raw archive, quarantine copies, artifacts only they used, history. `result.snapshots` names the
    snapshots erased, for the QA hosts' caches."""
    result = ForgetResult(participant=who)
    meta = {"pipeline_run_id": run_id, "prt_operation": "forget"}
    result.traces = sorted(lake.traces().filter(pl.col("participant") == who).select("trace_id").collect()["trace_id"].to_list())
    q = _quarantined_by(lake, lake_fs, lake_root, who)
    theirs = set()
    if result.traces:
        ids = result.traces
        result.snapshots = {
            r.removeprefix("sha256:")
            for r in lake.traces()
            .filter(pl.col("trace_id").is_in(ids))
            .select("snapshot_ref")
            .collect()["snapshot_ref"]
            .drop_nulls()
        }
        theirs |= result.snapshots
        for col in ("stdout_ref", "stderr_ref"):
            theirs |= {
                r.removeprefix("sha256:")
                for r in lake.events().filter(pl.col("trace_id").is_in(ids)).select(col).collect()[col].drop_nulls()
            }
        for col in ("junit_before_ref", "junit_after_ref", "log_before_ref", "log_after_ref"):
            theirs |= {
                r.removeprefix("sha256:")
                for r in lake.qa_runs().filter(pl.col("trace_id").is_in(ids)).select(col).collect()[col].drop_nulls()
            }
        result.rows_deleted, result.objects_deleted = delete_traces(ids, lake.tables, lake_fs, lake_root, metadata=meta)
    if q.height:
        result.rows_deleted["quarantine"] = lake.tables.delete_rows(
            QUARANTINE, "quarantine_id", q["quarantine_id"].to_list(), metadata=meta
        )
        for prefix in q["raw_prefix"].drop_nulls().to_list():
            result.objects_deleted += _rm_tree(lake_fs, join(lake_root, prefix))
        result.quarantined = q.height
    if theirs:
        result.artifacts_removed = remove_artifacts(lake, lake_fs, lake_root, min_age_s=0, only=theirs)
    result.files_vacuumed = erase_history(lake.tables, run_id=run_id)
    return result


retention_task = stage_task("retention", retry_after=[5, 30])(retention)
remove_artifacts_task = stage_task("remove-unreferenced-artifacts")(remove_artifacts)
optimize_task = stage_task("optimize-tables", retry_after=[5, 30])(optimize_tables)
forget_task = stage_task("forget-participant", retry_after=[5, 30])(forget)
