"""The researcher's read API: every table as a polars LazyFrame, on a local lake or on S3.

    from lake import Lake
    lake = Lake("s3://bucket/lake")          # or Lake() for $PRT_LAKE / ./data/lake
    lake.events().filter(pl.col("trace_id") == "t-42").collect()

Tables that do not exist yet read as empty frames with the right columns, so notebooks run on
a fresh lake.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import polars as pl

from lake.tables import LakeTables
from schemas.rubric import DIMENSIONS
from schemas.tables import TABLES

__all__ = ["Lake", "in_date_range"]


def in_date_range(col: str, since: date | None, until: date | None) -> pl.Expr:
    """`col` between `since` and `until`, both inclusive; an open end when None."""
    expr = pl.lit(True)
    if since:
        expr &= pl.col(col) >= since
    if until:
        expr &= pl.col(col) <= until
    return expr


class Lake:
    """Read access to the lake's Delta tables."""

    def __init__(self, url: str | None = None):
        if url is None:
            from schemas.settings import get_settings

            url = get_settings().lake
        self.tables = LakeTables(url)
        self.url = self.tables.url

    def table(self, name: str, *, version: int | None = None) -> pl.LazyFrame:
        """Any table by name, optionally at an earlier Delta version (time travel)."""
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r}; known: {', '.join(TABLES)}")
        if not self.tables.exists(name):
            return pl.LazyFrame(schema=pl.from_arrow(TABLES[name].schema.empty_table()).schema)
        frame = pl.scan_delta(self.tables.uri(name), version=version, storage_options=self.tables.storage_options or None)
        have = frame.collect_schema()
        spec = pl.from_arrow(TABLES[name].schema.empty_table()).schema
        missing = [pl.lit(None, dtype=dtype).alias(col) for col, dtype in spec.items() if col not in have]
        return frame.with_columns(missing) if missing else frame  # a table last written by an older version

    def traces(self) -> pl.LazyFrame:
        return self.table("traces")

    def events(self) -> pl.LazyFrame:
        return self.table("events")

    def metrics(self) -> pl.LazyFrame:
        return self.table("metrics")

    def quarantine(self) -> pl.LazyFrame:
        return self.table("quarantine")

    def qa_runs(self) -> pl.LazyFrame:
        return self.table("qa_runs")

    def scores(self) -> pl.LazyFrame:
        return self.table("scores")

    def latest_qa(self) -> pl.LazyFrame:
        """The latest verdict of each trace: its most recently graded QA row (a re-graded row is newer
        than the run it re-graded)."""
        when = pl.coalesce("graded_at", "started_at")
        return self.qa_runs().group_by("trace_id").agg(pl.all().sort_by(when, "qa_id").last())

    def latest_scores(self) -> pl.LazyFrame:
        """Each judge's latest `scored` row per trace. A trace is scored again when its verdict
        changes, so older rows (the verdict the judge saw then) stay as history."""
        scored = self.scores().filter(pl.col("status") == "scored")
        return scored.group_by("trace_id", "judge_id").agg(pl.all().sort_by("scored_at").last())

    def judges(self) -> pl.DataFrame:
        """Every judge that scored something: judge_id, kind, model, traces scored, last run."""
        return (
            self.scores()
            .group_by("judge_id", "judge_kind", "model")
            .agg(traces=pl.col("trace_id").n_unique(), last_scored=pl.col("scored_at").max())
            .sort("last_scored", descending=True)
            .collect()
        )

    def dataset(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        verdict: str | Sequence[str] | None = None,
        min_score: float | None = None,
        judge: str | None = None,
        test_config_changed: bool | None = None,
    ) -> pl.LazyFrame:
        """One row per trace: the trace, its metrics, its latest QA verdict and its scores.

        Scores come as columns for one judge (`judge`: a judge_id or a kind such as "heuristic";
        default: the judge that scored most recently), its latest score of each trace, and as a
        `scores` list with every judge's overall. Filters: ingest date range (inclusive), QA
        verdict(s), minimum overall score, and whether the session changed test configuration
        (`test_config_changed=False` keeps only traces whose verification ran on the repo's own).
        """
        traces = self.traces().select(
            "trace_id", "task_id", "task_title", "repo_origin", "start_commit", "participant", "started_at", "ended_at",
            "event_count", "chain_head", "redaction_count", "ingest_date",
        )  # fmt: skip
        traces = traces.filter(in_date_range("ingest_date", since, until))
        metrics = self.metrics().drop("ingest_date", "pipeline_run_id", "batch_id", "code_version")
        qa = self.latest_qa().select(
            "trace_id", "verdict", "fail_to_pass", "pass_to_fail", "qa_id", "test_config_changed", "snapshot_tree",
            pl.col("backend").alias("qa_backend"),
        )  # fmt: skip
        all_scores = self.latest_scores()
        chosen = self._judge_id(judge)
        per_judge = all_scores.group_by("trace_id").agg(scores=pl.struct("judge_id", "overall").sort_by("judge_id"))
        one = all_scores.filter(pl.col("judge_id") == (chosen or "")).select(
            "trace_id", "judge_id", "overall", *DIMENSIONS, *[f"why_{d}" for d in DIMENSIONS],
            pl.col("pipeline_run_id").alias("score_run_id"),
        )  # fmt: skip
        out = traces.join(metrics, on="trace_id", how="left").join(qa, on="trace_id", how="left")
        out = out.join(one, on="trace_id", how="left").join(per_judge, on="trace_id", how="left")
        if verdict is not None:
            out = out.filter(pl.col("verdict").is_in([verdict] if isinstance(verdict, str) else list(verdict)))
        if min_score is not None:
            out = out.filter(pl.col("overall") >= min_score)
        if test_config_changed is not None:
            out = out.filter(pl.col("test_config_changed").fill_null(False) == test_config_changed)
        return out.sort("trace_id")

    def _judge_id(self, judge: str | None) -> str | None:
        judges = self.judges()
        if judges.is_empty():
            return judge
        if judge is None:
            return judges["judge_id"][0]
        if judge in judges["judge_id"].to_list():
            return judge
        kind = judges.filter(pl.col("judge_kind") == judge)
        if kind.is_empty():
            raise KeyError(f"no scores from judge {judge!r}; judges in this lake: {', '.join(judges['judge_id'])}")
        return kind["judge_id"][0]
