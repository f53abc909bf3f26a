"""report_lake: an HTML report of the lake, also published as a Prefect markdown artifact."""

from __future__ import annotations

from lake.read import Lake
from schemas.settings import get_settings
from tasks.publish import publish_run_artifacts
from tasks.research.report import write_report

__all__ = ["report_lake"]


def report_lake(out: str, lake: str | None = None) -> str:
    """Write report.html with plots of verdicts, scores per dimension, events per type and sessions over time."""
    lake = lake or get_settings().lake
    page, markdown = write_report(Lake(lake), out)
    publish_run_artifacts("report", None, markdown, f"report of {lake} at {page}")
    return str(page)
