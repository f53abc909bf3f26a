"""Run the Great Expectations suites (expectations/suites.py) on a batch's frames, not per event.

Returns the traces that broke a rule, with the rule's name and a message; the batch quarantines
those traces (reason `expectation_failed`) and keeps the rest.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from functools import cache
from typing import Any

import polars as pl

from expectations.suites import RULES

__all__ = ["check_expectations", "expectation_frames", "warm_up"]


def expectation_frames(events: pl.DataFrame, traces: pl.DataFrame, metrics: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The narrow frames the rules look at (only the columns they need, so conversion stays cheap)."""
    window = traces.select("trace_id", "started_at", "ended_at")
    ev = events.select("trace_id", "seq", "event_id", "type", "line_sha256", "ts").join(window, on="trace_id", how="left")
    ev = ev.select(
        "trace_id",
        "seq",
        "event_id",
        "type",
        "line_sha256",
        from_start_s=(pl.col("ts") - pl.col("started_at")).dt.total_microseconds() / 1e6,
        to_end_s=(pl.col("ts") - pl.col("ended_at")).dt.total_microseconds() / 1e6,
    )
    tr = traces.select(
        "trace_id", "participant", duration_s=(pl.col("ended_at") - pl.col("started_at")).dt.total_microseconds() / 1e6
    )
    typed = ["n_file_edits", "n_cmd_runs", "n_test_runs", "n_commits", "n_notes"]
    me = metrics.select("trace_id", uncounted_events=pl.col("n_events") - pl.sum_horizontal(typed))
    # One row per trace in both: one frame, one validation run (each run has a fixed cost).
    return {"events": ev, "traces": tr.join(me, on="trace_id", how="left")}


@cache
def warm_up() -> None:
    """Import Great Expectations and build the suites now (seconds, once per process), not in the first batch."""
    _validations()


def _validations() -> dict[str, Any]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    for name in ("great_expectations", "great_expectations.data_context.types.base"):  # the latter sets INFO itself
        logging.getLogger(name).setLevel(logging.WARNING)
    from great_expectations.execution_engine import pandas_execution_engine

    # GE hashes every cell of a pandas batch under this size only to label the batch (a
    # "fingerprint" in its batch markers), a quarter of a run's time here; our batches are named
    # by their batch id. GE itself skips the hash above this size.
    pandas_execution_engine.HASH_THRESHOLD = 0
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("prt")
    out = {}
    for frame in sorted({r.frame for r in RULES}):
        batch = source.add_dataframe_asset(frame).add_batch_definition_whole_dataframe(f"{frame}-batch")
        suite = context.suites.add(gx.ExpectationSuite(name=f"prt.{frame}"))
        for rule in (r for r in RULES if r.frame == frame):
            suite.add_expectation(getattr(gx.expectations, rule.expectation)(**rule.kwargs, meta={"name": rule.name}))
        out[frame] = context.validation_definitions.add(gx.ValidationDefinition(name=f"prt.{frame}", data=batch, suite=suite))
    return out


def check_expectations(frames: dict[str, pl.DataFrame]) -> dict[str, tuple[str, str]]:
    """trace_id -> (rule name, message) for every trace that breaks a rule (first rule wins)."""
    failures: dict[str, tuple[str, str]] = {}
    for frame, validation in _validations().items():
        df = frames[frame]
        if df.is_empty():
            continue
        # Batch.validate rather than ValidationDefinition.run: the same validation without storing
        # every batch's result in the context's results store (in memory, for the worker's life).
        batch = validation.batch_definition.get_batch(batch_parameters={"dataframe": df.to_pandas()})
        # Most batches pass: ask only for pass/fail (a third cheaper), and for the failing rows
        # only when something failed.
        if batch.validate(validation.suite, result_format={"result_format": "BOOLEAN_ONLY"}).success:
            continue
        result = batch.validate(
            validation.suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["trace_id"]}
        )
        if result.success:
            continue
        for res in result.results:
            if res.success:
                continue
            name = res.expectation_config.meta["name"]
            bad: dict[str, list[Any]] = defaultdict(list)
            for row in res.result.get("unexpected_index_list") or []:
                tid = row["trace_id"]
                bad[tid].append({k: getattr(v, "item", lambda v=v: v)() for k, v in row.items() if k != "trace_id"})
            for tid, rows in bad.items():
                if tid in failures:
                    continue
                sample = ", ".join(str(r) for r in rows[:3])
                failures[tid] = (
                    name,
                    f"trace {tid}: Great Expectations rule {name} failed on {len(rows)} {frame} row(s): {sample}",
                )
    return failures
