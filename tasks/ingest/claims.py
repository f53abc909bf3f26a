"""Batch claims and leases: how many ingest runs share one inbox and lake without losing or doubling a trace.

State lives as small JSON objects under `<lake>/_ingest/` (plain objects, not Delta):

    batches/<batch_id>/batch.json          the batch: run id, start time, intended trace ids (immutable)
    batches/<batch_id>/lease-<gen>.json    who runs the batch until when; the highest gen wins
    claims/<trace_id>.json                 which batch owns the trace (created exclusively)

A run opens a batch (batch.json, lease 0), then claims each trace with an exclusive create: of
two runs that race for a trace, exactly one gets it. The batch's traces are those whose claim
names it. The owner renews its lease before each commit and stops (`LeaseLost`) if a higher
generation appeared. A batch whose lease has run out, or whose owner process on this host is
gone, is taken over by creating the next lease generation exclusively, and resumed with the
same id, start time and traces, so its rows come out identical and the Delta app transactions
(one per batch and table) make each table's commit happen once. Claims are removed only after
the lake commit, the archive and the inbox cleanup; the batch folder last.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from fsspec import AbstractFileSystem

from client.storage import io_threads, join, map_io, mtime_of, put_immutable, put_immutable_each, rm_quiet
from schemas.errors import LeaseLost, is_transient
from schemas.types import TRACE_ID_RE
from tasks.stage import stage_task

__all__ = ["BatchInfo", "Claims", "Owner", "claim_batch", "process_started", "recover_batches", "safe_key"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: str
    """Process start time from /proc (guards against pid reuse); empty where unknown."""
    token: str

    @classmethod
    def me(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), process_started(os.getpid()), uuid.uuid4().hex)

    def is_dead_here(self) -> bool:
        """True when the owner ran on this host and its process is gone."""
        if self.host != socket.gethostname():
            return False
        return process_started(self.pid) != self.started or not os.path.exists(f"/proc/{self.pid}")


def process_started(pid: int) -> str:
    """When process `pid` started (clock ticks since boot, from /proc), "" when there is no such
    process or it is a zombie (dead, not yet reaped): with the pid, it names one live process,
    even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return ""
    return "" if len(fields) < 20 or fields[0] == b"Z" else fields[19].decode()


@dataclass(frozen=True)
class BatchInfo:
    batch_id: str
    run_id: str
    started_at: datetime
    trace_ids: tuple[str, ...]

    def to_json(self) -> bytes:
        d = asdict(self)
        d["started_at"] = self.started_at.isoformat()
        return json.dumps(d, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> BatchInfo:
        d = json.loads(data)
        return cls(d["batch_id"], d["run_id"], datetime.fromisoformat(d["started_at"]), tuple(d["trace_ids"]))


def safe_key(trace_id: str) -> str:
    """`trace_id` itself when it is a safe name, else a stable hash of it (for ids found in a bad inbox)."""
    if TRACE_ID_RE.match(trace_id):
        return trace_id
    return "x-" + hashlib.sha256(trace_id.encode("utf-8", "surrogateescape")).hexdigest()[:40]


def new_batch_id(now: datetime) -> str:
    # Sortable by time, unique across hosts.
    return now.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:12]


