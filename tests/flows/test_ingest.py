"""The ingest flow end to end, on a local folder and on S3 (moto), against a real Prefect server."""

from __future__ import annotations

import json

import polars as pl
import pytest
from deltalake import DeltaTable

from client.storage import fs_for
from client.upload import find_trace_dirs, upload_trace_dir
from flows.ingest import ingest_inbox
from lake import Lake
from lake.tables import LakeTables
from schemas.settings import IngestSettings
from tasks.ingest.inbox import bytes_read, load_traces, scan_inbox
from tests.conftest import EXAMPLE_IDS, EXAMPLES
from tests.support.tracegen import archived, chunk_keys, objects, put, remove, write_trace

pytestmark = pytest.mark.usefixtures("prefect_api")


def _versions(lake: str) -> dict[str, int]:
    t = LakeTables(lake)
    return {name: t.open(name).version() for name in ("traces", "events", "metrics", "quarantine") if t.exists(name)}


def _counts(lake: str) -> dict[str, int]:
    lk = Lake(lake)
    return {name: lk.table(name).select(pl.len()).collect().item() for name in ("traces", "events", "metrics", "quarantine")}


def test_examples_ingest_cleanly_and_only_once(storage_url):
    inbox, lake = storage_url("inbox"), storage_url("lake")
    for d in find_trace_dirs(EXAMPLES):
        upload_trace_dir(d, inbox)

    summary = ingest_inbox(inbox=inbox, lake=lake)
    assert sorted(summary.ingested) == sorted(EXAMPLE_IDS) and summary.quarantined == []
    assert _counts(lake) == {"traces": 3, "events": 50, "metrics": 3, "quarantine": 0}
    assert objects(inbox) == {}  # removed only after the lake commit and the archive

    lk = Lake(lake)
    traces = lk.traces().collect()
    assert set(traces["participant"].str.slice(0, 2)) == {"p_"} and "dev-alice" not in str(traces.to_dicts())
    assert traces["pipeline_run_id"].n_unique() == 1 and traces["code_version"].null_count() == 0
    events = lk.events().filter(pl.col("trace_id") == "example-multi-file-fix").sort("seq").collect()
    assert events["seq"].to_list() == list(range(24))
    assert events.filter(pl.col("type") == "file_edit")["file_path"].unique().sort().to_list() == [
        "inventory/cart.py",
        "inventory/money.py",
        "tests/test_regression.py",
    ]
    metrics = lk.metrics().filter(pl.col("trace_id") == "example-simple-fix").collect().row(0, named=True)
    assert metrics["n_events"] == 9 and metrics["lines_added"] == 1 and metrics["lines_removed"] == 1
    assert metrics["reproduced_before_edit"] is True and metrics["time_to_first_pass_s"] > metrics["time_to_first_edit_s"]

    assert set(objects(lake, "raw/example-simple-fix")) == {"archive.tar"}  # one object per trace
    archive = archived(lake, "example-simple-fix")
    assert {"manifest.json", "complete.json", "_archived.json"} <= set(archive)
    assert json.loads(archive["manifest.json"])["session"]["participant_id"].startswith("p_")
    originals = {p.name: p.read_bytes() for p in (EXAMPLES / "example-simple-fix" / "chunks").iterdir()}
    assert {k.split("/", 1)[1]: v for k, v in archive.items() if k.startswith("chunks/")} == originals

    versions = _versions(lake)
    again = ingest_inbox(inbox=inbox, lake=lake)
    assert again.ingested == [] and again.quarantined == []
    assert _versions(lake) == versions  # nothing committed the second time


def test_reupload_of_an_ingested_trace(storage_url):
    inbox, lake = storage_url("inbox"), storage_url("lake")
    upload_trace_dir(EXAMPLES / "example-simple-fix", inbox)
    ingest_inbox(inbox=inbox, lake=lake)
    upload_trace_dir(EXAMPLES / "example-simple-fix", inbox)  # the same bytes again
    s = ingest_inbox(inbox=inbox, lake=lake)
    assert s.cleaned == ["example-simple-fix"] and s.ingested == []
    assert _counts(lake)["events"] == 9 and objects(inbox) == {}

    write_trace(inbox, "example-simple-fix")  # same id, other content
    s = ingest_inbox(inbox=inbox, lake=lake)
    assert [(t, r) for t, r, _ in s.quarantined] == [("example-simple-fix", "duplicate_trace")]
    assert _counts(lake) == {"traces": 1, "events": 9, "metrics": 1, "quarantine": 1}


