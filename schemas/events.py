"""Trace events: one JSON object per chunk line, a discriminated union on `type`.

Unknown fields on a known type are kept (`extra="allow"`) and land in the lake's `extra`
column; an unknown `type` is a validation error that names the type.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from schemas.types import ArtifactRef, Count, SafeRelPath, Seconds, Sha256Hex, Timestamp, check_finite_extra

__all__ = [
    "EVENT_ADAPTER",
    "EVENT_FIELDS",
    "EVENT_LIST_ADAPTER",
    "EVENT_TYPES",
    "NOTE_KINDS",
    "CmdRun",
    "Commit",
    "Event",
    "EventType",
    "FileEdit",
    "NoteKind",
    "RationaleNote",
    "TestRun",
]

EventType = Literal["file_edit", "cmd_run", "test_run", "commit", "rationale_note"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

NoteKind = Literal["plan", "hypothesis", "observation", "decision", "next_step"]
NOTE_KINDS: tuple[str, ...] = get_args(NoteKind)

ExitCode = Annotated[int, Field(ge=-255, le=255)]


class _EventBase(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    id: Annotated[str, Field(min_length=1, max_length=128)]
    """Client-chosen event id, unique within the trace."""
    seq: Annotated[int, Field(ge=0, le=2**31 - 1)]
    """Trace-global position: 0..event_count-1 without gaps across chunks."""
    ts_client_s: Timestamp
    """Client clock, Unix seconds (2000-01-01 .. 2100-01-01)."""

    @model_validator(mode="after")
    def _finite_extra(self):
        check_finite_extra(self.__pydantic_extra__)
        return self


class FileEdit(_EventBase):
    """A saved change to one file, as a unified diff against the file's previous recorded state."""

    type: Literal["file_edit"] = "file_edit"
    file_path: SafeRelPath
    """Path relative to the repo root."""
    diff_unified: str
    """Unified diff (`---`/`+++` headers optional) that turns the previous state into the new one."""
    buffer_hash_after: Sha256Hex
    """sha256 of the file's full bytes after the edit; checked when the edit is replayed."""


class CmdRun(_EventBase):
    """A shell command the developer ran."""

    type: Literal["cmd_run"] = "cmd_run"
    command: str
    """The command line as typed."""
    exit_code: ExitCode
    """Process exit status; negative for a signal."""
    duration_s: Seconds
    stdout: str | None = None
    """Captured standard output, when small enough to inline."""
    stdout_ref: ArtifactRef | None = None
    """`sha256:<hex>` of the output artifact, when it was too large to inline."""
    stderr: str | None = None
    stderr_ref: ArtifactRef | None = None

    @model_validator(mode="after")
    def _inline_or_ref(self) -> CmdRun:
        for name in ("stdout", "stderr"):
            if getattr(self, name) is not None and getattr(self, f"{name}_ref") is not None:
                raise ValueError(f"{name} and {name}_ref are mutually exclusive")
        return self


class TestRun(_EventBase):
    """A test-suite run with its counts."""

    __test__ = False  # not a pytest class

    type: Literal["test_run"] = "test_run"
    framework: Annotated[str, Field(min_length=1, max_length=64)]
    """Test framework, e.g. `pytest`."""
    command: str
    passed: Count
    failed: Count
    errors: Count = 0
    skipped: Count = 0
    duration_s: Seconds
    failing_tests: list[str] = []
    """Node ids of failing tests, e.g. `tests/test_calc.py::test_mean`."""


class Commit(_EventBase):
    """A git commit made during the session."""

    type: Literal["commit"] = "commit"
    sha: Annotated[str, Field(pattern=r"^[0-9a-f]{7,64}$")]
    message: str


class RationaleNote(_EventBase):
    """A structured piece of the developer's reasoning."""

    type: Literal["rationale_note"] = "rationale_note"
    kind: NoteKind
    """plan | hypothesis | observation | decision | next_step"""
    text: Annotated[str, Field(min_length=1)]


Event = Annotated[FileEdit | CmdRun | TestRun | Commit | RationaleNote, Field(discriminator="type")]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_LIST_ADAPTER: TypeAdapter[list[Event]] = TypeAdapter(list[Event])

EVENT_FIELDS: dict[str, frozenset[str]] = {
    m.model_fields["type"].default: frozenset(m.model_fields) for m in (FileEdit, CmdRun, TestRun, Commit, RationaleNote)
}
"""Known field names per event type; anything else on an event is `extra`."""
