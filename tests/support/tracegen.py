"""Build small valid traces for tests with the real SDK, and tamper with their objects afterwards."""

from __future__ import annotations

import gzip
from pathlib import Path

from client.snapshot import snapshot_dir
from client.storage import fs_for, join
from client.writer import TraceWriter
from tasks.ingest.archive import read_tar
from tests.conftest import REPO

T0 = 1_760_000_000.0
SNAPSHOT = snapshot_dir(REPO / "examples" / "repos" / "calculator")


def manifest(trace_id: str, *, consent: bool = True, participant: str = "dev-test", **over) -> dict:
    m = {
        "trace_id": trace_id,
        "session": {"participant_id": participant, "consent": consent},
        "task": {"id": "T-1", "title": "Fix mean()", "description": "mean is wrong"},
        "repo": {"origin": "https://example.org/calculator.git", "start_commit": "abc123"},
        "environment": {"os": "linux", "python_version": "3.11"},
        "qa": {"test_command": "python -m pytest -q", "timeout_s": 60},
        "client": {"name": "tests", "version": "0"},
        "started_at": "2025-10-09T08:53:20Z",
    }
    m.update(over)
    return m


def write_trace(
    inbox: str,
    trace_id: str,
    *,
    n_notes: int = 2,
    complete: bool = True,
    compress: bool = False,
    chunk_max_events: int = 3,
    consent: bool = True,
    participant: str = "dev-test",
    texts: dict[str, str] | None = None,
) -> TraceWriter:
    """A small valid session: notes, a failing run, an edit, a passing run, a commit.

    `texts` overrides free-text fields (note, command, stdout, stderr, diff_note, message) to plant content.
    """
    texts = texts or {}
    clock = iter(T0 + i for i in range(10_000))
    w = TraceWriter(
        inbox,
        manifest(trace_id, consent=consent, participant=participant),
        snapshot=SNAPSHOT,
        chunk_max_events=chunk_max_events,
        compress=compress,
        clock=lambda: next(clock),
    )
    w.open()
    for i in range(n_notes):
        w.note("observation" if i else "hypothesis", texts.get("note", f"note {i}: the divisor looks off"))
    w.cmd_run(
        texts.get("command", "python -m pytest -q"),
        exit_code=1,
        duration_s=0.4,
        stdout=texts.get("stdout", "1 failed\n"),
        stderr=texts.get("stderr", ""),
    )
    w.test_run(
        "pytest", "python -m pytest -q", passed=2, failed=1, duration_s=0.4, failing_tests=["tests/test_stats.py::test_mean"]
    )
    before = (REPO / "examples" / "repos" / "calculator" / "stats.py").read_text()
    after = before.replace("(len(values) - 1)", "len(values)")
    if "diff_note" in texts:
        after += f"# {texts['diff_note']}\n"
    w.edit_file("stats.py", before, after)
    w.test_run("pytest", "python -m pytest -q", passed=4, failed=0, duration_s=0.3)
    w.commit("abcdef1", texts.get("message", "Fix mean"))
    if complete:
        w.close()
    else:
        w.flush()
    return w


def objects(url: str, trace_id: str | None = None) -> dict[str, bytes]:
    """Every object under `url` (or one trace folder), by path relative to it."""
    fs, root = fs_for(url)
    fs.invalidate_cache()
    base = join(root, trace_id) if trace_id else root
    try:
        found = fs.find(base)
    except FileNotFoundError:
        return {}
    return {p[len(base) + 1 :]: fs.cat_file(p) for p in found}


def archived(lake: str, trace_id: str) -> dict[str, bytes]:
    """The files of a trace's raw archive (`raw/<trace_id>/archive.tar`) in the lake, or {}."""
    data = objects(lake, f"raw/{trace_id}").get("archive.tar")
    return read_tar(data) if data is not None else {}


def put(url: str, key: str, data: bytes) -> None:
    """Write an object, overwriting: test-only tampering that the SDK would refuse."""
    fs, root = fs_for(url)
    fs.pipe_file(join(root, key), data)
    fs.invalidate_cache()


def remove(url: str, key: str) -> None:
    fs, root = fs_for(url)
    fs.rm(join(root, key))
    fs.invalidate_cache()


def chunk_keys(url: str, trace_id: str) -> list[str]:
    return sorted(k for k in objects(url, trace_id) if k.startswith("chunks/"))


def read_lines(data: bytes, key: str) -> list[bytes]:
    return (gzip.decompress(data) if key.endswith(".gz") else data).splitlines()


def local_path(url: str) -> Path:
    return Path(url)


