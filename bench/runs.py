"""`prt bench`: measure ingest, verification, judging and reads on synthetic sessions.

    prt bench [--traces 5000 --events 200 --workers 2]   ingest end to end vs the floor (polars read + Delta write);
                                                         --repeat N: the median of N runs, each listed
    prt bench --qa [--traces 12 --parallel 2]            sandboxed verification: traces per minute, time split
    prt bench --judge [--traces 5000]                    heuristic judge throughput
    prt bench --read [--traces 5000 --events 200]        one trace's events / one day's scores: time, files read
    prt bench --profile [--traces 500]                   the ingest stages in one process, under pyinstrument

Every measured run happens in a child process (`python -m bench KIND ...`) that warms up
first (imports, worker processes) and then times only the work, run as `prt` runs it without a
Prefect server (the jobs, plain Python);
peak memory is sampled over that child and all its descendants (proportional set size, so pages
shared by forked workers count once).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench.generate import clone_examples, env_traces, generate_in
from bench.probes import CpuUse, PeakMemory, delta_files, files, machine, resident_mb, scan_stats


def _child_ingest(inbox: str, lake: str, workers: str) -> dict:
    import tasks.ingest.validate
    from jobs.ingest import ingest_inbox

    t0 = time.perf_counter()
    if int(workers) == 1:
        tasks.ingest.validate.warm_up()  # Great Expectations' import and suite set-up, once per process
    else:  # the workers validate; this process only plans and collects
        from tasks.ingest.pool import BatchPool

        with BatchPool(int(workers)) as pool:
            pool.start()  # the fork server imports the pipeline once; later pools fork from it
    start_s = time.perf_counter() - t0
    with PeakMemory() as mem, CpuUse() as cpu:
        t0 = time.perf_counter()
        summary = ingest_inbox(inbox=inbox, lake=lake, workers=int(workers))
        seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "worker_start_s": start_s,
        "peak_mb": mem.peak_mb,
        "peak_rss_mb": mem.rss_mb,
        "peak_mb_by_process": mem.at_peak,
        "ingested": len(summary.ingested),
        "events": summary.events,
        "batches": summary.batches,
        "quarantined": len(summary.quarantined),
        "stage_seconds": summary.seconds,
        "cpu_seconds": cpu.seconds,
        "busy_cores": cpu.busy_cores,
    }


def _child_floor(inbox: str, table: str) -> dict:
    import polars as pl
    from deltalake import write_deltalake

    files = sorted(Path(inbox).rglob("*.jsonl*"))
    with PeakMemory() as mem, CpuUse() as cpu:
        t0 = time.perf_counter()
        rows = 0
        for i in range(0, len(files), 2000):  # bounded memory, like the pipeline's batches
            raw = b"".join(gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes() for f in files[i : i + 2000])
            df = pl.read_ndjson(io.BytesIO(raw), infer_schema_length=None)
            rows += df.height
            write_deltalake(table, df.to_arrow(), mode="append")
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_mb": mem.peak_mb, "rows": rows, "busy_cores": cpu.busy_cores}


def _child_qa(inbox: str, lake: str, parallel: str, sandbox: str, env_inbox: str) -> dict:
    import polars as pl

    from jobs.ingest import ingest_inbox
    from jobs.qa import verify_traces
    from lake.read import Lake

    ingest_inbox(inbox=inbox, lake=lake)  # not measured
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        summary = verify_traces(lake=lake, sandbox=sandbox or None, parallel=int(parallel))
        seconds = time.perf_counter() - t0
    runs = Lake(lake).qa_runs().collect()
    split = runs.select(pl.col("sandbox_start_s", "before_s", "replay_s", "after_s").fill_null(0).mean()).row(0, named=True)
    out = {
        "seconds": seconds,
        "peak_mb": mem.peak_mb,
        "traces": runs.height,
        "backend": summary.backend,
        "verdicts": dict(runs.group_by("verdict").len().iter_rows()),
        "mean_split_s": split,
    }
    # Sessions that recorded their packages: one at a time, so the first builds the environment
    # (downloads and the sandboxed build, the cache empty: PRT_SANDBOX_WORKDIR is this run's own)
    # and the others find it built.
    before = set(runs["trace_id"])
    ingest_inbox(inbox=env_inbox, lake=lake)
    verify_traces(lake=lake, sandbox=sandbox or None, parallel=1)
    env_runs = Lake(lake).qa_runs().filter(~pl.col("trace_id").is_in(list(before))).sort("started_at").collect()
    per_trace = env_runs.select(
        pl.col("env_cached"),
        pl.col("env_build_s"),
        total=pl.sum_horizontal(pl.col("env_build_s", "sandbox_start_s", "before_s", "replay_s", "after_s").fill_null(0)),
    )
    cold, cached = per_trace.filter(~pl.col("env_cached")), per_trace.filter(pl.col("env_cached"))
    out["env"] = {
        "traces": env_runs.height,
        "verdicts": dict(env_runs.group_by("verdict").len().iter_rows()),
        "cold_build_s": cold["env_build_s"].max(),
        "cold_trace_s": cold["total"].max(),
        "cached_lookup_s": cached["env_build_s"].mean(),
        "cached_trace_s": cached["total"].mean(),
    }
    return out


def _child_judge(inbox: str, lake: str, workers: str) -> dict:
    import polars as pl

    from jobs.ingest import ingest_inbox
    from jobs.judge import judge_traces
    from lake.read import Lake
    from tasks.judge import get_judge
    from tasks.judge.store import judge_batches

    ingest_inbox(inbox=inbox, lake=lake, workers=int(workers))  # not measured
    lk = Lake(lake)
    ids = sorted(lk.traces().select("trace_id").collect()["trace_id"].to_list())
    judge = get_judge("heuristic")
    t0 = time.perf_counter()
    batches = list(judge_batches(lk, ids, 1000))
    read_s = time.perf_counter() - t0
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        scored = sum(len(judge.score_batch(b)) for b in batches)
        score_s = time.perf_counter() - t0
    del batches
    t0 = time.perf_counter()
    flow_summary = judge_traces(lake=lake, judge="heuristic")
    flow_s = time.perf_counter() - t0
    return {
        "traces": scored,
        "events": lk.events().select(pl.len()).collect().item(),
        "read_s": read_s,
        "score_s": score_s,
        "flow_s": flow_s,
        "flow_traces": len(flow_summary.rows),
        "peak_mb": mem.peak_mb,
    }


def _child_profile(inbox: str, lake: str, out: str) -> dict:
    """What an ingest worker runs (`tasks.ingest.batch.run_batch`, every stage of each batch), here in
    one process without Prefect, timed per stage and sampled by pyinstrument: where an ingest
    batch's time goes."""
    from pyinstrument import Profiler

    from client.storage import fs_for
    from schemas.settings import get_ingest_settings
    from tasks.ingest.batch import Batch, Stopwatch, run_batch
    from tasks.ingest.claims import Claims
    from tasks.ingest.inbox import scan_inbox
    from tasks.ingest.pool import warm
    from tasks.ingest.schedule import plan_batches

    warm()  # what a worker does before its first batch: Great Expectations' set-up, gc.freeze()
    settings = get_ingest_settings()
    inbox_fs, inbox_root = fs_for(inbox)
    lake_fs, lake_root = fs_for(lake)
    claims = Claims(lake_fs, lake_root, lease_s=settings.lease_s)
    watch = Stopwatch()
    seconds: dict[str, float] = {}
    events = 0
    profiler = Profiler(interval=0.001)
    profiler.start()
    scan = scan_inbox(inbox_fs, inbox_root, settings)
    watch.lap("scan")
    for group in plan_batches(list(scan.traces.values()), settings):
        info, won = claims.open_batch("bench-profile", [t.trace_id for t in group])
        watch.lap("claim")
        report = run_batch(Batch(info, won, scan.traces, False), inbox, lake, settings, claims)
        watch.lap("batches")
        events += report.events
        for stage, s in report.seconds.items():
            seconds[stage] = seconds.get(stage, 0.0) + s
    profiler.stop()
    Path(out).write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    stages = {"scan": watch.seconds["scan"], "claim": watch.seconds.get("claim", 0.0), **seconds}
    return {"events": events, "stage_seconds": stages, "profile": out}


