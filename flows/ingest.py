"""The ingest job (jobs/ingest.py) as a Prefect flow."""

from prefect import flow

from jobs import ingest

__all__ = ["ingest_inbox"]

ingest_inbox = flow(name="ingest-inbox", log_prints=True)(ingest.ingest_inbox)
