"""process_inbox: the scheduled job. Ingest the inbox, verify the traces that need it, score them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from jobs.ingest import ingest_inbox
from jobs.judge import JudgeSummary, judge_traces
from jobs.qa import verify_traces
from tasks.ingest.batch import IngestSummary
from tasks.publish import publish_run_artifacts
from tasks.qa.store import QaSummary

__all__ = ["ProcessResult", "process_inbox", "process_with"]


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


def process_inbox(
    inbox: str | None = None, lake: str | None = None, sandbox: str | None = None, judge: str | None = None
) -> ProcessResult:
    """Ingest every complete trace, verify every trace without a QA run, then score every trace the
    judge has not scored (new ones and any that a failed earlier run left behind)."""
    return process_with(ingest_inbox, verify_traces, judge_traces, inbox=inbox, lake=lake, sandbox=sandbox, judge=judge)


def process_with(
    ingest: Callable[..., IngestSummary],
    verify: Callable[..., QaSummary],
    score: Callable[..., JudgeSummary],
    *,
    inbox: str | None,
    lake: str | None,
    sandbox: str | None,
    judge: str | None,
) -> ProcessResult:
    """process_inbox with its three stages given: the jobs here, their flows in flows/process.py
    (where each stage is a subflow of its own in the Prefect UI)."""
    ingested = ingest(inbox=inbox, lake=lake)
    verified = verify(lake=lake, sandbox=sandbox)
    scored = score(lake=lake, judge=judge)
    result = ProcessResult(ingested, verified, scored)
    publish_run_artifacts("process", result.rows(), result.markdown(), "ingest, verification and scoring of one scheduled run")
    return result