def test_a_link_in_a_trace_is_rejected_at_once_not_after_the_grace_period(tmp_path):
    from tests.support.corpus import LOCAL_ONLY

    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    LOCAL_ONLY["symlink-chunks-folder"][0](inbox)  # its chunks/ folder is a link to a real trace's
    s = ingest_inbox(inbox=inbox, lake=lake)  # the default grace period: a missing chunk would wait
    assert [(t, r) for t, r, _ in s.quarantined] == [("bad-symlink-chunks-folder", "unsafe_path")]
    assert "chunks is a link" in s.quarantined[0][2] and objects(inbox) == {}


def test_pending_until_complete_then_grace_period(storage_url):
    inbox, lake = storage_url("inbox"), storage_url("lake")
    write_trace(inbox, "no-complete", complete=False)
    write_trace(inbox, "missing-chunk")
    remove(inbox, f"missing-chunk/{chunk_keys(inbox, 'missing-chunk')[1]}")
    before = objects(inbox)

    s = ingest_inbox(inbox=inbox, lake=lake)
    assert s.pending == ["missing-chunk", "no-complete"] and s.ingested == [] and s.quarantined == []
    assert objects(inbox) == before  # pending traces are left untouched

    s = ingest_inbox(inbox=inbox, lake=lake, grace_period_s=0)
    assert [(t, r) for t, r, _ in s.quarantined] == [("missing-chunk", "incomplete")]
    assert s.pending == ["no-complete"]  # without complete.json a trace waits for ever
    q = Lake(lake).quarantine().collect().row(0, named=True)
    assert (
        q["reason"] == "incomplete"
        and "missing-chunk" in q["message"]
        and q["raw_prefix"].startswith("quarantine/missing-chunk/")
    )
    moved = objects(lake, q["raw_prefix"])
    assert "objects/manifest.json" in moved and "_moved.json" in moved


def test_chunks_in_any_order_resent_and_gzip(storage_url):
    inbox, lake = storage_url("inbox"), storage_url("lake")
    staging = storage_url("staging")
    write_trace(staging, "t-order", compress=True, chunk_max_events=2)
    objs = objects(staging, "t-order")
    # Chunks first (last chunk first), then the manifest and artifacts, complete.json last; one chunk twice.
    order = sorted((k for k in objs if k.startswith("chunks/")), reverse=True)
    order += [k for k in objs if k.startswith("artifacts/")] + ["manifest.json", order[0], "complete.json"]
    for k in order:
        put(inbox, f"t-order/{k}", objs[k])
    s = ingest_inbox(inbox=inbox, lake=lake)
    assert s.ingested == ["t-order"]
    assert Lake(lake).events().select(pl.len()).collect().item() == 7


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        pytest.param(lambda inbox: remove(inbox, "t-bad/manifest.json"), "manifest_missing", id="manifest-missing"),
        pytest.param(
            lambda inbox: _edit_line(inbox, lambda line: line.replace(b"note 0", b"note X")), "chain_mismatch", id="chain"
        ),
        pytest.param(lambda inbox: _edit_line(inbox, lambda line: line[:-3]), "bad_json", id="bad-json"),
        pytest.param(
            lambda inbox: _edit_line(inbox, lambda line: line.replace(b'"hypothesis"', b'"musing"')), "schema_error", id="schema"
        ),
        pytest.param(
            lambda inbox: _edit_line(inbox, lambda line: line.replace(b'"rationale_note"', b'"keystroke"')),
            "unknown_event_type",
            id="unknown-type",
        ),
    ],
)
def test_bad_trace_is_quarantined_and_good_ones_still_ingest(storage_url, mutate, reason):
    inbox, lake = storage_url("inbox"), storage_url("lake")
    write_trace(inbox, "t-good")
    write_trace(inbox, "t-bad")
    mutate(inbox)
    s = ingest_inbox(inbox=inbox, lake=lake)
    assert s.ingested == ["t-good"]
    assert [(t, r) for t, r, _ in s.quarantined] == [("t-bad", reason)]
    message = s.quarantined[0][2]
    assert message.startswith("trace t-bad:")
    assert _counts(lake) == {"traces": 1, "events": 7, "metrics": 1, "quarantine": 1}
    assert objects(inbox) == {}


