"""The training export: one deterministic record per trace, as JSONL or Parquet.

Record format (every field always present; null where it does not apply):

    trace_id        str
    chain_head      str        the trace's hash-chain head (integrity of the original events)
    participant     str        the participant's pseudonym (p_...), for splits that keep a person in one split
    session         {started_at, ended_at}   ISO 8601, UTC
    ingest_date     str        YYYY-MM-DD
    dedup_group     str        the smallest trace_id among this record and its exact or near duplicates
                               (tasks/research/dedup.py); its own trace_id when it has none
    task            {id, title, description}
    repo            {origin, start_commit, snapshot_ref, snapshot_tree}   snapshot_tree: the git tree id of
                               the snapshot's files, to compare with start_commit's tree in the public repo
    steps           [ {seq, t_s, type, kind, text, file, diff, command, exit_code, output,
                       passed, failed, errors, failing_tests, sha, message} ]   in seq order;
                    type is note | edit | command | test_run | commit; t_s is seconds since the start;
                    output is stdout+stderr (artifacts resolved), at most 8000 characters: the first
                    2000 and the last 6000, with "[... N bytes cut ...]" between them
    final_patch     str|null   unified diff from start_commit to the session's final files (null when
                               the edits do not replay)
    verdict         str|null   latest QA verdict
    test_command    str        the command QA ran (the session's own when QA has not run)
    fail_to_pass    [str]      tests the session fixed (SWE-bench FAIL_TO_PASS)
    pass_to_pass    [str]      tests that passed before and after (SWE-bench PASS_TO_PASS)
    test_config_changed bool|null  the session changed test configuration (conftest.py, pytest.ini, ...)
    scores          {judge_id, overall, problem_understanding, causal_linking, experiment_design,
                     efficiency, reproducibility, safety_hygiene}
    provenance      {ingest_run_id, ingest_batch_id, qa_id, qa_run_id, score_run_id, code_version}

Records are sorted by trace_id and contain no export time, so the same lake and filters give
byte-identical files. Load them with `datasets.load_dataset("json" | "parquet", data_files=PATH)`.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from client.diffs import EditSpec, replay_edits, unified_diff
from client.storage import join
from lake.read import Lake
from schemas.errors import ReplayError
from schemas.rubric import DIMENSIONS
from tasks.research.dedup import DedupResult, dedup_groups, keep_best

__all__ = ["EXPORT_SCHEMA", "ExportSet", "build_records", "cut_output", "export_dataset"]

_OUTPUT_CHARS = 8000
_STEP_TYPES = {"rationale_note": "note", "file_edit": "edit", "cmd_run": "command", "test_run": "test_run", "commit": "commit"}

_STEP = pa.struct(
    [
        ("seq", pa.int32()), ("t_s", pa.float64()), ("type", pa.string()), ("kind", pa.string()), ("text", pa.string()),
        ("file", pa.string()), ("diff", pa.string()), ("command", pa.string()), ("exit_code", pa.int32()), ("output", pa.string()),
        ("passed", pa.int32()), ("failed", pa.int32()), ("errors", pa.int32()), ("failing_tests", pa.list_(pa.string())),
        ("sha", pa.string()), ("message", pa.string()),
    ]
)  # fmt: skip
EXPORT_SCHEMA = pa.schema(
    [
        ("trace_id", pa.string()),
        ("chain_head", pa.string()),
        ("participant", pa.string()),
        ("session", pa.struct([("started_at", pa.string()), ("ended_at", pa.string())])),
        ("ingest_date", pa.string()),
        ("dedup_group", pa.string()),
        ("task", pa.struct([("id", pa.string()), ("title", pa.string()), ("description", pa.string())])),
        (
            "repo",
            pa.struct(
                [
                    ("origin", pa.string()),
                    ("start_commit", pa.string()),
                    ("snapshot_ref", pa.string()),
                    ("snapshot_tree", pa.string()),
                ]
            ),
        ),
        ("steps", pa.list_(_STEP)),
        ("final_patch", pa.string()),
        ("verdict", pa.string()),
        ("test_command", pa.string()),
        ("fail_to_pass", pa.list_(pa.string())),
        ("pass_to_pass", pa.list_(pa.string())),
        ("test_config_changed", pa.bool_()),
        ("scores", pa.struct([("judge_id", pa.string()), ("overall", pa.float64()), *[(d, pa.float64()) for d in DIMENSIONS]])),
        (
            "provenance",
            pa.struct(
                [
                    ("ingest_run_id", pa.string()),
                    ("ingest_batch_id", pa.string()),
                    ("qa_id", pa.string()),
                    ("qa_run_id", pa.string()),
                    ("score_run_id", pa.string()),
                    ("code_version", pa.string()),
                ]
            ),
        ),
    ]
)


def cut_output(text: str, limit: int = _OUTPUT_CHARS) -> str:
    """`text` in at most about `limit` characters: a quarter from its start, the rest from its end
    (where a test run prints its failures and summary), and between them a line that says how
    many bytes were cut."""
    if len(text) <= limit:
        return text
    head, tail = limit // 4, limit - limit // 4
    cut = len(text[head:-tail].encode("utf-8"))
    return f"{text[:head]}\n[... {cut} bytes cut ...]\n{text[-tail:]}"


def _step(e: dict, start: float, lake: Lake) -> dict:
    output = "".join(x for x in (lake.output(e, "stdout"), lake.output(e, "stderr")) if x) or None
    return {
        "seq": e["seq"],
        "t_s": round(e["ts_client_s"] - start, 3),
        "type": _STEP_TYPES[e["type"]],
        "kind": e["kind"],
        "text": e["text"],
        "file": e["file_path"],
        "diff": e["diff_unified"],
        "command": e["command"],
        "exit_code": e["exit_code"],
        "output": cut_output(output) if output else None,
        "passed": e["passed"],
        "failed": e["failed"],
        "errors": e["errors"],
        "failing_tests": e["failing_tests"],
        "sha": e["sha"],
        "message": e["message"],
    }


def _final_patch(snapshot: bytes, edits: list[EditSpec]) -> str | None:
    """The net change of the session: start_commit to the final state of every edited file."""
    if not edits:
        return ""
    paths = {e.file_path for e in edits}
    originals: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(snapshot), mode="r:gz") as tar:
        for m in tar.getmembers():
            name = m.name.removeprefix("./")
            if name in paths and m.isreg():
                originals[name] = tar.extractfile(m).read()
    try:
        final = replay_edits(originals, edits)
    except ReplayError:
        return None
    patch = []
    for path in sorted(final):
        before = originals.get(path, b"").decode("utf-8", "replace")
        after = final[path].decode("utf-8", "replace")
        if before != after:
            patch.append(unified_diff(before, after, path))
    return "".join(patch)


@dataclass
class ExportSet:
    records: list[dict]
    """In trace_id order, every one with its dedup_group."""
    dedup: DedupResult
    dropped: int = 0
    """Records left out by `dedup=True` (each a duplicate of a better-scored one)."""

    def summary(self) -> str:
        d = self.dedup
        line = (
            f"duplicates: {d.in_groups()} records in {d.duplicated_groups()} groups "
            f"({d.exact_pairs} exact, {d.near_pairs} near pairs)"
        )
        return line + (f"; {self.dropped} left out (--dedup keeps the best-scored of each group)" if self.dropped else "")


def build_records(
    lake: Lake, lake_fs: AbstractFileSystem, lake_root: str, *, judge: str | None = None, dedup: bool = False, **filters
) -> ExportSet:
    """Export records for the traces that pass the filters (those of `Lake.dataset`), sorted by
    trace_id, each with its `dedup_group`; with `dedup`, only the best-scored record of each group."""
    records = _records(lake, lake_fs, lake_root, judge=judge, **filters)
    found = dedup_groups(records)
    for r in records:
        r["dedup_group"] = found.groups[r["trace_id"]]
    if not dedup:
        return ExportSet(records, found)
    kept = keep_best(records)
    return ExportSet(kept, found, dropped=len(records) - len(kept))


def _records(lake: Lake, lake_fs: AbstractFileSystem, lake_root: str, *, judge: str | None, **filters) -> list[dict]:
    ds = lake.dataset(judge=judge, **filters).collect()
    if ds.is_empty():
        return []
    ids = ds["trace_id"].to_list()
    traces = {r["trace_id"]: r for r in lake.traces().filter(pl.col("trace_id").is_in(ids)).collect().iter_rows(named=True)}
    qa = {
        r["trace_id"]: r
        for r in lake.latest_qa()
        .filter(pl.col("trace_id").is_in(ids))
        .select("trace_id", "pipeline_run_id", "pass_to_pass", "test_command")
        .collect()
        .iter_rows(named=True)
    }
    cols = ["trace_id", "seq", "type", "ts_client_s", "kind", "text", "file_path", "diff_unified", "buffer_hash_after", "event_id", "command",
            "exit_code", "stdout", "stderr", "stdout_ref", "stderr_ref", "passed", "failed", "errors", "failing_tests", "sha", "message"]  # fmt: skip
    events = lake.events().filter(pl.col("trace_id").is_in(ids)).select(cols).collect().sort("trace_id", "seq")
    by_trace = {k[0]: g.to_dicts() for k, g in events.group_by("trace_id", maintain_order=True)}
    records = []
    for row in ds.iter_rows(named=True):
        tid = row["trace_id"]
        t = traces[tid]
        evs = by_trace.get(tid, [])
        start = t["started_at"].timestamp()
        edits = [
            EditSpec(e["seq"], e["event_id"], e["file_path"], e["diff_unified"], e["buffer_hash_after"])
            for e in evs
            if e["type"] == "file_edit"
        ]
        snapshot = lake_fs.cat_file(join(lake_root, "artifacts", t["snapshot_ref"].removeprefix("sha256:")))
        scored = row["judge_id"] is not None
        records.append(
            {
                "trace_id": tid,
                "chain_head": t["chain_head"],
                "participant": t["participant"],
                "session": {"started_at": _iso(t["started_at"]), "ended_at": _iso(t["ended_at"])},
                "ingest_date": t["ingest_date"].isoformat() if t["ingest_date"] else None,
                "dedup_group": None,
                "task": {"id": t["task_id"], "title": t["task_title"], "description": t["task_description"]},
                "repo": {
                    "origin": t["repo_origin"],
                    "start_commit": t["start_commit"],
                    "snapshot_ref": t["snapshot_ref"],
                    "snapshot_tree": row["snapshot_tree"],
                },
                "steps": [_step(e, start, lake) for e in evs],
                "final_patch": _final_patch(snapshot, edits),
                "verdict": row["verdict"],
                "test_command": qa.get(tid, {}).get("test_command") or t["test_command"],
                "fail_to_pass": row["fail_to_pass"] or [],
                "pass_to_pass": qa.get(tid, {}).get("pass_to_pass") or [],
                "test_config_changed": row["test_config_changed"],
                "scores": {"judge_id": row["judge_id"], "overall": row["overall"], **{d: row[d] for d in DIMENSIONS}}
                if scored
                else None,
                "provenance": {
                    "ingest_run_id": t["pipeline_run_id"],
                    "ingest_batch_id": t["batch_id"],
                    "qa_id": row["qa_id"],
                    "qa_run_id": qa.get(tid, {}).get("pipeline_run_id"),
                    "score_run_id": row["score_run_id"],
                    "code_version": t["code_version"],
                },
            }
        )
    return records


def _iso(ts) -> str | None:
    return None if ts is None else ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def export_dataset(records: list[dict], out: str | Path, fmt: str) -> Path:
    """Write records to `out` as jsonl or parquet (byte-identical for identical records)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        with open(out, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
    elif fmt == "parquet":
        table = pa.Table.from_pylist(records, schema=EXPORT_SCHEMA)
        pq.write_table(table, out, compression="zstd", row_group_size=10_000, write_statistics=False)
    else:
        raise ValueError(f"unknown format {fmt!r}; known: jsonl, parquet")
    return out
