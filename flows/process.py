"""process_inbox: the scheduled job. Ingest the inbox, verify the traces that need it, score them."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow

from flows.ingest import ingest_inbox
from flows.judge import JudgeSummary, judge_traces
from flows.qa import verify_traces
from tasks.ingest import IngestSummary
from tasks.qa import QaSummary

__all__ = ["ProcessResult", "process_inbox"]


@dataclass
class ProcessResult:
    ingest: IngestSummary
    qa: QaSummary
    judge: JudgeSummary


@flow(name="process-inbox", log_prints=True)
def process_inbox(
    inbox: str | None = None, lake: str | None = None, sandbox: str | None = None, judge: str | None = None
) -> ProcessResult:
    """Ingest every complete trace, verify every trace without a QA run, then score every trace the
    judge has not scored (new ones and any that a failed earlier run left behind)."""
    ingested = ingest_inbox(inbox=inbox, lake=lake)
    verified = verify_traces(lake=lake, sandbox=sandbox)
    scored = judge_traces(lake=lake, judge=judge)
    return ProcessResult(ingested, verified, scored)
