"""Constrained scalar types shared by the trace models: ids, safe paths, hashes, artifact refs."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

__all__ = [
    "ARTIFACT_REF_RE",
    "MAX_SESSION_S",
    "SESSION_SLACK_S",
    "TRACE_ID_RE",
    "ArtifactRef",
    "Count",
    "SafeRelPath",
    "Seconds",
    "Sha256Hex",
    "Timestamp",
    "TraceId",
    "check_finite_extra",
    "unsafe_path_reason",
]

TRACE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ARTIFACT_REF_RE = re.compile(r"^sha256:[0-9a-f]{64}$")

TraceId = Annotated[str, StringConstraints(pattern=TRACE_ID_RE.pattern)]
"""`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`: safe as a single path segment in any object store."""

Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
"""A lowercase hex sha256 digest."""

ArtifactRef = Annotated[str, StringConstraints(pattern=ARTIFACT_REF_RE.pattern)]
"""`sha256:<hex>`: the name of a content-addressed blob under `<trace>/artifacts/`."""

# Unix seconds between 2000-01-01 and 2100-01-01: anything else is a broken clock or an attack.
MIN_TS_S = 946_684_800.0
MAX_TS_S = 4_102_444_800.0
Timestamp = Annotated[float, Field(ge=MIN_TS_S, le=MAX_TS_S, allow_inf_nan=False)]

SESSION_SLACK_S = 3600.0
"""Events may carry client timestamps up to an hour outside [started_at, ended_at] (clock skew)."""
MAX_SESSION_S = 7 * 24 * 3600.0
"""The longest session the lake accepts (`traces.duration_s`)."""
Seconds = Annotated[float, Field(ge=0, le=MAX_SESSION_S, allow_inf_nan=False)]
"""A duration in seconds, at most a week."""

Count = Annotated[int, Field(ge=0, le=2**31 - 1)]
"""A non-negative count that fits Arrow's int32."""


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_non_finite(v) for v in value)
    return False


def check_finite_extra(extra: dict[str, Any] | None) -> None:
    """ValueError when an unknown field holds Infinity or NaN (1e400 parses as Infinity): no strict
    JSON reader takes them back, and the lake stores unknown fields as JSON."""
    for name, value in (extra or {}).items():
        if _non_finite(value):
            raise ValueError(f"unknown field {name!r} holds a number JSON cannot carry (over 1.8e308, Infinity or NaN)")


def unsafe_path_reason(path: str) -> str | None:
    """Why `path` is not a safe repo-relative POSIX path, or None when it is safe."""
    if not path:
        return "is empty"
    if "\x00" in path or any(ord(c) < 0x20 for c in path):
        return "contains control characters"
    if "\\" in path:
        return "contains a backslash; use '/' separators"
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return "is absolute"
    parts = path.split("/")
    if any(p == ".." for p in parts):
        return "climbs out of the repo with '..'"
    if any(p in ("", ".") for p in parts):
        return "has empty or '.' segments"
    if parts[0] == ".git":
        return "points into .git"
    if any(len(p.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for p in parts):
        return f"has a segment longer than {MAX_NAME_BYTES} bytes"
    if len(parts) > MAX_PATH_DEPTH:
        return f"is more than {MAX_PATH_DEPTH} folders deep"
    return None


MAX_NAME_BYTES = 255
"""Longest file or folder name (Linux's NAME_MAX): a longer one cannot be written anywhere."""
MAX_PATH_DEPTH = 100
"""Deepest path: deeper ones exist only to break the tools that walk them."""


def _check_safe_path(path: str) -> str:
    reason = unsafe_path_reason(path)
    if reason:
        raise ValueError(f"unsafe path {path!r}: {reason}")
    return path


SafeRelPath = Annotated[str, StringConstraints(max_length=4096), AfterValidator(_check_safe_path)]
"""A path relative to the repo root: no leading '/', no '..', no backslashes, not into .git."""
