"""Crash safety: SIGKILL the ingest process at each of its write steps, re-run it, and prove that every
trace ends up exactly once in every table (or still waits in the inbox), with nothing lost."""

from __future__ import annotations

import subprocess
import sys

import polars as pl
import pytest

from lake import Lake
from tests.conftest import REPO
from tests.support.tracegen import archived, chunk_keys, lake_text, objects, put, write_trace

POINTS = [
    "before_commit:quarantine",
    "after_commit:quarantine",
    "after_commit:events",
    "after_commit:metrics",
    "after_commit:traces",
    "after_archive",
    "before_inbox_delete",
    "after_inbox_delete",
]


def _ingest(inbox: str, lake: str, env: dict, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**env, "PRT_LAKE": lake, "PRT_INBOX": inbox, "PRT_WORKERS": "1"}  # the fault kills this process
    if fault:
        env["PRT_FAULT_AT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "client.cli", "ingest"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_each_write_step_then_rerun(storage_url, cli_env, point):
    inbox, lake = storage_url("inbox"), storage_url("lake")
    for tid in ("t-a", "t-b", "t-c"):
        write_trace(inbox, tid, texts={"stdout": "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"} if tid == "t-b" else None)
    key = "t-c/" + chunk_keys(inbox, "t-c")[0]
    put(inbox, key, objects(inbox)[key].replace(b"note 0", b"note X"))  # t-c breaks its chain

    crashed = _ingest(inbox, lake, cli_env, point)
    assert crashed.returncode == -9, crashed.stderr[-2000:]  # killed where we asked, not earlier

    rerun = _ingest(inbox, lake, cli_env)
    assert rerun.returncode == 0, rerun.stderr[-2000:]

    lk = Lake(lake)
    traces = lk.traces().collect()
    events = lk.events().collect()
    quarantine = lk.quarantine().collect()
    assert sorted(traces["trace_id"]) == ["t-a", "t-b"]
    assert sorted(lk.metrics().collect()["trace_id"]) == ["t-a", "t-b"]
    assert events.height == 14 and events.select(pl.struct("trace_id", "seq").n_unique()).item() == 14
    assert quarantine.select("trace_id", "reason").rows() == [("t-c", "chain_mismatch")]
    assert objects(inbox) == {}  # everything left the inbox, and only after it was copied
    lake_objects = objects(lake)
    assert {"raw/t-a/archive.tar", "raw/t-b/archive.tar"} <= set(lake_objects)
    assert any(k.startswith("chunks/") for k in archived(lake, "t-a")) and "_archived.json" in archived(lake, "t-b")
    assert any(k.startswith("quarantine/t-c/") and k.endswith("/objects/complete.json") for k in lake_objects)
    assert not [k for k in lake_objects if k.startswith("_ingest/")]  # no claim or batch left behind
    assert "AKIAIOSFODNN7EXAMPLE" not in lake_text(lake)
    assert events.filter(pl.col("redactions").is_not_null())["redactions"].to_list() == [["stdout:aws_access_key_id"]]
