"""Re-grade stored QA runs with the current grading rules, from their saved reports: nothing runs.

For each trace, its latest qa_runs row graded by an older GRADER_VERSION is graded again from
its stored reports (junit_before_ref, junit_after_ref), its exit codes and the session's targets
(from its events). A verdict or test list that changes becomes a new row beside the old one:
its `qa_id` derives from the old one and the grader version, `regraded_from` names the old row,
`graded_at` makes it the trace's latest verdict. A row that does not change stays as it is.
Running it twice writes nothing the second time.

What the stored evidence cannot answer stays as it was: rows without reports (replay_mismatch,
timeouts, sandbox failures) keep their verdict. Rows from before RUNNER_VERSION 2 ran pytest
through a shell, with the session's test files (and nothing else) in the before run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl
from fsspec import AbstractFileSystem

from client.storage import join
from client.testruns.reports import parse_report
from client.testruns.runners import parse_test_command
from lake.frames import polars_schema, to_arrow
from lake.read import Lake
from lake.tables import LakeTables
from schemas.errors import ReportError, UnsupportedTestCommand
from schemas.tables import QA_RUNS
from schemas.version import CODE_VERSION
from tasks.qa.grade import GRADER_VERSION, Grade, grade
from tasks.qa.store import load_qa_inputs
from tasks.qa.verify import QaInput, is_test_file, session_targets
from tasks.stage import stage_task

__all__ = ["RegradeResult", "regrade_row", "regrade_traces"]

_LISTS = ("fail_to_pass", "pass_to_pass", "pass_to_fail", "fail_to_fail", "targeted")


@dataclass
class RegradeResult:
    changed: list[tuple[str, str, str]] = field(default_factory=list)
    """(trace_id, old verdict, new verdict) of rows that got a new row."""
    unchanged: int = 0
    kept: int = 0
    """Rows whose evidence cannot be graded again (no reports): their verdict stands."""
    rows: list[dict] = field(default_factory=list)


def regrade_row(row: dict, before_xml: bytes | None, after_xml: bytes | None, inp: QaInput | None) -> Grade | None:
    """The grade of a stored run under the current rules, or None when its evidence cannot say
    (no reports: the verdict came from the replay, a timeout or a failed sandbox)."""
    if row["verdict"] == "replay_mismatch" or before_xml is None or after_xml is None:
        return None
    try:
        before = parse_report(before_xml, exit_code=row["before_exit_code"])
        after = parse_report(after_xml, exit_code=row["after_exit_code"])
    except ReportError as exc:
        return Grade("error", f"the stored report cannot be read ({exc})")
    edited = [e.file_path for e in inp.edits] if inp else []
    before_files = row.get("before_files")
    if before_files is None:  # RUNNER_VERSION 1 put the session's test files, and nothing else, into the before run
        before_files = [p for p in edited if is_test_file(p)]
    targets: set[str] = set()
    if inp is not None:
        try:
            targets = session_targets(inp, parse_test_command(inp.test_command))
        except UnsupportedTestCommand:
            targets = {*inp.targets, *(p for p in edited if is_test_file(p))}
    return grade(before, after, targets=targets, before_files=before_files, flaky=tuple(row.get("flaky") or ()))


def _differs(row: dict, g: Grade) -> bool:
    return row["verdict"] != g.verdict or any(list(row.get(c) or []) != list(getattr(g, c)) for c in _LISTS)


def regrade_traces(
    lake: Lake, lake_fs: AbstractFileSystem, lake_root: str, trace_ids: list[str], *, run_id: str, batch_id: str
) -> RegradeResult:
    """Re-grade the latest QA row of each trace in `trace_ids` graded by an older grader; store what changed."""
    result = RegradeResult()
    if not trace_ids:
        return result
    latest = (
        lake.latest_qa()
        .filter(pl.col("trace_id").is_in(trace_ids) & (pl.col("grader_version").fill_null("1") != GRADER_VERSION))
        .collect()
        .sort("trace_id")
    )
    if latest.is_empty():
        return result
    inputs = {i.trace_id: i for i in load_qa_inputs(lake, latest["trace_id"].to_list())}

    def evidence(ref: str | None) -> bytes | None:
        return lake_fs.cat_file(join(lake_root, "artifacts", ref.removeprefix("sha256:"))) if ref else None

    now = datetime.now().astimezone()
    for row in latest.iter_rows(named=True):
        g = regrade_row(row, evidence(row["junit_before_ref"]), evidence(row["junit_after_ref"]), inputs.get(row["trace_id"]))
        if g is None:
            result.kept += 1
            continue
        if not _differs(row, g):
            result.unchanged += 1
            continue
        new = {
            **row,
            "qa_id": hashlib.sha256(f"{row['qa_id']}:regrade:{GRADER_VERSION}".encode()).hexdigest()[:24],
            "verdict": g.verdict,
            "verdict_reason": g.reason,
            **{c: list(getattr(g, c)) for c in _LISTS},
            "grader_version": GRADER_VERSION,
            "graded_at": now,
            "regraded_from": row["qa_id"],
            "run_date": now.date(),
            "pipeline_run_id": run_id,
            "batch_id": batch_id,
            "code_version": CODE_VERSION,
        }
        result.rows.append(new)
        result.changed.append((row["trace_id"], row["verdict"], g.verdict))
    return result


def store_regrades(result: RegradeResult, tables: LakeTables, *, run_id: str) -> int:
    """One insert-only MERGE of the new rows (a repeated regrade finds their qa_id and writes nothing)."""
    if not result.rows:
        return 0
    df = pl.DataFrame(result.rows, schema=polars_schema(QA_RUNS))
    return tables.merge_rows(QA_RUNS, to_arrow(df, QA_RUNS), metadata={"pipeline_run_id": run_id, "prt_operation": "regrade"})


regrade_task = stage_task("regrade-qa-runs")(regrade_traces)
store_regrades_task = stage_task("store-regrades", retry_after=[1, 5, 20])(store_regrades)
