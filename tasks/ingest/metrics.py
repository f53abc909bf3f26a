"""Per-trace process metrics, computed column-wise from a batch's events (one polars query)."""

from __future__ import annotations

import polars as pl

from schemas.tables import METRICS

__all__ = ["metrics_frame"]

_is = pl.col("type").__eq__


def _count(cond: pl.Expr) -> pl.Expr:
    return cond.sum().cast(pl.Int32)


def metrics_frame(events: pl.DataFrame, traces: pl.DataFrame) -> pl.DataFrame:
    """One row per trace in `traces`; `events` holds the same traces' events."""
    if traces.is_empty():
        return pl.DataFrame(schema=pl.from_arrow(METRICS.schema.empty_table()).schema)
    start = traces.select("trace_id", "started_at", "ended_at")
    ev = events.join(start, on="trace_id", how="left").sort("trace_id", "seq")
    since_start = (pl.col("ts") - pl.col("started_at")).dt.total_microseconds() / 1e6
    test_ok = _is("test_run") & (pl.col("failed") == 0) & (pl.col("errors") == 0) & (pl.col("passed") > 0)
    test_bad = _is("test_run") & ((pl.col("failed") > 0) | (pl.col("errors") > 0))
    diff = pl.col("diff_unified").fill_null("")
    ev = ev.with_columns(
        since_start=since_start,
        first_edit_seq=pl.when(_is("file_edit")).then(pl.col("seq")).min().over("trace_id"),
        added=(diff.str.count_matches(r"(?m)^\+") - diff.str.count_matches(r"(?m)^\+\+\+ ")).cast(pl.Int32),
        removed=(diff.str.count_matches(r"(?m)^-") - diff.str.count_matches(r"(?m)^--- ")).cast(pl.Int32),
        gap=pl.col("ts_client_s").diff().over("trace_id"),
        test_ok=test_ok,
        test_bad=test_bad,
    )
    before_edit = pl.col("first_edit_seq").is_null() | (pl.col("seq") < pl.col("first_edit_seq"))
    per_trace = ev.group_by("trace_id").agg(
        active_s=(pl.col("ts_client_s").max() - pl.col("ts_client_s").min()),
        n_events=pl.len().cast(pl.Int32),
        n_file_edits=_count(_is("file_edit")),
        n_cmd_runs=_count(_is("cmd_run")),
        n_test_runs=_count(_is("test_run")),
        n_commits=_count(_is("commit")),
        n_notes=_count(_is("rationale_note")),
        n_plans=_count(pl.col("kind") == "plan"),
        n_hypotheses=_count(pl.col("kind") == "hypothesis"),
        n_observations=_count(pl.col("kind") == "observation"),
        n_decisions=_count(pl.col("kind") == "decision"),
        n_next_steps=_count(pl.col("kind") == "next_step"),
        files_touched=pl.col("file_path").drop_nulls().n_unique().cast(pl.Int32),
        lines_added=pl.col("added").sum().cast(pl.Int32),
        lines_removed=pl.col("removed").sum().cast(pl.Int32),
        failed_cmds=_count(_is("cmd_run") & (pl.col("exit_code") != 0)),
        test_runs_failing=_count(pl.col("test_bad")),
        test_runs_passing=_count(pl.col("test_ok")),
        reproduced_before_edit=(pl.col("test_bad") & before_edit).any(),
        notes_before_first_edit=_count(_is("rationale_note") & before_edit),
        time_to_first_edit_s=pl.col("since_start").filter(_is("file_edit")).min(),
        time_to_first_test_s=pl.col("since_start").filter(_is("test_run")).min(),
        time_to_first_pass_s=pl.col("since_start").filter(pl.col("test_ok")).min(),
        final_tests_pass=pl.col("test_ok").filter(_is("test_run")).last(),
        max_idle_s=pl.col("gap").max().fill_null(0.0),
        output_bytes=(pl.col("stdout").fill_null("").str.len_bytes() + pl.col("stderr").fill_null("").str.len_bytes())
        .sum()
        .cast(pl.Int64),
        artifact_outputs=_count(pl.col("stdout_ref").is_not_null()) + _count(pl.col("stderr_ref").is_not_null()),
    )
    out = traces.select(
        "trace_id",
        duration_s=(pl.col("ended_at") - pl.col("started_at")).dt.total_microseconds() / 1e6,
        ingest_date="ingest_date",
        pipeline_run_id="pipeline_run_id",
        batch_id="batch_id",
        code_version="code_version",
    ).join(per_trace, on="trace_id", how="left")
    # A trace with no events still gets a row of zeros, not nulls.
    counts = [
        c
        for c in METRICS.columns
        if c.startswith("n_")
        or c
        in (
            "files_touched",
            "lines_added",
            "lines_removed",
            "failed_cmds",
            "test_runs_failing",
            "test_runs_passing",
            "notes_before_first_edit",
            "artifact_outputs",
        )
    ]
    out = out.with_columns(
        [pl.col(c).fill_null(0) for c in counts]
        + [pl.col("output_bytes").fill_null(0), pl.col("reproduced_before_edit").fill_null(False)]
    )
    return out.select(METRICS.columns).sort("trace_id")
