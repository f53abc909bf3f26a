"""Ingest with worker processes (`prt ingest --workers N`): the same lake as one process, and the
same crash safety when a worker is killed mid-batch."""

from __future__ import annotations

import subprocess
import sys

import polars as pl
import pytest

from lake import Lake
from tests.conftest import REPO
from tests.support.tracegen import chunk_keys, objects, put, write_trace

N = 12
RUN_COLUMNS = ["pipeline_run_id", "batch_id", "code_version", "ingested_at", "ingest_date"]


def _inbox(inbox: str) -> None:
    for i in range(N):
        write_trace(inbox, f"t-{i:02d}", texts={"stdout": "token=ghp_" + "a" * 36 + "\n"} if i == 3 else None)
    key = "t-05/" + chunk_keys(inbox, "t-05")[0]
    put(inbox, key, objects(inbox)[key].replace(b"note 0", b"note X"))  # one bad trace among them


def _ingest(inbox: str, lake: str, env: dict, workers: int, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**env, "PRT_INBOX": inbox, "PRT_LAKE": lake, "PRT_BATCH_MAX_TRACES": "3"}  # several batches per worker
    if fault:
        env["PRT_FAULT_AT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "client.cli", "ingest", "--workers", str(workers)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _content(lake: str) -> dict[str, pl.DataFrame]:
    """Every table's rows without the columns that name the run, in a stable order."""
    lk = Lake(lake)
    out = {}
    for name in ("traces", "events", "metrics", "quarantine"):
        df = lk.table(name).collect()
        keep = [c for c in df.columns if c not in RUN_COLUMNS and c not in ("detected_at", "raw_prefix", "quarantine_id")]
        out[name] = df.select(keep).sort(*[c for c in ("trace_id", "seq") if c in keep])
    return out


def test_workers_write_the_same_lake_as_one_process(tmp_path, cli_env):
    one, two = (str(tmp_path / "one"), str(tmp_path / "two"))
    _inbox(one + "-inbox")
    _inbox(two + "-inbox")
    a = _ingest(one + "-inbox", one, cli_env, workers=1)
    b = _ingest(two + "-inbox", two, cli_env, workers=2)
    assert a.returncode == 0 and b.returncode == 0, (a.stderr[-2000:], b.stderr[-2000:])
    assert "11 ingested" in b.stdout and "1 quarantined" in b.stdout
    left, right = _content(one), _content(two)
    for name in left:
        assert left[name].equals(right[name]), name
    assert right["events"].height == 7 * (N - 1)
    assert objects(two + "-inbox") == {} and not [k for k in objects(two) if k.startswith("_ingest/")]


@pytest.mark.parametrize("point", ["after_commit:events", "after_archive"])
def test_a_killed_worker_fails_the_run_and_the_next_run_finishes_it(tmp_path, cli_env, point):
    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    _inbox(inbox)
    crashed = _ingest(inbox, lake, cli_env, workers=2, fault=point)
    assert crashed.returncode != 0
    assert "process" in (crashed.stdout + crashed.stderr).lower()  # says a worker process died

    rerun = _ingest(inbox, lake, cli_env, workers=2)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    lk = Lake(lake)
    events = lk.events().collect()
    assert sorted(lk.traces().collect()["trace_id"]) == [f"t-{i:02d}" for i in range(N) if i != 5]
    assert events.height == 7 * (N - 1) and events.select(pl.struct("trace_id", "seq").n_unique()).item() == events.height
    assert lk.metrics().collect().height == N - 1
    assert lk.quarantine().collect().select("trace_id", "reason").rows() == [("t-05", "chain_mismatch")]
    assert objects(inbox) == {} and not [k for k in objects(lake) if k.startswith("_ingest/")]


def test_batches_start_while_the_inbox_is_still_scanned(tmp_path, cli_env):
    """More traces than the first scan part (256): batches are planned part by part, the last
    batch of each part waits for the next one, the last part's batches are levelled, and every
    trace is ingested exactly once."""
    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    n = 300
    for i in range(n):
        write_trace(inbox, f"t-{i:03d}", n_notes=0, chunk_max_events=10)
    env = {**cli_env, "PRT_INBOX": inbox, "PRT_LAKE": lake, "PRT_BATCH_MAX_TRACES": "40"}
    out = subprocess.run(
        [sys.executable, "-m", "client.cli", "ingest", "--workers", "2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    lk = Lake(lake)
    traces = lk.traces().collect()
    assert sorted(traces["trace_id"]) == [f"t-{i:03d}" for i in range(n)]
    # Parts of 256 and 44 folders: 6 full batches, then the 16 left over join the last part:
    # 60 traces, 40 + 20 by the limit, shared out as 30 + 30 so that the run's 8 batches end
    # level on the two workers (plan_last_batches). None is over the limit.
    assert traces.group_by("batch_id").len()["len"].sort().to_list() == [30, 30, 40, 40, 40, 40, 40, 40]
    assert lk.events().collect().height == 5 * n and objects(inbox) == {}
