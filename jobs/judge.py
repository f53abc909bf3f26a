"""judge_traces: score every trace the chosen judge has not scored yet on the six-part rubric."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import polars as pl

from lake.read import Lake
from schemas.errors import JudgeFailed
from schemas.rubric import DIMENSIONS
from schemas.settings import get_judge_settings, get_settings
from tasks.judge import get_judge
from tasks.judge.store import judge_batches, score_batch_task, score_rows, store_scores_task, unscored
from tasks.publish import publish_run_artifacts
from tasks.stage import run_id as current_run_id
from tasks.stage import run_logger

__all__ = ["JudgeSummary", "judge_traces"]


@dataclass
class JudgeSummary:
    judge_id: str = ""
    rows: list[dict] = field(default_factory=list)

    def by_status(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out

    def counts(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(self.by_status().items())) or "none"

    def failed(self) -> str | None:
        """Why this run counts as failed (rows, and not one of them scored), or None."""
        if not self.rows or self.by_status().get("scored", 0):
            return None
        first = next((r["error"] for r in self.rows if r["error"]), "no error recorded")
        return f"scored none of {len(self.rows)} traces ({self.counts()}); first error: {first[:300]}"

    def table(self) -> list[dict]:
        return sorted(
            (
                {
                    "trace_id": r["trace_id"],
                    "status": r["status"],
                    "overall": r["overall"],
                    **{d: r[d] for d in DIMENSIONS},
                    "error": r["error"] or "",
                }
                for r in self.rows
            ),
            key=lambda r: (not r["error"], r["trace_id"]),  # failures first: a large run's table is cut short
        )

    def markdown(self) -> str:
        lines = [
            f"# Judge `{self.judge_id}`",
            "",
            f"- judged now: **{len(self.rows)}** traces ({self.counts()})",
        ]
        if self.failed():
            lines += ["", f"**This run failed:** {self.failed()}"]
        scored = [r for r in self.rows if r["status"] == "scored"]
        if scored:
            df = pl.DataFrame(scored).select(["overall", *DIMENSIONS])
            lines += ["", "| dimension | min | mean | max |", "| --- | --- | --- | --- |"]
            for col in ["overall", *DIMENSIONS]:
                s = df[col]
                lines.append(f"| {col} | {s.min():.2f} | {s.mean():.2f} | {s.max():.2f} |")
        return "\n".join(lines) + "\n"


def judge_traces(lake: str | None = None, judge: str | None = None, trace_ids: list[str] | None = None) -> JudgeSummary:
    """Score traces with a judge (heuristic by default; openai for any OpenAI-compatible model).

    Re-judging with the same judge writes nothing; a new judge version adds rows beside the old.
    """
    logger = run_logger("judge")
    lake = lake or get_settings().lake
    settings = get_judge_settings()
    judge_obj = get_judge(judge, settings)
    run_id = current_run_id()
    lk = Lake(lake, create=True)
    summary = JudgeSummary(judge_id=judge_obj.judge_id)
    todo = unscored(lk, judge_obj.judge_id, trace_ids)
    logger.info("%d traces to score with %s", len(todo), judge_obj.judge_id)
    for batch in judge_batches(lk, todo, settings.batch_traces):
        batch_id = f"judge-{uuid.uuid4().hex[:12]}"
        scores = score_batch_task(judge_obj, batch)
        rows = score_rows(judge_obj, scores, run_id=run_id, batch_id=batch_id)
        store_scores_task(rows, lk.tables, run_id=run_id)
        summary.rows += rows.to_dicts()
        logger.info("judged %d of %d traces (%s)", len(summary.rows), len(todo), summary.counts())
    publish_run_artifacts("judge", summary.table(), summary.markdown(), f"scores of {lake} by {judge_obj.judge_id}")
    failed = summary.failed()
    if failed:
        logger.error(failed)
        raise JudgeFailed(judge_obj.judge_id, failed)
    if summary.rows and summary.by_status().get("scored", 0) < len(summary.rows):
        logger.warning("%s: %s", judge_obj.judge_id, summary.counts())
    return summary
