"""What a user waits on: how long a `prt` command takes from start to exit with nothing to do, and
(`bench_freshness`) how long a dropped trace takes to reach the lake while `prt serve` runs."""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.generate import clone_examples, generate_in
from bench.runs import new_workdir, run_child, where_measured
from schemas.settings import available_cores

__all__ = ["bench_freshness", "bench_latency"]

_QUIET = ("PREFECT_API_URL", "PRT_TRACK")  # as on a fresh machine: no Prefect server configured


def prt_command() -> list[str]:
    """The `prt` a user runs: this virtualenv's console script."""
    return [str(Path(sys.executable).with_name("prt"))]


def user_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in _QUIET}, **extra}


def bench_latency(*, repeat: int = 5, workdir: Path | None = None) -> dict:
    """Each command `repeat` times on an empty inbox and lake (the lake created by the first
    ingest): seconds from the command's start to its exit, median and slowest; `prt --help`
    is the floor (Python, the CLI's own imports)."""
    work = new_workdir(workdir)
    inbox, lake = str(work / "inbox"), str(work / "lake")
    commands = {
        "--help": ["--help"],
        "ingest": ["ingest", "--inbox", inbox, "--lake", lake],
        "qa": ["qa", "--lake", lake],
        "judge": ["judge", "--lake", lake],
    }
    env = user_env()
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, args in commands.items():
            t0 = time.perf_counter()
            out = subprocess.run([*prt_command(), *args], capture_output=True, text=True, env=env, cwd=work)
            seconds[name].append(time.perf_counter() - t0)
            if out.returncode != 0:
                raise RuntimeError(f"prt {name} failed: {out.stderr[-3000:]}")
    return {
        "repeat": repeat,
        "commands": {
            name: {"median_s": round(statistics.median(s), 2), "max_s": round(max(s), 2), "runs_s": [round(x, 2) for x in s]}
            for name, s in seconds.items()
        },
        **where_measured(work),
    }


def bench_freshness(
    backlog_traces: int, backlog_events: int, *, drops: int = 20, every_s: float = 2.0, workdir: Path | None = None
) -> dict:
    """`prt serve` on an inbox holding a backlog (`backlog_traces` x `backlog_events` events) while
        sessions over the examples' repos (their environment is the image's: cached) are dropped into
        it one every `every_s` seconds, as a client uploads them (complete.json last). Reports, from
        each drop's complete.json to its rows in the lake (`traces`, which a batch commits after `events`
    and `metrics`) and to its `qa_runs` row, the median
        and 95th percentile, and how fast the backlog drained meanwhile (from the server being ready, `ready_s` after its start:
        its worker processes started; the lake read once a second), against the same backlog ingested
        with nothing else running (`alone_events_per_s`). Drops start once the server is ready."""
    from client.upload import upload_trace_dir
    from lake.read import Lake

    work = new_workdir(workdir)
    gen, _ = generate_in(work, backlog_traces, backlog_events)
    # full throughput, for comparison: the same backlog ingested with nothing else running
    shutil.copytree(work / "inbox", work / "inbox-alone")
    os.sync()
    alone = run_child("ingest", str(work / "inbox-alone"), str(work / "lake-alone"), str(available_cores()))
    shutil.rmtree(work / "inbox-alone")
    shutil.rmtree(work / "lake-alone")
    staged = work / "staged"
    staged.mkdir()
    ids = clone_examples(staged, drops)
    inbox, lake = work / "inbox", work / "lake"
    log = (work / "serve.log").open("w")
    serve = subprocess.Popen(
        [*prt_command(), "serve", "--inbox", str(inbox), "--lake", str(lake), "--poll-s", "1"],
        stdout=subprocess.DEVNULL, stderr=log, env=user_env(), cwd=work,
    )  # fmt: skip
    t_start = time.time()
    while "| prt.serve - ready:" not in (work / "serve.log").read_text():  # drops measure a running server, not its start
        if serve.poll() is not None or time.time() - t_start > 300:
            serve.kill()
            raise RuntimeError(f"prt serve did not get ready: see {work / 'serve.log'}")
        time.sleep(0.2)
    ready_s = time.time() - t_start
    dropped: dict[str, float] = {}
    seen: dict[str, dict[str, float]] = {"traces": {}, "qa_runs": {}}
    drained_at: list[float] = []
    stop = threading.Event()

    def drop() -> None:
        for tid in ids:
            if stop.wait(every_s):
                return
            upload_trace_dir(staged / tid, str(inbox))
            dropped[tid] = time.time()  # complete.json, written last, is in place now

    def watch() -> None:
        while not stop.wait(1.0):
            if not (lake / "traces" / "_delta_log").exists():
                continue
            # A batch commits events, metrics, then traces: a trace in `traces` has all its rows.
            lk, now = Lake(str(lake)), time.time()
            found = set(lk.traces().select("trace_id").collect()["trace_id"].to_list())
            for tid in dropped.keys() & found:
                seen["traces"].setdefault(tid, now)
            if not drained_at and sum(t.startswith("bench-") for t in found) == backlog_traces:
                drained_at.append(now)
            if (lake / "qa_runs" / "_delta_log").exists():
                verified = set(lk.qa_runs().select("trace_id").collect()["trace_id"].to_list())
                for tid in dropped.keys() & verified:
                    seen["qa_runs"].setdefault(tid, now)

    threads = [threading.Thread(target=drop), threading.Thread(target=watch)]
    for t in threads:
        t.start()
    deadline = time.time() + drops * every_s + 600
    try:
        while time.time() < deadline and (len(seen["qa_runs"]) < drops or not drained_at):
            if serve.poll() is not None:
                raise RuntimeError(f"prt serve exited early ({serve.returncode}): see {work / 'serve.log'}")
            time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=300)
        except subprocess.TimeoutExpired:
            serve.kill()
        log.close()

    def waits(table: str) -> dict:
        w = sorted(seen[table][t] - dropped[t] for t in seen[table])
        if not w:
            return {"traces": 0}
        return {
            "traces": len(w),
            "p50_s": round(statistics.median(w), 1),
            "p95_s": round(w[min(len(w) - 1, round(0.95 * (len(w) - 1)))], 1),
            "max_s": round(w[-1], 1),
        }

    drain_s = drained_at[0] - t_start - ready_s if drained_at else None
    return {
        "backlog_traces": backlog_traces,
        "backlog_events": gen.events,
        "drops": drops,
        "every_s": every_s,
        "to_rows": waits("traces"),
        "to_qa_runs": waits("qa_runs"),
        "ready_s": round(ready_s, 1),
        "backlog_drained_s": round(drain_s, 1) if drain_s else None,
        "backlog_events_per_s": round(gen.events / drain_s) if drain_s else None,
        "alone_events_per_s": round(alone["events"] / alone["seconds"]),
        "stopped_on_sigterm": serve.returncode == 0,
        "serve_log": str(work / "serve.log"),
        **where_measured(work),
    }
