"""Assemble one trace from its inbox objects and validate it; a pure function of the bytes.

`assemble_trace` returns an `AssembledTrace` or raises `TraceRejected` with a stable reason code
and a message that names the trace, the object and what is wrong. Checks run in this order:
manifest and consent first (consent false keeps nothing else), then layout, sizes, chunk
decoding and parsing, seq and id uniqueness, the hash chain, artifacts and the snapshot.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field

from pydantic import ValidationError

from client.snapshot import check_snapshot
from schemas.chain import chain_head_from_digests
from schemas.errors import GzipError, SnapshotError, TraceRejected
from schemas.events import EVENT_ADAPTER, Event
from schemas.layout import ARTIFACT_NAME_RE, ARTIFACTS_DIR, CHUNKS_DIR, COMPLETE, MANIFEST, parse_chunk_name, ref_hex
from schemas.manifest import Complete, Manifest
from schemas.settings import IngestSettings
from tasks.ingest.inbox import TraceBlobs, parse_complete

__all__ = ["AssembledTrace", "assemble_trace", "parse_manifest", "snapshot_verdict"]


@dataclass
class AssembledTrace:
    """A validated trace: everything the lake needs, still unredacted."""

    trace_id: str
    manifest: Manifest
    complete: Complete
    events: list[Event] | None
    """In seq order; None when the column-wise path validated the trace (its rows come as a frame)."""
    lines: list[bytes]
    """The exact event lines, in seq order."""
    digests: list[bytes]
    """sha256 of each line, in seq order."""
    artifacts: dict[str, bytes] = field(default_factory=dict)
    """hex digest -> bytes, every artifact of the trace (checked)."""
    objects: dict[str, bytes] = field(default_factory=dict)
    """Raw inbox objects by key, as received, for the archive."""
    chunk_seqs: dict[str, list[int]] = field(default_factory=dict)
    """Chunk key -> the seqs of its lines in file order (one key per chunk_seq)."""
    pseudonymized: bool = False
    """The manifest's participant_id is already a pseudonym (re-read from the lake)."""


def _reject(reason, trace_id: str, key: str | None, what: str) -> TraceRejected:
    where = f"{key} " if key else ""
    return TraceRejected(reason, f"trace {trace_id}: {where}{what}", object_key=key)


