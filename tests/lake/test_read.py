"""The researcher's read API: LazyFrames for every table and the joined dataset() view, local and on S3."""

from __future__ import annotations

import polars as pl
import pytest

from client.upload import find_trace_dirs, upload_trace_dir
from flows.ingest import ingest_inbox
from flows.judge import judge_traces
from lake import Lake
from lake.frames import polars_schema, to_arrow
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
    assert lk.dataset(since=today, until=today).collect().height == 3
    assert lk.dataset(until=today.replace(year=2000)).collect().height == 0
    with pytest.raises(KeyError, match="no scores from judge 'openai'"):
        lk.dataset(judge="openai")
