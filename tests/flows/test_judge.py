"""The judge flow: scores land in Delta once per (trace, judge), beside other judges' scores."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import polars as pl
import pytest

from client.upload import find_trace_dirs, upload_trace_dir
from flows.ingest import ingest_inbox
from flows.judge import judge_traces
from lake import Lake
from tests.conftest import EXAMPLES, REPO
from tests.support.fake_openai import reply, rubric_json, status

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def lake(tmp_path):
    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    for d in find_trace_dirs(EXAMPLES):
        upload_trace_dir(d, inbox)
    ingest_inbox(inbox=inbox, lake=lake)
    return lake


def _scores(lake):
    return Lake(lake).scores().sort("judge_id", "trace_id").collect()


def test_heuristic_scores_once(lake):
    s = judge_traces(lake=lake)
    assert s.by_status() == {"scored": 3} and s.judge_id.startswith("heuristic-")
    df = _scores(lake)
    assert df.height == 3 and df["overall"].is_between(0, 5).all()
    row = df.filter(pl.col("trace_id") == "example-multi-file-fix").row(0, named=True)
    assert row["judge_kind"] == "heuristic" and row["why_causal_linking"] and row["qa_verdict"] is None
    version = Lake(lake).tables.open("scores").version()
    again = judge_traces(lake=lake)
    assert again.rows == [] and Lake(lake).tables.open("scores").version() == version


def test_a_new_judge_version_adds_rows_beside_the_old(lake, monkeypatch):
    first = judge_traces(lake=lake).judge_id
    monkeypatch.setattr("tasks.judge.heuristic.HEURISTIC_VERSION", "2-test")
    second = judge_traces(lake=lake).judge_id
    assert first != second
    df = _scores(lake)
    assert df.height == 6 and df.group_by("judge_id").len().sort("judge_id")["len"].to_list() == [3, 3]


def test_openai_judge_rows_and_retry_of_errors(lake, fake_openai, monkeypatch):
    monkeypatch.setenv("PRT_JUDGE_MAX_RETRIES", "0")
    monkeypatch.setenv("PRT_JUDGE_CONCURRENCY", "1")
    from schemas.settings import get_judge_settings

    get_judge_settings.cache_clear()
    try:
        judge_traces(lake=lake)  # heuristic first
        # Traces are judged in trace_id order: failed-attempt, multi-file-fix, simple-fix.
        fake_openai.scripts += [reply(rubric_json(4)), reply(rubric_json(score=11)), status(500)]
        s = judge_traces(lake=lake, judge="openai")
        assert s.by_status() == {"scored": 1, "unparsed": 1, "error": 1}
        df = _scores(lake).filter(pl.col("judge_kind") == "openai")
        by = {r["trace_id"]: r for r in df.to_dicts()}
        assert by["example-failed-attempt"]["overall"] == 4.0 and by["example-failed-attempt"]["prompt_tokens"] == 321
        assert by["example-multi-file-fix"]["status"] == "unparsed" and '"score": 11' in by["example-multi-file-fix"]["raw_reply"]
        assert by["example-simple-fix"]["status"] == "error"

        # Next run: only the error row is retried, and replaced; scored and unparsed rows stay.
        fake_openai.scripts.append(reply(rubric_json(2)))
        s = judge_traces(lake=lake, judge="openai")
        assert [r["trace_id"] for r in s.rows] == ["example-simple-fix"]
        df = _scores(lake)
        assert df.height == 6  # 3 heuristic + 3 openai, no duplicates
        fixed = df.filter((pl.col("judge_kind") == "openai") & (pl.col("trace_id") == "example-simple-fix")).row(0, named=True)
        assert fixed["status"] == "scored" and fixed["overall"] == 2.0
    finally:
        get_judge_settings.cache_clear()


def test_prt_judge_command_and_artifact(lake, cli_env, prefect_api):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    out = subprocess.run(
        [sys.executable, "-m", "client.cli", "judge", "--lake", lake], cwd=REPO, env=cli_env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "3 scored" in out.stdout and "example-multi-file-fix" in out.stdout

    async def latest():
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["judge-traces"])), limit=50
            )
            return sorted(found, key=lambda a: a.created)[-1]

    artifact = asyncio.run(latest())
    assert artifact.type == "table" and "example-simple-fix" in str(artifact.data) and "overall" in str(artifact.data)
