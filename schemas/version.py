"""Versions stamped on every lake row and Delta commit."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["CODE_VERSION", "PARSER_VERSION"]

try:
    CODE_VERSION: str = version("pr-telemetry")
except PackageNotFoundError:  # running from a source tree that was never installed
    CODE_VERSION = "0+unknown"

PARSER_VERSION = "v1.1"
"""Bump when validation rules change what is accepted, so reprocessed rows say which rules admitted them."""
