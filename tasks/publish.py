"""Publish what a run did as Prefect artifacts: a table per trace and a markdown summary."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import get_run_context

from tasks._prefect import stage_task

__all__ = ["publish_run_artifacts"]


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
        key=f"{key}-traces", table=rows or [{"trace_id": "", "outcome": "nothing to do"}], description=description
    )
    create_markdown_artifact(key=f"{key}-summary", markdown=markdown, description=description)
