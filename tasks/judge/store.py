"""The judge stage's I/O: which traces a judge has not scored yet, their frames, and storing scores.

A trace needs scoring when `scores` has no row for (trace_id, judge_id, its latest QA verdict)
with status scored or unparsed: scores follow verdicts, so a trace whose verdict changed (a new
QA run, a re-grade) is scored again, in a new row beside the old. `error` rows (the endpoint
failed) are retried and replaced. A new judge version has a new judge_id, so its rows land
beside the old ones.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from lake.frames import polars_schema, to_arrow
from lake.read import Lake
from lake.tables import LakeTables
from schemas.tables import SCORES
from schemas.version import CODE_VERSION
from tasks.judge import Judge, JudgeBatch, Score
from tasks.stage import stage_task

__all__ = ["judge_batches", "score_rows", "store_scores", "unscored"]

_EVENT_COLUMNS = [
    "trace_id", "seq", "type", "ts_client_s", "kind", "text", "file_path", "diff_unified", "command", "exit_code",
    "duration_s", "stdout", "stderr", "stdout_ref", "framework", "passed", "failed", "errors", "failing_tests",
    "sha", "message", "redactions",
]  # fmt: skip


def unscored(lake: Lake, judge_id: str, trace_ids: list[str] | None = None) -> list[str]:
    """Traces the judge has no scored (or unparsed) row for at their latest QA verdict: new traces,
    and traces whose verdict changed since the judge last saw them."""
    traces = lake.traces().select("trace_id")
    if trace_ids:
        traces = traces.filter(pl.col("trace_id").is_in(trace_ids))
    wanted = traces.join(lake.latest_qa().select("trace_id", pl.col("verdict").alias("qa_verdict")), on="trace_id", how="left")
    done = (
        lake.table("scores")
        .filter((pl.col("judge_id") == judge_id) & pl.col("status").is_in(["scored", "unparsed"]))
        .select("trace_id", "qa_verdict")
    )
    todo = wanted.join(done, on=["trace_id", "qa_verdict"], how="anti", nulls_equal=True)
    return sorted(todo.collect()["trace_id"].to_list())


def judge_batches(lake: Lake, trace_ids: list[str], size: int):
    """JudgeBatch frames for `trace_ids`, `size` traces at a time (memory stays bounded)."""
    for i in range(0, len(trace_ids), size):
        ids = trace_ids[i : i + size]
        traces = (
            lake.traces()
            .filter(pl.col("trace_id").is_in(ids))
            .select("trace_id", "task_title", "task_description", "started_at")
            .collect()
        )
        events = lake.events().filter(pl.col("trace_id").is_in(ids)).select(_EVENT_COLUMNS).collect()
        qa = lake.latest_qa().filter(pl.col("trace_id").is_in(ids)).select("trace_id", "verdict").collect()
        yield JudgeBatch(traces.sort("trace_id"), events, qa)


def score_rows(judge: Judge, scores: list[Score], *, run_id: str, batch_id: str) -> pl.DataFrame:
    now = datetime.now(UTC)
    rows = [
        {
            **s.columns(),
            "judge_id": judge.judge_id,
            "judge_kind": judge.kind,
            "model": judge.model,
            "judge_version": f"{judge.kind}/{judge.version}",
            "scored_at": now,
            "run_date": now.date(),
            "pipeline_run_id": run_id,
            "batch_id": batch_id,
            "code_version": CODE_VERSION,
        }
        for s in scores
    ]
    return pl.DataFrame(rows, schema=polars_schema(SCORES))


def store_scores(rows: pl.DataFrame, tables: LakeTables, *, run_id: str) -> int:
    """One MERGE: insert new (trace_id, judge_id, qa_verdict) keys, replace only rows whose status is error."""
    meta = {"pipeline_run_id": run_id, "prt_operation": "judge"}
    return tables.merge_rows(SCORES, to_arrow(rows, SCORES), metadata=meta, replace_when="t.status = 'error'")


def score_batch(judge: Judge, batch: JudgeBatch) -> list[Score]:
    return judge.score_batch(batch)


score_batch_task = stage_task("score-batch", retry_after=[5, 30])(score_batch)
store_scores_task = stage_task("store-scores", retry_after=[1, 5, 20])(store_scores)
