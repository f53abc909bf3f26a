"""process_inbox: the scheduled job. Ingest the inbox, then verify the traces that need it."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow

from flows.ingest import ingest_inbox
from flows.qa import verify_traces
from tasks.ingest import IngestSummary
from tasks.qa import QaSummary

__all__ = ["ProcessResult", "process_inbox"]


@dataclass
class ProcessResult:
    ingest: IngestSummary
    qa: QaSummary


@flow(name="process-inbox", log_prints=True)
def process_inbox(inbox: str | None = None, lake: str | None = None, sandbox: str | None = None) -> ProcessResult:
    """Ingest every complete trace, then verify every trace without a QA run (new ones and any a
    failed earlier run left behind)."""
    ingested = ingest_inbox(inbox=inbox, lake=lake)
    verified = verify_traces(lake=lake, sandbox=sandbox)
    return ProcessResult(ingested, verified)
