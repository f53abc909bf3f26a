"""Publish what a run did as Prefect artifacts: a table per trace and a markdown summary."""

from __future__ import annotations

from tasks.stage import in_flow_run, stage_task

__all__ = ["MAX_TABLE_ROWS", "publish_run_artifacts"]

MAX_TABLE_ROWS = 500
"""A run's table shows at most this many rows, the ones the flow puts first (what needs attention).
The lake's tables hold every trace; otherwise a table artifact grows with the inbox (5,000 traces:
a 0.5 MB row in the Prefect database per run)."""


def publish_run_artifacts(key: str, rows: list[dict] | None, markdown: str, description: str) -> None:
    """Create the run's table (`<key>-traces`, at most MAX_TABLE_ROWS rows) and markdown summary
    (`<key>-summary`) in the Prefect UI; nothing outside a Prefect flow run."""
    if in_flow_run():  # a stage task: its arguments are quoted (Prefect would walk 5,000 rows in 0.3 s)
        _publish(key, bounded(rows) or [{"trace_id": "", "outcome": "nothing to do"}], markdown, description)


@stage_task("publish-artifacts")
def _publish(key: str, rows: list[dict], markdown: str, description: str) -> None:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_table_artifact(key=f"{key}-traces", table=rows, description=description)
    create_markdown_artifact(key=f"{key}-summary", markdown=markdown, description=description)


def bounded(rows: list[dict] | None, limit: int = MAX_TABLE_ROWS) -> list[dict]:
    """The first `limit` rows; past that, the first `limit - 1` and a row that says how many are left out."""
    if not rows or len(rows) <= limit:
        return rows or []
    first = next(iter(rows[0]))
    more = {k: "" for k in rows[0]} | {first: f"… {len(rows) - limit + 1:,} more rows (see the lake's tables)"}
    return [*rows[: limit - 1], more]
