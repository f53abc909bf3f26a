"""`prt bench`: measure ingest, verification, judging and reads on synthetic sessions.

    prt bench [--traces 5000 --events 200]     ingest end to end vs the floor (polars read + Delta write)
    prt bench --qa [--traces 20 --parallel 2]  sandboxed verification throughput and time split
    prt bench --judge [--traces 5000]          heuristic judge throughput
    prt bench --read                           one trace's events / one day's scores from a large lake

Each measured run happens in a child process, so peak memory is that run's own.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from schemas.chain import chain_start, chain_step
from schemas.layout import artifact_ref

__all__ = ["generate_inbox"]

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
    import io
    import tarfile

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


def _event(rng: random.Random, seq: int, ts: float) -> dict:
    base = {"id": f"e{seq:06d}", "seq": seq, "ts_client_s": round(ts, 3)}
    r = rng.random()
    if r < 0.35:
        kind = rng.choice(["plan", "hypothesis", "observation", "observation", "decision", "next_step"])
        return {**base, "type": "rationale_note", "kind": kind, "text": _sentence(rng, rng.randint(8, 30))}
    if r < 0.59:
        failed = rng.random() < 0.5
        out = "\n".join(
            f"tests/test_mod{rng.randint(0, 9)}.py::test_{rng.choice(_WORDS)} {'FAILED' if failed and i == 0 else 'PASSED'}"
            for i in range(rng.randint(4, 12))
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
    inbox: Path, traces: int, events: int, *, chunk_events: int = 100, gzip_share: float = 0.3, seed: int = 7
) -> Generated:
    """Write `traces` complete sessions of `events` events each, following inbox protocol v1."""
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
            line = json.dumps(_event(rng, seq, ts), separators=(",", ":")).encode()
            h = chain_step(h, hashlib.sha256(line).digest())
            chunk.append(line)
            if len(chunk) == chunk_events or seq == events - 1:
                raw = b"\n".join(chunk) + b"\n"
                total_bytes += len(raw)
                name = f"{chunk_seq:06d}-{hashlib.sha256(raw).hexdigest()[:16]}.jsonl" + (".gz" if gz else "")
                path = folder / "chunks" / name
                path.write_bytes(gzip.compress(raw, compresslevel=1, mtime=0) if gz else raw)
                files.append(path)
                chunk, chunk_seq = [], chunk_seq + 1
        complete = {"chunk_count": chunk_seq, "event_count": events, "chain_head": h.hex(), "ended_at": "2025-10-10T08:53:20Z"}
        (folder / "complete.json").write_text(json.dumps(complete))
    return Generated(traces, traces * events, total_bytes, files)


# -- children: each measured run in its own process ------------------------------------------------


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child_ingest(inbox: str, lake: str) -> dict:
    from prefect import flow

    from flows.ingest import ingest_inbox

    @flow(name="bench-warm-up")
    def warm_up() -> None:  # starts the temporary Prefect server outside the measurement
        return None

    warm_up()
    import tasks.validate

    tasks.validate._validations()  # Great Expectations' import and suite set-up, once per process
    t0 = time.perf_counter()
    summary = ingest_inbox(inbox=inbox, lake=lake)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "peak_mb": _peak_mb(),
        "ingested": len(summary.ingested),
        "events": summary.events,
        "batches": summary.batches,
        "quarantined": len(summary.quarantined),
    }


def _child_floor(inbox: str, table: str) -> dict:
    import io

    import polars as pl
    from deltalake import write_deltalake

    files = sorted(Path(inbox).rglob("*.jsonl*"))
    t0 = time.perf_counter()
    rows = 0
    for i in range(0, len(files), 2000):  # bounded memory, like the pipeline's batches
        raw = b"".join(gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes() for f in files[i : i + 2000])
        df = pl.read_ndjson(io.BytesIO(raw), infer_schema_length=None)
        rows += df.height
        write_deltalake(table, df.to_arrow(), mode="append")
    return {"seconds": time.perf_counter() - t0, "peak_mb": _peak_mb(), "rows": rows}


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


def bench_ingest(traces: int, events: int, workdir: Path | None = None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="prt-bench-", dir=workdir))
    t0 = time.perf_counter()
    gen = generate_inbox(work / "inbox", traces, events)
    gen_s = time.perf_counter() - t0
    floor = _run_child("floor", str(work / "inbox"), str(work / "floor-table"))
    ingest = _run_child("ingest", str(work / "inbox"), str(work / "lake"))
    mb = gen.jsonl_bytes / 2**20
    result = {
        "traces": traces,
        "events": gen.events,
        "jsonl_mb": round(mb, 1),
        "generate_s": round(gen_s, 1),
        "ingest_s": round(ingest["seconds"], 2),
        "ingest_events_per_s": round(gen.events / ingest["seconds"]),
        "ingest_mb_per_s": round(mb / ingest["seconds"], 1),
        "ingest_peak_mb": round(ingest["peak_mb"]),
        "batches": ingest["batches"],
        "floor_s": round(floor["seconds"], 2),
        "floor_events_per_s": round(floor["rows"] / floor["seconds"]),
        "floor_peak_mb": round(floor["peak_mb"]),
        "ratio_to_floor": round(floor["seconds"] / ingest["seconds"], 3),
        "delta_files": _delta_files(work / "lake"),
        "ingested": ingest["ingested"],
        "quarantined": ingest["quarantined"],
        "workdir": str(work),
    }
    return result


if __name__ == "__main__":
    kind, *rest = sys.argv[1:]
    if kind == "ingest":
        print(json.dumps(_child_ingest(*rest)))
    elif kind == "floor":
        print(json.dumps(_child_floor(*rest)))
    else:
        raise SystemExit(f"unknown bench child {kind}")
