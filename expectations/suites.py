"""Great Expectations suites as code: the table-level rules a batch must meet before it is written.

Per-event rules live in the pydantic models; these are the rules that need a whole frame: keys
unique across the batch, events inside their session's time window, pseudonyms that look like
pseudonyms, sessions of plausible length. Every expectation carries a stable name in its
`meta`, which is what a quarantine row reports.

Great Expectations is imported only when a suite is built (it costs ~3 s), inside the validate task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.events import EVENT_TYPES
from schemas.types import MAX_SESSION_S, SESSION_SLACK_S

__all__ = ["RULES", "Rule"]


@dataclass(frozen=True)
class Rule:
    """One expectation: a stable name, the frame it checks, the GE class name and its arguments."""

    name: str
    frame: str
    expectation: str
    kwargs: dict[str, Any]


RULES: tuple[Rule, ...] = (
    Rule("events.key_not_null", "events", "ExpectColumnValuesToNotBeNull", {"column": "seq"}),
    Rule("events.key_unique", "events", "ExpectCompoundColumnsToBeUnique", {"column_list": ["trace_id", "seq"]}),
    Rule("events.event_id_unique", "events", "ExpectCompoundColumnsToBeUnique", {"column_list": ["trace_id", "event_id"]}),
    Rule("events.type_known", "events", "ExpectColumnValuesToBeInSet", {"column": "type", "value_set": list(EVENT_TYPES)}),
    Rule(
        "events.line_sha256_hex",
        "events",
        "ExpectColumnValuesToMatchRegex",
        {"column": "line_sha256", "regex": r"^[0-9a-f]{64}$"},
    ),
    Rule(
        "events.not_before_session",
        "events",
        "ExpectColumnValuesToBeBetween",
        {"column": "from_start_s", "min_value": -SESSION_SLACK_S},
    ),
    Rule(
        "events.not_after_session",
        "events",
        "ExpectColumnValuesToBeBetween",
        {"column": "to_end_s", "max_value": SESSION_SLACK_S},
    ),
    Rule("traces.trace_id_unique", "traces", "ExpectColumnValuesToBeUnique", {"column": "trace_id"}),
    Rule(
        "traces.participant_is_pseudonym",
        "traces",
        "ExpectColumnValuesToMatchRegex",
        {"column": "participant", "regex": r"^p_[0-9a-f]{32}$"},
    ),
    Rule(
        "traces.session_length",
        "traces",
        "ExpectColumnValuesToBeBetween",
        {"column": "duration_s", "min_value": 0, "max_value": MAX_SESSION_S},
    ),
    Rule(
        "metrics.counts_add_up",
        "traces",  # checked on the traces frame, which carries each trace's metrics
        "ExpectColumnValuesToBeBetween",
        {"column": "uncounted_events", "min_value": 0, "max_value": 0},
    ),
)
