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

import json
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from client.diffs import EditSpec, replay_edits, unified_diff
from client.snapshot import iter_snapshot
from client.storage import join
from lake.read import Lake
from schemas.errors import InvalidInput, ReplayError
from schemas.rubric import DIMENSIONS
from schemas.settings import get_ingest_settings
from tasks.research.dedup import DedupResult, dedup_groups, keep_best
from tasks.research.split import SPLIT_BY, parse_split, split_key, split_of

__all__ = ["EXPORT_SCHEMA", "ExportReport", "ExportSet", "build_records", "cut_output", "export"]

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
    limit = get_ingest_settings().max_snapshot_unpacked_bytes
    # The one snapshot reader (client/snapshot.py), as ingest and QA read it; one file at a time.
    originals = {e.name: e.data for e in iter_snapshot(snapshot, max_unpacked=limit) if e.kind == "file" and e.name in paths}
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
        return self.dedup.summary(self.dropped)


BATCH_TRACES = 200
"""Traces whose records are built together: memory holds one batch of records, never the set."""


class _Source:
    """The lake's side of an export: the selected traces and their records, built a batch at a time."""

    def __init__(self, lake: Lake, ds: pl.DataFrame):
        self.lake, self.ds = lake, ds
        self.patches: dict[str, str | None] = {}

    def batches(self, ids: list[str]) -> Iterator[list[str]]:
        for i in range(0, len(ids), BATCH_TRACES):
            yield ids[i : i + BATCH_TRACES]

    def _events(self, ids: list[str], cols: list[str], edits_only: bool = False) -> dict[str, list[dict]]:
        frame = self.lake.events().filter(pl.col("trace_id").is_in(ids))
        if edits_only:
            frame = frame.filter(pl.col("type") == "file_edit")
        events = frame.select(cols).collect().sort("trace_id", "seq")
        return {k[0]: g.to_dicts() for k, g in events.group_by("trace_id", maintain_order=True)}

    def _traces(self, ids: list[str]) -> dict[str, dict]:
        rows = self.lake.traces().filter(pl.col("trace_id").is_in(ids)).collect()
        return {r["trace_id"]: r for r in rows.iter_rows(named=True)}

    def final_patches(self, ids: list[str]) -> None:
        """Pass one: the final patch of each trace (what dedup compares), kept for pass two."""
        cols = ["trace_id", "seq", "type", "file_path", "diff_unified", "buffer_hash_after", "event_id"]
        for batch in self.batches(ids):
            traces, edits = self._traces(batch), self._events(batch, cols, edits_only=True)
            for tid in batch:
                specs = [
                    EditSpec(e["seq"], e["event_id"], e["file_path"], e["diff_unified"], e["buffer_hash_after"])
                    for e in edits.get(tid, [])
                ]
                ref = traces[tid]["snapshot_ref"]
                snapshot = self.lake.artifact(ref)
                if snapshot is None:
                    raise FileNotFoundError(f"the snapshot {ref} of trace {tid} is not in the lake at {self.lake.url}")
                self.patches[tid] = _final_patch(snapshot, specs)

    def light(self, row: dict) -> dict:
        """What dedup reads of a record, without its steps."""
        return {
            "trace_id": row["trace_id"],
            "repo": {"origin": row["repo_origin"], "start_commit": row["start_commit"]},
            "task": {"title": row["task_title"], "description": row.get("task_description")},
            "final_patch": self.patches.get(row["trace_id"]),
            "scores": {"overall": row["overall"]} if row["judge_id"] is not None else None,
            "verdict": row["verdict"],
        }

    def records(self, ids: list[str]) -> Iterator[dict]:
        """Pass two: the full records of `ids`, in order, a batch at a time."""
        rows = {r["trace_id"]: r for r in self.ds.iter_rows(named=True)}
        cols = ["trace_id", "seq", "type", "ts_client_s", "kind", "text", "file_path", "diff_unified", "command",
                "exit_code", "stdout", "stderr", "stdout_ref", "stderr_ref", "passed", "failed", "errors", "failing_tests", "sha", "message"]  # fmt: skip
        for batch in self.batches(ids):
            traces, events = self._traces(batch), self._events(batch, cols)
            qa = {
                r["trace_id"]: r
                for r in self.lake.latest_qa()
                .filter(pl.col("trace_id").is_in(batch))
                .select("trace_id", "pipeline_run_id", "pass_to_pass", "test_command")
                .collect()
                .iter_rows(named=True)
            }
            for tid in batch:
                yield _record(rows[tid], traces[tid], events.get(tid, []), qa.get(tid, {}), self.patches[tid], self.lake)