def lake_text(url: str) -> str:
    """Everything stored under `url` as searchable text: parquet decoded, tar and gzip objects
    unpacked (a cut gzip stream as far as it goes), JSON escapes decoded.

    A secret compressed inside a parquet page, a cut gzip stream or a `\\u0070`-style escape would
    not show up in the raw bytes, so searching raw bytes alone could miss it; this decodes every
    file the way a reader would.
    """
    import io
    import zlib

    import pyarrow.parquet as pq

    parts = []
    found = list(objects(url).items())
    while found:
        key, data = found.pop()
        if key.endswith(".tar"):
            found += [(f"{key}/{k}", v) for k, v in read_tar(data).items()]
        elif key.endswith(".parquet"):
            parts.append(str(pq.read_table(io.BytesIO(data)).to_pylist()))
        elif data[:2] == b"\x1f\x8b":
            text, rest = b"", data
            while rest[:2] == b"\x1f\x8b":  # member after member
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                try:
                    text += d.decompress(rest)
                except zlib.error:
                    break
                rest = d.unused_data
            parts.append((text or data).decode("utf-8", "replace"))
        else:
            parts.append(data.decode("utf-8", "replace"))
    text = "\n".join(parts)
    if "\\u" in text:  # what a JSON reader would see, too
        text += "\n" + text.encode("ascii", "backslashreplace").decode("unicode_escape", "replace")
    return text


def write_repo_trace(
    inbox: str,
    trace_id: str,
    files: dict[str, str],
    edits: list[tuple[str, str]],
    *,
    test_command: str = "python -m pytest -q",
    timeout_s: float = 60,
    image: str | None = None,
    bad_hash_at: int | None = None,
    failing: list[str] | None = None,
    run_command: str | None = None,
) -> None:
    """A session over a repo given as {path: text}: a plan, then `edits` as (path, new full text).

    bad_hash_at: index of an edit whose buffer_hash_after is recorded wrong (a replay mismatch).
    failing: a test run before the edits saw these tests fail (its command: run_command, else test_command).
    """
    import tempfile

    repo = Path(tempfile.mkdtemp())
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    env = {"os": "linux", "python_version": "3.11", **({"image": image} if image else {})}
    clock = iter(T0 + i for i in range(10_000))
    with TraceWriter(
        inbox,
        manifest(trace_id, qa={"test_command": test_command, "timeout_s": timeout_s}, environment=env),
        snapshot=snapshot_dir(repo),
        clock=lambda: next(clock),
    ) as w:
        w.note("plan", "reproduce, then fix")
        if failing is not None:
            w.test_run(
                "pytest", run_command or test_command, passed=0, failed=len(failing), duration_s=0.2, failing_tests=failing
            )
        current = dict(files)
        for i, (path, new) in enumerate(edits):
            if bad_hash_at == i:
                from client.diffs import unified_diff

                w.file_edit(path, unified_diff(current.get(path, ""), new, path), "0" * 64)
            else:
                w.edit_file(path, current.get(path), new)
            current[path] = new


def judge_batch(traces: dict[str, list[dict]], verdicts: dict[str, str] | None = None, title: str = "Fix the bug"):
    """A JudgeBatch from plain event dicts (seq and timestamps filled in), without a lake."""
    from datetime import UTC, datetime

    import polars as pl

    from lake.frames import polars_schema
    from schemas.tables import EVENTS
    from tasks.judge import JudgeBatch

    schema = polars_schema(EVENTS)
    rows = []
    for tid, events in traces.items():
        for i, e in enumerate(events):
            rows.append({"trace_id": tid, "seq": i, "ts_client_s": T0 + 10 * i, **e})
    cols = ["trace_id", "seq", "type", "ts_client_s", "kind", "text", "file_path", "diff_unified", "command", "exit_code", "duration_s",
            "stdout", "stderr", "stdout_ref", "framework", "passed", "failed", "errors", "failing_tests", "sha", "message", "redactions"]  # fmt: skip
    events_df = pl.DataFrame([{c: r.get(c) for c in cols} for r in rows], schema={c: schema[c] for c in cols})
    start = datetime.fromtimestamp(T0, UTC)
    traces_df = pl.DataFrame(
        {
            "trace_id": list(traces),
            "task_title": [title] * len(traces),
            "task_description": [""] * len(traces),
            "started_at": [start] * len(traces),
        }
    )
    qa = pl.DataFrame(
        {"trace_id": list((verdicts or {}).keys()), "verdict": list((verdicts or {}).values())},
        schema={"trace_id": pl.String, "verdict": pl.String},
    )
    return JudgeBatch(traces_df, events_df, qa)


def example_events(trace_id: str) -> list[dict]:
    import json

    folder = REPO / "examples" / "traces" / trace_id
    lines = []
    for chunk in sorted((folder / "chunks").iterdir()):
        lines += read_lines(chunk.read_bytes(), chunk.name)
    return [{k: v for k, v in json.loads(line).items() if k not in ("id", "seq", "ts_client_s")} for line in lines]