def _edit_line(inbox: str, change) -> None:
    key = "t-bad/" + chunk_keys(inbox, "t-bad")[0]
    data = objects(inbox)[key]
    lines = data.split(b"\n")
    lines[0] = change(lines[0])
    put(inbox, key, b"\n".join(lines))


def test_consent_false_keeps_only_the_reason(storage_url):
    inbox, lake = storage_url("inbox"), storage_url("lake")
    write_trace(inbox, "t-noconsent", consent=False, participant="carol@example.org")
    s = ingest_inbox(inbox=inbox, lake=lake)
    assert [(t, r) for t, r, _ in s.quarantined] == [("t-noconsent", "consent_withdrawn")]
    q = Lake(lake).quarantine().collect().row(0, named=True)
    assert q["participant"] is None and q["raw_prefix"] is None
    assert objects(inbox) == {}
    assert not [k for k in objects(lake) if "t-noconsent" in k and not k.startswith("quarantine/_delta_log")]
    everything = b"".join(objects(lake).values())
    assert b"carol@example.org" not in everything and b"note 0" not in everything


def _beyond_the_estimate(inbox: str, lake: str, workers: int) -> None:
    """Batches are planned with gzip chunks at GZIP_EXPANSION times their size. Chunks of one line
    repeated decompress far more: the worker measures them (the gzip trailers) before decompressing
    anything and hands back what does not fit; the run plans those again with their real size."""
    for i in range(3):  # notes of one sentence repeated: 220 kB that gzip takes to a few hundred bytes per chunk
        write_trace(inbox, f"z-{i}", compress=True, n_notes=20, texts={"note": "the divisor looks off. " * 500})
    fs, root = fs_for(inbox)
    listings = list(scan_inbox(fs, root, IngestSettings()).traces.values())
    planned = sum(t.batch_bytes for t in listings)
    read = [bytes_read(tb) for tb in load_traces(fs, listings, IngestSettings())]
    assert min(read) > planned  # what the test is about: each trace alone is more than the three were planned at

    s = ingest_inbox(inbox=inbox, lake=lake, batch_max_bytes=planned, workers=workers)
    # One process: planned as one batch; z-1 and z-2 handed back, then one batch each. Two workers:
    # planned as two batches so that the run ends level (plan_last_batches); one trace handed back.
    assert s.batches == 3 and s.deferred == (2 if workers == 1 else 1)
    assert sorted(s.ingested) == ["z-0", "z-1", "z-2"] and not s.quarantined and objects(inbox) == {}
    assert _counts(lake)["traces"] == 3
    assert f"planned again with their measured size (gzip chunks larger than estimated): {s.deferred}" in s.markdown()


def test_a_batch_never_holds_more_than_its_byte_bound(storage_url):
    _beyond_the_estimate(storage_url("inbox"), storage_url("lake"), workers=1)


def test_a_batch_never_holds_more_than_its_byte_bound_with_workers(tmp_path):
    _beyond_the_estimate(str(tmp_path / "inbox"), str(tmp_path / "lake"), workers=2)  # the pool's own path


def test_batches_commit_once_per_table(storage_url):
    inbox, lake = storage_url("inbox"), storage_url("lake")
    for i in range(3):
        write_trace(inbox, f"t-{i}")
    s = ingest_inbox(inbox=inbox, lake=lake, batch_max_traces=1)
    assert s.batches == 3 and len(s.ingested) == 3
    dt = DeltaTable(LakeTables(lake).uri("events"), storage_options=LakeTables(lake).storage_options)
    assert dt.version() == 3  # created (0), then one append per batch
    s = ingest_inbox(inbox=inbox, lake=lake, batch_max_events=1)  # nothing left; a lone trace over the limit still gets a batch
    assert s.batches == 0
