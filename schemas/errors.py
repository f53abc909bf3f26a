"""The project's exceptions: a small tree whose types carry the retry policy and the identity of
what failed. Every class here is raised somewhere; tests/schemas/test_errors.py checks it.

    PrtError                                         the CLI prints any of these as one line, exit 2
    ├── ConfigError              (terminal)  a setting is missing or wrong; fix the setting
    ├── InvalidInput             (terminal)  an SDK or CLI call got a bad value          .field
    ├── ObjectConflict           (terminal)  an immutable object exists with other bytes .path
    ├── StorageUnavailable       (transient) the object store did not answer; retry      .url
    ├── TraceRejected            (terminal)  a trace failed validation; a quarantine row .reason .object_key
    ├── LeaseLost                (transient) another run took over this batch            .batch_id
    ├── SandboxUnavailable       (terminal)  no sandbox back-end can run here            .backend
    ├── RecorderError            (terminal)  `prt record` cannot run here                .repo
    ├── UnsupportedTestCommand   (terminal)  QA cannot run this test command safely      .command
    ├── ReportError              (terminal)  a test report is missing, too large or not a report
    ├── SnapshotError            (terminal)  a repo snapshot is not a safe gzip tar of the repo
    ├── JudgeFailed              (terminal)  a judge run scored no trace: every row error or unparsed .judge_id
    ├── GzipError                (terminal)  a gzip stream is broken, cut, or too large  .too_large
    └── DiffError                (terminal)  a unified diff is malformed or does not apply
        └── ReplayError          (terminal)  a recorded edit did not replay              .seq .event_id .file_path

`TerminalError` and `TransientError` are mixins: `is_transient(exc)` is the retry condition
used by the Prefect tasks, so retry policy lives in the type, not at the call site.
Bad data is a result (a quarantine row, an `error` verdict), never an exception that kills a
batch: `TraceRejected`, `ReplayError`, `ReportError` and `UnsupportedTestCommand` are caught per
trace and become rows. Errors of the SDKs below (fsspec, botocore, delta-rs) are translated once,
in `client.storage.storage_errors`.

Retry layers, outermost first (docs/architecture.md has the budget in seconds):
- a stage's Prefect task retries transient errors (`stage_task(retry_after=[...])`);
- a Delta commit retries conflicts and I/O inside `LakeTables._retry` (5 or 8 attempts, 0.2 s doubling);
- the ingest claim loop takes over batches whose lease ran out (`PRT_LEASE_S`) on the next run.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "QUARANTINE_REASONS",
    "QUARANTINE_REASON_MEANINGS",
    "ConfigError",
    "DiffError",
    "GzipError",
    "InvalidInput",
    "JudgeFailed",
    "LeaseLost",
    "ObjectConflict",
    "PrtError",
    "QuarantineReason",
    "RecorderError",
    "ReplayError",
    "ReportError",
    "SandboxUnavailable",
    "SnapshotError",
    "StorageUnavailable",
    "TerminalError",
    "TraceRejected",
    "TransientError",
    "UnsupportedTestCommand",
    "is_transient",
]


class PrtError(Exception):
    """Base of every error this project raises on purpose."""

    def __reduce__(self) -> tuple:
        # Pickled as its class, message and attributes: errors cross into and out of ingest's
        # worker processes (inside a batch's listings, or raised there), and the subclasses'
        # __init__ take other arguments than the message Exception keeps in .args.
        return _rebuilt, (type(self), self.args), self.__dict__


def _rebuilt(cls: type[PrtError], args: tuple) -> PrtError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    return error


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

    def __init__(self, message: str, *, url: str | None = None):
        self.url = url
        super().__init__(message)


class LeaseLost(PrtError, TransientError):
    """Another run took over the batch this run was writing; this run stops, the other finishes."""

    def __init__(self, batch_id: str, message: str | None = None):
        self.batch_id = batch_id
        super().__init__(message or f"batch {batch_id} was taken over by another run")


class SandboxUnavailable(PrtError, TerminalError):
    """No sandbox back-end works on this machine; tests are never run without one."""

    def __init__(self, message: str, *, backend: str):
        self.backend = backend
        super().__init__(message)


class RecorderError(PrtError, TerminalError):
    """A recorder command cannot run (no session, not a git repo, a session already running...)."""

    def __init__(self, message: str, *, repo: str | None = None):
        self.repo = repo
        super().__init__(message)


class UnsupportedTestCommand(PrtError, TerminalError, ValueError):
    """QA cannot run this test command without a shell, or does not know its runner."""

    def __init__(self, command: str, message: str):
        self.command = command
        super().__init__(message)


class ReportError(PrtError, TerminalError, ValueError):
    """A test report is missing, too large, or not a report."""


class SnapshotError(PrtError, TerminalError, ValueError):
    """A repo snapshot is not one (unreadable, too large, an unsafe entry or link); the message says why."""


class JudgeFailed(PrtError, TerminalError):
    """A judge run scored none of its traces (a dead endpoint, a model that never answers in
    format): its rows are stored (each says why), and the run fails instead of looking done."""

    def __init__(self, judge_id: str, message: str):
        self.judge_id = judge_id
        super().__init__(f"judge {judge_id}: {message}")


class GzipError(PrtError, TerminalError, ValueError):
    """A gzip stream is broken or cut (`too_large` False), or decompresses past its limit (True)."""

    def __init__(self, too_large: bool, what: str):
        self.too_large = too_large
        super().__init__(what)


class DiffError(PrtError, TerminalError, ValueError):
    """A unified diff is malformed or does not apply to the text it is given."""


class ReplayError(DiffError):
    """A recorded edit did not replay: its diff did not apply or the result's hash is not the recorded one."""

    def __init__(self, seq: int, event_id: str, file_path: str, message: str):
        self.seq, self.event_id, self.file_path = seq, event_id, file_path
        super().__init__(f"edit seq {seq} (event {event_id}) to {file_path}: {message}")


