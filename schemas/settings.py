"""Settings: one class per area, every field described, read from `PRT_*` variables.

Each area has one cached accessor (`get_settings()`, `get_ingest_settings()`, ...). Stage
functions take a settings object as an argument, so tests and flags pass their own.
Secrets (the pseudonym key, API keys) come only from the environment, never from files in the repo.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "IngestSettings",
    "JudgeSettings",
    "QaSettings",
    "SandboxSettings",
    "Settings",
    "get_ingest_settings",
    "get_judge_settings",
    "get_qa_settings",
    "get_sandbox_settings",
    "get_settings",
]

_CFG = SettingsConfigDict(env_prefix="PRT_", extra="ignore", frozen=True)

DEV_PSEUDONYM_KEY = "prt-development-key-do-not-use-in-production"


class IngestSettings(BaseSettings):
    model_config = _CFG

    batch_max_traces: int = Field(500, ge=1, description="Most traces assembled and committed together.")
    # A worker's peak while it ingests a batch, measured (docs/performance.md): ~140 MB, plus ~1.5 KB
    # per event, plus ~6.6 times the batch's event bytes. The two bounds below keep it under ~0.5 GB
    # whatever the size of the events: small ones meet the first, large ones the second.
    batch_max_events: int = Field(
        80_000, ge=1, description="Most events per batch; bounds memory (with the byte bound: ~0.5 GB per worker)."
    )
    batch_max_bytes: int = Field(
        32 * 2**20,
        ge=1,
        description="Most event bytes per batch, chunks counted decompressed; bounds memory for large events. Batches "
        "are planned with a gzip chunk at 8 times its size; a worker measures them (gzip trailers) before decompressing "
        "and hands back to the run what does not fit.",
    )
    workers: int = Field(
        "auto",  # type: ignore[assignment]  # made a number by _worker_count
        ge=1,
        le=64,
        validate_default=True,
        description="Processes that ingest batches at once (PRT_WORKERS): auto is one per core this process may use (at "
        "most 64), each bounded by the batch limits (~0.5 GB). 1 runs every stage in the job's own process; more run "
        "whole batches in worker processes, one core each.",
    )
    grace_period_s: float = Field(
        24 * 3600,
        ge=0,
        description="How long a trace may wait for missing chunks after complete.json before it is quarantined as incomplete.",
    )
    lease_s: float = Field(900, gt=0, description="How long a batch claim holds before another run may take the batch over.")
    max_chunk_bytes: int = Field(64 * 2**20, ge=1, description="Largest chunk after decompression.")
    max_trace_bytes: int = Field(
        32 * 2**20,
        ge=1,
        description="Most event bytes in one trace, its chunks decompressed: a lone trace is a batch of its own, and this "
        "bounds its memory (about 9 times these bytes); outputs over the inline limit are artifacts and do not count.",
    )
    max_line_bytes: int = Field(2**20, ge=1, description="Largest single event line; larger outputs belong in artifacts.")
    max_artifact_bytes: int = Field(512 * 2**20, ge=1, description="Largest artifact (repo snapshot or output).")
    max_snapshot_unpacked_bytes: int = Field(
        2 * 2**30, ge=1, description="Largest repo snapshot once unpacked (guards against gzip bombs)."
    )
    pseudonym_key: SecretStr = Field(
        SecretStr(DEV_PSEUDONYM_KEY),
        description="HMAC key for participant pseudonyms. Set it in production: the default is public.",
    )

    @field_validator("workers", mode="before")
    @classmethod
    def _worker_count(cls, value: object) -> object:
        return min(available_cores(), 64) if value == "auto" else value


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's cpuset, `taskset`)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class SandboxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRT_SANDBOX_", extra="ignore", frozen=True, populate_by_name=True)

    backend: Literal["auto", "docker", "namespace"] = Field(
        "auto",
        validation_alias="PRT_SANDBOX",
        description="Sandbox back-end (PRT_SANDBOX); auto picks docker when an engine answers.",
    )
    image: str = Field("prt-sandbox:1", description="Default docker image for verification.")
    allowed_images: list[str] = Field(
        default_factory=list,
        description="Images a trace may name in `environment.image` (a JSON list), besides the default image and the "
        "bases built next to it (`<image>-<suite>`). Any other is refused: the trace's QA row is `error` with the "
        "reason, since a local image may hold what the lake must never see.",
    )
    rootfs: str = Field("/var/lib/prt/rootfs", description="Root filesystem of the namespace back-end (docker/build-rootfs.sh).")
    runtime: str | None = Field(None, description="Docker runtime, e.g. `runsc` for gVisor; the daemon's default when unset.")
    memory_mb: int = Field(1024, ge=64, description="Memory limit per sandbox.")
    pids: int = Field(256, ge=16, description="Process limit per sandbox.")
    cpus: float = Field(1.0, gt=0, description="CPU limit per sandbox.")
    output_bytes: int = Field(1 << 20, ge=1024, description="Output kept per command; the rest is cut.")
    parallel: int = Field(2, ge=1, description="Sandboxes run at once by the QA flow.")
    reruns: int = Field(0, ge=0, le=10, description="Extra runs of the after state to flag flaky tests.")
    workdir: str | None = Field(
        None, description="Where workspaces are made (a fast local disk); the system temp dir when unset."
    )

    def image_allowed(self, image: str) -> bool:
        return image == self.image or image.startswith(self.image + "-") or image in self.allowed_images


class QaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRT_QA_", extra="ignore", frozen=True)

    scope: Literal["targeted", "full"] = Field(
        "targeted",
        description="targeted: run the tests the session touched or ran (its test files, the tests its test runs named or "
        "saw fail) before and after; full: the whole suite, every passing test a PASS_TO_PASS. A session with no targets runs in full.",
    )
    environments: bool = Field(
        True,
        description="Build the environment a trace recorded (its Python and packages) and run its tests there; off: the "
        "base image as it is.",
    )
    env_timeout_s: float = Field(900, gt=0, description="Time limit for downloading and building one environment.")


class JudgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRT_JUDGE_", extra="ignore", frozen=True, populate_by_name=True)

    kind: str = Field(
        "heuristic", validation_alias="PRT_JUDGE", description="Judge kind (PRT_JUDGE): heuristic (offline) or openai."
    )
    model: str = Field("gpt-4o-mini", description="Model name for the openai judge.")
    timeout_s: float = Field(60, gt=0, description="Per-request timeout for the openai judge.")
    max_retries: int = Field(3, ge=0, description="Retries on transient model errors.")
    seed: int = Field(1234, description="Sampling seed sent to the model.")
    max_trace_chars: int = Field(
        60_000, ge=1000, description="Longest rendered trace sent to a model; longer traces are cut in the middle."
    )
    concurrency: int = Field(4, ge=1, le=64, description="Requests in flight at once for the openai judge.")
    batch_traces: int = Field(2000, ge=1, description="Traces judged (and committed) together.")


class Settings(BaseSettings):
    model_config = _CFG

    inbox: str = Field("./data/inbox", description="Inbox URL (PRT_INBOX): a folder or s3://bucket/prefix.")
    lake: str = Field("./data/lake", description="Lake URL (PRT_LAKE): a folder or s3://bucket/prefix.")
    participant: str | None = Field(
        None, description="Your participant id for `prt record` (PRT_PARTICIPANT); git's user.email when unset."
    )
    retention_days: int = Field(90, ge=1, description="Traces older than this are removed by maintain_lake.")
    vacuum_retention_hours: int = Field(
        168,
        ge=0,
        description="maintain_lake keeps data files the log removed this long (time travel) before vacuuming them; files the "
        "log never referenced are kept at least 24 h whatever this says (one may be a concurrent writer's).",
    )
    artifact_grace_s: float = Field(
        86_400, ge=0, description="maintain_lake removes unreferenced artifacts only once they are this old."
    )
    serve_poll_s: float = Field(
        2.0,
        gt=0,
        description="How often `prt serve` (the serve-inbox flow) looks for newly completed traces: a listing of the "
        "inbox's trace folders and a look at the complete.json of each one not known complete yet.",
    )
    serve_catch_up_s: float = Field(
        300.0,
        gt=0,
        description="How often `prt serve`, with nothing new to do, also verifies and scores traces of the lake that no "
        "run has (left by a stopped server, or ingested by `prt ingest`).",
    )
    track: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Whether `prt` runs its jobs as Prefect flow runs (PRT_TRACK; `prt --track/--no-track` for one command). "
        "auto: when a Prefect API is configured (PREFECT_API_URL in the environment, the active Prefect profile, "
        "prefect.toml or .env), so runs show in its UI; otherwise as plain Python, without a server to start. always: "
        "flow runs even with no API configured (Prefect then starts a temporary server, 6-10 s per command).",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Core settings, read once from the environment."""
    return Settings()


@lru_cache(maxsize=1)
def get_ingest_settings() -> IngestSettings:
    return IngestSettings()


@lru_cache(maxsize=1)
def get_sandbox_settings() -> SandboxSettings:
    return SandboxSettings()


@lru_cache(maxsize=1)
def get_qa_settings() -> QaSettings:
    return QaSettings()


@lru_cache(maxsize=1)
def get_judge_settings() -> JudgeSettings:
    return JudgeSettings()
