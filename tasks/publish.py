"""Publish what a run did as Prefect artifacts: a table per trace and a markdown summary."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import get_run_context

from tasks._prefect import stage_task

__all__ = ["MAX_TABLE_ROWS", "publish_run_artifacts"]

MAX_TABLE_ROWS = 500
"""A run's table shows at most this many rows, the ones the flow puts first (what needs attention).
The lake's tables hold every trace; a table artifact grows with the inbox otherwise, and one of
5,000 rows costs the run 0.4 s and the Prefect server a 0.5 MB row."""


def _in_prefect_run() -> bool:
    try:
        get_run_context()
    except Exception:  # MissingContextError outside a flow run
        return False
    return True


@stage_task("publish-artifacts")
def publish_run_artifacts(key: str, rows: list[dict], markdown: str, description: str) -> None:
    """Create the per-trace table and the markdown summary of one run (keys show in the Prefect UI)."""
    if not _in_prefect_run():
        return
    create_table_artifact(
        key=f"{key}-traces", table=bounded(rows) or [{"trace_id": "", "outcome": "nothing to do"}], description=description
    )
    create_markdown_artifact(key=f"{key}-summary", markdown=markdown, description=description)


def bounded(rows: list[dict] | None, limit: int = MAX_TABLE_ROWS) -> list[dict]:
    """The first `limit` rows; past that, the first `limit - 1` and a row that says how many are left out."""
    if not rows or len(rows) <= limit:
        return rows or []
    first = next(iter(rows[0]))
    more = {k: "" for k in rows[0]} | {first: f"… {len(rows) - limit + 1:,} more rows (see the lake's tables)"}
    return [*rows[: limit - 1], more]
