"""The reprocess job (jobs/reprocess.py) as a Prefect flow; its QA and judge stages are subflows."""

from __future__ import annotations

from datetime import date
from typing import Literal

from prefect import flow

from flows.judge import judge_traces
from flows.qa import verify_traces
from jobs import reprocess as job
from jobs.reprocess import ReprocessSummary, Stage, reprocess_with

__all__ = ["reprocess"]


@flow(name="reprocess", log_prints=True, description=job.reprocess.__doc__)
def reprocess(
    since: date | None = None,
    until: date | None = None,
    trace_ids: list[str] | None = None,
    stages: list[Stage] = ["validate", "regrade", "qa", "judge"],  # noqa: B006 - Prefect shows the default in the UI form
    judge: Literal["heuristic", "openai"] | None = None,
    lake: str | None = None,
) -> ReprocessSummary:
    return reprocess_with(
        verify_traces, judge_traces, since=since, until=until, trace_ids=trace_ids, stages=stages, judge=judge, lake=lake
    )
