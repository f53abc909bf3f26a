"""`prt serve`: each trace is ingested, verified and scored as it arrives; SIGTERM stops it with
nothing half-done."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from client.upload import find_trace_dirs, upload_trace_dir
from jobs.serve import NewestFirst
from lake import Lake
from tests.conftest import EXAMPLES, REPO
from tests.support.tracegen import write_trace


def _serve(inbox: str, lake: str, log: Path, *args: str, **settings: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PRT_TRACK")} | settings
    return subprocess.Popen(
        [sys.executable, "-m", "client.cli", "serve", "--inbox", inbox, "--lake", lake, "--poll-s", "0.5", *args],
        cwd=REPO, env={**env, "PRT_WORKERS": "2"}, stdout=subprocess.PIPE, stderr=log.open("w"), text=True,
    )  # fmt: skip


def _wait_for(what, check, proc, log: Path, timeout_s: float = 240):
    deadline = time.time() + timeout_s
    while not check():
        assert proc.poll() is None, f"prt serve exited ({proc.returncode}) before {what}: {log.read_text()[-3000:]}"
        assert time.time() < deadline, f"no {what} after {timeout_s} s: {log.read_text()[-3000:]}"
        time.sleep(0.5)


def _ids(lake: str, table: str) -> set[str]:
    try:
        return set(Lake(lake).table(table).select("trace_id").collect()["trace_id"].to_list())
    except Exception:  # the table is not there yet
        return set()


def test_each_trace_is_ingested_verified_and_scored_as_it_arrives(tmp_path):
    inbox, lake, log = str(tmp_path / "inbox"), str(tmp_path / "lake"), tmp_path / "serve.log"
    proc = _serve(inbox, lake, log)
    try:
        _wait_for("ready", lambda: "prt.serve - ready:" in log.read_text(), proc, log)
        examples = find_trace_dirs(EXAMPLES)
        for folder in examples:  # one at a time, as clients finish them
            upload_trace_dir(folder, inbox)
            _wait_for(f"rows of {folder.name}", lambda f=folder: f.name in _ids(lake, "events"), proc, log, 60)
        names = {f.name for f in examples}
        _wait_for("verdicts and scores", lambda: names <= _ids(lake, "qa_runs") and names <= _ids(lake, "scores"), proc, log)
        write_trace(inbox, "t-uploading", complete=False)  # never completes: left alone
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert "ingest: 3 ingested (50 events), 0 quarantined; qa: 1 not_fixed, 2 verified; judge: 3 scored" in out
    assert "SIGTERM: finishing the batches in flight" in log.read_text()
    assert (tmp_path / "inbox" / "t-uploading").is_dir() and not any((tmp_path / "lake" / "_ingest" / "claims").iterdir())


def test_sigterm_while_a_backlog_drains_leaves_nothing_half_done(tmp_path):
    inbox, lake, log = str(tmp_path / "inbox"), str(tmp_path / "lake"), tmp_path / "serve.log"
    for i in range(60):
        write_trace(inbox, f"t-{i:03d}", n_notes=40, chunk_max_events=10)
    proc = _serve(inbox, lake, log, "--sandbox", "namespace", PRT_BATCH_MAX_TRACES="4")
    try:
        _wait_for("a first batch", lambda: "prt.serve - batch " in log.read_text(), proc, log)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, log.read_text()[-3000:]
    ingested = _ids(lake, "traces")
    left = {p.name for p in (tmp_path / "inbox").iterdir()}
    assert ingested and left and not ingested & left  # stopped midway: each trace whole in the lake or untouched in the inbox
    assert ingested | left == {f"t-{i:03d}" for i in range(60)}
    assert not any((tmp_path / "lake" / "_ingest" / "claims").iterdir())
    # the rest comes in whole by the next run; no trace's events twice
    rerun = subprocess.run([sys.executable, "-m", "client.cli", "--no-track", "ingest", "--inbox", inbox, "--lake", lake],
                           cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    events = Lake(lake).events().select("trace_id", "seq").collect()
    assert events["trace_id"].n_unique() == 60 and events.height == events.unique().height
    assert events.group_by("trace_id").len()["len"].n_unique() == 1  # every trace whole
    assert pl.Series(sorted(_ids(lake, "traces"))).len() == 60


def test_stages_take_the_newest_first_and_leave_a_draining_backlog_for_later():
    queue = NewestFirst()
    queue.add(["old-1", "old-2", "new"], {"old-1": 100.0, "old-2": 101.0, "new": 300.0})
    queue.add(["caught-up"])  # no completion time: from a catch-up, last of all
    queue.add(["new"], {"new": 300.0})  # already waiting: not twice
    assert queue.take(2, timeout=0, newer_than=200.0) == ["new"]  # a backlog formed at 200: its traces wait
    assert queue.take(5, timeout=0, newer_than=200.0) == []
    assert queue.take(5, timeout=0) == ["old-2", "old-1", "caught-up"]  # caught up: the rest, newest first


def test_a_long_running_summary_keeps_totals_and_only_the_latest_ids(monkeypatch):
    import jobs.serve
    from tasks.ingest.batch import BatchReport

    monkeypatch.setattr(jobs.serve, "KEEP", 3)
    summary = jobs.serve.ServeSummary()
    for b in range(4):
        summary.add(BatchReport(f"b{b}", False, [f"t{b}-{i}" for i in range(2)], 20, [(f"q{b}", "bad_json", "...")], []))
        summary.fail(f"failure {b}")
    assert (summary.ingested, summary.events, summary.quarantined) == (8, 80, 4)
    assert summary.ingest.ingested == ["t2-1", "t3-0", "t3-1"] and [q[0] for q in summary.ingest.quarantined] == [
        "q1",
        "q2",
        "q3",
    ]
    assert (
        summary.failed == ["failure 1", "failure 2", "failure 3"] and "ingested: **8** traces (80 events)" in summary.markdown()
    )
