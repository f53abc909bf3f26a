"""The bad-input corpus (tests/support/corpus.py) in one ingest run beside good traces: every case ends in
quarantine with its reason and a message naming the trace, and the good traces are untouched."""

from __future__ import annotations

import tarfile

import polars as pl
import pytest

from flows.ingest import ingest_inbox
from lake import Lake
from schemas.errors import QUARANTINE_REASONS
from schemas.settings import get_ingest_settings
from tests.support.corpus import CASES, LIMITS, LOCAL_ONLY, S3_ONLY, TOKEN, RawTrace, _member, _tar
from tests.support.tracegen import objects, write_trace


@pytest.fixture
def corpus_limits(monkeypatch):
    for k, v in LIMITS.items():
        monkeypatch.setenv(k, v)
    get_ingest_settings.cache_clear()
    yield
    get_ingest_settings.cache_clear()


def test_every_reason_code_has_a_case():
    covered = {reason for _, reason in [*CASES.values(), *LOCAL_ONLY.values(), *S3_ONLY.values()]}
    assert covered == QUARANTINE_REASONS - {"duplicate_trace"}  # needs a lake that already holds the trace: test_ingest.py
    assert len(CASES) >= 40


def test_corpus_is_quarantined_and_good_traces_are_not_affected(storage_url, request, prefect_api, corpus_limits):
    inbox, lake = storage_url("inbox"), storage_url("lake")
    local = not inbox.startswith("s3://")
    cases = {**CASES, **(LOCAL_ONLY if local else S3_ONLY)}
    for build, _ in cases.values():
        build(inbox)
    write_trace(inbox, "good-one")
    write_trace(inbox, "good-two", compress=True)
    inner_link = _tar(
        [_member("data.txt"), _member("docs", tarfile.DIRTYPE), _member("docs/data.txt", tarfile.SYMTYPE, linkname="../data.txt")]
    )
    RawTrace("good-inner-link", snapshot=inner_link).write(inbox)  # a relative link inside the repo is part of protocol v1
    outside = objects(inbox.rstrip("/") + "-outside") if local else {}

    summary = ingest_inbox(inbox=inbox, lake=lake, grace_period_s=0)

    assert sorted(summary.ingested) == ["good-inner-link", "good-one", "good-two"]
    lk = Lake(lake)
    assert lk.traces().select(pl.len()).collect().item() == 3
    assert lk.events().filter(pl.col("trace_id").is_in(["good-one", "good-two"])).select(pl.len()).collect().item() == 14
    got = {r["trace_id"]: r for r in lk.quarantine().collect().to_dicts()}
    assert len(got) == len(cases)
    for name, (_, reason) in cases.items():
        row = next((r for r in got.values() if _case_of(r["trace_id"]) == name), None)
        assert row is not None, f"case {name} left no quarantine row"
        assert row["reason"] == reason, f"case {name}: {row['reason']} ({row['message']}), expected {reason}"
        if row["trace_id"] != "README.txt" and name != "secret-as-trace-id":
            assert row["trace_id"] in row["message"], row["message"]
        assert TOKEN not in str(row), f"case {name}: the quarantine row holds the secret"
        if reason == "expectation_failed":
            assert row["expectation"] and row["expectation"] in row["message"]
    assert objects(inbox) == {}  # nothing is left behind, nothing good was lost
    if local:  # and the folders the inbox's links pointed at were left as they were
        assert objects(inbox.rstrip("/") + "-outside") == outside and len(outside) == 10


def _case_of(trace_id: str) -> str:
    special = {"README.txt": "stray-at-root", "-leading-dash": "unsafe-trace-id", "has space": "trace-id-with-space"}
    if trace_id.startswith("redacted-"):
        return "secret-as-trace-id"
    return special.get(trace_id, trace_id.removeprefix("bad-"))


@pytest.mark.parametrize("storage_url", ["s3"], indirect=True)
def test_s3_folder_markers_are_no_part_of_any_trace(storage_url, prefect_api):
    """Zero-byte keys ending in "/" (an S3 console's "Create folder") once left a trace stuck in
    the inbox unreported, and markers at the inbox or trace root were quarantined on every run."""
    import boto3

    inbox, lake = storage_url("inbox"), storage_url("lake")
    bucket, prefix = inbox.removeprefix("s3://").split("/", 1)
    for tid in ("with-markers", "plain"):
        write_trace(inbox, tid)
    s3 = boto3.client("s3")
    for key in ("", "with-markers/", "with-markers/chunks/", "with-markers/artifacts/", "only-a-folder/"):
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=b"")

    first = ingest_inbox(inbox=inbox, lake=lake, grace_period_s=0)
    assert sorted(first.ingested) == ["plain", "with-markers"] and first.quarantined == [] and first.pending == []
    left = sorted(o["Key"].removeprefix(prefix + "/") for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"])
    assert left == ["", "only-a-folder/"]  # the trace's markers went with it; folders of nothing are left alone
    again = ingest_inbox(inbox=inbox, lake=lake, grace_period_s=0)
    assert again.ingested == again.quarantined == again.pending == []
    assert Lake(lake).quarantine().collect().height == 0
