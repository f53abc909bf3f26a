"""The judge interface: score a batch of traces against the rubric (schemas/rubric.py)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

import polars as pl

from schemas.rubric import DIMENSIONS, overall
from schemas.settings import JudgeSettings

__all__ = ["Judge", "JudgeBatch", "Score", "TraceView"]


@dataclass(frozen=True)
class TraceView:
    """One trace as a judge sees it: the task, the ordered events, and the QA verdict if any."""

    trace_id: str
    task_title: str
    task_description: str
    started_at: datetime
    events: list[dict]
    qa_verdict: str | None = None


@dataclass
class JudgeBatch:
    """A batch of traces as polars frames (one row per trace in `traces`, their events in `events`)."""

    traces: pl.DataFrame
    events: pl.DataFrame
    qa: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema={"trace_id": pl.String, "verdict": pl.String}))
    """Latest QA verdict per trace (trace_id, verdict)."""

    @property
    def trace_ids(self) -> list[str]:
        return self.traces.get_column("trace_id").to_list()

    def verdicts(self) -> dict[str, str]:
        return dict(self.qa.select("trace_id", "verdict").iter_rows())

    def views(self) -> Iterator[TraceView]:
        verdicts = self.verdicts()
        groups = {k[0]: g for k, g in self.events.sort("trace_id", "seq").group_by("trace_id", maintain_order=True)}
        for t in self.traces.iter_rows(named=True):
            ev = groups.get(t["trace_id"])
            yield TraceView(
                t["trace_id"],
                t["task_title"] or "",
                t["task_description"] or "",
                t["started_at"],
                ev.to_dicts() if ev is not None else [],
                verdicts.get(t["trace_id"]),
            )


@dataclass
class Score:
    """A judge's result for one trace (becomes a row of `scores`)."""

    trace_id: str
    status: str
    scores: dict[str, float] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)
    qa_verdict: str | None = None
    raw_reply: str | None = None
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None

    def columns(self) -> dict:
        scored = self.status == "scored"
        return {
            "trace_id": self.trace_id,
            "status": self.status,
            "overall": overall(self.scores) if scored else None,
            **{d: (float(self.scores[d]) if scored else None) for d in DIMENSIONS},
            **{f"why_{d}": self.why.get(d) for d in DIMENSIONS},
            "qa_verdict": self.qa_verdict,
            "raw_reply": self.raw_reply,
            "error": self.error,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_s": self.latency_s,
        }


class Judge(ABC):
    """One judge kind. `judge_id` changes whenever anything that shapes its scores changes."""

    kind: ClassVar[str]
    version: ClassVar[str]

    def __init__(self, settings: JudgeSettings):
        self.settings = settings

    @property
    @abstractmethod
    def judge_id(self) -> str: ...

    @property
    def model(self) -> str | None:
        return None

    @abstractmethod
    def score_batch(self, batch: JudgeBatch) -> list[Score]:
        """One Score per trace of the batch, in the batch's order. Never raises for a trace's content."""
