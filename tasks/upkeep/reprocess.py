"""Re-validate traces from the lake's own copies when the rules change.

Two directions, both from bytes the lake already holds (the inbox is long gone):

- **Newly quarantine**: an ingested trace is re-assembled from its raw archive (`raw/<trace_id>/archive.tar`,
  redacted, with the digest map that keeps its chain checkable) and re-checked with the current
  rules and Great Expectations suites. If it now fails, it gets a quarantine row, its archive is
  copied under quarantine/, and its rows leave every table.
- **Re-admit**: a quarantined trace is re-assembled from its quarantine copy; if it now passes, it
  goes through the normal ingest path (rows, archive), its quarantine row is marked
  `readmitted_by`, and the quarantine copy is removed.

A trace that passes (or keeps failing) is left as it is, so reprocessing twice changes nothing.
Both directions claim their traces like ingest does, so they never race an ingest of the same id.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import date

import polars as pl
from fsspec import AbstractFileSystem

from client.storage import join, list_files, read_many, rm_quiet
from lake.frames import empty_frame, to_arrow
from lake.read import Lake, in_date_range
from lake.tables import LakeTables, sql_string
from schemas.errors import TraceRejected
from schemas.layout import ARTIFACTS_DIR, COMPLETE
from schemas.settings import IngestSettings
from schemas.tables import EVENTS, METRICS, QA_RUNS, QUARANTINE, SCORES, TRACES
from tasks.ingest.archive import ARCHIVED, MOVED, archive_marker, archive_traces, move_to_quarantine, read_tar
from tasks.ingest.assemble import assemble_trace
from tasks.ingest.batch import PreparedBatch, Rejection, build_batch, commit_batch, prepare_batch
from tasks.ingest.claims import Claims
from tasks.ingest.inbox import (
    InboxObject,
    TraceBlobs,
    TraceListing,
    classify,
    delete_trace_objects,
    parse_complete,
    prune_empty_dirs,
)
from tasks.stage import stage_task

__all__ = ["ReprocessResult", "quarantined_rows", "readmit", "recheck_ingested", "selected_trace_ids"]

_REF = re.compile(rb"sha256:([0-9a-f]{64})")


@dataclass
class ReprocessResult:
    requarantined: list[tuple[str, str, str]] = field(default_factory=list)
    """(trace_id, reason, message) of ingested traces that fail the current rules."""
    readmitted: list[str] = field(default_factory=list)
    still_valid: int = 0
    still_quarantined: int = 0
    skipped: list[str] = field(default_factory=list)
    """Claimed by a concurrent run, or their copy is gone."""


def selected_trace_ids(lake: Lake, since: date | None, until: date | None, trace_ids: list[str] | None) -> list[str]:
    """Ingested traces in the date range (by ingest date) or among `trace_ids`; no filter = all."""
    q = lake.traces().filter(in_date_range("ingest_date", since, until))
    if trace_ids:
        q = q.filter(pl.col("trace_id").is_in(trace_ids))
    return sorted(q.select("trace_id").collect()["trace_id"].to_list())


def quarantined_rows(lake: Lake, since: date | None, until: date | None, trace_ids: list[str] | None) -> list[dict]:
    """The latest still-open quarantine row of each trace whose raw objects were kept."""
    q = lake.quarantine().filter(
        pl.col("raw_prefix").is_not_null() & pl.col("readmitted_by").is_null() & in_date_range("ingest_date", since, until)
    )
    if trace_ids:
        q = q.filter(pl.col("trace_id").is_in(trace_ids))
    latest = q.sort("detected_at").group_by("trace_id").agg(pl.all().last())
    return latest.sort("trace_id").collect().to_dicts()


def _objects_under(fs: AbstractFileSystem, prefix: str) -> dict[str, InboxObject]:
    fs.invalidate_cache(prefix)
    out = {}
    for path, info in list_files(fs, prefix).items():
        key = path[len(prefix) :].lstrip("/")
        out[key] = InboxObject(key, path, int(info.get("size") or 0), 0.0)
    return out


def archived_trace(fs: AbstractFileSystem, lake_root: str, trace_id: str, settings: IngestSettings) -> TraceBlobs | None:
    """An ingested trace as its raw archive holds it (one tar), with the artifacts its lines reference."""
    path = archive_marker(lake_root, trace_id)
    try:
        files = read_tar(fs.cat_file(path))
    except FileNotFoundError:
        return None
    marker = files.pop(ARCHIVED, None)
    if marker is None or COMPLETE not in files:
        return None
    refs = set()
    for key, data in files.items():
        if key != COMPLETE:
            body = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
            refs.update(m.decode() for m in _REF.findall(body))
    wanted = {join(lake_root, "artifacts", ref): f"{ARTIFACTS_DIR}/{ref}" for ref in sorted(refs)}
    found = read_many(fs, list(wanted))
    files.update({wanted[p]: body for p, body in found.items() if isinstance(body, bytes)})
    objects = {k: InboxObject(k, f"{path}#{k}", len(v), 0.0) for k, v in files.items()}
    listing = TraceListing(
        trace_id, join(lake_root, "raw", trace_id), objects,
        digest_map=json.loads(marker).get("digest_map", {}), pseudonymized=True,
    )  # fmt: skip
    listing.complete = parse_complete(trace_id, files[COMPLETE])
    classify(listing, 0.0, settings)
    return TraceBlobs(listing, files)


def quarantined_listing(fs: AbstractFileSystem, lake_root: str, row: dict, settings: IngestSettings) -> TraceListing | None:
    """A quarantined trace as its (redacted) quarantine copy holds it, or None when nothing was kept."""
    base = join(lake_root, row["raw_prefix"])
    objects = _objects_under(fs, join(base, "objects"))
    if not objects:
        return None
    try:
        meta = json.loads(fs.cat_file(join(base, MOVED)))
    except FileNotFoundError:
        meta = {}
    original = {stored: orig for orig, stored in meta.get("artifact_map", {}).items()}
    renamed = {}
    for key, obj in objects.items():
        if key.startswith(ARTIFACTS_DIR + "/"):
            name = key.split("/", 1)[1]
            key = f"{ARTIFACTS_DIR}/{original.get(name, name)}"
        renamed[key] = InboxObject(key, obj.path, obj.size, obj.mtime, obj.is_link)
    listing = TraceListing(
        row["trace_id"],
        join(base, "objects"),
        renamed,
        digest_map=meta.get("digest_map", {}),
        pseudonymized=bool(meta.get("pseudonymized")),
        artifact_map=meta.get("artifact_map", {}),
    )
    if COMPLETE in renamed:
        try:
            listing.complete = parse_complete(listing.trace_id, fs.cat_file(renamed[COMPLETE].path))
        except TraceRejected as exc:
            listing.problem = exc
    classify(listing, 0.0, settings.model_copy(update={"grace_period_s": float("inf")}))
    return listing


def _requarantine_id(trace_id: str, chain_head: str, reason: str) -> str:
    return hashlib.sha256(f"requarantine\0{trace_id}\0{chain_head}\0{reason}".encode()).hexdigest()[:16]


def recheck_ingested(
    trace_ids: list[str],
    claims: Claims,
    tables: LakeTables,
    lake_fs: AbstractFileSystem,
    lake_root: str,
    settings: IngestSettings,
    *,
    run_id: str,
) -> ReprocessResult:
    """Re-validate ingested traces from their raw archive; quarantine those that now fail."""
    result = ReprocessResult()
    if not trace_ids:
        return result
    info, won = claims.open_batch(run_id, trace_ids)
    result.skipped += [t for t in trace_ids if t not in won]
    try:
        archived = {}
        for tid in won:
            tb = archived_trace(lake_fs, lake_root, tid, settings)
            if tb is None:
                result.skipped.append(tid)
            else:
                archived[tid] = tb
        prep = PreparedBatch(info, resumed=True, claimed=list(won), listings={t: tb.listing for t, tb in archived.items()})
        for tb in archived.values():
            try:
                prep.accepted.append(assemble_trace(tb, settings))
            except TraceRejected as exc:
                prep.rejected.append(Rejection(tb.trace_id, exc.reason, str(exc), exc.object_key, listing=tb.listing))
        build_batch(prep, settings)  # the Great Expectations suites move failing traces to prep.rejected
        result.still_valid = len(prep.accepted)
        if prep.rejected:
            _quarantine_ingested(prep, archived, tables, lake_fs, lake_root, settings, run_id=run_id)
        result.requarantined = [(r.trace_id, r.reason, r.message) for r in prep.rejected]
    finally:
        claims.close_batch(info, list(won))
    return result


def _quarantine_ingested(
    prep: PreparedBatch,
    archived: dict[str, TraceBlobs],
    tables: LakeTables,
    lake_fs: AbstractFileSystem,
    lake_root: str,
    settings: IngestSettings,
    *,
    run_id: str,
) -> None:
    found = tables.lookup("traces", "trace_id", [r.trace_id for r in prep.rejected], ["trace_id", "chain_head", "participant"])
    heads = {r["trace_id"]: r for r in found.to_pylist()}
    stamp = prep.stamp
    rows = []
    for r in prep.rejected:
        known = heads.get(r.trace_id, {})
        qid = _requarantine_id(r.trace_id, known.get("chain_head", ""), r.reason)
        folder = f"{r.trace_id}/{qid}"
        # The archive is already redacted and pseudonymised: copying it redacts nothing more.
        note = {"batch_id": stamp.batch_id, "reason": r.reason, "trace_id": r.trace_id, "from": "raw archive"}
        move_to_quarantine(
            archived[r.trace_id].blobs,
            lake_fs,
            lake_root,
            folder,
            note=note,
            pseudonym_key=None,
            max_chunk_bytes=settings.max_chunk_bytes,
            prior_digest_map=r.listing.digest_map,
        )
        rows.append(
            {
                "trace_id": r.trace_id,
                "quarantine_id": qid,
                "reason": r.reason,
                "message": r.message,
                "object_key": r.object_key,
                "expectation": r.expectation,
                "participant": known.get("participant"),
                "raw_prefix": f"quarantine/{folder}",
                "detected_at": stamp.started_at,
                **stamp.columns(),
            }
        )
    df = pl.concat([empty_frame(QUARANTINE), pl.DataFrame(rows, schema=empty_frame(QUARANTINE).schema)], how="vertical")
    meta = {"pipeline_run_id": run_id, "batch_id": stamp.batch_id, "prt_operation": "reprocess"}
    tables.merge_rows(QUARANTINE, to_arrow(df, QUARANTINE), metadata=meta)
    ids = [r.trace_id for r in prep.rejected]
    for spec in (SCORES, QA_RUNS, METRICS, EVENTS, TRACES):  # traces last: until then the trace still looks ingested
        tables.delete_rows(spec, "trace_id", ids, metadata=meta)
    for r in prep.rejected:  # artifacts stay: they are content-addressed and may be shared
        rm_quiet(lake_fs, archive_marker(lake_root, r.trace_id))
        prune_empty_dirs(lake_fs, join(lake_root, "raw", r.trace_id))


def readmit(
    rows: list[dict],
    claims: Claims,
    tables: LakeTables,
    lake_fs: AbstractFileSystem,
    lake_root: str,
    settings: IngestSettings,
    *,
    run_id: str,
) -> ReprocessResult:
    """Re-validate quarantined traces from their quarantine copy; ingest those that now pass."""
    result = ReprocessResult()
    if not rows:
        return result
    by_id = {r["trace_id"]: r for r in rows}
    info, won = claims.open_batch(run_id, list(by_id))
    result.skipped += [t for t in by_id if t not in won]
    try:
        listings = {}
        for tid in won:
            listing = quarantined_listing(lake_fs, lake_root, by_id[tid], settings)
            if listing is None:
                result.skipped.append(tid)
            elif listing.status != "ready":
                result.still_quarantined += 1
            else:
                listings[tid] = listing
        prep = prepare_batch(info, list(listings), listings, lake_fs, lake_fs, lake_root, tables, settings, resumed=False)
        out = build_batch(prep, settings)
        result.still_quarantined += len(prep.rejected)
        if prep.accepted:
            out.quarantine = empty_frame(QUARANTINE)  # still-failing traces keep their old row; no new one
            commit_batch(prep, out, tables, claims)
            archive_traces(lake_fs, lake_root, list(out.plans.values()), info.batch_id)
        # Accepted now, or by an earlier run that stopped before it could tidy up (already in traces).
        done = [t.trace_id for t in prep.accepted] + [t.trace_id for t in prep.finished]
        if done:
            qids = [by_id[t]["quarantine_id"] for t in done]
            tables.update_rows(
                QUARANTINE,
                f"trace_id IN ({', '.join(map(sql_string, done))}) AND quarantine_id IN ({', '.join(map(sql_string, qids))})",
                {"readmitted_by": sql_string(info.batch_id)},
                metadata={"pipeline_run_id": run_id, "prt_operation": "reprocess"},
            )
            for tid in done:
                delete_trace_objects(lake_fs, listings[tid])
                rm_quiet(lake_fs, join(lake_root, by_id[tid]["raw_prefix"], MOVED))
            result.readmitted = done
    finally:
        claims.close_batch(info, list(won))
    return result


recheck_task = stage_task("recheck-ingested", retry_after=[5, 30])(recheck_ingested)
readmit_task = stage_task("readmit-quarantined", retry_after=[5, 30])(readmit)
