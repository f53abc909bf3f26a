"""The researcher's read API: every table as a polars LazyFrame, on a local lake or on S3.

    from lake import Lake
    lake = Lake("s3://bucket/lake")          # or Lake() for $PRT_LAKE / ./data/lake
    lake.events().filter(pl.col("trace_id") == "t-42").collect()

Tables that do not exist yet read as empty frames with the right columns, so notebooks run on
a fresh lake.
"""

from __future__ import annotations

import polars as pl

from lake.tables import LakeTables
from schemas.tables import TABLES

__all__ = ["Lake"]


class Lake:
    """Read access to the lake's Delta tables."""

    def __init__(self, url: str | None = None):
        if url is None:
            from schemas.settings import get_settings

            url = get_settings().lake
        self.tables = LakeTables(url)
        self.url = self.tables.url

    def table(self, name: str, *, version: int | None = None) -> pl.LazyFrame:
        """Any table by name, optionally at an earlier Delta version (time travel)."""
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r}; known: {', '.join(TABLES)}")
        if not self.tables.exists(name):
            return pl.LazyFrame(schema=pl.from_arrow(TABLES[name].schema.empty_table()).schema)
        return pl.scan_delta(self.tables.uri(name), version=version, storage_options=self.tables.storage_options or None)

    def traces(self) -> pl.LazyFrame:
        return self.table("traces")

    def events(self) -> pl.LazyFrame:
        return self.table("events")

    def metrics(self) -> pl.LazyFrame:
        return self.table("metrics")

    def quarantine(self) -> pl.LazyFrame:
        return self.table("quarantine")

    def qa_runs(self) -> pl.LazyFrame:
        return self.table("qa_runs")

    def scores(self) -> pl.LazyFrame:
        return self.table("scores")