def _select(lake: Lake, judge: str | None, dedup: bool, filters: dict):
    ds = lake.dataset(judge=judge, **filters).collect()
    source = _Source(lake, ds)
    ids = ds["trace_id"].to_list()
    source.final_patches(ids)
    light = [source.light(r) for r in ds.iter_rows(named=True)]
    found = dedup_groups(light)
    if not dedup:
        return source, found, ids
    for r in light:
        r["dedup_group"] = found.groups[r["trace_id"]]
    return source, found, [r["trace_id"] for r in keep_best(light)]


def build_records(lake: Lake, *, judge: str | None = None, dedup: bool = False, **filters) -> ExportSet:
    """Export records for the traces that pass the filters (those of `Lake.dataset`), sorted by
    trace_id, each with its `dedup_group`; with `dedup`, only the best-scored record of each group.
    All in memory: for notebooks and tests. `export` streams them to files."""
    source, found, keep = _select(lake, judge, dedup, filters)
    records = [r | {"dedup_group": found.groups[r["trace_id"]]} for r in source.records(keep)]
    return ExportSet(records, found, dropped=len(found.groups) - len(keep))


def _record(row: dict, t: dict, evs: list[dict], qa: dict, patch: str | None, lake: Lake) -> dict:
    start = t["started_at"].timestamp()
    scored = row["judge_id"] is not None
    return {
        "trace_id": row["trace_id"],
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
        "final_patch": patch,
        "verdict": row["verdict"],
        "test_command": qa.get("test_command") or t["test_command"],
        "fail_to_pass": row["fail_to_pass"] or [],
        "pass_to_pass": qa.get("pass_to_pass") or [],
        "test_config_changed": row["test_config_changed"],
        "scores": {"judge_id": row["judge_id"], "overall": row["overall"], **{d: row[d] for d in DIMENSIONS}} if scored else None,
        "provenance": {
            "ingest_run_id": t["pipeline_run_id"],
            "ingest_batch_id": t["batch_id"],
            "qa_id": row["qa_id"],
            "qa_run_id": qa.get("pipeline_run_id"),
            "score_run_id": row["score_run_id"],
            "code_version": t["code_version"],
        },
    }


