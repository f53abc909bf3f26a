"""Turn assembled traces into the rows of the lake's tables (polars frames, still unredacted).

Columns follow `schemas.tables`; `lake.frames.to_arrow` casts a frame to its table's exact Arrow schema.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import polars as pl

from lake.frames import empty_frame, polars_schema
from schemas.tables import EVENTS, TRACES
from schemas.version import CODE_VERSION, PARSER_VERSION
from tasks.ingest.assemble import AssembledTrace
from tasks.ingest.privacy import pseudonym

__all__ = ["BatchStamp", "events_frame", "traces_frame"]

_EVENT_FIELDS = (
    "file_path",
    "diff_unified",
    "buffer_hash_after",
    "command",
    "exit_code",
    "duration_s",
    "stdout",
    "stdout_ref",
    "stderr",
    "stderr_ref",
    "framework",
    "passed",
    "failed",
    "errors",
    "skipped",
    "failing_tests",
    "sha",
    "message",
    "kind",
    "text",
)


@dataclass(frozen=True)
class BatchStamp:
    """Provenance written on every row of a batch."""

    batch_id: str
    run_id: str
    started_at: datetime

    @property
    def ingest_date(self) -> date:
        return self.started_at.date()

    def columns(self) -> dict[str, object]:
        return {
            "ingest_date": self.ingest_date,
            "pipeline_run_id": self.run_id,
            "batch_id": self.batch_id,
            "code_version": CODE_VERSION,
        }


def _json_or_none(extra: dict | None) -> str | None:
    return json.dumps(extra, sort_keys=True, ensure_ascii=False) if extra else None


def events_frame(traces: Sequence[AssembledTrace], stamp: BatchStamp, *, fast: pl.DataFrame | None = None) -> pl.DataFrame:
    """The events table rows of `traces` (validated by the pydantic models), plus `fast`: rows the
    column-wise path already built. Sorted by trace and seq."""
    cols: dict[str, list] = {
        name: [] for name in ("trace_id", "seq", "event_id", "type", "ts_client_s", *_EVENT_FIELDS, "extra", "line_sha256")
    }
    for t in traces:
        values = [e.__dict__ for e in t.events]  # field values without pydantic's slow attribute path
        n = len(values)
        cols["trace_id"] += [t.trace_id] * n
        cols["seq"] += [v["seq"] for v in values]
        cols["event_id"] += [v["id"] for v in values]
        cols["type"] += [v["type"] for v in values]
        cols["ts_client_s"] += [v["ts_client_s"] for v in values]
        for name in _EVENT_FIELDS:
            cols[name] += [v.get(name) for v in values]
        cols["extra"] += [_json_or_none(e.__pydantic_extra__) for e in t.events]
        cols["line_sha256"] += [d.hex() for d in t.digests]
    schema = polars_schema(EVENTS)
    df = pl.DataFrame(cols, schema={k: schema[k] for k in cols})
    if fast is not None and fast.height:
        df = pl.concat([df, fast.select(list(cols)).cast({k: schema[k] for k in cols})], how="vertical")
    return (
        df.with_columns(
            ts=pl.from_epoch(pl.col("ts_client_s").mul(1_000_000).round().cast(pl.Int64), time_unit="us").dt.replace_time_zone(
                "UTC"
            ),
            redactions=pl.lit(None, dtype=pl.List(pl.String)),
            **{k: pl.lit(v) for k, v in stamp.columns().items()},
        )
        .select(EVENTS.columns)
        .sort("trace_id", "seq")
    )


def traces_frame(traces: Sequence[AssembledTrace], stamp: BatchStamp, pseudonym_key: str) -> pl.DataFrame:
    rows = []
    for t in traces:
        m, c = t.manifest, t.complete
        rows.append(
            {
                "trace_id": t.trace_id,
                "trace_version": m.trace_version,
                "participant": m.session.participant_id
                if t.pseudonymized
                else pseudonym(m.session.participant_id, pseudonym_key),
                "task_id": m.task.id,
                "task_title": m.task.title,
                "task_description": m.task.description,
                "repo_origin": m.repo.origin,
                "start_commit": m.repo.start_commit,
                "snapshot_ref": m.repo.snapshot,
                "env_os": m.environment.os,
                "env_python": m.environment.python_version,
                "env_image": m.environment.image,
                "test_command": m.qa.test_command,
                "test_timeout_s": m.qa.timeout_s,
                "client_name": m.client.name,
                "client_version": m.client.version,
                "started_at": m.started_at,
                "ended_at": c.ended_at,
                "event_count": c.event_count,
                "chunk_count": c.chunk_count,
                "chain_head": c.chain_head,
                "redaction_count": 0,
                "manifest_extra": _json_or_none(m.__pydantic_extra__),
                "env_packages": None if m.environment.packages is None else [pk.model_dump() for pk in m.environment.packages],
                "env_install": list(m.environment.install or ()),
                "env_dependency_files": list(m.environment.dependency_files or ()),
                "ingested_at": stamp.started_at,
                **stamp.columns(),
                "parser_version": PARSER_VERSION,
            }
        )
    if not rows:
        return empty_frame(TRACES)
    return pl.DataFrame(rows, schema=polars_schema(TRACES))
