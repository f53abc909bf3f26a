"""Frames in the shape of a lake table: a table spec as a polars schema, an empty frame, and the one
cast of a polars frame to the table's exact Arrow schema before it is written."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from schemas.tables import TableSpec

__all__ = ["empty_frame", "polars_schema", "to_arrow"]


def polars_schema(spec: TableSpec) -> pl.Schema:
    return pl.from_arrow(spec.schema.empty_table()).schema


def empty_frame(spec: TableSpec) -> pl.DataFrame:
    return pl.from_arrow(spec.schema.empty_table())


def to_arrow(df: pl.DataFrame, spec: TableSpec) -> pa.Table:
    """`df` as an Arrow table with exactly the spec's columns, order and types."""
    table = df.select(spec.columns).to_arrow()
    return table.cast(spec.schema)