def _iso(ts) -> str | None:
    return None if ts is None else ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class ExportReport:
    out: str
    fmt: str
    files: dict[str, list[str]]
    """split -> the files written for it, in order (one split, `train`, without --split)."""
    counts: dict[str, int]
    dedup: DedupResult
    dropped: int
    split_by: str | None = None
    shares: dict[str, float] | None = None

    @property
    def records(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        return self.dedup.summary(self.dropped)


class _Shards:
    """One split's files: `<folder>/data/<split>-00000.<ext>`, `-00001`, ... each closed once it
    holds `max_bytes` (a JSONL line or a Parquet row group is never cut across two files)."""

    def __init__(self, fs: AbstractFileSystem, path_for, fmt: str, max_bytes: float, *, always: bool = False):
        self.fs, self.path_for, self.fmt, self.max_bytes, self.always = fs, path_for, fmt, max_bytes, always
        self.paths: list[str] = []
        self.f = None
        self.writer: pq.ParquetWriter | None = None
        self.rows: list[dict] = []
        self.pending = 0

    def _open(self) -> None:
        path = self.path_for(len(self.paths))
        self.paths.append(path)
        self.f = self.fs.open(path, "wb")
        if self.fmt == "parquet":
            self.writer = pq.ParquetWriter(self.f, EXPORT_SCHEMA, compression="zstd", write_statistics=False)

    def write(self, record: dict) -> None:
        if self.fmt == "jsonl":
            line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
            if self.f is None or (self.f.tell() and self.f.tell() + len(line) > self.max_bytes):
                self._close_file()
                self._open()
            self.f.write(line)
            return
        self.rows.append(record)
        self.pending += len(json.dumps(record, ensure_ascii=False))
        if len(self.rows) >= 1000 or self.pending >= min(16 << 20, self.max_bytes):
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        if self.f is None:
            self._open()
        self.writer.write_table(pa.Table.from_pylist(self.rows, schema=EXPORT_SCHEMA))
        self.rows, self.pending = [], 0
        if self.f.tell() >= self.max_bytes:
            self._close_file()

    def _close_file(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.f is not None:
            self.f.close()
            self.f = None

    def close(self) -> list[str]:
        if self.fmt == "parquet":
            self._flush()
        if not self.paths and self.always:  # an export to one file writes it, even empty
            self._open()
        self._close_file()
        return self.paths


def export(
    lake: Lake,
    out: str,
    fmt: str = "jsonl",
    *,
    judge: str | None = None,
    dedup: bool = False,
    split: str | None = None,
    split_by: str = "repo",
    max_shard_bytes: int | None = None,
    license: str = "other",
    **filters,
) -> ExportReport:
    """Write the training set to `out`, any fsspec URL, a batch of records at a time.

    `out` ending in `.jsonl` or `.parquet` (and no `split`): that one file. Otherwise a folder in
    the Hugging Face layout: `data/<split>-NNNNN.<ext>` shards of at most `max_shard_bytes` (a
    record is never cut), and `README.md`, the dataset card (tasks/research/card.py), so that
    `datasets.load_dataset(out)` loads every split."""
    from client.storage import fs_for
    from tasks.research.card import dataset_card

    if fmt not in ("jsonl", "parquet"):
        raise InvalidInput("format", f"{fmt!r} is not one of jsonl, parquet")
    shares = parse_split(split) if split else {"train": 1.0}
    if split_by not in SPLIT_BY:
        raise InvalidInput("split_by", f"{split_by!r} is not one of {', '.join(SPLIT_BY)}")
    single = split is None and out.endswith((".jsonl", ".parquet"))
    if single and not out.endswith("." + fmt):
        raise InvalidInput("out", f"{out} does not end in .{fmt}: name the file for its format, or give a folder")
    source, found, keep = _select(lake, judge, dedup, filters)
    fs, root = fs_for(out)
    limit = float("inf") if single or not max_shard_bytes else max_shard_bytes
    if single:
        fs.makedirs(posixpath.dirname(root) or ".", exist_ok=True)
        shards = {"train": _Shards(fs, lambda _n: root, fmt, limit, always=True)}
    else:
        fs.makedirs(join(root, "data"), exist_ok=True)
        shards = {
            name: _Shards(fs, lambda n, name=name: join(root, "data", f"{name}-{n:05d}.{fmt}"), fmt, limit) for name in shares
        }
    counts = dict.fromkeys(shares, 0)
    for record in source.records(keep):
        record["dedup_group"] = found.groups[record["trace_id"]]
        name = "train" if single else split_of(split_key(record, split_by), shares)
        shards[name].write(record)
        counts[name] += 1
    files = {name: w.close() for name, w in shards.items()}
    report = ExportReport(out, fmt, files, counts, found, len(found.groups) - len(keep), None if single else split_by, shares)
    if not single:
        with fs.open(join(root, "README.md"), "w", encoding="utf-8") as f:
            f.write(dataset_card(report, lake, source.ds, filters=filters, judge=judge, dedup=dedup, license=license))
    return report
