"""`prt bench` runs every measurement end to end on tiny inputs and reports what it measured.

Speed is never asserted here (it is measured, in docs/performance.md); these tests check that each
mode runs the real pipeline and that its numbers describe what happened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from lake import Lake
from schemas.settings import get_sandbox_settings
from tests.conftest import REPO, sandbox_or_skip


def _bench(tmp_path, cli_env, *args: str) -> dict:
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "client.cli", "bench", *args, "--workdir", str(tmp_path / "work"), "--json", str(out)],
        cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_ingest_against_the_floor(tmp_path, cli_env):
    # --output-bytes: commands that print ~3 kB, so events average well over the default's ~350 bytes
    r = _bench(tmp_path, cli_env, "--traces", "8", "--events", "30", "--workers", "2", "--output-bytes", "3000")
    assert r["events"] == 240 and r["ingested"] == 8 and r["quarantined"] == 0
    assert r["bytes_per_event"] > 600
    assert r["ingest_events_per_s"] > 0 and r["floor_events_per_s"] > 0 and r["ratio_to_floor"] > 0
    assert set(r["delta_files"]) == {"traces", "events", "metrics", "quarantine"} and r["delta_files"]["events"] >= 1
    assert r["delta_files"]["quarantine"] == 0  # created before the first batch; nothing quarantined
    assert set(r["stage_seconds"]) == {"prepare", "build", "commit", "archive", "clean"}
    assert r["ingest_peak_mb"] > 50 and len(r["ingest_peak_mb_by_process"]) >= 3  # the flow and its workers
    assert r["ingest_peak_rss_sum_mb"] >= r["ingest_peak_mb"]  # RSS counts shared pages per process: a bound
    cpu = r["ingest_cpu_seconds"]
    assert set(cpu) == {"user", "system", "idle", "iowait"} and cpu["user"] > 0
    assert 0 < r["ingest_busy_cores"] <= os.cpu_count() * 1.1 and r["floor_busy_cores"] > 0  # 10 ms ticks
    assert r["machine"]["cores"] == os.cpu_count()
    # `prt ingest` as a user runs it, on a copy of the same inbox: every trace, with the default workers
    assert r["command_events_per_s"] > 0 and r["command_workers"] == len(os.sched_getaffinity(0))
    assert r["command_s"] > 0 and r["command_peak_mb"] > 50
    assert os.stat(r["workdir"]).st_dev == os.stat(r["machine"]["filesystem"]["mount"]).st_dev  # the disk it ran on


def test_repeated_runs_report_the_median_and_each_run(tmp_path, cli_env):
    r = _bench(tmp_path, cli_env, "--traces", "6", "--events", "20", "--repeat", "3")
    runs = r["runs"]
    assert len(runs) == 3 and r["ingested"] == 6 and r["events"] == 120
    assert r["ingest_events_per_s"] == sorted(x["ingest_events_per_s"] for x in runs)[1]  # the median run
    assert r["ratio_to_floor"] in {x["ratio_to_floor"] for x in runs}  # its own floor's, not another run's
    assert r["ingest_peak_mb"] == max(x["ingest_peak_mb"] for x in runs)
    assert abs(sum(r["ingest_peak_mb_by_process"]) - r["ingest_peak_mb"]) <= len(r["ingest_peak_mb_by_process"])  # its split
    work = Path(r["workdir"])
    assert sorted(p.name for p in work.iterdir()) == ["floor-table", "inbox", "lake"]  # earlier runs' copies gone
    assert r["command_events_per_s"] == sorted(x["command_events_per_s"] for x in runs)[1]  # the median command run
    assert Lake(str(work / "lake")).events().select(pl.len()).collect().item() == 120  # the last run's lake, whole
    assert not any((work / "inbox").iterdir())  # the last run ingested the original inbox


def test_output_bytes_is_for_the_ingest_bench_only(tmp_path, cli_env):
    proc = subprocess.run(
        [sys.executable, "-m", "client.cli", "bench", "--judge", "--output-bytes", "3000", "--workdir", str(tmp_path)],
        cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0 and "--output-bytes" in proc.stderr and not any(tmp_path.iterdir())
    proc = subprocess.run(
        [sys.executable, "-m", "client.cli", "bench", "--qa", "--repeat", "2", "--workdir", str(tmp_path)],
        cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0 and "--repeat" in proc.stderr and not any(tmp_path.iterdir())


def test_judge_throughput(tmp_path, cli_env):
    r = _bench(tmp_path, cli_env, "--judge", "--traces", "12", "--events", "40")
    assert r["traces"] == 12 and r["events_per_trace"] == 40 and r["traces_per_s"] > 0 and r["flow_traces_per_s"] > 0


def test_profile_times_every_stage_and_keeps_the_call_tree(tmp_path, cli_env):
    r = _bench(tmp_path, cli_env, "--profile", "--traces", "6", "--events", "30")
    assert r["events"] == 180 and set(r["stage_seconds"]) == {"scan", "claim", "prepare", "build", "commit", "archive", "clean"}
    tree = Path(r["profile"]).read_text()
    assert "prepare_batch" in tree and "build_batch" in tree and "commit_batch" in tree
    assert Lake(str(Path(r["workdir"]) / "lake")).events().select(pl.len()).collect().item() == 180  # the real stages ran


def test_reads_touch_only_the_files_they_need(tmp_path, cli_env):
    r = _bench(tmp_path, cli_env, "--read", "--traces", "30", "--events", "20", "--days", "4")
    assert r["events"] == 600 and r["days_of_scores"] == 4
    for when in ("before_maintain", "after_maintain"):
        trace, day = r[when]["one_trace_events"], r[when]["one_day_scores"]
        assert trace["rows"] == 20 and trace["files_read"] == 1
        assert day["rows"] == 30 and day["files_read"] == 1 and r[when]["scores_files"] >= 4


@pytest.mark.parametrize("backend", ["namespace", pytest.param("docker", marks=pytest.mark.docker)])
def test_verification_throughput(tmp_path, cli_env, backend):
    sandbox_or_skip(backend, get_sandbox_settings())
    r = _bench(tmp_path, cli_env, "--qa", "--traces", "3", "--parallel", "2", "--sandbox", backend)
    assert r["traces"] == 3 and r["backend"].startswith(backend) and r["traces_per_min"] > 0
    assert r["verdicts"] == {"verified": 2, "not_fixed": 1}  # the three examples' outcomes
    assert set(r["mean_split_s"]) == {"sandbox_start_s", "before_s", "replay_s", "after_s"}
    env = r["env"]  # sessions that recorded their packages: one environment built, then reused
    assert env["verdicts"] == {"verified": env["traces"]} and env["cold_build_s"] > env["cached_lookup_s"]
    assert env["cached_trace_s"] < env["cold_trace_s"]


def test_latency_times_each_command_with_nothing_to_do(tmp_path, cli_env):
    env = {k: v for k, v in cli_env.items() if k != "PREFECT_API_URL"}  # what it measures strips it anyway
    r = _bench(tmp_path, env, "--latency", "--repeat", "2")
    assert set(r["commands"]) == {"--help", "ingest", "qa", "judge"}
    for c in r["commands"].values():
        assert len(c["runs_s"]) == 2 and 0 < c["median_s"] <= c["max_s"]


def test_freshness_drops_sessions_into_a_backlog_while_serve_runs(tmp_path, cli_env):
    r = _bench(tmp_path, cli_env, "--freshness", "--traces", "20", "--events", "30", "--drops", "3", "--every-s", "0.5")
    assert r["backlog_events"] == 600 and r["drops"] == 3
    assert r["to_rows"]["traces"] == 3 and r["to_qa_runs"]["traces"] == 3  # every drop reached both tables
    assert 0 < r["to_rows"]["p50_s"] <= r["to_rows"]["max_s"] and r["to_qa_runs"]["p50_s"] >= r["to_rows"]["p50_s"]
    assert r["backlog_events_per_s"] > 0 and r["stopped_on_sigterm"]
    log = Path(r["serve_log"]).read_text()
    assert "ready:" in log and "SIGTERM: finishing the batches in flight" in log
