"""manifest.json (written first) and complete.json (written last) of inbox protocol v1."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.types import MAX_TS_S, MIN_TS_S, ArtifactRef, Sha256Hex, TraceId, check_finite_extra

__all__ = ["ClientInfo", "Complete", "Environment", "Manifest", "Package", "QaSpec", "RepoInfo", "Session", "TaskInfo"]

TRACE_VERSION = "1.0"

_Text = Annotated[str, Field(max_length=10_000)]
_Short = Annotated[str, Field(min_length=1, max_length=512)]


def _in_range(value: datetime) -> datetime:
    if not MIN_TS_S <= value.timestamp() <= MAX_TS_S:
        raise ValueError("timestamp outside 2000-01-01 .. 2100-01-01")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    @model_validator(mode="after")
    def _finite_extra(self):
        check_finite_extra(self.__pydantic_extra__)
        return self


class Session(_Model):
    participant_id: _Short
    """The client's participant id; the lake stores only a keyed pseudonym of it."""
    consent: bool
    """The participant agreed to collection. False: the pipeline keeps nothing but a reason row."""

    @field_validator("consent", mode="before")
    @classmethod
    def _strict_bool(cls, v: object) -> object:
        if not isinstance(v, bool):  # "no" or 0 must never be read as consent
            raise ValueError("consent must be true or false")
        return v


class TaskInfo(_Model):
    id: _Short
    """Task or bug id, e.g. BUG-456."""
    title: _Short
    description: _Text = ""


class RepoInfo(_Model):
    origin: _Short
    """Where the repo came from (URL or name); informational."""
    start_commit: _Short
    """The commit the session started from."""
    snapshot: ArtifactRef
    """`sha256:<hex>` of the gzip tar of the repo at start_commit (paths relative to the root)."""


_Name = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class Package(_Model):
    """One installed distribution of the environment the session ran in."""

    name: _Name
    version: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9.+!_-]*$")]
    editable: bool = False
    """An editable install of the repo itself: QA installs it from the snapshot, not from the index."""
    path: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    """For an editable install: the folder it was installed from, relative to the repo root (`.`, `src/..`)."""


class Environment(_Model):
    os: _Short
    python_version: _Short
    """The interpreter the session's tests ran with, e.g. 3.11.7; QA picks the nearest it has."""
    image: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")] | None = None
    """Sandbox image to verify this trace in; the pipeline's default image when absent."""
    packages: Annotated[list[Package], Field(max_length=5000)] | None = None
    """The installed distributions (a lock): QA builds an environment with exactly these. None: unknown
    (QA runs in the stock image, as before)."""
    install: Annotated[list[Annotated[str, Field(min_length=1, max_length=4096)]], Field(max_length=20)] | None = None
    """Build steps run from the repo root before every test run (e.g. `python setup.py build_ext
    --inplace`), in the sandbox, without network."""
    dependency_files: Annotated[list[Annotated[str, Field(min_length=1, max_length=1024)]], Field(max_length=100)] | None = None
    """The repo's own files that declare its dependencies (requirements*.txt, pyproject.toml, ...)."""


class QaSpec(_Model):
    test_command: Annotated[str, Field(min_length=1, max_length=4096)]
    """The test runner invocation, run from the repo root, e.g. `python -m pytest -q` (QA runs it
    without a shell: client/testruns/runners.py lists the runners it knows)."""
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 300.0
    """Wall-clock limit for one test run; the sandbox is killed when it runs out."""


class ClientInfo(_Model):
    name: _Short
    version: _Short


class Manifest(_Model):
    """The trace header. Written first; never changes."""

    trace_version: Literal["1.0"] = TRACE_VERSION
    trace_id: TraceId
    session: Session
    task: TaskInfo
    repo: RepoInfo
    environment: Environment
    qa: QaSpec
    client: ClientInfo
    started_at: AwareDatetime
    """When the session began (ISO 8601 with a UTC offset)."""

    @field_validator("started_at")
    @classmethod
    def _started_in_range(cls, v: datetime) -> datetime:
        return _in_range(v)


class Complete(_Model):
    """complete.json: written last; its presence makes the trace eligible for ingest."""

    chunk_count: Annotated[int, Field(ge=0, le=1_000_000)]
    event_count: Annotated[int, Field(ge=0, le=2**31 - 1)]
    chain_head: Sha256Hex
    ended_at: AwareDatetime

    @field_validator("ended_at")
    @classmethod
    def _ended_in_range(cls, v: datetime) -> datetime:
        return _in_range(v)
