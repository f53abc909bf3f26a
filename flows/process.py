"""The scheduled job (jobs/process.py) as a Prefect flow; its three stages are subflows."""

from __future__ import annotations

from prefect import flow

from flows.ingest import ingest_inbox
from flows.judge import judge_traces
from flows.qa import verify_traces
from jobs import process as job
from jobs.process import ProcessResult, process_with

__all__ = ["process_inbox"]


@flow(name="process-inbox", log_prints=True, description=job.process_inbox.__doc__)
def process_inbox(
    inbox: str | None = None, lake: str | None = None, sandbox: str | None = None, judge: str | None = None
) -> ProcessResult:
    return process_with(ingest_inbox, verify_traces, judge_traces, inbox=inbox, lake=lake, sandbox=sandbox, judge=judge)