QuarantineReason = Literal[
    "bad_json",
    "schema_error",
    "unknown_event_type",
    "seq_gap",
    "seq_duplicate",
    "event_count_mismatch",
    "duplicate_event_id",
    "chain_mismatch",
    "chunk_conflict",
    "chunk_name",
    "chunk_too_large",
    "trace_too_large",
    "line_too_large",
    "bad_gzip",
    "not_utf8",
    "unsafe_path",
    "stray_object",
    "artifact_missing",
    "artifact_mismatch",
    "artifact_too_large",
    "bad_snapshot",
    "manifest_missing",
    "manifest_mismatch",
    "consent_withdrawn",
    "incomplete",
    "duplicate_trace",
    "expectation_failed",
    "secret_in_name",
    "unreadable_artifact",
]
QUARANTINE_REASONS: frozenset[str] = frozenset(get_args(QuarantineReason))
QUARANTINE_REASON_MEANINGS: dict[str, str] = {
    "bad_json": "A chunk line or the manifest is not JSON, or repeats a key.",
    "schema_error": "An event, the manifest or complete.json breaks the schema.",
    "unknown_event_type": "An event's `type` is not one of the five.",
    "seq_gap": "Event seq numbers skip a value.",
    "seq_duplicate": "Two events share a seq.",
    "event_count_mismatch": "Complete.json's event_count disagrees with the chunks.",
    "duplicate_event_id": "Two events share an id.",
    "chain_mismatch": "The hash chain does not reach complete.json's chain_head.",
    "chunk_conflict": "The same chunk_seq was sent twice with different bytes.",
    "chunk_name": "An object under chunks/ is not named <seq:06d>-<id>.jsonl[.gz].",
    "chunk_too_large": "A chunk, decompressed, is over the size limit.",
    "trace_too_large": "A trace's chunks, decompressed, are over the trace size limit.",
    "line_too_large": "One event line is over the size limit.",
    "bad_gzip": "A .gz chunk is truncated or not gzip.",
    "not_utf8": "A chunk is not valid UTF-8 (or holds NUL bytes).",
    "unsafe_path": "A trace id, file path or artifact path is absolute, climbs out or is a link.",
    "stray_object": "An object that inbox protocol v1 has no place for.",
    "artifact_missing": "An event or the manifest references an artifact that is not there.",
    "artifact_mismatch": "An artifact's bytes do not hash to its name.",
    "artifact_too_large": "An artifact is over the size limit.",
    "bad_snapshot": "The repo snapshot is not a safe gzip tar of regular files and folders.",
    "manifest_missing": "`complete.json` is there but manifest.json is not.",
    "manifest_mismatch": "`manifest.json` disagrees with complete.json or the object layout.",
    "consent_withdrawn": "`session.consent` is false: nothing of the content is kept.",
    "incomplete": "Chunks were still missing when the grace period ran out.",
    "duplicate_trace": "A trace with this id but other content is already in the lake.",
    "expectation_failed": "A Great Expectations rule failed; the message names it.",
    "secret_in_name": "A name stored as it is (a file path, an event, task or chunk id, a field's name) looks like a secret.",
    "unreadable_artifact": "An output artifact is a gzip stream that cannot be read whole, so it cannot be checked for secrets.",
}
"""What each reason code means (rendered into docs/ingest.md)."""
assert set(QUARANTINE_REASON_MEANINGS) == QUARANTINE_REASONS


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
