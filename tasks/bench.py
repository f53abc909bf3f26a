"""`prt bench`: measure ingest, verification, judging and reads on synthetic sessions.

    prt bench [--traces 5000 --events 200 --workers 2]   ingest end to end vs the floor (polars read + Delta write);
                                                         --repeat N: the median of N runs, each listed
    prt bench --qa [--traces 12 --parallel 2]            sandboxed verification: traces per minute, time split
    prt bench --judge [--traces 5000]                    heuristic judge throughput
    prt bench --read [--traces 5000 --events 200]        one trace's events / one day's scores: time, files read
    prt bench --profile [--traces 500]                   the ingest stages in one process, under pyinstrument

Every measured run happens in a child process (`python -m tasks.bench KIND ...`) that warms up
first (the temporary Prefect server, imports, worker processes) and then times only the work;
peak memory is sampled over that child and all its descendants (proportional set size, so pages
shared by forked workers count once).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from schemas.chain import chain_start, chain_step
from schemas.layout import artifact_ref, chunk_name

__all__ = [
    "PeakMemory",
    "bench_ingest",
    "bench_judge",
    "bench_profile",
    "bench_qa",
    "bench_read",
    "clone_examples",
    "generate_inbox",
]

T0 = 1_760_000_000.0
_WORDS = [
    "the",
    "cache",
    "key",
    "ignores",
    "the",
    "locale",
    "so",
    "lookups",
    "miss",
    "after",
    "a",
    "restart",
    "and",
    "the",
    "retry",
    "path",
    "swallows",
    "the",
    "error",
    "while",
    "the",
    "parser",
    "trims",
    "trailing",
    "whitespace",
    "before",
    "the",
    "checksum",
    "is",
    "computed",
    "which",
    "breaks",
    "the",
    "comparison",
]


@dataclass
class Generated:
    traces: int
    events: int
    jsonl_bytes: int
    files: list[Path]


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def _snapshot() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in (
            ("conftest.py", ""),
            ("app.py", "def f(x):\n    return x + 1\n"),
            ("tests/test_app.py", "from app import f\n\n\ndef test_f():\n    assert f(1) == 2\n"),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _event(rng: random.Random, seq: int, ts: float, output_bytes: int = 0) -> dict:
    """One event of the examples' mix; with `output_bytes`, commands print about that much (pytest -v)."""
    base = {"id": f"e{seq:06d}", "seq": seq, "ts_client_s": round(ts, 3)}
    r = rng.random()
    if r < 0.35:
        kind = rng.choice(["plan", "hypothesis", "observation", "observation", "decision", "next_step"])
        return {**base, "type": "rationale_note", "kind": kind, "text": _sentence(rng, rng.randint(8, 30))}
    if r < 0.59:
        failed = rng.random() < 0.5
        out = "\n".join(
            f"tests/test_mod{rng.randint(0, 9)}.py::test_{rng.choice(_WORDS)} {'FAILED' if failed and i == 0 else 'PASSED'}"
            for i in range(max(rng.randint(4, 12), output_bytes // 40))
        )
        return {**base, "type": "cmd_run", "command": rng.choice(["python -m pytest -q", "git diff", "grep -rn cache src", "python -m pytest -x tests/test_cache.py"]),
                "exit_code": int(failed), "duration_s": round(rng.uniform(0.1, 4), 2), "stdout": out, "stderr": ""}  # fmt: skip
    if r < 0.77:
        failed = rng.randint(0, 3)
        return {**base, "type": "test_run", "framework": "pytest", "command": "python -m pytest -q", "passed": rng.randint(5, 80), "failed": failed,
                "errors": 0, "skipped": 0, "duration_s": round(rng.uniform(0.2, 6), 2),
                "failing_tests": [f"tests/test_mod{i}.py::test_{rng.choice(_WORDS)}" for i in range(failed)]}  # fmt: skip
    if r < 0.97:
        path = f"src/mod{rng.randint(0, 20)}.py"
        lines = [f" {_sentence(rng, 6)}" for _ in range(6)]
        diff = (
            f"--- a/{path}\n+++ b/{path}\n@@ -10,7 +10,7 @@\n"
            + "\n".join(lines[:3])
            + f"\n-    return {rng.choice(_WORDS)}\n+    return {rng.choice(_WORDS)}_fixed\n"
            + "\n".join(lines[3:])
            + "\n"
        )
        return {
            **base,
            "type": "file_edit",
            "file_path": path,
            "diff_unified": diff,
            "buffer_hash_after": hashlib.sha256(diff.encode()).hexdigest(),
        }
    return {**base, "type": "commit", "sha": hashlib.sha1(str(seq).encode()).hexdigest(), "message": _sentence(rng, 6)}


def generate_inbox(
    inbox: Path,
    traces: int,
    events: int,
    *,
    chunk_events: int = 100,
    gzip_share: float = 0.3,
    seed: int = 7,
    output_bytes: int = 0,
) -> Generated:
    """Write `traces` complete sessions of `events` events each, following inbox protocol v1;
    `output_bytes`: about how much each command prints (its default, a few hundred bytes)."""
    rng = random.Random(seed)
    snapshot = _snapshot()
    snap_ref = artifact_ref(snapshot)
    total_bytes = 0
    files: list[Path] = []
    for t in range(traces):
        tid = f"bench-{t:06d}"
        folder = inbox / tid
        (folder / "chunks").mkdir(parents=True)
        (folder / "artifacts").mkdir()
        (folder / "artifacts" / snap_ref.removeprefix("sha256:")).write_bytes(snapshot)
        manifest = {
            "trace_version": "1.0", "trace_id": tid, "session": {"participant_id": f"dev-{t % 97}", "consent": True},
            "task": {"id": f"BUG-{t}", "title": _sentence(rng, 5), "description": _sentence(rng, 20)},
            "repo": {"origin": "https://example.org/bench.git", "start_commit": "abc123", "snapshot": snap_ref},
            "environment": {"os": "linux", "python_version": "3.11"}, "qa": {"test_command": "python -m pytest -q", "timeout_s": 60},
            "client": {"name": "prt-bench", "version": "1"}, "started_at": "2025-10-09T08:53:20Z",
        }  # fmt: skip
        (folder / "manifest.json").write_text(json.dumps(manifest))
        h = chain_start(tid)
        ts = T0
        gz = rng.random() < gzip_share
        chunk, chunk_seq = [], 0
        for seq in range(events):
            ts += rng.uniform(0.5, 3.0)
            line = json.dumps(_event(rng, seq, ts, output_bytes), separators=(",", ":")).encode()
            h = chain_step(h, hashlib.sha256(line).digest())
            chunk.append(line)
            if len(chunk) == chunk_events or seq == events - 1:
                raw = b"\n".join(chunk) + b"\n"
                total_bytes += len(raw)
                name = chunk_name(chunk_seq, hashlib.sha256(raw).hexdigest()[:16], gzip=gz)
                path = folder / "chunks" / name
                path.write_bytes(gzip.compress(raw, compresslevel=1, mtime=0) if gz else raw)
                files.append(path)
                chunk, chunk_seq = [], chunk_seq + 1
        complete = {"chunk_count": chunk_seq, "event_count": events, "chain_head": h.hex(), "ended_at": "2025-10-10T08:53:20Z"}
        (folder / "complete.json").write_text(json.dumps(complete))
    return Generated(traces, traces * events, total_bytes, files)


# -- measuring --------------------------------------------------------------------------------


class PeakMemory:
    """Peak memory of this process and all its descendants, sampled on a thread.

    Two numbers: `rss_mb`, the largest sum of resident sizes (/proc/PID/statm, constant time,
    read every `interval_s`), which counts a page shared by forked workers once per process, so
    it is an upper bound; and `peak_mb`, the proportional set size (pages shared by n processes
    count 1/n in each), the memory the run really holds. PSS costs a walk of every page table
    (/proc/PID/smaps_rollup: tens of milliseconds for a worker of 600 MiB); walked 20 times a
    second it took 9 % of the machine away from the run it measured (`perf record -a`). So it
    is walked only when the RSS sum passes the last walk's by `walk_margin` (2 %), at most
    once every `walk_s` (1 s): the moments when the run holds the most. Walked at every new
    high, up to 4 times a second, the RSS sum's slow creep kept the walks going all run long
    (py-spy: 0.8 s of this process's time in 8 s of a run), for the same peak (1.43 GiB).
    """

    def __init__(self, interval_s: float = 0.05, walk_s: float = 1.0, walk_margin: float = 0.02):
        self.interval_s = interval_s
        self.walk_s = walk_s
        self.walk_margin = walk_margin
        self.peak_mb = 0.0
        self.rss_mb = 0.0
        self.at_peak: list[int] = []
        self._walked_at_rss = 0.0
        self._pids: list[int] = []
        self._samples = 0
        self._last_walk = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(final=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self, *, final: bool = False) -> None:
        me = os.getpid()
        if self._samples % 10 == 0 or not self._pids:  # workers come and go seldom: re-list every 10th
            self._pids = [p for p in _tree(me) if not _is_prefect_server(p)]
        self._samples += 1
        rss = sum(_rss_kb(p) for p in self._pids) / 1024
        self.rss_mb = max(self.rss_mb, rss)
        if not final and (
            rss <= self._walked_at_rss * (1 + self.walk_margin) or time.monotonic() - self._last_walk < self.walk_s
        ):
            return
        self._last_walk, self._walked_at_rss = time.monotonic(), rss
        by_pid = {p: _pss_kb(p) / 1024 for p in self._pids}
        total = sum(by_pid.values())
        if total > self.peak_mb:
            self.peak_mb = total
            self.at_peak = sorted((round(mb) for p, mb in by_pid.items() if p != me), reverse=True)
            self.at_peak.insert(0, round(by_pid.get(me, 0)))


class CpuUse:
    """Machine-wide CPU seconds (from /proc/stat) spent while the block runs, by kind: whether a
    run is bound by the CPU (busy near the core count), by the disk (iowait) or by neither."""

    def __enter__(self) -> CpuUse:
        self._servers = [p for p in _tree(os.getpid()) if _is_prefect_server(p)]
        self._t0, self._start, self._server0 = time.perf_counter(), _cpu_jiffies(), _proc_jiffies(self._servers)
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._t0
        tick = os.sysconf("SC_CLK_TCK")
        d = {k: (v - self._start.get(k, 0)) / tick for k, v in _cpu_jiffies().items()}
        d["of_which_prefect_server"] = (_proc_jiffies(self._servers) - self._server0) / tick
        self.seconds = {k: round(v, 2) for k, v in d.items()}
        self.busy_cores = round((d.get("user", 0) + d.get("system", 0)) / wall, 2) if wall > 0 else 0.0


def _proc_jiffies(pids: list[int]) -> int:
    """User and system CPU of `pids` so far, in clock ticks."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if len(fields) > 12:
            total += int(fields[11]) + int(fields[12])
    return total


def _stat_fields(pid: int) -> list[bytes]:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...); [] when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _cpu_jiffies() -> dict[str, int]:
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:8]]
    except (OSError, ValueError):
        return {}
    user, nice, system, idle, iowait, irq, softirq = values
    return {"user": user + nice, "system": system + irq + softirq, "idle": idle, "iowait": iowait}


def _is_prefect_server(pid: int) -> bool:
    """The temporary Prefect server that a flow run starts: infrastructure, not the work measured
    (a deployment talks to a server elsewhere)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ")
    except OSError:
        return False
    return b"prefect" in cmd and b"server" in cmd


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and len(fields := _stat_fields(int(entry))) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, IndexError, ValueError):
        return 0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _warm_prefect() -> None:
    from prefect import flow

    @flow(name="bench-warm-up")
    def warm_up() -> None:  # starts the temporary Prefect server outside the measurement
        return None

    warm_up()


# -- children: each measured run in its own process ------------------------------------------------


def _child_ingest(inbox: str, lake: str, workers: str) -> dict:
    import tasks.validate
    from flows.ingest import ingest_inbox

    _warm_prefect()
    t0 = time.perf_counter()
    if int(workers) == 1:
        tasks.validate._validations()  # Great Expectations' import and suite set-up, once per process
    else:  # the workers validate; this process only plans and collects
        from tasks.pool import BatchPool

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


def _child_qa(inbox: str, lake: str, parallel: str, sandbox: str) -> dict:
    import polars as pl

    from flows.ingest import ingest_inbox
    from flows.qa import verify_traces
    from lake.read import Lake

    ingest_inbox(inbox=inbox, lake=lake)  # not measured
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        summary = verify_traces(lake=lake, sandbox=sandbox or None, parallel=int(parallel))
        seconds = time.perf_counter() - t0
    runs = Lake(lake).qa_runs().collect()
    split = runs.select(pl.col("sandbox_start_s", "before_s", "replay_s", "after_s").fill_null(0).mean()).row(0, named=True)
    return {
        "seconds": seconds,
        "peak_mb": mem.peak_mb,
        "traces": runs.height,
        "backend": summary.backend,
        "verdicts": dict(runs.group_by("verdict").len().iter_rows()),
        "mean_split_s": split,
    }


def _child_judge(inbox: str, lake: str, workers: str) -> dict:
    import polars as pl

    from flows.ingest import ingest_inbox
    from flows.judge import judge_traces
    from lake.read import Lake
    from tasks.judge import get_judge
    from tasks.judging import judge_batches

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
    """What an ingest worker runs (`tasks.ingest.run_batch`, every stage of each batch), here in
    one process without Prefect, timed per stage and sampled by pyinstrument: where an ingest
    batch's time goes."""
    from pyinstrument import Profiler

    from lake.storage import fs_for
    from schemas.settings import get_ingest_settings
    from tasks import ingest as ing
    from tasks.claims import Claims
    from tasks.inbox import scan_inbox
    from tasks.pool import warm

    warm()  # what a worker does before its first batch: Great Expectations' set-up, gc.freeze()
    settings = get_ingest_settings()
    inbox_fs, inbox_root = fs_for(inbox)
    lake_fs, lake_root = fs_for(lake)
    claims = Claims(lake_fs, lake_root, lease_s=settings.lease_s)
    watch = ing.Stopwatch()
    seconds: dict[str, float] = {}
    events = 0
    profiler = Profiler(interval=0.001)
    profiler.start()
    scan = scan_inbox(inbox_fs, inbox_root, settings)
    watch.lap("scan")
    for group in ing.plan_batches(list(scan.traces.values()), settings):
        info, won = claims.open_batch("bench-profile", [t.trace_id for t in group])
        watch.lap("claim")
        report = ing.run_batch(info, won, scan.traces, inbox, lake, settings, claims, resumed=False)
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

    from flows.ingest import ingest_inbox
    from flows.maintain import maintain_lake
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
        trace_reads = [_scan_stats(lambda t=t: lk.events().filter(pl.col("trace_id") == t).collect()) for t in probe]
        day_read = _scan_stats(lambda: lk.scores().filter(pl.col("run_date") == day).collect())
        out[when] = {
            "events_files": _files(lk, "events"),
            "one_trace_events": {
                "seconds": min(r["seconds"] for r in trace_reads),
                "rows": trace_reads[0]["rows"],
                "files_read": max(r["files_read"] for r in trace_reads),
                "row_groups_read": max(r["row_groups_read"] or 0 for r in trace_reads),
                "row_groups_in_files_read": max(r["row_groups_in_files_read"] or 0 for r in trace_reads),
            },
            "scores_files": _files(lk, "scores"),
            "one_day_scores": day_read,
        }
    return out


def _files(lk, name: str) -> int:
    return len(lk.tables.open(name).file_uris())


def _daily_scores(lk, ids: list[str], days: int) -> None:
    """`days` daily runs of the heuristic judge's scores (one commit per day, as a daily schedule
    writes them), dated 2026-01-01 on: a lake whose scores span many date partitions."""
    import polars as pl

    from schemas.tables import SCORES
    from tasks.frames import to_arrow
    from tasks.judge import get_judge
    from tasks.judging import judge_batches, score_rows

    judge = get_judge("heuristic")
    scores = [s for b in judge_batches(lk, ids, 1000) for s in judge.score_batch(b)]
    rows = score_rows(judge, scores, run_id="bench", batch_id="bench")
    for d in range(days):
        day = date(2026, 1, 1) + timedelta(days=d)
        at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        daily = rows.with_columns(run_date=pl.lit(day), scored_at=pl.lit(at), judge_id=pl.lit(f"{judge.judge_id}-day{d}"))
        lk.tables.append(SCORES, to_arrow(daily, SCORES), metadata={"prt_operation": "bench"})


def _scan_stats(query) -> dict:
    """Run a polars query with POLARS_VERBOSE on and read back, from polars' own log, how many
    files and row groups it read: the proof that statistics and partitions skip the rest."""
    import polars as pl

    with tempfile.TemporaryFile(mode="w+b") as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            with pl.Config(verbose=True):
                t0 = time.perf_counter()
                df = query()
                seconds = time.perf_counter() - t0
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        text = log.read().decode(errors="replace")
    files = [int(m) for m in re.findall(r"Readers init: (\d+) /", text)]
    groups = [(int(a), int(b)) for a, b in re.findall(r"reading (\d+) / (\d+) row groups", text)]
    return {
        "seconds": seconds,
        "rows": df.height,
        "files_read": sum(files),
        # None when polars logged no row-group pruning (nothing left to filter inside the files read)
        "row_groups_read": sum(a for a, _ in groups) if groups else None,
        "row_groups_in_files_read": sum(b for _, b in groups) if groups else None,
    }


def _run_child(kind: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "tasks.bench", kind, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"},
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench child {kind} failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _delta_files(lake: Path) -> dict[str, int]:
    return {
        t.name: sum(1 for p in t.rglob("*.parquet") if "_delta_log" not in p.parts)
        for t in sorted(lake.iterdir())
        if (t / "_delta_log").is_dir()
    }


def _workdir(workdir: Path | None) -> Path:
    return Path(tempfile.mkdtemp(prefix="prt-bench-", dir=workdir))


def _where(work: Path) -> dict:
    """Where a result was measured: its working folder, the machine and the file system under it."""
    return {"workdir": str(work), "machine": machine(work)}


def machine(path: Path) -> dict:
    """The machine a result comes from, and the file system `path` is on (where the inbox and the
    lake were): on this project's 2-core VM the same ingest runs ~12 % faster on an ext4 with a
    journal, and ~25 % faster on tmpfs, than on its root disk's ext4 without a journal, mounted
    with `discard` (docs/performance.md)."""
    cpu = next((line.split(":", 1)[1].strip() for line in _proc_lines("cpuinfo") if line.startswith("model name")), None)
    mem_kb = next((int(line.split()[1]) for line in _proc_lines("meminfo") if line.startswith("MemTotal:")), 0)
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 2**20, 1),
        "python": sys.version.split()[0],
        "filesystem": filesystem(path),
    }


