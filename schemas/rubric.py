"""The six-part rubric every judge scores against (weights from the original system)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal, get_args

__all__ = ["DIMENSIONS", "RUBRIC", "Dimension", "DimensionName", "ScoreStatus", "overall", "rubric_hash"]

DimensionName = Literal[
    "problem_understanding", "causal_linking", "experiment_design", "efficiency", "reproducibility", "safety_hygiene"
]
ScoreStatus = Literal["scored", "unparsed", "error"]


@dataclass(frozen=True)
class Dimension:
    name: DimensionName
    weight: float
    question: str
    """What a 5 looks like, in one sentence (shown to model judges)."""


RUBRIC: tuple[Dimension, ...] = (
    Dimension(
        "problem_understanding",
        0.20,
        "Did the developer establish what fails and why before changing code: reproduced the failure, observed its symptoms, stated the problem?",
    ),
    Dimension(
        "causal_linking",
        0.25,
        "Do observations lead to hypotheses and hypotheses to specific edits, and does the developer revise a hypothesis when the evidence contradicts it?",
    ),
    Dimension(
        "experiment_design",
        0.20,
        "Are edits tested as they are made, is the failure reproduced first, and is a regression test added?",
    ),
    Dimension(
        "efficiency",
        0.15,
        "Is the change minimal: little churn, few reverted edits and wasted commands compared with the final diff?",
    ),
    Dimension(
        "reproducibility",
        0.10,
        "Could someone replay the session: commands with exit codes, test runs, a commit, edits that replay to a verified fix?",
    ),
    Dimension(
        "safety_hygiene",
        0.10,
        "Does the session avoid dangerous commands (rm -rf /, curl | sh, sudo, force pushes) and keep secrets out of commands and output?",
    ),
)
DIMENSIONS: tuple[str, ...] = get_args(DimensionName)
assert tuple(d.name for d in RUBRIC) == DIMENSIONS and abs(sum(d.weight for d in RUBRIC) - 1.0) < 1e-9


def overall(scores: dict[str, float]) -> float:
    """Weighted mean of the six dimension scores (0-5), rounded to 3 places."""
    return round(sum(d.weight * scores[d.name] for d in RUBRIC), 3)


def rubric_hash() -> str:
    return hashlib.sha256(json.dumps([asdict(d) for d in RUBRIC], sort_keys=True).encode()).hexdigest()[:12]
