"""Ingest as operators see it: the printed summary, the Prefect artifacts, and schema evolution."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import subprocess
import sys

import polars as pl
import pyarrow as pa
import pytest

from client.upload import find_trace_dirs, upload_trace_dir
from flows.ingest import ingest_inbox
from lake import Lake
from lake.frames import polars_schema, to_arrow
from lake.tables import LakeTables
from schemas.errors import ConfigError, InvalidInput
from schemas.tables import TRACES
from tasks.ingest.batch import IngestSummary
from tasks.publish import MAX_TABLE_ROWS, bounded
from tests.conftest import EXAMPLES, REPO
from tests.support.tracegen import write_trace


def test_prt_ingest_prints_a_summary(tmp_path, cli_env):
    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    for d in find_trace_dirs(EXAMPLES):
        upload_trace_dir(d, inbox)
    write_trace(inbox, "t-pending", complete=False)
    write_trace(inbox, "t-noconsent", consent=False)
    out = subprocess.run(
        [sys.executable, "-m", "client.cli", "ingest", "--inbox", inbox, "--lake", lake],
        cwd=REPO,
        env=cli_env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "3 ingested (50 events), 1 quarantined, 1 pending" in out.stdout
    assert "consent_withdrawn" in out.stdout and "t-pending" in out.stdout


def test_run_publishes_prefect_artifacts(tmp_path, prefect_api):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    write_trace(inbox, "t-art")
    run_id = ingest_inbox(inbox=inbox, lake=lake, return_state=True).state_details.flow_run_id

    async def latest(key):  # this run's: the server is shared with other tests' runs
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])
                )
            )
            assert len(found) == 1, found
            return found[0]

    table = asyncio.run(latest("ingest-traces"))
    assert table.type == "table" and "t-art" in str(table.data) and "ingested" in str(table.data)
    summary = asyncio.run(latest("ingest-summary"))
    assert summary.type == "markdown" and "ingested: **1** traces" in summary.data


def test_large_run_table_shows_problems_first_and_stays_bounded():
    summary = IngestSummary(
        ingested=[f"t-{i:04d}" for i in range(MAX_TABLE_ROWS + 10)],
        quarantined=[("t-9999", "chain_mismatch", "trace t-9999: chain_head ...")],
        pending=["t-0000p"],
    )
    rows = bounded(summary.rows())
    assert len(rows) == MAX_TABLE_ROWS
    assert [r["outcome"] for r in rows[:2]] == ["pending", "quarantined"] and rows[1]["trace_id"] == "t-9999"
    assert rows[-1] == {"trace_id": "… 13 more rows (see the lake's tables)", "outcome": "", "reason": "", "detail": ""}
    assert rows[2]["trace_id"] == "t-0000" and rows[-2]["trace_id"] == f"t-{MAX_TABLE_ROWS - 4:04d}"
    assert bounded(summary.rows()[:MAX_TABLE_ROWS]) == summary.rows()[:MAX_TABLE_ROWS]


def test_older_table_evolves_in_place(storage_url, prefect_api):
    inbox, lake = storage_url("inbox"), storage_url("lake")
    # An older code version wrote `traces` without the last two columns.
    old_fields = [f for f in TRACES.schema if f.name not in ("redaction_count", "parser_version")]
    old = dataclasses.replace(TRACES, schema=pa.schema(old_fields))
    tables = LakeTables(lake)
    row = {name: None for name in old.columns}
    row.update(trace_id="t-old", ingest_date=datetime.date(2025, 1, 1), event_count=3)
    df = pl.DataFrame([row], schema={k: v for k, v in polars_schema(TRACES).items() if k in old.columns})
    tables.append(old, to_arrow(df, old), metadata={"test": "old writer"})
    assert "parser_version" not in tables.open("traces").schema().to_arrow().names

    write_trace(inbox, "t-new")
    ingest_inbox(inbox=inbox, lake=lake)
    rows = Lake(lake).traces().select("trace_id", "event_count", "parser_version", "redaction_count").sort("trace_id").collect()
    assert rows.rows() == [("t-new", 7, "v1.1", 0), ("t-old", 3, None, None)]
    names = tables.open("traces").schema().to_arrow().names
    assert names[-2:] == ["redaction_count", "parser_version"]  # added in place, at the end


def test_read_api_on_empty_lake(storage_url):
    with pytest.raises(InvalidInput, match="no lake at"):  # a typo'd path is not an empty lake
        Lake(storage_url("lake"))
    lk = Lake(storage_url("lake"), create=True)
    assert lk.events().collect().columns[:2] == ["trace_id", "seq"]
    assert lk.quarantine().collect().height == 0
    with pytest.raises(KeyError, match="known: traces"):
        lk.table("nope")


def test_missing_bucket_is_a_clear_error(s3_endpoint):
    with pytest.raises(ConfigError, match="bucket does not exist"):
        Lake("s3://no-such-bucket-prt/lake").traces()
