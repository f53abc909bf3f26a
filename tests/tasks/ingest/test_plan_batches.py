"""Batches are planned from the inbox listing (tasks.ingest.schedule.plan_batches) so that a worker's memory
stays bounded whatever the size of the events: by traces, by events, and by event bytes, with gzip
chunks counted as the bytes they will decompress to."""

from __future__ import annotations

import gzip

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.manifest import Complete
from schemas.settings import IngestSettings
from tasks.ingest.inbox import GZIP_EXPANSION, InboxObject, TraceBlobs, TraceListing, bytes_read
from tasks.ingest.schedule import plan_batches, plan_last_batches


def listing(tid: str, events: int, chunks: list[int], *, gz: bool = False, artifact: int = 0) -> TraceListing:
    objects = {"manifest.json": InboxObject("manifest.json", f"inbox/{tid}/manifest.json", 100, 0.0)}
    for seq, size in enumerate(chunks):
        key = f"chunks/{seq:06d}-{seq:016x}.jsonl" + (".gz" if gz else "")
        objects[key] = InboxObject(key, f"inbox/{tid}/{key}", size, 0.0)
    if artifact:
        key = "artifacts/" + "a" * 64
        objects[key] = InboxObject(key, f"inbox/{tid}/{key}", artifact, 0.0)
    complete = Complete(chunk_count=len(chunks), event_count=events, chain_head="0" * 64, ended_at="2025-10-10T08:53:20Z")
    return TraceListing(tid, f"inbox/{tid}", objects, status="ready", complete=complete)


def test_a_gzip_chunk_counts_as_what_it_decompresses_to():
    plain = listing("p", 10, [1000, 500], artifact=300)
    packed = listing("g", 10, [1000, 500], gz=True, artifact=300)
    assert plain.batch_bytes == 100 + 1500 + 300
    assert packed.batch_bytes == 100 + 1500 * GZIP_EXPANSION + 300  # only chunks are decompressed
    assert packed.size == plain.size  # what the objects take in the inbox is unchanged


def test_once_read_a_gzip_chunk_counts_what_its_trailer_says():
    data = b'{"seq": 0}\n' * 5000
    packed = gzip.compress(data, mtime=0)
    t = listing("g", 5000, [len(packed), len(packed)], gz=True)
    keys = sorted(k for k in t.objects if k.startswith("chunks/"))
    tb = TraceBlobs(t, {"manifest.json": b"{}", keys[0]: packed, keys[1]: packed})
    assert bytes_read(tb) == 100 + 2 * len(data)  # exact, from the last four bytes; nothing decompressed
    assert t.batch_bytes == 100 + 2 * len(packed) * GZIP_EXPANSION  # the estimate, before reading
    t.read_bytes = bytes_read(tb)
    assert t.batch_bytes == 100 + 2 * len(data)  # a trace handed back is planned at its measured size


def test_each_bound_closes_a_batch():
    s = IngestSettings(batch_max_traces=3, batch_max_events=100, batch_max_bytes=10_000)
    by_traces = [listing(f"t{i}", 1, [10]) for i in range(7)]
    assert [[t.trace_id for t in b] for b in plan_batches(by_traces, s)] == [["t0", "t1", "t2"], ["t3", "t4", "t5"], ["t6"]]
    by_events = [listing(f"e{i}", 40, [10]) for i in range(5)]
    assert [len(b) for b in plan_batches(by_events, s)] == [2, 2, 1]
    by_bytes = [listing(f"b{i}", 1, [4000]) for i in range(5)]
    assert [len(b) for b in plan_batches(by_bytes, s)] == [2, 2, 1]
    # 1,000 stored bytes of gzip count as 8,000: the second such trace starts a new batch
    packed = [listing(f"g{i}", 1, [1000], gz=True) for i in range(3)]
    assert [len(b) for b in plan_batches(packed, s)] == [1, 1, 1]


def test_a_trace_over_a_bound_still_gets_a_batch_of_its_own():
    s = IngestSettings(batch_max_events=100, batch_max_bytes=10_000)
    traces = [listing("a", 1, [10]), listing("b", 500, [50_000]), listing("c", 1, [10])]
    assert [[t.trace_id for t in b] for b in plan_batches(traces, s)] == [["a"], ["b"], ["c"]]


sizes = st.lists(st.tuples(st.integers(0, 60), st.integers(1, 5000), st.booleans()), max_size=40)


@settings(max_examples=200, deadline=None)
@given(sizes, st.integers(1, 6), st.integers(1, 150), st.integers(1, 20_000))
def test_batches_cover_every_trace_once_within_the_bounds(shape, max_traces, max_events, max_bytes):
    traces = [listing(f"t{i:03d}", events, [size], gz=gz) for i, (events, size, gz) in enumerate(shape)]
    s = IngestSettings(batch_max_traces=max_traces, batch_max_events=max_events, batch_max_bytes=max_bytes)
    batches = plan_batches(traces, s)
    assert [t.trace_id for b in batches for t in b] == sorted(t.trace_id for t in traces)  # each once, in order
    for i, b in enumerate(batches):
        events, size = sum(t.event_count for t in b), sum(t.batch_bytes for t in b)
        assert len(b) == 1 or (len(b) <= max_traces and events <= max_events and size <= max_bytes)
        if i + 1 < len(batches):  # greedy: the next batch's first trace would have broken a bound
            nxt = batches[i + 1][0]
            assert len(b) + 1 > max_traces or events + nxt.event_count > max_events or size + nxt.batch_bytes > max_bytes


def test_the_last_batches_end_the_run_level_on_the_workers():
    s = IngestSettings(batch_max_traces=100, batch_max_events=1000, batch_max_bytes=10**9)
    traces = [listing(f"t{i:03d}", 100, [10]) for i in range(25)]  # 2,500 events: 1,000 + 1,000 + a lone 500
    assert [len(b) for b in plan_batches(traces, s)] == [10, 10, 5]
    even = plan_last_batches(traces, s, workers=2, planned=0)
    assert sorted(len(b) for b in even) == [6, 6, 6, 7]  # four batches, two per worker, of one weight
    assert [t.trace_id for b in even for t in b] == [t.trace_id for t in traces]
    assert sorted(len(b) for b in plan_last_batches(traces, s, workers=2, planned=1)) == [8, 8, 9]  # 1 + 3: even
    assert plan_last_batches(traces, s, workers=1, planned=0) == plan_batches(traces, s)


@settings(max_examples=200, deadline=None)
@given(sizes, st.integers(1, 6), st.integers(1, 150), st.integers(1, 20_000), st.integers(1, 4), st.integers(0, 5))
def test_the_last_batches_keep_every_bound(shape, max_traces, max_events, max_bytes, workers, planned):
    traces = [listing(f"t{i:03d}", events, [size], gz=gz) for i, (events, size, gz) in enumerate(shape)]
    s = IngestSettings(batch_max_traces=max_traces, batch_max_events=max_events, batch_max_bytes=max_bytes)
    batches = plan_last_batches(traces, s, workers=workers, planned=planned)
    assert [t.trace_id for b in batches for t in b] == sorted(t.trace_id for t in traces)  # each once, in order
    assert all(len(plan_batches(b, s)) == 1 for b in batches)  # each batch within the bounds (or a lone trace)
    assert len(batches) >= len(plan_batches(traces, s))  # never fewer batches than the bounds need
    if batches != plan_batches(traces, s):  # levelled: the run's batch count divides among the workers
        assert (planned + len(batches)) % workers == 0
