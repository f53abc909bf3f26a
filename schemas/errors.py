"""The project's exceptions: a small tree whose types carry the retry policy.

    PrtError
    ├── ConfigError            (terminal)  a setting is missing or wrong; fix the setting
    ├── InvalidInput           (terminal)  an SDK or CLI call got a bad value; names the field
    ├── ObjectConflict         (terminal)  an immutable object exists with other bytes
    ├── StorageUnavailable     (transient) the object store did not answer; retry
    ├── TraceRejected          (terminal)  a trace failed validation; becomes a quarantine row
    ├── LeaseLost              (transient) another run took over this batch; stop, it will finish
    ├── SandboxUnavailable     (terminal)  no sandbox back-end can run here; never run unsandboxed
    ├── SandboxError           (transient) the sandbox failed for reasons of its own
    └── JudgeError             (transient) the judge's model endpoint failed

`TerminalError` and `TransientError` are mixins: `is_transient(exc)` is the retry condition
used by the Prefect tasks, so retry policy lives in the type, not at the call site.
Bad data is a result (a quarantine row), never an exception that kills a batch: `TraceRejected`
is raised inside the assembler and caught per trace.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "QUARANTINE_REASONS",
    "ConfigError",
    "InvalidInput",
    "JudgeError",
    "LeaseLost",
    "ObjectConflict",
    "PrtError",
    "QuarantineReason",
    "SandboxError",
    "SandboxUnavailable",
    "StorageUnavailable",
    "TerminalError",
    "TraceRejected",
    "TransientError",
    "is_transient",
]


class PrtError(Exception):
    """Base of every error this project raises on purpose."""


class TerminalError:
    """Mixin: retrying cannot help; the input or the configuration must change."""


class TransientError:
    """Mixin: the same call may succeed later; tasks retry these."""


class ConfigError(PrtError, TerminalError, ValueError):
    """A setting is missing or invalid."""


class InvalidInput(PrtError, TerminalError, ValueError):
    """A producer or CLI call got a value that the trace format does not allow.

    `field` names the offending field, e.g. ``file_edit.file_path``.
    """

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class ObjectConflict(PrtError, TerminalError):
    """An immutable object already exists with different bytes."""

    def __init__(self, path: str, message: str | None = None):
        self.path = path
        super().__init__(message or f"{path} already exists with different content; objects are immutable")


class StorageUnavailable(PrtError, TransientError):
    """The object store failed in a way that a retry may fix."""


class LeaseLost(PrtError, TransientError):
    """Another run took over the batch this run was writing; this run stops, the other finishes."""


class SandboxUnavailable(PrtError, TerminalError):
    """No sandbox back-end works on this machine; tests are never run without one."""


class SandboxError(PrtError, TransientError):
    """The sandbox itself failed (not the tests inside it)."""


class JudgeError(PrtError, TransientError):
    """The judge's model endpoint failed or timed out."""


QuarantineReason = Literal[
    "bad_json",  # a chunk line is not JSON
    "schema_error",  # an event, the manifest or complete.json breaks the schema
    "unknown_event_type",  # an event's `type` is not one of the five
    "seq_gap",  # event seq numbers skip a value
    "seq_duplicate",  # two events share a seq
    "event_count_mismatch",  # complete.json's event_count disagrees with the chunks
    "duplicate_event_id",  # two events share an id
    "chain_mismatch",  # the hash chain does not reach complete.json's chain_head
    "chunk_conflict",  # the same chunk_seq was sent twice with different bytes
    "chunk_name",  # an object under chunks/ is not named <seq:06d>-<id>.jsonl[.gz]
    "chunk_too_large",  # a chunk, decompressed, is over the size limit
    "line_too_large",  # one event line is over the size limit
    "bad_gzip",  # a .gz chunk is truncated or not gzip
    "not_utf8",  # a chunk is not valid UTF-8 (or holds NUL bytes)
    "unsafe_path",  # a trace id, file path or artifact path is absolute, climbs out or is a link
    "stray_object",  # an object that inbox protocol v1 has no place for
    "artifact_missing",  # an event or the manifest references an artifact that is not there
    "artifact_mismatch",  # an artifact's bytes do not hash to its name
    "artifact_too_large",  # an artifact is over the size limit
    "bad_snapshot",  # the repo snapshot is not a safe gzip tar of regular files and folders
    "manifest_missing",  # complete.json is there but manifest.json is not
    "manifest_mismatch",  # manifest.json disagrees with complete.json or the object layout
    "consent_withdrawn",  # session.consent is false: nothing of the content is kept
    "incomplete",  # chunks were still missing when the grace period ran out
    "duplicate_trace",  # a trace with this id but other content is already in the lake
    "expectation_failed",  # a Great Expectations rule failed; the message names it
]
QUARANTINE_REASONS: frozenset[str] = frozenset(get_args(QuarantineReason))


class TraceRejected(PrtError, TerminalError):
    """A trace failed validation. Carries a stable reason code and a message for people.

    The message names the trace, the object and what is wrong, e.g.
    ``trace t-42: chunks/000003-ab12.jsonl line 7 is not valid JSON (Expecting value)``.
    """

    def __init__(self, reason: QuarantineReason, message: str, *, object_key: str | None = None):
        if reason not in QUARANTINE_REASONS:  # a typo here would create an unqueryable code
            raise ValueError(f"unknown quarantine reason {reason!r}")
        self.reason = reason
        self.object_key = object_key
        super().__init__(message)


def is_transient(exc: BaseException) -> bool:
    """True when a retry may succeed: our transient errors, or I/O-level failures of SDKs."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, TerminalError):
        return False
    return isinstance(exc, (ConnectionError, TimeoutError))
