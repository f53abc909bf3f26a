"""The researcher's read API: LazyFrames for every table and the joined dataset() view, local and on S3."""

from __future__ import annotations

import polars as pl
import pytest

from client.upload import find_trace_dirs, upload_trace_dir
from flows.ingest import ingest_inbox
from flows.judge import judge_traces
from lake import Lake
from lake.frames import polars_schema, to_arrow
from schemas.errors import InvalidInput, JudgeFailed
from schemas.tables import QA_RUNS, TABLES
from tests.conftest import EXAMPLES


def _qa_row(trace_id: str, verdict: str, qa_id: str, started: str) -> dict:
    from datetime import datetime

    return {"trace_id": trace_id, "qa_id": qa_id, "verdict": verdict, "fail_to_pass": ["t::x"] if verdict == "verified" else [],
            "started_at": datetime.fromisoformat(started), "run_date": datetime.fromisoformat(started).date(), "backend": "namespace"}  # fmt: skip


def test_dataset_joins_and_filters(storage_url, prefect_api):
    inbox, lake = storage_url("inbox"), storage_url("lake")
    for d in find_trace_dirs(EXAMPLES):
        upload_trace_dir(d, inbox)
    ingest_inbox(inbox=inbox, lake=lake)
    judge_traces(lake=lake)
    lk = Lake(lake)
    rows = [
        _qa_row("example-simple-fix", "error", "a", "2026-01-01T00:00:00+00:00"),  # an older run...
        _qa_row("example-simple-fix", "verified", "b", "2026-01-02T00:00:00+00:00"),  # ...and the latest
        _qa_row("example-multi-file-fix", "verified", "c", "2026-01-02T00:00:00+00:00"),
        _qa_row("example-failed-attempt", "not_fixed", "d", "2026-01-02T00:00:00+00:00"),
    ]
    lk.tables.merge_rows(QA_RUNS, to_arrow(pl.DataFrame(rows, schema=polars_schema(QA_RUNS)), QA_RUNS), metadata={})

    for name in TABLES:
        assert isinstance(lk.table(name), pl.LazyFrame)
    ds = lk.dataset().collect()
    assert ds["trace_id"].to_list() == sorted(ds["trace_id"].to_list()) and ds.height == 3
    simple = ds.filter(pl.col("trace_id") == "example-simple-fix").row(0, named=True)
    assert simple["verdict"] == "verified" and simple["n_events"] == 9 and simple["judge_id"].startswith("heuristic-")
    assert simple["overall"] == pytest.approx(
        3.462
    )  # judged before QA: "not run yet" and simple["scores"] == [{"judge_id": simple["judge_id"], "overall": simple["overall"]}]

    assert lk.dataset(verdict="verified").collect()["trace_id"].to_list() == ["example-multi-file-fix", "example-simple-fix"]
    assert lk.dataset(verdict=["not_fixed"], min_score=4.0).collect()["trace_id"].to_list() == ["example-failed-attempt"]
    assert lk.dataset(min_score=4.5).collect()["trace_id"].to_list() == ["example-multi-file-fix"]
    assert lk.dataset(judge="heuristic").collect().height == 3
    today = ds["ingest_date"][0]
    assert lk.dataset(ingested_since=today, ingested_until=today).collect().height == 3
    assert lk.dataset(ingested_until=today.replace(year=2000)).collect().height == 0
    # since/until are the day the session started, as researchers mean them (sessions of 9-11 Oct 2025)
    from datetime import date

    october = lk.dataset(since=date(2025, 10, 1), until=date(2025, 10, 31)).collect()
    assert october.height == 3 and lk.dataset(since=date(2025, 10, 10)).collect().height == 2
    assert lk.dataset(repo="example.org/prt-examples/calculator").collect()["trace_id"].to_list() == ["example-simple-fix"]
    assert lk.dataset(task=["BUG-202", "BUG-303"]).collect().height == 2
    with pytest.raises(InvalidInput, match=r"verifed is not a verdict; verdicts: error, not_fixed"):
        lk.dataset(verdict="verifed")
    with pytest.raises(InvalidInput, match=r"no trace of github\.com/x/y in .*; repos there: https://example\.org"):
        lk.dataset(repo="https://github.com/x/y.git")
    with pytest.raises(InvalidInput, match="no trace of task BUG-1 "):
        lk.dataset(task="BUG-1")
    assert lk.funnel(verdict="verified", min_score=4.5, since=date(2025, 10, 10)) == [
        ("traces in the lake", 3),
        ("session date 2025-10-10 to …", 2),
        ("verdict verified", 1),
        ("score >= 4.5", 1),
    ]
    with pytest.raises(InvalidInput, match=r"no judge 'openai' in .*; judges there: heuristic-.* \(3 of 3 scored\)"):
        lk.dataset(judge="openai")


def test_a_judge_run_that_scored_nothing_fails_and_is_never_the_default(tmp_path, prefect_api, monkeypatch):
    """A dead endpoint once gave "scored 5 of 5", a Completed run of error rows, and from then on
    the default judge of dataset() and export: null scores, and `--min-score 3` gave 0 records."""
    import socket

    from schemas.settings import get_judge_settings

    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    for d in find_trace_dirs(EXAMPLES):
        upload_trace_dir(d, inbox)
    ingest_inbox(inbox=inbox, lake=lake)
    lk = Lake(lake)
    with pytest.raises(InvalidInput, match="no judge has scored a trace"):
        lk.dataset(min_score=3)
    judge_traces(lake=lake)  # heuristic

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", dead)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-secret")
    monkeypatch.setenv("PRT_JUDGE_MAX_RETRIES", "0")
    monkeypatch.setenv("PRT_JUDGE_TIMEOUT_S", "2")
    get_judge_settings.cache_clear()
    try:
        with pytest.raises(JudgeFailed, match=r"scored none of 3 traces \(error 3\); first error: "):
            judge_traces(lake=lake, judge="openai")
    finally:
        get_judge_settings.cache_clear()

    judges = lk.judges()
    assert judges["judge_kind"].to_list() == ["heuristic", "openai"] and judges["scored"].to_list() == [3, 0]
    assert lk.dataset().collect()["judge_id"].str.starts_with("heuristic-").all()  # the default skips the failed run
    assert lk.dataset(min_score=3).collect().height > 0
    with pytest.raises(InvalidInput, match="judge 'openai' has scored no trace"):
        lk.dataset(judge="openai")


def test_a_path_with_no_lake_is_an_error_not_an_empty_lake(tmp_path):
    with pytest.raises(InvalidInput, match=r"no lake at .*typo .*check the path"):
        Lake(str(tmp_path / "typo"))
    fresh = Lake(str(tmp_path / "new"), create=True)  # the pipeline's stages, before the first ingest
    assert fresh.traces().collect().height == 0


def test_a_commit_that_keeps_conflicting_is_a_transient_error_that_crosses_processes():
    """delta-rs' CommitFailedError cannot be pickled: raised in an ingest worker, it became a
    PicklingError that failed the whole run instead of a retry of the batch."""
    import pickle

    from deltalake.exceptions import CommitFailedError

    from lake.tables import LakeTables
    from schemas.errors import StorageUnavailable, is_transient

    tries = []

    def conflict():
        tries.append(1)
        raise CommitFailedError("Transaction failed: version already exists")

    with pytest.raises(StorageUnavailable) as caught:
        LakeTables._retry(conflict, attempts=2)
    assert len(tries) == 2 and is_transient(caught.value)
    assert "version already exists" in str(pickle.loads(pickle.dumps(caught.value)))
