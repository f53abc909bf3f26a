"""The inbox side of ingest: list what is there, decide what is ready, load it, and clean up.

A trace is *ready* when complete.json is there and chunks 0..chunk_count-1 all are; until then it
is *pending* and left untouched. When chunks are still missing `grace_period_s` after complete.json
arrived, the trace is *expired* and gets quarantined as `incomplete`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from fsspec import AbstractFileSystem
from pydantic import ValidationError

from client.storage import join, list_files, list_folders, mtime_of, read_many, remove_files, remove_folder_markers
from schemas.errors import TraceRejected
from schemas.layout import CHUNKS_DIR, COMPLETE, MANIFEST, parse_chunk_name
from schemas.manifest import Complete
from schemas.settings import IngestSettings
from schemas.types import TRACE_ID_RE
from tasks.stage import stage_task

__all__ = [
    "InboxObject",
    "InboxScan",
    "ScanPart",
    "TraceBlobs",
    "TraceListing",
    "classify",
    "delete_trace_objects",
    "load_traces",
    "parse_complete",
    "prune_empty_dirs",
    "scan_inbox",
    "scan_parts",
]

Status = Literal["ready", "pending", "expired", "rejected"]
_TMP_PREFIX = ".prt-tmp-"  # in-flight local writes (client.storage.put_immutable)


@dataclass(frozen=True, slots=True)
class InboxObject:
    key: str
    """Path relative to the trace folder, e.g. `chunks/000000-ab12.jsonl`."""
    path: str
    """Full path for the filesystem."""
    size: int
    mtime: float
    is_link: bool = False


GZIP_EXPANSION = 8
"""Bytes of events per stored byte of a gzip chunk, for planning batches: JSONL with test output
compresses 4 to 8 times (the bench's chunks 4.3 times), so this errs towards smaller batches."""


@dataclass
class TraceListing:
    trace_id: str
    prefix: str
    objects: dict[str, InboxObject] = field(default_factory=dict)
    status: Status = "pending"
    complete: Complete | None = None
    problem: TraceRejected | None = None
    """Why the trace is rejected before loading (bad complete.json, unsafe id)."""
    missing_chunks: list[int] = field(default_factory=list)
    digest_map: dict[str, str] = field(default_factory=dict)
    """sha256 of a redacted line -> sha256 of the line as the client wrote it, for traces re-read
    from the lake's redacted archive or quarantine: the chain is checked over the original digests."""
    pseudonymized: bool = False
    """The manifest's participant_id is already a pseudonym (re-read from the lake)."""
    artifact_map: dict[str, str] = field(default_factory=dict)
    """artifact name -> sha256 of its stored bytes, for outputs redacted in the lake's quarantine."""
    markers: list[str] = field(default_factory=list)
    """Paths of the trace's zero-byte folder markers (`<trace>/`, `<trace>/chunks/`: what an S3
    console's "Create folder" makes). Not objects of the trace: removed with it."""
    read_bytes: int | None = None
    """`batch_bytes` as measured once the objects were read (`bytes_read`): set on a trace that a
    worker handed back because its batch would have held more than planned."""

    @property
    def event_count(self) -> int:
        return self.complete.event_count if self.complete else 0

    @property
    def completed_at(self) -> float | None:
        """When complete.json was written (epoch seconds); None while there is none."""
        obj = self.objects.get(COMPLETE)
        return obj.mtime if obj else None

    @property
    def size(self) -> int:
        return sum(o.size for o in self.objects.values())

    @property
    def batch_bytes(self) -> int:
        """What the trace brings into a batch's memory, as far as its listing tells: chunks as
        decompressed (a gzip chunk estimated at `GZIP_EXPANSION` times its size: what it really
        holds is known only once read, `bytes_read`), other objects as stored."""
        if self.read_bytes is not None:
            return self.read_bytes
        return sum(o.size * GZIP_EXPANSION if _gzip_chunk(o.key) else o.size for o in self.objects.values())


@dataclass
class InboxScan:
    traces: dict[str, TraceListing]
    stray: list[InboxObject]
    """Objects at the inbox root, outside any trace folder."""

    def by_status(self, status: Status) -> list[TraceListing]:
        return [t for t in self.traces.values() if t.status == status]


@dataclass
class TraceBlobs:
    """The bytes of one trace's objects, as loaded for assembly. Oversized objects are not read."""

    listing: TraceListing
    blobs: dict[str, bytes]
    skipped: dict[str, int] = field(default_factory=dict)
    """key -> size of objects left unread because they are over a size limit."""

    @property
    def trace_id(self) -> str:
        return self.listing.trace_id


def parse_complete(trace_id: str, data: bytes) -> Complete:
    try:
        return Complete.model_validate_json(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        if err["type"] == "json_invalid":
            raise TraceRejected(
                "bad_json", f"trace {trace_id}: {COMPLETE} is not valid JSON ({err['msg']})", object_key=COMPLETE
            ) from None
        loc = ".".join(map(str, err["loc"])) or "(root)"
        raise TraceRejected(
            "schema_error", f"trace {trace_id}: {COMPLETE} field {loc}: {err['msg']}", object_key=COMPLETE
        ) from None


@dataclass(frozen=True)
class ScanPart:
    """One part of an inbox scan (`scan_parts`)."""

    folders: tuple[str, ...] | None
    """The trace folders to list; None: the whole inbox."""
    root: bool = True
    """Also list the objects at the inbox root (strays)."""


def scan_parts(fs: AbstractFileSystem, root: str, *, first: int = 256, growth: int = 4) -> list[ScanPart]:
    """How to scan the inbox so that ingest can start on the first traces while the rest are listed.

    On a local disk: the trace folders in name order, `first` of them, then `growth` times as
    many as the part before (256, 1,024, 4,096, ...: few parts, a short wait for the first); the
    first part also takes the objects at the root. Elsewhere one part, the whole inbox: an object
    store lists it in one stream of pages either way."""
    names = list_folders(fs, root)
    if names is None:
        return [ScanPart(None)]
    parts = [ScanPart((), root=True)] if not names else []
    size, i = first, 0
    while i < len(names):
        parts.append(ScanPart(tuple(names[i : i + size]), root=i == 0))
        i += size
        size *= growth
    return parts


def scan_inbox(
    fs: AbstractFileSystem, root: str, settings: IngestSettings, *, now: float | None = None, part: ScanPart | None = None
) -> InboxScan:
    """List the inbox (or one `part` of it) and classify every trace folder. Reads only the
    complete.json objects."""
    now = time.time() if now is None else now
    fs.invalidate_cache()
    if part is None or part.folders is None:
        found = list_files(fs, root)
    else:
        found = list_files(fs, root, recursive=False) if part.root else {}
        for name in part.folders:
            found.update(list_files(fs, join(root, name)))
    traces: dict[str, TraceListing] = {}
    stray: list[InboxObject] = []
    markers: dict[str, list[str]] = {}
    for path, info in found.items():
        rel = path[len(root) :].lstrip("/")
        name = rel.rsplit("/", 1)[-1]
        if name.startswith(_TMP_PREFIX):
            continue
        trace_id, _, key = rel.partition("/")
        if path.endswith("/"):
            # A folder marker: an object store has no folders, so consoles make a zero-byte
            # object named like one. It is no part of any trace; a trace's go with it.
            if trace_id:
                markers.setdefault(trace_id, []).append(path)
            continue
        obj = InboxObject(key or rel, path, int(info.get("size") or 0), mtime_of(info), bool(info.get("islink")))
        if not key:
            stray.append(obj)
            continue
        listing = traces.setdefault(trace_id, TraceListing(trace_id, join(root, trace_id)))
        listing.objects[key] = obj

    for trace_id, paths in markers.items():
        if trace_id in traces:  # a folder of markers alone is no trace (and costs nothing)
            traces[trace_id].markers = paths
    completes = [t for t in traces.values() if COMPLETE in t.objects]
    if completes:
        bodies = read_many(fs, [t.objects[COMPLETE].path for t in completes])
        for t in completes:
            body = bodies.get(t.objects[COMPLETE].path)
            if isinstance(body, Exception):  # vanished between list and read: another run cleaned it up
                t.objects.pop(COMPLETE)
                continue
            try:
                t.complete = parse_complete(t.trace_id, body)
            except TraceRejected as exc:
                t.problem = exc
    for t in traces.values():
        classify(t, now, settings)
    return InboxScan(traces, stray)


def classify(t: TraceListing, now: float, settings: IngestSettings) -> None:
    """Set `t.status`: rejected (unsafe id, bad complete.json), pending, expired or ready."""
    if not TRACE_ID_RE.match(t.trace_id):
        t.status = "rejected"
        t.problem = TraceRejected(
            "unsafe_path", f"trace id {t.trace_id!r} is not a safe name (^[A-Za-z0-9][A-Za-z0-9._-]{{0,127}}$)"
        )
        return
    if t.problem is None and (link := next((k for k, o in sorted(t.objects.items()) if o.is_link), None)):
        t.problem = TraceRejected(
            "unsafe_path", f"trace {t.trace_id}: {link} is a link; links are never followed", object_key=link
        )
    if t.problem is not None:
        t.status = "rejected"
        return
    if t.complete is None:
        t.status = "pending"
        return
    present = {
        c.seq for key in t.objects if key.startswith(CHUNKS_DIR + "/") and (c := parse_chunk_name(key[len(CHUNKS_DIR) + 1 :]))
    }
    # The first few missing chunks, for the message: complete.json may claim a million chunks, and
    # a list of every missing seq would cost tens of bytes each, per trace, on every scan.
    t.missing_chunks = list(itertools.islice((s for s in range(t.complete.chunk_count) if s not in present), 10))
    if not t.missing_chunks:
        t.status = "ready"
    elif now - t.objects[COMPLETE].mtime > settings.grace_period_s:
        t.status = "expired"
    else:
        t.status = "pending"


def load_traces(fs: AbstractFileSystem, listings: Iterable[TraceListing], settings: IngestSettings) -> list[TraceBlobs]:
    """Read the objects of `listings` in one concurrent request, leaving oversized or linked ones unread."""
    out: list[TraceBlobs] = []
    wanted: list[str] = []
    for t in listings:
        tb = TraceBlobs(t, {})
        for key, obj in t.objects.items():
            if obj.is_link:
                continue  # never follow a link out of the inbox; assembly rejects it
            limit = settings.max_chunk_bytes if key.startswith(CHUNKS_DIR + "/") else settings.max_artifact_bytes
            if key in (MANIFEST, COMPLETE):
                limit = 1 << 20
            if obj.size > limit:
                tb.skipped[key] = obj.size
            else:
                wanted.append(obj.path)
        out.append(tb)
    bodies = read_many(fs, wanted)
    for tb in out:
        for key, obj in tb.listing.objects.items():
            body = bodies.get(obj.path)
            if isinstance(body, bytes):
                tb.blobs[key] = body
    return out


def _gzip_chunk(key: str) -> bool:
    return key.startswith(CHUNKS_DIR + "/") and key.endswith(".gz")


def bytes_read(tb: TraceBlobs) -> int:
    """`TraceListing.batch_bytes` once the objects are read, before anything is decompressed: a
    gzip chunk counts what its trailer says it holds (ISIZE, the size modulo 2**32: exact for a
    chunk under the chunk limit, the last member's for a chunk of several). A damaged trailer
    can only make a trace look larger, and assembly names what is wrong with it."""
    return sum(
        int.from_bytes(tb.blobs[k][-4:], "little") if _gzip_chunk(k) and k in tb.blobs else o.size
        for k, o in tb.listing.objects.items()
    )


def delete_trace_objects(fs: AbstractFileSystem, listing: TraceListing) -> None:
    """Remove a trace's inbox objects, complete.json last: a half-cleaned trace still looks finished,
    never like a pending one."""
    remove_files(fs, [o.path for k, o in listing.objects.items() if k != COMPLETE])
    if COMPLETE in listing.objects:
        remove_files(fs, [listing.objects[COMPLETE].path])
    remove_folder_markers(fs, listing.markers)
    fs.invalidate_cache(listing.prefix)
    prune_empty_dirs(fs, listing.prefix)


def prune_empty_dirs(fs: AbstractFileSystem, prefix: str) -> None:
    """Object stores have no folders; on a local disk, remove the trace folder once it is empty."""
    if "file" not in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return
    for sub in (CHUNKS_DIR, "artifacts", ""):
        # Not empty (a newer upload, or stray files) or already gone: leave it.
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(prefix, sub) if sub else prefix)


scan_inbox_task = stage_task("scan-inbox", retry_after=[2, 10])(scan_inbox)
