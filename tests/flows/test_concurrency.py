"""Two ingest runs started at once on the same inbox and lake, as separate processes: every trace
ends up exactly once in every table, and nothing is left in the inbox or the claims."""

from __future__ import annotations

import subprocess
import sys

import polars as pl

from lake import Lake
from tests.conftest import REPO
from tests.support.tracegen import chunk_keys, objects, put, write_trace

N = 24


def test_two_ingest_runs_at_once(storage_url, cli_env):
    inbox, lake = storage_url("inbox"), storage_url("lake")
    for i in range(N):
        write_trace(inbox, f"t-{i:02d}")
    key = "t-07/" + chunk_keys(inbox, "t-07")[0]
    put(inbox, key, objects(inbox)[key].replace(b"note 0", b"note X"))  # one bad trace among them
    env = {**cli_env, "PRT_INBOX": inbox, "PRT_LAKE": lake, "PRT_BATCH_MAX_TRACES": "4"}  # many small batches interleave
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "client.cli", "ingest"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]

    lk = Lake(lake)
    traces = lk.traces().collect()
    events = lk.events().collect()
    assert sorted(traces["trace_id"]) == sorted(f"t-{i:02d}" for i in range(N) if i != 7)
    assert events.height == 7 * (N - 1) and events.select(pl.struct("trace_id", "seq").n_unique()).item() == events.height
    assert lk.metrics().collect()["trace_id"].n_unique() == lk.metrics().collect().height == N - 1
    assert lk.quarantine().collect().select("trace_id", "reason").rows() == [("t-07", "chain_mismatch")]
    assert objects(inbox) == {}
    assert not [k for k in objects(lake) if k.startswith("_ingest/")]
    # However the claims split the inbox between the runs, their counts add up: none ingested a trace twice.
    ingested = [int(o[0].split(" ingested")[0].split()[-1]) for o in outs]
    assert sum(ingested) == N - 1, ingested
