"""Ingest one batch of traces: every stage, in order (`run_batch`, the one stage sequence of ingest).

    prepare  claim, load and assemble (bad traces become rejections, never exceptions)
    build    rows for traces, events and metrics; redaction; the Great Expectations suites
    commit   one Delta append per table (quarantine, events, metrics, traces last), each at most
             once per batch through its app transaction
    archive  raw objects into <lake>/raw/ and rejected ones into <lake>/quarantine/, verified
    clean    inbox objects deleted (complete.json last), then the claims, then the batch folder

A crash anywhere leaves the batch folder under <lake>/_ingest/; the next run takes it over and
repeats the same batch (same id, start time and traces), which writes only what is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field

import polars as pl
from fsspec import AbstractFileSystem

from client.storage import fs_for, io_threads, map_io
from lake.frames import empty_frame, polars_schema, to_arrow
from lake.tables import LakeTables
from schemas.errors import TraceRejected
from schemas.layout import MANIFEST
from schemas.settings import IngestSettings
from schemas.tables import EVENTS, METRICS, QUARANTINE, TRACES
from tasks.ingest.archive import (
    ArchivePlan,
    archive_marker,
    archive_traces,
    move_to_quarantine,
    quarantine_marker,
    read_objects,
    redact_output,
)
from tasks.ingest.assemble import AssembledTrace, assemble_trace, parse_manifest
from tasks.ingest.claims import BatchInfo, Claims, safe_key
from tasks.ingest.fastpath import assemble_fast
from tasks.ingest.frames import BatchStamp, events_frame, traces_frame
from tasks.ingest.inbox import TraceBlobs, TraceListing, bytes_read, delete_trace_objects, load_traces
from tasks.ingest.metrics import metrics_frame
from tasks.ingest.privacy import pseudonym
from tasks.ingest.redact import (
    PREFILTER,
    redact_columns,
    redact_json_value,
    redact_text,
    redaction_records,
    secret_rule,
    secrets_in_names,
)
from tasks.ingest.validate import check_expectations, expectation_frames
from tasks.stage import stage_task

__all__ = [
    "Batch",
    "BatchOutput",
    "BatchReport",
    "IngestSummary",
    "PreparedBatch",
    "Rejection",
    "Stopwatch",
    "archive_batch",
    "build_batch",
    "clean_batch",
    "commit_batch",
    "prepare_batch",
    "run_batch",
]

TEXT_COLUMNS = ("command", "stdout", "stderr", "diff_unified", "message", "text")
TRACE_TEXT_COLUMNS = ("task_title", "task_description", "repo_origin", "test_command")
TRACE_LIST_COLUMNS = ("env_install",)


def stored_trace_id(trace_id: str) -> str:
    """The id a rejected trace is stored under: its own, or `redacted-<hash>` when it looks like a secret."""
    if secret_rule(trace_id) is None:
        return trace_id
    return "redacted-" + hashlib.sha256(trace_id.encode("utf-8", "surrogateescape")).hexdigest()[:16]


@dataclass
class Rejection:
    trace_id: str
    reason: str
    message: str
    object_key: str | None = None
    expectation: str | None = None
    participant: str | None = None
    listing: TraceListing | None = None

    def __post_init__(self) -> None:
        # What a rejection stores and reports (the quarantine row, its folder, the run's summary in
        # Prefect) never holds a secret: message and object key redacted, a trace id that looks
        # like a secret replaced by a stand-in (the inbox objects are found through the listing).
        self.message = redact_text(self.message)[0]
        self.object_key = self.object_key and redact_text(self.object_key)[0]
        self.trace_id = stored_trace_id(self.trace_id)

    @property
    def keep_raw(self) -> bool:
        return self.reason != "consent_withdrawn"

    def quarantine_id(self, batch_id: str) -> str:
        return hashlib.sha256(f"{batch_id}\0{self.trace_id}".encode("utf-8", "surrogateescape")).hexdigest()[:16]

    def folder(self, batch_id: str) -> str:
        return f"{safe_key(self.trace_id)}/{self.quarantine_id(batch_id)}"


@dataclass
class PreparedBatch:
    info: BatchInfo
    resumed: bool
    accepted: list[AssembledTrace] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    finished: list[TraceListing] = field(default_factory=list)
    """Traces whose archive is already done (a resumed batch, or an identical re-upload): only the inbox is cleaned."""
    vanished: list[str] = field(default_factory=list)
    """Claimed traces whose objects were gone (another run finished them first)."""
    deferred: list[tuple[str, int]] = field(default_factory=list)
    """(trace_id, bytes_read) of traces handed back untouched: read, they would have taken the
    batch over `batch_max_bytes` (gzip chunks that decompress more than planned)."""
    listings: dict[str, TraceListing] = field(default_factory=dict)
    claimed: list[str] = field(default_factory=list)
    """Every trace whose claim names this batch; released at the end."""
    fast_events: pl.DataFrame | None = None
    """Event rows of the traces the fast path accepted (the others' rows come from their models)."""

    @property
    def stamp(self) -> BatchStamp:
        return BatchStamp(self.info.batch_id, self.info.run_id, self.info.started_at)


@dataclass(frozen=True)
class Batch:
    """One batch as the schedule hands it out: its journal entry, its traces, their listings."""

    info: BatchInfo
    members: list[str]
    listings: dict[str, TraceListing]
    resumed: bool
    """A batch a crashed run left behind: it writes only what that run did not."""


@dataclass
class BatchOutput:
    traces: pl.DataFrame
    events: pl.DataFrame
    metrics: pl.DataFrame
    quarantine: pl.DataFrame
    plans: dict[str, ArchivePlan]


def _participant(blobs: dict[str, bytes], trace_id: str, key: str) -> str | None:
    """The pseudonym for a trace's row; from a manifest that failed its schema too, when it still
    names a participant (so `forget` finds its quarantine record)."""
    try:
        m = parse_manifest(trace_id, blobs["manifest.json"])
    except KeyError:
        return None
    except TraceRejected:
        with contextlib.suppress(ValueError, UnicodeDecodeError, RecursionError, AttributeError):
            session = json.loads(blobs["manifest.json"]).get("session")
            who = session.get("participant_id")
            if isinstance(who, str) and who and session.get("consent") is not False:
                return pseudonym(who, key)
        return None
    return None if not m.session.consent else pseudonym(m.session.participant_id, key)


def prepare_batch(
    info: BatchInfo,
    members: list[str],
    listings: dict[str, TraceListing],
    inbox_fs: AbstractFileSystem,
    lake_fs: AbstractFileSystem,
    lake_root: str,
    tables: LakeTables,
    settings: IngestSettings,
    *,
    resumed: bool,
) -> PreparedBatch:
    """Sort the batch's traces into accepted, rejected, finished and vanished, assembling the accepted."""
    key = settings.pseudonym_key.get_secret_value()
    out = PreparedBatch(info, resumed, claimed=list(members))
    todo: list[TraceListing] = []
    for tid in members:
        listing = listings.get(tid)
        if listing is None:
            out.vanished.append(tid)
            continue
        out.listings[tid] = listing
        if resumed and (
            lake_fs.exists(archive_marker(lake_root, tid))
            or lake_fs.exists(quarantine_marker(lake_root, Rejection(tid, "", "").folder(info.batch_id)))
        ):
            out.finished.append(listing)
        elif listing.status in ("rejected", "expired"):
            problem = listing.problem or TraceRejected(
                "incomplete",
                f"trace {tid}: chunks {listing.missing_chunks[:10]} still missing after the {settings.grace_period_s:.0f} s grace period",
            )
            out.rejected.append(Rejection(tid, problem.reason, str(problem), problem.object_key, listing=listing))
        elif listing.status != "ready":
            out.vanished.append(tid)  # no longer complete: another run is cleaning it up
            out.listings.pop(tid)
        elif secret_rule(tid):
            why = f"trace {tid}: the trace id looks like a secret ({secret_rule(tid)}); it is kept as {stored_trace_id(tid)}"
            out.rejected.append(Rejection(tid, "secret_in_name", why, listing=listing))
        else:
            todo.append(listing)

    loaded: list[TraceBlobs] = []
    known: dict[str, str] = {}
    if todo and not resumed:
        found = tables.lookup("traces", "trace_id", [t.trace_id for t in todo], ["trace_id", "chain_head"]).to_pylist()
        known = {r["trace_id"]: r["chain_head"] for r in found}
    for tb in load_traces(inbox_fs, todo, settings):
        t = tb.listing
        if any(k not in tb.blobs and k not in tb.skipped and not o.is_link for k, o in t.objects.items()):
            out.vanished.append(t.trace_id)  # objects disappeared between listing and loading
            out.listings.pop(t.trace_id)
            continue
        if t.trace_id in known:
            if t.complete is not None and known[t.trace_id] == t.complete.chain_head:
                out.finished.append(t)  # an identical re-upload of an ingested trace
            else:
                msg = f"trace {t.trace_id}: a trace with this id and another chain head is already in the lake; trace ids must be unique"
                out.rejected.append(
                    Rejection(
                        t.trace_id,
                        "duplicate_trace",
                        msg,
                        "complete.json",
                        participant=_participant(tb.blobs, t.trace_id, key),
                        listing=t,
                    )
                )
            continue
        loaded.append(tb)
    assemble_batch(out, _within_bound(out, loaded, settings.batch_max_bytes), settings)
    return out


def _within_bound(out: PreparedBatch, loaded: list[TraceBlobs], max_bytes: int) -> list[TraceBlobs]:
    """The loaded traces that fit the batch's byte bound as measured now, in order (the first
    always: a lone large trace gets its batch); the rest go back to the run, untouched, with
    their measured size so that they are planned right. Nothing is decompressed before this."""
    kept: list[TraceBlobs] = []
    total = 0
    for tb in loaded:
        size = bytes_read(tb)
        if kept and total + size > max_bytes:
            out.deferred.append((tb.trace_id, size))
            out.listings.pop(tb.trace_id)
            continue
        kept.append(tb)
        total += size
    return kept


def assemble_batch(out: PreparedBatch, loaded: list[TraceBlobs], settings: IngestSettings) -> None:
    """Assemble traces column-wise (tasks/ingest/fastpath.py); the pydantic path takes whatever the fast
    path cannot vouch for, and names the problem of every trace it rejects."""
    key = settings.pseudonym_key.get_secret_value()

    def reject(tb: TraceBlobs, exc: TraceRejected) -> None:
        participant = None if exc.reason == "consent_withdrawn" else _participant(tb.blobs, tb.trace_id, key)
        out.rejected.append(
            Rejection(tb.trace_id, exc.reason, str(exc), exc.object_key, participant=participant, listing=tb.listing)
        )

    fast = assemble_fast(loaded, settings, max_bytes=settings.batch_max_bytes)
    for tb in fast.deferred:
        out.deferred.append((tb.trace_id, bytes_read(tb)))
        out.listings.pop(tb.trace_id)
    out.accepted += fast.accepted
    out.fast_events = fast.events
    for tb, exc in fast.rejected:
        reject(tb, exc)
    for tb in fast.slow:
        try:
            out.accepted.append(assemble_trace(tb, settings))
        except TraceRejected as exc:
            reject(tb, exc)


# -- build ------------------------------------------------------------------------------------


def _redact_extra(df: pl.DataFrame, column: str) -> pl.DataFrame:
    mask = df.get_column(column).str.contains(PREFILTER).fill_null(False)
    if not mask.any():
        return df
    values = df.get_column(column).to_list()
    for i in mask.arg_true().to_list():
        new, hits = redact_json_value(json.loads(values[i]))
        if hits:
            values[i] = json.dumps(new, sort_keys=True, ensure_ascii=False)
    return df.with_columns(pl.Series(column, values, dtype=pl.String))


def _redact_artifacts(trace: AssembledTrace, plan: ArchivePlan, limit: int) -> str | None:
    """Output artifacts are redacted like the events (a gzip output is stored decompressed); the
    lake stores every blob under the hash of its stored bytes, so a changed output gets a new name.
    Returns why the trace cannot be kept (an output that cannot be read, so cannot be checked)."""
    snapshot = trace.manifest.repo.snapshot.removeprefix("sha256:")
    for hex_, data in trace.artifacts.items():
        if hex_ != snapshot:  # the repo itself is replayed byte for byte in QA
            data = redact_output(data, limit)
            if data is None:
                return f"artifacts/{hex_}"
        stored = hashlib.sha256(data).hexdigest()
        if stored != hex_:
            plan.renamed[hex_] = stored
        plan.artifacts[stored] = data
    return None


EVENT_NAME_COLUMNS = ("event_id", "file_path", "framework", "sha")
TRACE_NAME_COLUMNS = ("task_id", "start_commit", "env_os", "env_python", "env_image", "client_name", "client_version")


def _secret_names(prep: PreparedBatch, events: pl.DataFrame, traces: pl.DataFrame) -> dict[str, tuple[str, str | None]]:
    """trace_id -> (message, object key) for traces where a name holds what looks like a secret:
    names are stored as they are (a redacted path or id would point at nothing), so the trace is
    refused (secret_in_name) and its quarantine copy redacted."""
    out: dict[str, tuple[str, str | None]] = {}
    for i, (col, rule) in sorted(secrets_in_names(events, EVENT_NAME_COLUMNS, json_columns=("extra",)).items()):
        tid, seq = events["trace_id"][i], events["seq"][i]
        what = "the name of an unknown field" if col == "extra" else f"field {col}"
        out.setdefault(tid, (f"trace {tid}: event seq {seq}: {what} holds what looks like a secret ({rule})", None))
    packages = traces.select(
        "trace_id", *TRACE_NAME_COLUMNS, "manifest_extra", "env_dependency_files",
        env_packages=pl.col("env_packages").list.eval(
            pl.concat_str([pl.element().struct.field(f).fill_null("") for f in ("name", "version", "path")], separator=" ")
        ),
    )  # fmt: skip
    found = secrets_in_names(
        packages, TRACE_NAME_COLUMNS, list_columns=("env_dependency_files", "env_packages"), json_columns=("manifest_extra",)
    )
    for i, (col, rule) in sorted(found.items()):
        tid = packages["trace_id"][i]
        what = "the name of an unknown field" if col == "manifest_extra" else f"field {col}"
        out.setdefault(tid, (f"trace {tid}: manifest.json: {what} holds what looks like a secret ({rule})", MANIFEST))
    for t in prep.accepted:
        for key in t.chunk_seqs:
            rule = secret_rule(key)
            if rule and t.trace_id not in out:
                out[t.trace_id] = (f"trace {t.trace_id}: a chunk's object name holds what looks like a secret ({rule})", None)
    return out


def _archived_lines(plan: ArchivePlan, rows: list[dict], renamed_refs: dict[str, str]) -> None:
    t = plan.trace
    for row in rows:
        seq = row["seq"]
        obj = json.loads(t.lines[seq])
        changed = False
        for rec in row["redactions"] or []:
            col = rec.split(":", 1)[0]
            if col == "extra":
                obj.update(json.loads(row["extra"]))
            else:
                obj[col] = row[col]
            changed = True
        for ref_col in ("stdout_ref", "stderr_ref"):
            if obj.get(ref_col) in renamed_refs:
                obj[ref_col] = renamed_refs[obj[ref_col]]
                changed = True
        if changed:
            plan.lines[seq] = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            plan.line_rules[seq] = sorted({r.split(":", 1)[1] for r in row["redactions"] or []})


def _archived_manifest(trace: AssembledTrace, row: dict) -> bytes:
    data = trace.manifest.model_dump(mode="json")
    data["session"]["participant_id"] = row["participant"]  # the pseudonym, never the id
    data["task"]["title"] = row["task_title"]
    data["task"]["description"] = row["task_description"]
    data["repo"]["origin"] = row["repo_origin"]
    if row["manifest_extra"]:
        data.update(json.loads(row["manifest_extra"]))
    participant = data["session"]["participant_id"]
    data, _ = redact_json_value(data)  # every other string as the rows hold it (test command, build steps)
    data["session"]["participant_id"] = participant
    return json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8")


def _quarantine_frame(rejected: list[Rejection], prep: PreparedBatch, raw_prefixes: dict[str, str | None]) -> pl.DataFrame:
    if not rejected:
        return empty_frame(QUARANTINE)
    stamp = prep.stamp
    rows = [
        {
            "trace_id": r.trace_id,
            "quarantine_id": r.quarantine_id(stamp.batch_id),
            "reason": r.reason,
            "message": r.message,
            "object_key": r.object_key,
            "expectation": r.expectation,
            "participant": r.participant,
            "raw_prefix": raw_prefixes.get(r.trace_id),
            "detected_at": stamp.started_at,
            **stamp.columns(),
        }
        for r in rejected
    ]
    return pl.DataFrame(rows, schema=polars_schema(QUARANTINE))


def build_batch(prep: PreparedBatch, settings: IngestSettings) -> BatchOutput:
    """Rows for every table, redacted, checked by the Great Expectations suites.

    Traces that break a suite move from `prep.accepted` to `prep.rejected`.
    """
    stamp = prep.stamp
    key = settings.pseudonym_key.get_secret_value()
    plans = {t.trace_id: ArchivePlan(t) for t in prep.accepted}
    late: dict[str, tuple[str, str, str | None, str | None]] = {}
    """trace_id -> (reason, message, object key, expectation) of traces refused while building."""
    for t in prep.accepted:
        bad = _redact_artifacts(t, plans[t.trace_id], settings.max_chunk_bytes)
        if bad:
            why = f"trace {t.trace_id}: {bad} is a gzip stream that cannot be read whole, so it cannot be checked for secrets"
            late[t.trace_id] = ("unreadable_artifact", why, bad, None)
    renamed = {f"sha256:{a}": f"sha256:{b}" for p in plans.values() for a, b in p.renamed.items()}

    events = events_frame([t for t in prep.accepted if t.events is not None], stamp, fast=prep.fast_events)
    traces = traces_frame(prep.accepted, stamp, key)
    for tid, (message, obj) in _secret_names(prep, events, traces).items():  # before redaction renames a field
        late.setdefault(tid, ("secret_in_name", message, obj, None))
    if renamed:
        events = events.with_columns(pl.col(c).replace(renamed) for c in ("stdout_ref", "stderr_ref"))
    events = _redact_extra(redact_columns(events, TEXT_COLUMNS, list_columns=("failing_tests",)), "extra")
    events = events.with_columns(redactions=redaction_records(events, (*TEXT_COLUMNS, "failing_tests", "extra")))

    traces = _redact_extra(redact_columns(traces, TRACE_TEXT_COLUMNS, list_columns=TRACE_LIST_COLUMNS), "manifest_extra")
    in_events = events.group_by("trace_id").agg(n=pl.col("redactions").list.len().fill_null(0).sum())
    traces = (
        traces.with_columns(
            own=redaction_records(traces, (*TRACE_TEXT_COLUMNS, *TRACE_LIST_COLUMNS, "manifest_extra")).list.len().fill_null(0)
        )
        .join(in_events, on="trace_id", how="left")
        .with_columns(redaction_count=(pl.col("own") + pl.col("n").fill_null(0)).cast(pl.Int32))
        .select(TRACES.columns)
    )
    metrics = metrics_frame(events, traces)

    for tid, (name, message) in check_expectations(expectation_frames(events, traces, metrics)).items():
        late.setdefault(tid, ("expectation_failed", message, None, name))
    if late:
        for t in list(prep.accepted):
            if t.trace_id in late:
                reason, message, obj, expectation = late[t.trace_id]
                prep.accepted.remove(t)
                listing = prep.listings[t.trace_id]
                participant = _participant(t.objects, t.trace_id, key)
                prep.rejected.append(Rejection(t.trace_id, reason, message, obj, expectation, participant, listing))
                plans.pop(t.trace_id)
        keep = pl.col("trace_id").is_in(list(plans))
        events, traces, metrics = events.filter(keep), traces.filter(keep), metrics.filter(keep)

    # Archived lines and manifests carry exactly the redacted values of the rows.
    changed = events.filter(
        pl.col("redactions").is_not_null()
        | pl.col("stdout_ref").is_in(list(renamed.values()))
        | pl.col("stderr_ref").is_in(list(renamed.values()))
    )
    for tid, group in changed.group_by("trace_id"):
        _archived_lines(plans[tid[0]], group.to_dicts(), renamed)
    for row in traces.to_dicts():
        plans[row["trace_id"]].manifest = _archived_manifest(plans[row["trace_id"]].trace, row)

    raw_prefixes = {r.trace_id: (f"quarantine/{r.folder(stamp.batch_id)}" if r.keep_raw else None) for r in prep.rejected}
    return BatchOutput(traces, events, metrics, _quarantine_frame(prep.rejected, prep, raw_prefixes), plans)


# -- commit, archive, clean -------------------------------------------------------------------


INGEST_TABLES = (QUARANTINE, EVENTS, METRICS, TRACES)
"""The tables a batch commits to, in its commit order (traces last)."""


def create_tables(lake: str) -> None:
    """Create the ingest tables before batches run side by side: two workers creating the same
    new table at once each commit a creation (one table, an extra version in its log)."""
    tables = LakeTables(lake)
    for spec in INGEST_TABLES:
        tables.ensure(spec)


def commit_batch(prep: PreparedBatch, out: BatchOutput, tables: LakeTables, claims: Claims) -> dict[str, bool]:
    """One append per table, traces last; each skipped when this batch already committed it."""
    app_id = f"prt-ingest:{prep.info.batch_id}"
    meta = {"batch_id": prep.info.batch_id, "pipeline_run_id": prep.info.run_id, "prt_operation": "ingest"}
    written = {}
    for spec, df in ((QUARANTINE, out.quarantine), (EVENTS, out.events), (METRICS, out.metrics), (TRACES, out.traces)):
        if df.is_empty():
            written[spec.name] = False
            continue
        claims.renew(prep.info.batch_id)
        _fault(f"before_commit:{spec.name}")
        written[spec.name] = tables.append(spec, to_arrow(df, spec), app_id=app_id, metadata=meta)
        _fault(f"after_commit:{spec.name}")
    return written


def archive_batch(
    prep: PreparedBatch,
    out: BatchOutput,
    source_fs: AbstractFileSystem,
    lake_fs: AbstractFileSystem,
    lake_root: str,
    settings: IngestSettings,
) -> None:
    """Archive accepted traces under raw/ and copy rejected ones, redacted, under quarantine/."""
    archive_traces(lake_fs, lake_root, list(out.plans.values()), prep.info.batch_id)
    key = settings.pseudonym_key.get_secret_value()
    for r in prep.rejected:
        note = {"batch_id": prep.info.batch_id, "reason": r.reason, "trace_id": r.trace_id}
        move_to_quarantine(
            read_objects(source_fs, r.listing) if r.keep_raw else {}, lake_fs, lake_root, r.folder(prep.info.batch_id),
            keep=r.keep_raw, note=note, pseudonym_key=key, max_chunk_bytes=settings.max_chunk_bytes, prior_digest_map=r.listing.digest_map,
        )  # fmt: skip
    _fault("after_archive")


def clean_batch(prep: PreparedBatch, inbox_fs: AbstractFileSystem, claims: Claims) -> None:
    """Delete the batch's inbox objects (all copied and verified by now), then release the batch."""
    _fault("before_inbox_delete")
    listings = [*(prep.listings[t.trace_id] for t in prep.accepted), *(r.listing for r in prep.rejected), *prep.finished]
    map_io(lambda listing: delete_trace_objects(inbox_fs, listing), listings, workers=io_threads(inbox_fs, deletes=True))
    _fault("after_inbox_delete")
    claims.close_batch(prep.info, prep.claimed)


def _fault(point: str) -> None:
    """Crash-test hook: PRT_FAULT_AT=<point> kills this process with SIGKILL at that point."""
    if os.environ.get("PRT_FAULT_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)


# -- summary ----------------------------------------------------------------------------------


class Stopwatch:
    """Wall-clock seconds per stage: `lap(name)` charges the time since the last lap to `name`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._t
        self._t = now


@dataclass
class BatchReport:
    """What one batch did: small enough to send back from a worker process."""

    batch_id: str
    resumed: bool
    ingested: list[str]
    events: int
    quarantined: list[tuple[str, str, str]]
    cleaned: list[str]
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall-clock seconds per stage (prepare, build, commit, archive, clean)."""
    deferred: list[tuple[str, int]] = field(default_factory=list)
    """(trace_id, bytes) handed back to the run: see `PreparedBatch.deferred`."""

    @classmethod
    def of(cls, prep: PreparedBatch, out: BatchOutput, seconds: dict[str, float] | None = None) -> BatchReport:
        return cls(
            prep.info.batch_id,
            prep.resumed,
            [t.trace_id for t in prep.accepted],
            out.events.height,
            [(r.trace_id, r.reason, r.message) for r in prep.rejected],
            [t.trace_id for t in prep.finished],
            seconds or {},
            prep.deferred,
        )


def run_batch(
    batch: Batch, inbox: str, lake: str, settings: IngestSettings, claims: Claims, *, as_tasks: bool = False
) -> BatchReport:
    """Every stage of one batch, in order, timed: the one stage sequence of ingest.

    Plain calls in a worker process (tasks/ingest/pool.py); with `as_tasks`, each stage is its
    own Prefect task run (retried on transient errors) in the flow's process."""
    inbox_fs, _ = fs_for(inbox)
    lake_fs, lake_root = fs_for(lake)
    tables = LakeTables(lake)
    step = _as_task if as_tasks else _call
    watch = Stopwatch()
    prep = step(
        prepare_batch,
        batch.info,
        batch.members,
        batch.listings,
        inbox_fs,
        lake_fs,
        lake_root,
        tables,
        settings,
        resumed=batch.resumed,
    )
    watch.lap("prepare")
    out = step(build_batch, prep, settings)
    watch.lap("build")
    step(commit_batch, prep, out, tables, claims)
    watch.lap("commit")
    step(archive_batch, prep, out, inbox_fs, lake_fs, lake_root, settings)
    watch.lap("archive")
    step(clean_batch, prep, inbox_fs, claims)
    watch.lap("clean")
    return BatchReport.of(prep, out, watch.seconds)


def _call(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def _as_task(fn, *args, **kwargs):
    return _STAGE_TASKS[fn](*args, **kwargs)


@dataclass
class IngestSummary:
    """What one ingest run did, per trace; printed by `prt ingest` and published as Prefect artifacts."""

    ingested: list[str] = field(default_factory=list)
    quarantined: list[tuple[str, str, str]] = field(default_factory=list)
    """(trace_id, reason, message)"""
    cleaned: list[str] = field(default_factory=list)
    """Already in the lake (identical re-upload or a resumed batch): inbox objects removed."""
    pending: list[str] = field(default_factory=list)
    in_progress: list[str] = field(default_factory=list)
    """Claimed by another run right now."""
    batches: int = 0
    resumed_batches: int = 0
    events: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    """Seconds per stage, summed over batches (over workers too, so it can exceed the run's time)."""
    deferred: int = 0
    """Times a worker handed a trace back to be planned again with its measured size."""

    def add(self, report: BatchReport) -> None:
        self.batches += 1
        self.deferred += len(report.deferred)
        self.resumed_batches += report.resumed
        self.ingested += report.ingested
        self.events += report.events
        self.quarantined += report.quarantined
        self.cleaned += report.cleaned
        for stage, sec in report.seconds.items():
            self.seconds[stage] = self.seconds.get(stage, 0.0) + sec

    def reasons(self) -> Counter:
        return Counter(reason for _, reason, _ in self.quarantined)

    def rows(self) -> list[dict[str, str]]:
        """One row per trace: what happened to it; the ingested ones last."""
        rows = [{"trace_id": t, "outcome": "ingested", "reason": "", "detail": ""} for t in self.ingested]
        rows += [{"trace_id": t, "outcome": "quarantined", "reason": r, "detail": m} for t, r, m in self.quarantined]
        rows += [
            {"trace_id": t, "outcome": "already ingested", "reason": "", "detail": "inbox copy removed"} for t in self.cleaned
        ]
        rows += [
            {"trace_id": t, "outcome": "pending", "reason": "", "detail": "waiting for complete.json or chunks"}
            for t in self.pending
        ]
        rows += [
            {"trace_id": t, "outcome": "in progress", "reason": "", "detail": "claimed by another run"} for t in self.in_progress
        ]
        # What needs a look first (the artifact table shows only the first rows of a large run).
        return sorted(rows, key=lambda r: (r["outcome"] == "ingested", r["outcome"], r["trace_id"]))

    def markdown(self) -> str:
        lines = [
            "# Ingest",
            "",
            f"- ingested: **{len(self.ingested)}** traces, {self.events} events, in {self.batches} batches ({self.resumed_batches} resumed)",
            f"- quarantined: **{len(self.quarantined)}**",
            f"- already in the lake (inbox cleaned): {len(self.cleaned)}",
            f"- pending: {len(self.pending)} · in progress elsewhere: {len(self.in_progress)}",
        ]
        if self.seconds:
            lines.append(
                "- seconds per stage (summed over batches): " + ", ".join(f"{k} {v:.2f}" for k, v in self.seconds.items())
            )
        if self.deferred:
            lines.append(
                f"- handed back and planned again with their measured size (gzip chunks larger than estimated): {self.deferred}"
            )
        if self.quarantined:
            lines += ["", "| reason | traces |", "| --- | --- |"]
            lines += [f"| {reason} | {n} |" for reason, n in sorted(self.reasons().items())]
        return "\n".join(lines) + "\n"


# -- Prefect tasks: the stage functions above plus retries and names ------------------------------

_STAGE_TASKS = {
    prepare_batch: stage_task("prepare-batch")(prepare_batch),
    build_batch: stage_task("build-batch")(build_batch),
    commit_batch: stage_task("commit-batch", retry_after=[1, 5, 20])(commit_batch),
    archive_batch: stage_task("archive-batch", retry_after=[1, 5, 20])(archive_batch),
    clean_batch: stage_task("clean-batch", retry_after=[1, 5, 20])(clean_batch),
}
