"""process_inbox: the scheduled job. Ingest the inbox, verify the traces that need it, score them."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow

from flows.ingest import ingest_inbox
from flows.judge import JudgeSummary, judge_traces
from flows.qa import verify_traces
from tasks.ingest.batch import IngestSummary
from tasks.publish import publish_run_artifacts
from tasks.qa.store import QaSummary

__all__ = ["ProcessResult", "process_inbox"]


@dataclass
class ProcessResult:
    ingest: IngestSummary
    qa: QaSummary
    judge: JudgeSummary

    def rows(self) -> list[dict]:
        """What happened to each trace in this run, across the three stages."""
        out: dict[str, dict] = {}

        def row(tid: str) -> dict:
            return out.setdefault(tid, {"trace_id": tid, "ingest": "", "verdict": "", "overall": None})

        for r in self.ingest.rows():
            row(r["trace_id"])["ingest"] = r["outcome"] + (f" ({r['reason']})" if r["reason"] else "")
        for r in self.qa.rows:
            row(r["trace_id"])["verdict"] = r["verdict"]
        for r in self.judge.rows:
            row(r["trace_id"])["overall"] = r["overall"]
        return sorted(out.values(), key=lambda r: r["trace_id"])

    def markdown(self) -> str:
        return "\n".join([self.ingest.markdown(), self.qa.markdown(), self.judge.markdown()])


@flow(name="process-inbox", log_prints=True)
def process_inbox(
    inbox: str | None = None, lake: str | None = None, sandbox: str | None = None, judge: str | None = None
) -> ProcessResult:
    """Ingest every complete trace, verify every trace without a QA run, then score every trace the
    judge has not scored (new ones and any that a failed earlier run left behind)."""
    ingested = ingest_inbox(inbox=inbox, lake=lake)
    verified = verify_traces(lake=lake, sandbox=sandbox)
    scored = judge_traces(lake=lake, judge=judge)
    result = ProcessResult(ingested, verified, scored)
    publish_run_artifacts("process", result.rows(), result.markdown(), "ingest, verification and scoring of one scheduled run")
    return result