def _child_read(inbox: str, lake: str, workers: str, days: str) -> dict:
    import polars as pl

    from jobs.ingest import ingest_inbox
    from jobs.maintain import maintain_lake
    from lake.read import Lake

    ingest_inbox(inbox=inbox, lake=lake, workers=int(workers))  # not measured
    lk = Lake(lake)
    ids = sorted(lk.traces().select("trace_id").collect()["trace_id"].to_list())
    _daily_scores(lk, ids, int(days))
    out: dict = {"events": lk.events().select(pl.len()).collect().item(), "days_of_scores": int(days)}
    probe = [ids[len(ids) // 7], ids[len(ids) // 2], ids[-3]]
    day = date(2026, 1, 1) + timedelta(days=int(days) // 2)
    for when in ("before_maintain", "after_maintain"):
        if when == "after_maintain":
            maintain_lake(lake=lake, vacuum_retention_hours=0)
        trace_reads = [scan_stats(lambda t=t: lk.events().filter(pl.col("trace_id") == t).collect()) for t in probe]
        day_read = scan_stats(lambda: lk.scores().filter(pl.col("run_date") == day).collect())
        out[when] = {
            "events_files": files(lk, "events"),
            "one_trace_events": {
                "seconds": min(r["seconds"] for r in trace_reads),
                "rows": trace_reads[0]["rows"],
                "files_read": max(r["files_read"] for r in trace_reads),
                "row_groups_read": max(r["row_groups_read"] or 0 for r in trace_reads),
                "row_groups_in_files_read": max(r["row_groups_in_files_read"] or 0 for r in trace_reads),
            },
            "scores_files": files(lk, "scores"),
            "one_day_scores": day_read,
        }
    return out


def _child_lake(inbox: str, lake: str, workers: str) -> dict:
    """A lake to read from: the inbox ingested and judged (not measured)."""
    from jobs.ingest import ingest_inbox
    from jobs.judge import judge_traces

    summary = ingest_inbox(inbox=inbox, lake=lake, workers=int(workers))
    judge_traces(lake=lake)
    return {"traces": len(summary.ingested), "events": summary.events}


def _child_export(lake: str, out: str, fmt: str) -> dict:
    """One export of the whole lake to a dataset folder, in a process of its own: its peak is the
    export's alone (resident size of the process, read as it runs; its resting size apart)."""
    from lake.read import Lake
    from tasks.research.export import export

    rest = resident_mb(os.getpid())  # with the export's imports done: they are not the export
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        report = export(Lake(lake), out, fmt, split="train=0.9,test=0.1", split_by="dedup_group")
        seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "records": report.records,
        "records_per_s": round(report.records / seconds, 1),
        "files": sum(len(f) for f in report.files.values()),
        "peak_rss_mb": mem.rss_mb,
        "resting_rss_mb": rest,
    }


def _daily_scores(lk, ids: list[str], days: int) -> None:
    """`days` daily runs of the heuristic judge's scores (one commit per day, as a daily schedule
    writes them), dated 2026-01-01 on: a lake whose scores span many date partitions."""
    import polars as pl

    from lake.frames import to_arrow
    from schemas.tables import SCORES
    from tasks.judge import get_judge
    from tasks.judge.store import judge_batches, score_rows

    judge = get_judge("heuristic")
    scores = [s for b in judge_batches(lk, ids, 1000) for s in judge.score_batch(b)]
    rows = score_rows(judge, scores, run_id="bench", batch_id="bench")
    for d in range(days):
        day = date(2026, 1, 1) + timedelta(days=d)
        at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        daily = rows.with_columns(run_date=pl.lit(day), scored_at=pl.lit(at), judge_id=pl.lit(f"{judge.judge_id}-day{d}"))
        lk.tables.append(SCORES, to_arrow(daily, SCORES), metadata={"prt_operation": "bench"})


def run_child(kind: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench", kind, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"},
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench child {kind} failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def new_workdir(workdir: Path | None) -> Path:
    return Path(tempfile.mkdtemp(prefix="prt-bench-", dir=workdir))


def where_measured(work: Path) -> dict:
    """Where a result was measured: its working folder, the machine and the file system under it."""
    return {"workdir": str(work), "machine": machine(work)}


def bench_ingest(
    traces: int, events: int, *, workers: int = 2, workdir: Path | None = None, output_bytes: int = 0, repeat: int = 1
) -> dict:
    """Ingest end to end against the floor, on the same generated inbox. With `repeat`, the floor
    and the ingest run that many times in turn, each ingest on its own copy of the inbox (an
    ingest empties its inbox) into its own lake: the result is the median ingest's, paired with
    the floor measured just before it, and `runs` lists every run. Runs on a shared host vary by
    5-10 %; one run is not enough to compare two versions of the code."""
    work = new_workdir(workdir)
    gen, gen_s = generate_in(work, traces, events, output_bytes)
    runs: list[tuple[dict, dict]] = []
    commands: list[dict] = []
    for k in range(1, repeat + 1):
        last = k == repeat  # the last run keeps the plain names: its lake is the result's
        suffix = "" if last else f"-{k}"
        floor = run_child("floor", str(work / "inbox"), str(work / f"floor-table{suffix}"))
        shutil.copytree(work / "inbox", work / f"inbox-command-{k}", symlinks=True)
        inbox = work / "inbox"
        if not last:
            inbox = work / f"inbox{suffix}"
            shutil.copytree(work / "inbox", inbox, symlinks=True)
        os.sync()
        runs.append((floor, run_child("ingest", str(inbox), str(work / f"lake{suffix}"), str(workers))))
        commands.append(_prt_ingest(work / f"inbox-command-{k}", work / f"lake-command-{k}"))
    for k in range(1, repeat + 1):  # deleted only now: deletes before a run would slow its creates on some disks
        for name in (f"floor-table-{k}", f"lake-{k}", f"inbox-{k}", f"inbox-command-{k}", f"lake-command-{k}"):
            shutil.rmtree(work / name, ignore_errors=True)
    floor, ingest = sorted(runs, key=lambda r: r[1]["seconds"])[len(runs) // 2]  # of two, the slower
    command = sorted(commands, key=lambda c: c["seconds"])[len(commands) // 2]
    if command["ingested"] != traces:
        raise RuntimeError(f"prt ingest ingested {command['ingested']} of {traces} traces: {command['stdout'][-2000:]}")
    highest = max((i for _, i in runs), key=lambda i: i["peak_mb"])  # memory is a bound: the run that held the most
    mb = gen.jsonl_bytes / 2**20
    return {
        "traces": traces,
        "events": gen.events,
        "jsonl_mb": round(mb, 1),
        "bytes_per_event": round(gen.jsonl_bytes / gen.events),
        "generate_s": round(gen_s, 1),
        "workers": workers,
        "worker_start_s": round(ingest["worker_start_s"], 2),
        "ingest_s": round(ingest["seconds"], 2),
        "ingest_events_per_s": round(gen.events / ingest["seconds"]),
        "ingest_mb_per_s": round(mb / ingest["seconds"], 1),
        "ingest_peak_mb": round(highest["peak_mb"]),
        "ingest_peak_mb_by_process": highest["peak_mb_by_process"],
        "ingest_peak_rss_sum_mb": round(max(i["peak_rss_mb"] for _, i in runs)),
        "batches": ingest["batches"],
        "stage_seconds": {k: round(v, 2) for k, v in ingest["stage_seconds"].items()},
        "ingest_cpu_seconds": ingest["cpu_seconds"],
        "ingest_busy_cores": ingest["busy_cores"],
        "floor_s": round(floor["seconds"], 2),
        "floor_events_per_s": round(floor["rows"] / floor["seconds"]),
        "floor_peak_mb": round(floor["peak_mb"]),
        "floor_busy_cores": floor["busy_cores"],
        "ratio_to_floor": round(floor["seconds"] / ingest["seconds"], 3),
        "command_workers": command["workers"],
        "command_s": round(command["seconds"], 2),
        "command_events_per_s": round(gen.events / command["seconds"]),
        "command_peak_mb": round(command["peak_mb"]),
        "runs": [
            {
                "ingest_events_per_s": round(gen.events / i["seconds"]),
                "floor_events_per_s": round(f["rows"] / f["seconds"]),
                "ratio_to_floor": round(f["seconds"] / i["seconds"], 3),
                "ingest_peak_mb": round(i["peak_mb"]),
                "command_events_per_s": round(gen.events / c["seconds"]),
            }
            for (f, i), c in zip(runs, commands, strict=True)
        ],
        "delta_files": delta_files(work / "lake"),
        "ingested": ingest["ingested"],
        "quarantined": ingest["quarantined"],
        **where_measured(work),
    }


def _prt_ingest(inbox: Path, lake: Path) -> dict:
    """`prt ingest` as a user runs it, timed from the command's start to its exit: defaults (workers
    auto), no Prefect server configured, the machine's own Python start and imports included."""
    from schemas.settings import IngestSettings

    prt = Path(sys.executable).with_name("prt")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRT_WORKERS", "PREFECT_API_URL"))}
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        out = subprocess.run(
            [str(prt), "ingest", "--inbox", str(inbox), "--lake", str(lake)], capture_output=True, text=True, env=env
        )
        seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"prt ingest failed: {out.stderr[-3000:]}")
    ingested = re.search(r"ingest: (\d+) ingested", out.stdout)
    return {
        "seconds": seconds,
        "peak_mb": mem.peak_mb,
        "workers": IngestSettings(workers="auto").workers,
        "ingested": int(ingested.group(1)) if ingested else 0,
        "stdout": out.stdout,
    }


def bench_qa(
    traces: int, *, parallel: int = 2, sandbox: str | None = None, workdir: Path | None = None, env_traces_n: int = 4
) -> dict:
    work = new_workdir(workdir)
    clone_examples(work / "inbox", traces)
    env_traces(work / "env-inbox", env_traces_n)
    # A cold environment cache, this run's own, where the sandbox users can reach it (not under
    # --workdir, which may be a private folder).
    sandbox_work = Path(tempfile.mkdtemp(prefix="prt-bench-sandbox-"))
    os.chmod(sandbox_work, 0o755)
    os.environ["PRT_SANDBOX_WORKDIR"] = str(sandbox_work)
    try:
        qa = run_child("qa", str(work / "inbox"), str(work / "lake"), str(parallel), sandbox or "", str(work / "env-inbox"))
    finally:
        os.environ.pop("PRT_SANDBOX_WORKDIR", None)
        shutil.rmtree(sandbox_work, ignore_errors=True)
    return {
        "traces": qa["traces"],
        "parallel": parallel,
        "backend": qa["backend"],
        "seconds": round(qa["seconds"], 1),
        "traces_per_min": round(qa["traces"] / qa["seconds"] * 60, 1),
        "mean_split_s": {k: round(v, 2) for k, v in qa["mean_split_s"].items()},
        "verdicts": qa["verdicts"],
        "env": {k: round(v, 2) if isinstance(v, float) else v for k, v in qa["env"].items()},
        "peak_mb": round(qa["peak_mb"]),
        **where_measured(work),
    }


def bench_judge(traces: int, events: int, *, workers: int = 2, workdir: Path | None = None) -> dict:
    work = new_workdir(workdir)
    generate_in(work, traces, events)
    j = run_child("judge", str(work / "inbox"), str(work / "lake"), str(workers))
    return {
        "traces": j["traces"],
        "events_per_trace": round(j["events"] / max(1, j["traces"])),
        "score_s": round(j["score_s"], 2),
        "traces_per_s": round(j["traces"] / j["score_s"]),
        "read_s": round(j["read_s"], 2),
        "flow_s": round(j["flow_s"], 2),
        "flow_traces_per_s": round(j["flow_traces"] / j["flow_s"]),
        "peak_mb": round(j["peak_mb"]),
        **where_measured(work),
    }


def bench_profile(traces: int, events: int, *, workdir: Path | None = None) -> dict:
    """Where one process's ingest time goes, stage by stage and function by function."""
    work = new_workdir(workdir)
    generate_in(work, traces, events)
    p = run_child("profile", str(work / "inbox"), str(work / "lake"), str(work / "profile.txt"))
    total = sum(p["stage_seconds"].values())
    return {
        "traces": traces,
        "events": p["events"],
        "seconds": round(total, 2),
        "events_per_s": round(p["events"] / total),
        "stage_seconds": {k: round(v, 3) for k, v in p["stage_seconds"].items()},
        "profile": p["profile"],
        **where_measured(work),
    }


def bench_read(traces: int, events: int, *, workers: int = 2, days: int = 30, workdir: Path | None = None) -> dict:
    work = new_workdir(workdir)
    generate_in(work, traces, events)
    r = run_child("read", str(work / "inbox"), str(work / "lake"), str(workers), str(days))
    return {**r, **where_measured(work)}


def bench_export(traces: int, events: int, *, workers: int = 2, fmt: str = "parquet", workdir: Path | None = None) -> dict:
    """Export a lake of `traces` sessions, and one of half as many: records/s and peak resident
    memory of each export, to show whether memory stays flat as the lake grows."""
    work = new_workdir(workdir)
    out: dict = {"format": fmt, "runs": []}
    for n in (traces // 2, traces):
        sub = work / f"lake-{n}"
        sub.mkdir()
        generate_in(sub, n, events)
        made = run_child("lake", str(sub / "inbox"), str(sub / "lake"), str(workers))
        r = run_child("export", str(sub / "lake"), str(sub / "set"), fmt)
        out["runs"].append({"traces": made["traces"], "events": made["events"], **r})
        shutil.rmtree(sub / "inbox", ignore_errors=True)
    return {**out, **where_measured(work)}


CHILDREN = {
    "ingest": _child_ingest,
    "floor": _child_floor,
    "qa": _child_qa,
    "judge": _child_judge,
    "read": _child_read,
    "profile": _child_profile,
    "lake": _child_lake,
    "export": _child_export,
}
"""The measured runs, each in its own process: `python -m bench KIND ARGS...` prints one JSON line."""
