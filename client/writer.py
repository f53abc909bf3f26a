"""The producer SDK: write one debugging session into an inbox, following inbox protocol v1.

The inbox is any fsspec URL (with credentials), or an upload grant from `prt grant` (without).

    with TraceWriter("s3://bucket/inbox", manifest, snapshot=snapshot_git(".")) as w:
        w.note("hypothesis", "mean() divides by the wrong length")
        w.edit_file("calc.py", before, after)
        w.cmd_run("python -m pytest -q", exit_code=0, duration_s=0.8, stdout=out)
        w.commit("3f2a9c1", "Fix mean")

Events are validated at the call (a bad value raises `InvalidInput` naming the field), buffered,
and written as immutable chunk objects by count or size; large outputs and the repo snapshot
become content-addressed artifacts. complete.json is written last, by `close()` or a clean exit
from the `with` block, so an interrupted writer never leaves a trace that could be assembled.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from client.diffs import unified_diff
from client.storage import fs_for, join, put_immutable
from schemas.chain import chain_start, chain_step
from schemas.errors import InvalidInput
from schemas.events import EVENT_ADAPTER, EVENT_FIELDS, NOTE_KINDS, Event
from schemas.layout import ARTIFACTS_DIR, CHUNKS_DIR, COMPLETE, MANIFEST, artifact_ref, chunk_name, ref_hex
from schemas.manifest import Complete, Manifest
from schemas.types import MAX_SESSION_S, SESSION_SLACK_S

__all__ = ["SessionRuleWarning", "TraceWriter", "WriterState"]


class SessionRuleWarning(UserWarning):
    """A recorded event would make ingest quarantine its session (a table rule of the lake)."""


class WriterState(BaseModel):
    """Everything needed to continue a trace from another process (the recorder keeps this on disk)."""

    trace_id: str
    next_seq: int = 0
    next_chunk_seq: int = 0
    chain: str
    """The running chain value (hex), before the next event."""
    opened: bool = False
    """manifest.json (and the snapshot) have been written."""


def _validation_message(event_type: str, exc: ValidationError) -> InvalidInput:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if p != event_type)
    return InvalidInput(f"{event_type}.{loc}" if loc else event_type, err["msg"])


class TraceWriter:
    """Writes one trace into an inbox (any fsspec URL). Not thread-safe; one writer per trace."""

    def __init__(
        self,
        inbox: str | None,
        manifest: Manifest | Mapping[str, Any],
        *,
        grant: Mapping[str, Any] | None = None,
        snapshot: bytes | None = None,
        chunk_max_events: int = 200,
        chunk_max_bytes: int = 1 << 20,
        compress: bool = False,
        inline_output_bytes: int = 64 * 1024,
        max_line_bytes: int = 1 << 20,
        storage_options: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
        resume: WriterState | None = None,
        manifest_at_close: bool = False,
    ):
        self.manifest = self._manifest(manifest, snapshot, clock)
        self._warned: set[str] = set()
        self.trace_id = self.manifest.trace_id
        if grant is not None:
            from client.grant import GrantUploader

            if grant.get("trace_id") != self.trace_id:
                raise InvalidInput("grant", f"the grant is for trace {grant.get('trace_id')!r}, not {self.trace_id!r}")
            self._put = GrantUploader(dict(grant)).put
        elif inbox is None:
            raise InvalidInput("inbox", "give an inbox URL or an upload grant")
        else:
            fs, root = fs_for(inbox, storage_options)
            self._put = lambda key, data: put_immutable(fs, join(root, key), data)
        self._snapshot = snapshot
        self._manifest_at_close = manifest_at_close
        """Write manifest.json at close, not before the first event: the recorder's manifest may change
        until the session stops (chunks may come before the manifest in protocol v1)."""
        self._chunk_max_events = chunk_max_events
        self._chunk_max_bytes = chunk_max_bytes
        self._compress = compress
        self._inline = inline_output_bytes
        self._max_line = max_line_bytes
        self._clock = clock
        self._buffer: list[bytes] = []
        self._buffer_bytes = 0
        self._closed = False
        if resume is not None:
            if resume.trace_id != self.trace_id:
                raise InvalidInput("resume.trace_id", f"{resume.trace_id!r} is not this trace ({self.trace_id!r})")
            self._seq, self._chunk_seq = resume.next_seq, resume.next_chunk_seq
            self._chain, self._opened = bytes.fromhex(resume.chain), resume.opened
        else:
            self._seq, self._chunk_seq = 0, 0
            self._chain, self._opened = chain_start(self.trace_id), False

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> TraceWriter:
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        # On an exception: no complete.json, so nothing half-written is ever assembled.

    def open(self) -> None:
        """Write the snapshot artifact, then manifest.json. Idempotent."""
        if self._opened:
            return
        if self._snapshot is not None:
            self.artifact(self._snapshot)
        body = self.manifest.model_dump_json(exclude_none=True, indent=2).encode()
        self._put(f"{self.trace_id}/{MANIFEST}", body)
        self._opened = True

    def close(self) -> Complete:
        """Flush the last chunk and write complete.json. The trace becomes eligible for ingest."""
        self.open()
        self.flush()
        complete = Complete(
            chunk_count=self._chunk_seq,
            event_count=self._seq,
            chain_head=self._chain.hex(),
            ended_at=datetime.fromtimestamp(self._clock(), UTC),
        )
        self._put(f"{self.trace_id}/{COMPLETE}", complete.model_dump_json(indent=2).encode())
        self._closed = True
        return complete

    def state(self, *, flush: bool = True) -> WriterState:
        """The state needed to continue elsewhere, after flushing buffered events (with
        flush=False, buffered events are not in it: take them first with `next_chunk`)."""
        if flush:
            self.flush()
        return WriterState(
            trace_id=self.trace_id,
            next_seq=self._seq,
            next_chunk_seq=self._chunk_seq,
            chain=self._chain.hex(),
            opened=self._opened,
        )

    @property
    def event_count(self) -> int:
        return self._seq

    # -- events ----------------------------------------------------------------------------

    def file_edit(self, file_path: str, diff_unified: str, buffer_hash_after: str, **kw: Any) -> Event:
        """Record an edit as a diff and the sha256 of the whole file after it."""
        return self._emit("file_edit", kw, file_path=file_path, diff_unified=diff_unified, buffer_hash_after=buffer_hash_after)

    def edit_file(self, file_path: str, before: str | None, after: str, **kw: Any) -> Event:
        """Record an edit from the file's text before and after; computes the diff and the hash."""
        diff = unified_diff(before or "", after, file_path)
        digest = hashlib.sha256(after.encode("utf-8")).hexdigest()
        return self.file_edit(file_path, diff, digest, **kw)

    def cmd_run(
        self,
        command: str,
        exit_code: int,
        duration_s: float,
        stdout: str | None = None,
        stderr: str | None = None,
        **kw: Any,
    ) -> Event:
        """Record a command; outputs larger than `inline_output_bytes` are stored as artifacts."""
        fields: dict[str, Any] = {"command": command, "exit_code": exit_code, "duration_s": duration_s}
        for name, text in (("stdout", stdout), ("stderr", stderr)):
            if text is None:
                continue
            if not isinstance(text, str):
                raise InvalidInput(f"cmd_run.{name}", f"must be text, not {type(text).__name__}")
            data = text.encode("utf-8", errors="replace")
            if len(data) > self._inline:
                fields[f"{name}_ref"] = self.artifact(data)
            else:
                fields[name] = text
        return self._emit("cmd_run", kw, **fields)

    def test_run(
        self,
        framework: str,
        command: str,
        passed: int,
        failed: int,
        errors: int = 0,
        skipped: int = 0,
        duration_s: float = 0.0,
        failing_tests: Iterable[str] = (),
        **kw: Any,
    ) -> Event:
        return self._emit(
            "test_run",
            kw,
            framework=framework,
            command=command,
            passed=passed,
            failed=failed,
            errors=errors,
            skipped=skipped,
            duration_s=duration_s,
            failing_tests=list(failing_tests),
        )

    def commit(self, sha: str, message: str, **kw: Any) -> Event:
        return self._emit("commit", kw, sha=sha, message=message)

    def note(self, kind: str, text: str, **kw: Any) -> Event:
        """Record rationale: kind is one of plan, hypothesis, observation, decision, next_step."""
        if kind not in NOTE_KINDS:
            raise InvalidInput("rationale_note.kind", f"{kind!r} is not one of {', '.join(NOTE_KINDS)}")
        return self._emit("rationale_note", kw, kind=kind, text=text)

    def artifact(self, data: bytes) -> str:
        """Store `data` content-addressed under artifacts/ and return its `sha256:<hex>` ref."""
        ref = artifact_ref(data)
        self._put(f"{self.trace_id}/{ARTIFACTS_DIR}/{ref_hex(ref)}", data)
        return ref

    def _emit(self, event_type: str, kw: dict[str, Any], /, **fields: Any) -> Event:
        if self._closed:
            raise InvalidInput(event_type, f"trace {self.trace_id} is already complete")
        ts = kw.pop("ts", None)
        event_id = kw.pop("id", None)
        for name in ("seq", "type", "ts_client_s"):
            if name in kw:
                raise InvalidInput(f"{event_type}.{name}", "is set by the writer")
        known = EVENT_FIELDS[event_type]
        for name, value in kw.items():
            if name in known:
                raise InvalidInput(f"{event_type}.{name}", "is a known field; pass it by its parameter")
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"{event_type}.{name}", f"is not JSON-serialisable ({exc})") from None
        payload = {
            "id": event_id or f"ev-{self._seq:06d}",
            "seq": self._seq,
            "ts_client_s": self._clock() if ts is None else ts,
            "type": event_type,
            **fields,
            **kw,
        }
        try:
            event = EVENT_ADAPTER.validate_python(payload)
        except ValidationError as exc:
            raise _validation_message(event_type, exc) from None
        self._check_session_rules(event.ts_client_s, event_type)
        line = event.model_dump_json(exclude_unset=True).encode("utf-8")
        if len(line) > self._max_line:
            raise InvalidInput(event_type, f"the event is {len(line)} bytes, over the {self._max_line}-byte line limit")
        if not self._manifest_at_close:
            self.open()
        self._chain = chain_step(self._chain, hashlib.sha256(line).digest())
        self._seq += 1
        self._buffer.append(line)
        self._buffer_bytes += len(line) + 1
        if len(self._buffer) >= self._chunk_max_events or self._buffer_bytes >= self._chunk_max_bytes:
            self.flush()
        return event

    def flush(self) -> None:
        """Write buffered events as the next chunk (nothing when the buffer is empty)."""
        chunk = self.next_chunk()
        if chunk is not None:
            self._put(*chunk)

    def next_chunk(self) -> tuple[str, bytes] | None:
        """Take the buffered events as the next chunk, (inbox key, bytes), without writing it: for
        a caller that saves the chunk somewhere safe first (the recorder's write-ahead) and then
        writes it with `put`. None when nothing is buffered."""
        if not self._buffer:
            return None
        raw = b"\n".join(self._buffer) + b"\n"
        chunk_id = hashlib.sha256(raw).hexdigest()[:16]
        body = gzip.compress(raw, mtime=0) if self._compress else raw
        name = chunk_name(self._chunk_seq, chunk_id, gzip=self._compress)
        self._chunk_seq += 1
        self._buffer.clear()
        self._buffer_bytes = 0
        return f"{self.trace_id}/{CHUNKS_DIR}/{name}", body

    def put(self, key: str, data: bytes) -> None:
        """Write one object of this trace (immutable: the same bytes again are a no-op)."""
        if not key.startswith(f"{self.trace_id}/"):
            raise InvalidInput("key", f"{key!r} is not under this trace's folder {self.trace_id}/")
        self._put(key, data)

    def _check_session_rules(self, ts: float, event_type: str) -> None:
        """Warn, once per rule, when an event would make ingest quarantine the whole session (the
        lake's table rules, expectations/suites.py): better now, while the session can be fixed,
        than as a quarantine row later."""
        start = self.manifest.started_at.timestamp()
        if ts < start - SESSION_SLACK_S:
            why = (
                "events.not_before_session",
                f"is {start - ts:.0f} s before the session's started_at ({self.manifest.started_at:%Y-%m-%dT%H:%M:%SZ})",
            )
        elif ts - start > MAX_SESSION_S:
            why = ("traces.duration_s", f"makes the session longer than {MAX_SESSION_S / 86400:.0f} days")
        else:
            return
        if why[0] not in self._warned:
            self._warned.add(why[0])
            warnings.warn(
                f"trace {self.trace_id}: a {event_type} event at {ts:.0f} {why[1]}; ingest will quarantine the trace ({why[0]})",
                SessionRuleWarning,
                stacklevel=4,
            )

    @staticmethod
    def _manifest(manifest: Manifest | Mapping[str, Any], snapshot: bytes | None, clock: Callable[[], float]) -> Manifest:
        if isinstance(manifest, Manifest):
            data = manifest.model_dump(mode="json")
        else:
            data = json.loads(json.dumps(dict(manifest), default=str))
        data.setdefault("started_at", datetime.fromtimestamp(clock(), UTC).isoformat())  # the session starts now
        if snapshot is not None:
            ref = artifact_ref(snapshot)
            repo = data.setdefault("repo", {})
            if repo.get("snapshot") not in (None, ref):
                raise InvalidInput("manifest.repo.snapshot", f"{repo['snapshot']} does not match the snapshot given ({ref})")
            repo["snapshot"] = ref
        try:
            return Manifest.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise InvalidInput("manifest." + ".".join(str(p) for p in err["loc"]), err["msg"]) from None
