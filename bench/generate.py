"""Generated sessions for the benchmark: a synthetic inbox of realistic traces, written fast, and
copies of the examples for QA. Deterministic for a given size (a seeded random generator)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from schemas.chain import chain_start, chain_step
from schemas.layout import artifact_ref, chunk_name

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


def generate_in(work: Path, traces: int, events: int, output_bytes: int = 0) -> tuple[Generated, float]:
    t0 = time.perf_counter()
    gen = generate_inbox(work / "inbox", traces, events, output_bytes=output_bytes)
    os.sync()  # the inbox is on disk before anything is timed, not in flight in the page cache
    return gen, time.perf_counter() - t0


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


ENV_REPO = {
    "textutil.py": "import six\n\n\ndef is_text(x):\n    return isinstance(x, six.binary_type)\n\n\ndef shout(x):\n    return x.upper()\n",
    "tests/test_textutil.py": (
        "from textutil import is_text, shout\n\n\ndef test_text():\n    assert is_text('a')\n\n\n"
        "def test_bytes():\n    assert not is_text(b'a')\n\n\ndef test_shout():\n    assert shout('a') == 'A'\n"
    ),
}
ENV_PACKAGES = [
    {"name": "six", "version": "1.16.0"},
    {"name": "pytest", "version": "8.3.4"},
    {"name": "pluggy", "version": "1.5.0"},
    {"name": "iniconfig", "version": "2.0.0"},
    {"name": "packaging", "version": "24.2"},
]
"""A developer's environment for ENV_REPO, as the recorder would capture it."""


def env_traces(inbox: Path, n: int) -> list[str]:
    """`n` sessions over a small repo that needs a package from the index (six): the same recorded
    environment each time, so QA builds it once and reuses it."""
    from client.snapshot import snapshot_dir
    from client.writer import TraceWriter

    repo = Path(tempfile.mkdtemp(prefix="prt-bench-env-repo-"))
    for path, text in ENV_REPO.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    snapshot = snapshot_dir(repo)
    fixed = ENV_REPO["textutil.py"].replace("six.binary_type", "six.text_type")
    ids = []
    for i in range(n):
        tid = f"qa-env-bench-{i:04d}"
        manifest = {
            "trace_id": tid,
            "session": {"participant_id": "bench", "consent": True},
            "task": {"id": "ENV", "title": "is_text is wrong"},
            "repo": {"origin": "bench", "start_commit": "0" * 40},
            "environment": {"os": "linux", "python_version": "3.11.7", "packages": ENV_PACKAGES},
            "qa": {"test_command": "python -m pytest -q", "timeout_s": 300},
            "client": {"name": "prt-bench", "version": "1"},
            "started_at": datetime.now(UTC).isoformat(),
        }
        with TraceWriter(str(inbox), manifest, snapshot=snapshot) as w:
            w.test_run("pytest", "python -m pytest -q tests/test_textutil.py", passed=1, failed=2,
                       failing_tests=["tests/test_textutil.py::test_text", "tests/test_textutil.py::test_bytes"])  # fmt: skip
            w.edit_file("textutil.py", ENV_REPO["textutil.py"], fixed)
        ids.append(tid)
    shutil.rmtree(repo, ignore_errors=True)
    return ids
