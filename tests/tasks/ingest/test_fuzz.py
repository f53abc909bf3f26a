"""Property-based fuzzing: whatever bytes arrive, the chunk parser and the assembler either accept
the trace or reject it with a reason code; they never crash the flow with another exception."""

from __future__ import annotations

import gzip
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.errors import QUARANTINE_REASONS, TraceRejected
from schemas.settings import IngestSettings
from tasks.ingest.assemble import _parse_chunk, assemble_trace
from tasks.ingest.inbox import InboxObject, TraceBlobs, TraceListing, classify, parse_complete
from tests.support.corpus import RawTrace, good_events

LIMITS = IngestSettings(max_chunk_bytes=64 * 1024, max_line_bytes=16 * 1024, max_artifact_bytes=256 * 1024)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
event_like = st.fixed_dictionaries(
    {"id": st.text(max_size=8), "seq": st.integers(-2, 5) | st.text(max_size=3), "ts_client_s": st.floats() | st.integers(), "type": st.sampled_from(["file_edit", "cmd_run", "test_run", "commit", "rationale_note", "other"])},
    optional={"kind": st.text(max_size=10), "text": st.text(max_size=30), "file_path": st.text(max_size=20), "command": st.text(max_size=20),
              "exit_code": json_values, "passed": json_values, "extra": json_values},
)  # fmt: skip


def _only_rejections(fn):
    try:
        return fn()
    except TraceRejected as exc:
        assert exc.reason in QUARANTINE_REASONS and str(exc).startswith("trace t:")
        return None


@FUZZ
@given(data=st.binary(max_size=4096), gz=st.booleans())
def test_chunk_parser_on_arbitrary_bytes(data, gz):
    key = "chunks/000000-x.jsonl" + (".gz" if gz else "")
    _only_rejections(lambda: _parse_chunk("t", key, data, LIMITS))


@FUZZ
@given(lines=st.lists(event_like | json_values, max_size=12), compress=st.booleans())
def test_chunk_parser_on_json_lines(lines, compress):
    raw = b"".join(json.dumps(v).encode() + b"\n" for v in lines)
    key = "chunks/000000-x.jsonl" + (".gz" if compress else "")
    parsed = _only_rejections(lambda: _parse_chunk("t", key, gzip.compress(raw) if compress else raw, LIMITS))
    if parsed is not None:
        assert len(parsed) == len(lines) and all(line.strip() for _, line, _ in parsed)


def _blobs(objects: dict[str, bytes]) -> TraceBlobs:
    listing = TraceListing("t", "inbox/t", {k: InboxObject(k, f"inbox/t/{k}", len(v), 0.0) for k, v in objects.items()})
    if "complete.json" in objects:
        try:
            listing.complete = parse_complete("t", objects["complete.json"])
        except TraceRejected as exc:
            listing.problem = exc
    classify(listing, 0.0, LIMITS)
    return TraceBlobs(listing, dict(objects))


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.integers(0, 255)),
    st.tuples(st.just("drop"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("duplicate"), st.integers(0, 10_000), st.just(0)),
)


@FUZZ
@given(mutations=st.lists(st.tuples(st.integers(0, 20), mutation), min_size=1, max_size=4), gz=st.booleans())
def test_assembler_on_mutated_traces(mutations, gz):
    objects = RawTrace("t", events=good_events(), gzip_chunks=gz).build()
    for which, (op, pos, byte) in mutations:
        keys = sorted(objects)
        key = keys[which % len(keys)]
        data = bytearray(objects[key])
        if op == "flip" and data:
            data[pos % len(data)] = byte
        elif op == "truncate":
            del data[pos % (len(data) + 1) :]
        elif op == "insert":
            data.insert(pos % (len(data) + 1), byte)
        elif op == "drop" and len(objects) > 1:
            objects.pop(key)
            continue
        elif op == "duplicate":
            objects[f"chunks/{pos % 3:06d}-dup.jsonl"] = bytes(data)
            continue
        objects[key] = bytes(data)
    tb = _blobs(objects)
    if tb.listing.status != "ready":
        return  # waits in the inbox, or is rejected before assembly: both are handled outcomes
    result = _only_rejections(lambda: assemble_trace(tb, LIMITS))
    if result is not None:
        assert [e.seq for e in result.events] == list(range(result.complete.event_count))


def test_unmutated_trace_assembles():
    result = assemble_trace(_blobs(RawTrace("t", events=good_events()).build()), LIMITS)
    assert len(result.events) == 4