def parse_manifest(trace_id: str, data: bytes) -> Manifest:
    try:
        manifest = Manifest.model_validate_json(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        if err["type"] == "json_invalid":
            raise _reject("bad_json", trace_id, MANIFEST, f"is not valid JSON ({err['msg']})") from None
        loc = ".".join(map(str, err["loc"])) or "(root)"
        raise _reject("schema_error", trace_id, MANIFEST, f"field {loc}: {_msg(err)}") from None
    repeated = repeated_key(data)
    if repeated is not None:
        raise _reject("bad_json", trace_id, MANIFEST, _REPEATED.format(repeated))
    return manifest


def _msg(err: dict) -> str:
    return err["msg"].removeprefix("Value error, ")


def _check_layout(tb: TraceBlobs) -> None:
    tid = tb.trace_id
    for key, obj in tb.listing.objects.items():
        parts = key.split("/")
        if any(p in ("", ".", "..") for p in parts) or obj.is_link:
            raise _reject("unsafe_path", tid, key, "is a link or a path that climbs out of the trace folder")
        if key in (MANIFEST, COMPLETE):
            continue
        if parts[0] == CHUNKS_DIR:
            if len(parts) != 2 or parse_chunk_name(parts[1]) is None:
                raise _reject("chunk_name", tid, key, "is not named chunks/<seq:06d>-<id>.jsonl[.gz]")
        elif parts[0] == ARTIFACTS_DIR:
            if len(parts) != 2 or not ARTIFACT_NAME_RE.match(parts[1]):
                raise _reject("stray_object", tid, key, "is not named artifacts/<sha256-hex>")
        else:
            raise _reject(
                "stray_object", tid, key, "has no place in inbox protocol v1 (manifest.json, complete.json, chunks/, artifacts/)"
            )


def gunzip_all(data: bytes, limit: int) -> bytes:
    """Every gzip member of `data`, decompressed, never more than `limit` bytes; GzipError when
    the stream is broken, cut, or decompresses to more."""
    out = []
    total = 0
    while data:
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            part = d.decompress(data, limit + 1 - total)
        except zlib.error as exc:
            raise GzipError(False, f"is not valid gzip ({exc})") from None
        total += len(part)
        out.append(part)
        if total > limit or d.unconsumed_tail:
            raise GzipError(True, f"decompresses to more than {limit} bytes")
        if not d.eof:
            raise GzipError(False, "is truncated (the gzip stream ends early)")
        data = d.unused_data  # a further gzip member, if any
    return b"".join(out)


def _classify_event_error(tid: str, key: str, lineno: int, exc: ValidationError) -> TraceRejected:
    err = exc.errors()[0]
    where = f"line {lineno}"
    kind = err["type"]
    if kind == "json_invalid":
        return _reject("bad_json", tid, key, f"{where} is not valid JSON ({err['msg']})")
    if kind == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag", "?")
        return _reject(
            "unknown_event_type",
            tid,
            key,
            f"{where} has unknown event type {tag!r} (known: file_edit, cmd_run, test_run, commit, rationale_note)",
        )
    # loc starts with the union tag (the event type) when the type is known.
    loc = ".".join(str(p) for p in err["loc"][1:] if not isinstance(p, int)) or ("(event)" if err["loc"] else "(root)")
    if "unsafe path" in err["msg"]:
        return _reject("unsafe_path", tid, key, f"{where} field {loc}: {err['msg'].removeprefix('Value error, ')}")
    return _reject("schema_error", tid, key, f"{where} field {loc}: {_msg(err)}")


def split_chunk(tid: str, key: str, raw: bytes, settings: IngestSettings, *, used: int = 0) -> list[bytes]:
    """The event lines of one chunk: decompressed within the limits, UTF-8, no empty or oversized
    lines. `used`: bytes of the trace's chunks before this one (the trace's own limit counts them all)."""
    limit, room = settings.max_chunk_bytes, settings.max_trace_bytes - used
    over_trace = f"takes the trace's events past the {settings.max_trace_bytes}-byte trace limit (decompressed)"
    if key.endswith(".gz"):
        try:
            raw = gunzip_all(raw, min(limit, room))
        except GzipError as exc:
            if not exc.too_large:
                raise _reject("bad_gzip", tid, key, str(exc)) from None
            if room < limit:
                raise _reject("trace_too_large", tid, key, over_trace) from None
            raise _reject("chunk_too_large", tid, key, f"decompresses to more than the {limit}-byte chunk limit") from None
    elif len(raw) > limit:
        raise _reject("chunk_too_large", tid, key, f"is over the {limit}-byte chunk limit")
    elif len(raw) > room:
        raise _reject("trace_too_large", tid, key, over_trace)
    try:
        if not raw.isascii():  # ASCII is UTF-8, and 20 times quicker to check than decoding
            raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = raw.count(b"\n", 0, exc.start) + 1
        raise _reject("not_utf8", tid, key, f"line {lineno} is not valid UTF-8 (byte {exc.start})") from None
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        raise _reject("bad_json", tid, key, "holds no events")
    if max(map(len, lines)) <= settings.max_line_bytes and {line[:1] for line in lines} == {b"{"}:
        return lines  # the common case (no line blank, none too long), quickly; the loop names a bad line
    for i, line in enumerate(lines, 1):
        if len(line) > settings.max_line_bytes:
            raise _reject(
                "line_too_large", tid, key, f"line {i} is {len(line)} bytes, over the {settings.max_line_bytes}-byte line limit"
            )
        if not line.strip():
            raise _reject("bad_json", tid, key, f"line {i} is empty")
    return lines


def _parse_chunk(tid: str, key: str, raw: bytes, settings: IngestSettings, used: int = 0) -> list[tuple[int, bytes, Event]]:
    out = []
    for i, line in enumerate(split_chunk(tid, key, raw, settings, used=used), 1):
        try:
            event = EVENT_ADAPTER.validate_json(line)
        except ValidationError as exc:
            raise _classify_event_error(tid, key, i, exc) from None
        repeated = repeated_key(line)
        if repeated is not None:
            raise _reject("bad_json", tid, key, f"line {i} {_REPEATED.format(repeated)}")
        out.append((event.seq, line, event))
    return out


_REPEATED = "repeats the key {!r} (JSON readers disagree on which value counts, so no reader may pick one)"


def repeated_key(data: bytes) -> str | None:
    """The first key an object of this JSON text (already known to be valid) repeats, or None."""
    repeats: list[str] = []

    def pairs_hook(pairs: list[tuple[str, object]]) -> dict:
        out = dict(pairs)
        if len(out) != len(pairs) and not repeats:
            seen: set[str] = set()
            repeats.append(next(k for k, _ in pairs if k in seen or seen.add(k)))
        return out

    try:
        json.loads(data, object_pairs_hook=pairs_hook)
    except (ValueError, RecursionError):  # the validator accepted it, so this cannot happen; it decides
        return None
    return repeats[0] if repeats else None
    return None


def _snapshot_problem(data: bytes, max_unpacked: int) -> str | None:
    """Why `data` is not a safe snapshot (client.snapshot decides, for QA and the recorder too), or None."""
    try:
        check_snapshot(data, max_unpacked=max_unpacked)
    except SnapshotError as exc:
        return str(exc)
    return None


_SNAPSHOT_VERDICTS: dict[tuple[str, int], str | None] = {}


def snapshot_verdict(tid: str, key: str, data: bytes, max_unpacked: int, *, content_hash: str | None = None) -> None:
    """Raise `bad_snapshot` unless `data` is a safe snapshot. Sessions on one repo share a
    snapshot, and the verdict depends only on the bytes: it is kept per content hash."""
    verdict_key = (content_hash or hashlib.sha256(data).hexdigest(), max_unpacked)
    if verdict_key not in _SNAPSHOT_VERDICTS:
        if len(_SNAPSHOT_VERDICTS) > 4096:
            _SNAPSHOT_VERDICTS.clear()
        _SNAPSHOT_VERDICTS[verdict_key] = _snapshot_problem(data, max_unpacked)
    problem = _SNAPSHOT_VERDICTS[verdict_key]
    if problem:
        raise _reject("bad_snapshot", tid, key, problem)


@dataclass
class Header:
    """What a trace is apart from its events: checked manifest, completion record, chunks, artifacts."""

    manifest: Manifest
    complete: Complete
    chunks: dict[int, str]
    """chunk_seq -> object key (duplicates of identical bytes dropped)."""
    artifacts: dict[str, bytes]
    """artifact name -> bytes, every one checked against its name."""


def check_header(tb: TraceBlobs, settings: IngestSettings) -> Header:
    """Everything but the events: manifest and consent first (consent false keeps nothing else),
    then layout, consistency, sizes, chunk numbering, artifacts and the snapshot."""
    tid = tb.trace_id
    blobs = tb.blobs
    listing = tb.listing

    if MANIFEST not in listing.objects:
        raise _reject(
            "manifest_missing", tid, MANIFEST, "is missing although complete.json is there (the manifest is written first)"
        )
    if MANIFEST in tb.skipped:
        raise _reject("schema_error", tid, MANIFEST, f"is {tb.skipped[MANIFEST]} bytes, over the 1 MiB manifest limit")
    manifest = parse_manifest(tid, blobs[MANIFEST])
    if not manifest.session.consent:
        raise _reject("consent_withdrawn", tid, MANIFEST, "says consent is false; nothing of the trace is kept")
    complete = listing.complete or parse_complete(tid, blobs[COMPLETE])

    _check_layout(tb)
    if manifest.trace_id != tid:
        raise _reject("manifest_mismatch", tid, MANIFEST, f"names trace {manifest.trace_id!r}, but it is in folder {tid!r}")
    if complete.ended_at < manifest.started_at:
        raise _reject(
            "manifest_mismatch", tid, COMPLETE, f"ended_at {complete.ended_at.isoformat()} is before the manifest's started_at"
        )
    for key, size in tb.skipped.items():
        if key.startswith(CHUNKS_DIR + "/"):
            raise _reject("chunk_too_large", tid, key, f"is {size} bytes, over the {settings.max_chunk_bytes}-byte chunk limit")
        raise _reject(
            "artifact_too_large", tid, key, f"is {size} bytes, over the {settings.max_artifact_bytes}-byte artifact limit"
        )

    chunks: dict[int, str] = {}
    for key in sorted(k for k in listing.objects if k.startswith(CHUNKS_DIR + "/")):
        seq = parse_chunk_name(key.split("/", 1)[1]).seq
        if seq in chunks:
            if blobs[chunks[seq]] != blobs[key]:
                raise _reject("chunk_conflict", tid, key, f"has chunk_seq {seq} like {chunks[seq]} but different bytes")
            continue
        chunks[seq] = key
    extra = sorted(s for s in chunks if s >= complete.chunk_count)
    if extra:
        raise _reject(
            "manifest_mismatch", tid, chunks[extra[0]], f"is beyond complete.json's chunk_count of {complete.chunk_count}"
        )

    artifacts: dict[str, bytes] = {}
    for key in listing.objects:
        if key.startswith(ARTIFACTS_DIR + "/"):
            name = key.split("/", 1)[1]
            if hashlib.sha256(blobs[key]).hexdigest() != listing.artifact_map.get(name, name):
                raise _reject("artifact_mismatch", tid, key, "does not hash to its name")
            artifacts[name] = blobs[key]
    snap_hex = ref_hex(manifest.repo.snapshot)
    if snap_hex not in artifacts:
        raise _reject(
            "artifact_missing", tid, MANIFEST, f"repo.snapshot references {manifest.repo.snapshot}, which is not under artifacts/"
        )
    snapshot_verdict(
        tid, f"{ARTIFACTS_DIR}/{snap_hex}", artifacts[snap_hex], settings.max_snapshot_unpacked_bytes,
        content_hash=listing.artifact_map.get(snap_hex, snap_hex),  # checked against the bytes above
    )  # fmt: skip
    return Header(manifest, complete, chunks, artifacts)


def original_digests(lines: list[bytes], digest_map: dict[str, str]) -> list[bytes]:
    """sha256 of each line as the client wrote it (lines redacted in the lake map back)."""
    digests = [hashlib.sha256(line).digest() for line in lines]
    if digest_map:
        digests = [bytes.fromhex(digest_map.get(d.hex(), d.hex())) for d in digests]
    return digests


def chain_error(tid: str, complete: Complete, digests: list[bytes]) -> TraceRejected | None:
    head = chain_head_from_digests(tid, digests)
    if head == complete.chain_head:
        return None
    what = f"chain_head {complete.chain_head[:16]}… does not match the events ({head[:16]}…): an event was changed, added or lost"
    return _reject("chain_mismatch", tid, COMPLETE, what)


def assemble_trace(tb: TraceBlobs, settings: IngestSettings) -> AssembledTrace:
    """Validate one trace's objects, every event through the pydantic models, and return it
    assembled, or raise `TraceRejected`. The reference path: tasks/ingest/fastpath.py must agree with it."""
    tid = tb.trace_id
    header = check_header(tb, settings)
    complete = header.complete

    rows: list[tuple[int, bytes, Event]] = []
    where: dict[int, str] = {}
    chunk_seqs: dict[str, list[int]] = {}
    used = 0
    for seq in range(complete.chunk_count):
        key = header.chunks[seq]
        parsed = _parse_chunk(tid, key, tb.blobs[key], settings, used)
        used += sum(len(line) + 1 for _, line, _ in parsed)
        chunk_seqs[key] = [s for s, _, _ in parsed]
        for s, _, _ in parsed:
            if s in where:
                raise _reject("seq_duplicate", tid, key, f"repeats event seq {s} (also in {where[s]})")
            where[s] = key
        rows += parsed
    rows.sort(key=lambda r: r[0])
    for expected, (s, _, _) in enumerate(rows):
        if s != expected:
            raise _reject("seq_gap", tid, where[s], f"jumps from seq {expected - 1} to {s}; seq {expected} is missing")
    if len(rows) != complete.event_count:
        raise _reject("event_count_mismatch", tid, COMPLETE, f"says {complete.event_count} events, the chunks hold {len(rows)}")
    seen_ids: dict[str, int] = {}
    for s, _, e in rows:
        if e.id in seen_ids:
            raise _reject("duplicate_event_id", tid, where[s], f"event seq {s} reuses id {e.id!r} of seq {seen_ids[e.id]}")
        seen_ids[e.id] = s

    lines = [line for _, line, _ in rows]
    digests = original_digests(lines, tb.listing.digest_map)
    problem = chain_error(tid, complete, digests)
    if problem:
        raise problem

    for s, _, e in rows:
        if e.type == "cmd_run":
            for f in ("stdout_ref", "stderr_ref"):
                ref = getattr(e, f)
                if ref and ref_hex(ref) not in header.artifacts:
                    raise _reject(
                        "artifact_missing", tid, where[s], f"seq {s} {f} references {ref}, which is not under artifacts/"
                    )

    return AssembledTrace(
        trace_id=tid,
        manifest=header.manifest,
        complete=complete,
        events=[e for _, _, e in rows],
        lines=lines,
        digests=digests,
        artifacts=header.artifacts,
        objects=dict(tb.blobs),
        chunk_seqs=chunk_seqs,
        pseudonymized=tb.listing.pseudonymized,
    )
