"""Judges behind one interface and a registry: `heuristic` (offline, the default) and `openai`."""

from __future__ import annotations

from schemas.errors import ConfigError
from schemas.settings import JudgeSettings, get_judge_settings
from tasks.judge.base import Judge, JudgeBatch, Score, TraceView
from tasks.judge.heuristic import HeuristicJudge
from tasks.judge.model import ModelJudge

__all__ = ["JUDGES", "Judge", "JudgeBatch", "Score", "TraceView", "get_judge", "register_judge"]

JUDGES: dict[str, type[Judge]] = {}


def register_judge(cls: type[Judge]) -> type[Judge]:
    JUDGES[cls.kind] = cls
    return cls


register_judge(HeuristicJudge)
register_judge(ModelJudge)


def get_judge(kind: str | None = None, settings: JudgeSettings | None = None) -> Judge:
    """The judge of `kind` (default: PRT_JUDGE), or a ConfigError listing the known kinds."""
    settings = settings or get_judge_settings()
    kind = kind or settings.kind
    if kind not in JUDGES:
        raise ConfigError(f"unknown judge {kind!r}; known: {', '.join(sorted(JUDGES))}")
    return JUDGES[kind](settings)
