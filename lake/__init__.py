"""The lake: the only package that knows Delta. `from lake import Lake` for reading."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lake.read import Lake
    from lake.tables import LakeTables

__all__ = ["Lake", "LakeTables"]


def __getattr__(name: str) -> Any:
    # Imported on first use: importing one module of the lake does not load deltalake and polars for the others.
    if name == "Lake":
        from lake.read import Lake

        return Lake
    if name == "LakeTables":
        from lake.tables import LakeTables

        return LakeTables
    raise AttributeError(name)