def filesystem(path: Path, mountinfo: str | None = None, journals: Path = Path("/proc/fs/jbd2")) -> dict | None:
    """The mount `path` is on, from /proc/self/mountinfo (or `mountinfo`'s text): mount point,
    type, device and options, and for ext3/ext4 whether it keeps a journal (`journals` lists a
    `<device>-<inode>` entry for each journal in use). None where there is no mountinfo (not Linux)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
    target = os.path.realpath(path)
    best = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 6 or len(tail) < 3:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])  # "\040" is a space
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):  # the deepest, and the last of equals: on top
            options = list(dict.fromkeys(fields[5].split(",") + tail[2].split(",")))
            best = (point, tail[0], tail[1], options)
    if best is None:
        return None
    point, fstype, device, options = best
    out: dict = {"mount": point, "type": fstype, "device": device, "options": ",".join(options)}
    if fstype in ("ext3", "ext4"):
        name = os.path.basename(device)
        out["journal"] = journals.is_dir() and any(p.name.startswith(f"{name}-") for p in journals.iterdir())
    return out


def _proc_lines(name: str) -> list[str]:
    try:
        return Path("/proc", name).read_text().splitlines()
    except OSError:
        return []


def _generate(work: Path, traces: int, events: int, output_bytes: int = 0) -> tuple[Generated, float]:
    t0 = time.perf_counter()
    gen = generate_inbox(work / "inbox", traces, events, output_bytes=output_bytes)
    os.sync()  # the inbox is on disk before anything is timed, not in flight in the page cache
    return gen, time.perf_counter() - t0


# -- the benchmarks ----------------------------------------------------------------------------------


def bench_ingest(
    traces: int, events: int, *, workers: int = 2, workdir: Path | None = None, output_bytes: int = 0, repeat: int = 1
) -> dict:
    """Ingest end to end against the floor, on the same generated inbox. With `repeat`, the floor
    and the ingest run that many times in turn, each ingest on its own copy of the inbox (an
    ingest empties its inbox) into its own lake: the result is the median ingest's, paired with
    the floor measured just before it, and `runs` lists every run. Runs on a shared host vary by
    5-10 %; one run is not enough to compare two versions of the code."""
    work = _workdir(workdir)
    gen, gen_s = _generate(work, traces, events, output_bytes)
    runs: list[tuple[dict, dict]] = []
    for k in range(1, repeat + 1):
        last = k == repeat  # the last run keeps the plain names: its lake is the result's
        suffix = "" if last else f"-{k}"
        floor = _run_child("floor", str(work / "inbox"), str(work / f"floor-table{suffix}"))
        inbox = work / "inbox"
        if not last:
            inbox = work / f"inbox{suffix}"
            shutil.copytree(work / "inbox", inbox, symlinks=True)
            os.sync()
        runs.append((floor, _run_child("ingest", str(inbox), str(work / f"lake{suffix}"), str(workers))))
    for k in range(1, repeat):  # deleted only now: deletes before a run would slow its creates on some disks
        for name in (f"floor-table-{k}", f"lake-{k}", f"inbox-{k}"):
            shutil.rmtree(work / name, ignore_errors=True)
    floor, ingest = sorted(runs, key=lambda r: r[1]["seconds"])[len(runs) // 2]  # of two, the slower
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
        "runs": [
            {
                "ingest_events_per_s": round(gen.events / i["seconds"]),
                "floor_events_per_s": round(f["rows"] / f["seconds"]),
                "ratio_to_floor": round(f["seconds"] / i["seconds"], 3),
                "ingest_peak_mb": round(i["peak_mb"]),
            }
            for f, i in runs
        ],
        "delta_files": _delta_files(work / "lake"),
        "ingested": ingest["ingested"],
        "quarantined": ingest["quarantined"],
        **_where(work),
    }


def clone_examples(inbox: Path, n: int) -> list[str]:
    """`n` sessions over the examples' real repos: the three example traces under new trace ids
    (new manifest id and chain head; the same events, snapshots and tests)."""
    from schemas.chain import chain_head

    src = Path(__file__).resolve().parent.parent / "examples" / "traces"
    names = sorted(p.name for p in src.iterdir() if (p / "complete.json").is_file())
    ids = []
    for i in range(n):
        name = names[i % len(names)]
        tid = f"qa-bench-{i:04d}"
        shutil.copytree(src / name, inbox / tid)
        manifest = json.loads((inbox / tid / "manifest.json").read_text())
        manifest["trace_id"] = tid
        (inbox / tid / "manifest.json").write_text(json.dumps(manifest))
        lines = []
        for chunk in sorted((inbox / tid / "chunks").iterdir()):
            raw = chunk.read_bytes()
            raw = gzip.decompress(raw) if chunk.suffix == ".gz" else raw
            lines += raw.rstrip(b"\n").split(b"\n")
        complete = json.loads((inbox / tid / "complete.json").read_text())
        complete["chain_head"] = chain_head(tid, lines)
        (inbox / tid / "complete.json").write_text(json.dumps(complete))
        ids.append(tid)
    return ids


def bench_qa(traces: int, *, parallel: int = 2, sandbox: str | None = None, workdir: Path | None = None) -> dict:
    work = _workdir(workdir)
    clone_examples(work / "inbox", traces)
    qa = _run_child("qa", str(work / "inbox"), str(work / "lake"), str(parallel), sandbox or "")
    return {
        "traces": qa["traces"],
        "parallel": parallel,
        "backend": qa["backend"],
        "seconds": round(qa["seconds"], 1),
        "traces_per_min": round(qa["traces"] / qa["seconds"] * 60, 1),
        "mean_split_s": {k: round(v, 2) for k, v in qa["mean_split_s"].items()},
        "verdicts": qa["verdicts"],
        "peak_mb": round(qa["peak_mb"]),
        **_where(work),
    }


def bench_judge(traces: int, events: int, *, workers: int = 2, workdir: Path | None = None) -> dict:
    work = _workdir(workdir)
    _generate(work, traces, events)
    j = _run_child("judge", str(work / "inbox"), str(work / "lake"), str(workers))
    return {
        "traces": j["traces"],
        "events_per_trace": round(j["events"] / max(1, j["traces"])),
        "score_s": round(j["score_s"], 2),
        "traces_per_s": round(j["traces"] / j["score_s"]),
        "read_s": round(j["read_s"], 2),
        "flow_s": round(j["flow_s"], 2),
        "flow_traces_per_s": round(j["flow_traces"] / j["flow_s"]),
        "peak_mb": round(j["peak_mb"]),
        **_where(work),
    }


def bench_profile(traces: int, events: int, *, workdir: Path | None = None) -> dict:
    """Where one process's ingest time goes, stage by stage and function by function."""
    work = _workdir(workdir)
    _generate(work, traces, events)
    p = _run_child("profile", str(work / "inbox"), str(work / "lake"), str(work / "profile.txt"))
    total = sum(p["stage_seconds"].values())
    return {
        "traces": traces,
        "events": p["events"],
        "seconds": round(total, 2),
        "events_per_s": round(p["events"] / total),
        "stage_seconds": {k: round(v, 3) for k, v in p["stage_seconds"].items()},
        "profile": p["profile"],
        **_where(work),
    }


def bench_read(traces: int, events: int, *, workers: int = 2, days: int = 30, workdir: Path | None = None) -> dict:
    work = _workdir(workdir)
    _generate(work, traces, events)
    r = _run_child("read", str(work / "inbox"), str(work / "lake"), str(workers), str(days))
    return {**r, **_where(work)}


if __name__ == "__main__":
    kind, *rest = sys.argv[1:]
    children = {
        "ingest": _child_ingest,
        "floor": _child_floor,
        "qa": _child_qa,
        "judge": _child_judge,
        "read": _child_read,
        "profile": _child_profile,
    }
    if kind not in children:
        raise SystemExit(f"unknown bench child {kind}")
    from flows import local_runs

    with local_runs():  # as `prt` runs flows
        print(json.dumps(children[kind](*rest), default=str))