class Claims:
    """Claims and leases under `<lake>/_ingest/` for one running process."""

    def __init__(self, fs: AbstractFileSystem, lake_root: str, *, lease_s: float, owner: Owner | None = None):
        self.fs = fs
        self.root = join(lake_root, "_ingest")
        self.lease_s = lease_s
        self.owner = owner or Owner.me()
        self._gen: dict[str, int] = {}

    # -- paths ----------------------------------------------------------------------------

    def _batch_dir(self, batch_id: str) -> str:
        return join(self.root, "batches", batch_id)

    def _claim(self, trace_id: str) -> str:
        return join(self.root, "claims", safe_key(trace_id) + ".json")

    # -- opening and claiming ---------------------------------------------------------------

    def open_batch(self, run_id: str, trace_ids: list[str], *, now: datetime | None = None) -> tuple[BatchInfo, list[str]]:
        """Start a batch for `trace_ids` and claim them; returns the batch and the ids this run won."""
        now = now or datetime.now(UTC)
        info = BatchInfo(new_batch_id(now), run_id, now, tuple(trace_ids))
        put_immutable(self.fs, join(self._batch_dir(info.batch_id), "batch.json"), info.to_json())
        self._write_lease(info.batch_id, 0)
        body = json.dumps({"batch_id": info.batch_id, "owner": self.owner.token}).encode()
        # True: this batch created the claim. False (identical bytes: cannot happen for a new
        # batch id) or an ObjectConflict: another batch holds the trace.
        made = put_immutable_each(self.fs, [self._claim(tid) for tid in trace_ids], body)
        return info, [tid for tid, ok in zip(trace_ids, made, strict=True) if ok is True]

    def claimed(self) -> set[str]:
        """Claim keys of every trace claimed by some batch right now (see `safe_key`)."""
        self.fs.invalidate_cache(join(self.root, "claims"))
        try:
            names = self.fs.ls(join(self.root, "claims"), detail=False)
        except FileNotFoundError:
            return set()
        return {n.rsplit("/", 1)[-1].removesuffix(".json") for n in names if n.endswith(".json")}

    def members(self, info: BatchInfo) -> list[str]:
        """The traces of `info` whose claim names this batch (the batch's real membership)."""
        paths = {self._claim(t): t for t in info.trace_ids}
        if not paths:
            return []
        bodies = self.fs.cat(list(paths), on_error="return")
        out = []
        for path, tid in paths.items():
            body = bodies.get(path)
            if isinstance(body, bytes) and json.loads(body).get("batch_id") == info.batch_id:
                out.append(tid)
        return out

    # -- leases -------------------------------------------------------------------------------

    def _write_lease(self, batch_id: str, gen: int) -> None:
        body = json.dumps({"gen": gen, "owner": asdict(self.owner), "expires_at": time.time() + self.lease_s}).encode()
        put_immutable(self.fs, join(self._batch_dir(batch_id), f"lease-{gen:06d}.json"), body)
        self._gen[batch_id] = gen

    def _latest_lease(self, batch_id: str) -> tuple[int, dict] | None:
        folder = self._batch_dir(batch_id)
        self.fs.invalidate_cache(folder)
        try:
            leases = sorted(n for n in self.fs.ls(folder, detail=False) if n.rsplit("/", 1)[-1].startswith("lease-"))
        except FileNotFoundError:
            return None
        if not leases:
            return None
        try:
            body = json.loads(self.fs.cat_file(leases[-1]))
        except FileNotFoundError:  # the batch was closed between the listing and the read
            return None
        return body["gen"], body

    def renew(self, batch_id: str) -> None:
        """Check that this run still holds the batch and extend its lease; raise `LeaseLost` if not."""
        latest = self._latest_lease(batch_id)
        mine = self._gen.get(batch_id)
        if latest is None or mine is None or latest[0] != mine or latest[1]["owner"]["token"] != self.owner.token:
            raise LeaseLost(batch_id)
        try:
            self._write_lease(batch_id, mine + 1)
        except Exception as exc:
            raise LeaseLost(batch_id) from exc

    def orphans(self) -> list[BatchInfo]:
        """Batches whose owner is gone or whose lease ran out, taken over by this run."""
        folder = join(self.root, "batches")
        self.fs.invalidate_cache(folder)
        try:
            batch_dirs = self.fs.ls(folder, detail=False)
        except FileNotFoundError:
            return []
        taken = []
        for d in sorted(batch_dirs):
            batch_id = d.rstrip("/").rsplit("/", 1)[-1]
            latest = self._latest_lease(batch_id)
            try:
                info = BatchInfo.from_json(self.fs.cat_file(join(d, "batch.json")))
            except FileNotFoundError:
                info = None
            if latest is None or info is None:
                # A batch that never got its journal and first lease down claimed nothing: tidy it.
                if self._stale(d):
                    rm_quiet(self.fs, d, recursive=True)
                continue
            gen, body = latest
            owner = Owner(**body["owner"])
            if owner.token == self.owner.token:
                continue
            if body["expires_at"] > time.time() and not owner.is_dead_here():
                continue
            try:
                self._write_lease(batch_id, gen + 1)
            except Exception:
                continue  # another run took it over first
            taken.append(info)
        return taken

    def _stale(self, path: str) -> bool:
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            return False
        return time.time() - mtime_of(info) > self.lease_s

    # -- closing --------------------------------------------------------------------------------

    def release(self, trace_ids: list[str]) -> None:
        map_io(lambda tid: rm_quiet(self.fs, self._claim(tid)), trace_ids, workers=io_threads(self.fs, deletes=True))

    def close_batch(self, info: BatchInfo, trace_ids: list[str]) -> None:
        """Remove the batch's claims, then the batch folder (journal and leases) last."""
        self.release(trace_ids)
        rm_quiet(self.fs, self._batch_dir(info.batch_id), recursive=True)
        self._gen.pop(info.batch_id, None)


@stage_task("recover-batches", retry_after=[2, 10])
def recover_batches(claims: Claims) -> list[tuple[BatchInfo, list[str]]]:
    """Take over batches left behind by crashed or stalled runs; returns each with its member traces."""
    return [(info, claims.members(info)) for info in claims.orphans()]


def claim_batch(
    claims: Claims,
    run_id: str,
    trace_ids: list[str],
    *,
    retry_after: Sequence[float] = (2, 10),
    logger: logging.Logger | logging.LoggerAdapter = log,
) -> tuple[BatchInfo, list[str]]:
    """Open a batch and claim its traces; returns the batch and the traces this run won. A
    transient storage error is retried after each delay in `retry_after` (seconds), as a stage
    task's would be.

    Not a Prefect task of its own: a task run costs the Prefect server ~30 ms of CPU, and a run
    opens a batch per 50,000 events. The batch shows in the UI as its `ingest-batch` task. A retry
    opens a new batch; claims the failed try made stay with its batch, which a later run takes
    over once that batch's lease runs out (`recover_batches`)."""
    delays = list(retry_after)
    while True:
        try:
            return claims.open_batch(run_id, trace_ids)
        except Exception as exc:
            if not delays or not is_transient(exc):
                raise
            delay = delays.pop(0)
            logger.warning("claiming a batch of %d traces failed (%s); retrying in %g s", len(trace_ids), exc, delay)
            time.sleep(delay)
