"""The report job (jobs/report.py) as a Prefect flow."""

from prefect import flow

from jobs import report

__all__ = ["report_lake"]

report_lake = flow(name="report-lake", log_prints=True)(report.report_lake)
