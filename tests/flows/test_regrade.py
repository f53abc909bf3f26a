"""reprocess --stages regrade: stored QA runs graded again with the current rules, from their saved
reports, nothing run; changed rows sit beside the old ones, and judges score the new verdict."""

from __future__ import annotations

import hashlib

import polars as pl
import pytest

from client.storage import fs_for, join, put_immutable
from flows.ingest import ingest_inbox
from flows.judge import judge_traces
from flows.qa import verify_traces
from flows.reprocess import reprocess
from lake import Lake
from lake.frames import polars_schema, to_arrow
from schemas.settings import SandboxSettings
from schemas.tables import QA_RUNS
from tests.conftest import sandbox_or_skip
from tests.support.repos import CALC, FIXED_ADD
from tests.support.tracegen import write_repo_trace

pytestmark = pytest.mark.usefixtures("prefect_api")

# What pytest's own --junitxml wrote (runner version 1) when every test module failed to import:
# the old grader read the "collection failure" entry as a test failing before and after: not_fixed.
LEGACY_JUNIT = (
    b'<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="1" failures="0" skipped="0" tests="1">'
    b'<testcase classname="" name="tests.test_calc" file="tests/test_calc.py" time="0.000"><error message="collection failure">'
    b"E   ModuleNotFoundError: No module named &apos;_bitarray&apos;</error></testcase></testsuite></testsuites>"
)


def _legacy_row(lake: str, trace_id: str) -> dict:
    """A qa_runs row as runner version 1 and grader version 1 stored it: a confident, wrong not_fixed."""
    fs, root = fs_for(lake)
    put_immutable(fs, join(root, "artifacts", hashlib.sha256(LEGACY_JUNIT).hexdigest()), LEGACY_JUNIT)
    ref = "sha256:" + hashlib.sha256(LEGACY_JUNIT).hexdigest()
    row = Lake(lake).qa_runs().filter(pl.col("trace_id") == trace_id).collect().row(0, named=True)
    fields = {"verdict": "not_fixed", "verdict_reason": "no failing test passes after the edits (1 still failing)"}
    fields |= {
        "fail_to_pass": [],
        "pass_to_pass": [],
        "pass_to_fail": [],
        "fail_to_fail": ["tests/test_calc.py::tests.test_calc"],
    }
    fields |= {"junit_before_ref": ref, "junit_after_ref": ref, "before_exit_code": 2, "after_exit_code": 2}
    fields |= {"grader_version": None, "graded_at": None, "before_files": None, "targeted": None, "runner_version": "1"}
    return {**row, **fields, "qa_id": "legacy-" + row["qa_id"][:17]}


def test_regrade_fixes_stored_verdicts_without_running_and_judges_follow(tmp_path):
    sandbox_or_skip("namespace", SandboxSettings())
    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    write_repo_trace(inbox, "legacy", CALC, [("calc.py", FIXED_ADD)], failing=["tests/test_calc.py::test_add"])
    write_repo_trace(inbox, "current", CALC, [("calc.py", FIXED_ADD)], failing=["tests/test_calc.py::test_add"])
    ingest_inbox(inbox=inbox, lake=lake)
    verify_traces(lake=lake, sandbox="namespace")
    lk = Lake(lake)
    legacy = _legacy_row(lake, "legacy")
    lk.tables.delete_rows(QA_RUNS, "trace_id", ["legacy"], metadata={"test": "legacy"})
    lk.tables.merge_rows(
        QA_RUNS, to_arrow(pl.DataFrame([legacy], schema=polars_schema(QA_RUNS)), QA_RUNS), metadata={"test": "1"}
    )
    judge_traces(lake=lake)
    scores_before = lk.scores().collect()
    assert dict(scores_before.select("trace_id", "qa_verdict").rows()) == {"legacy": "not_fixed", "current": "verified"}

    version = lk.tables.open("qa_runs").version()
    summary = reprocess(lake=lake, stages=["regrade", "judge"])
    assert summary.regrade.changed == [("legacy", "not_fixed", "error")]
    assert summary.regrade.unchanged == 0  # "current" was graded by this grader: not looked at again
    rows = lk.qa_runs().filter(pl.col("trace_id") == "legacy").sort("graded_at", nulls_last=False).collect()
    old, new = rows.to_dicts()
    assert (old["qa_id"], old["verdict"]) == (legacy["qa_id"], "not_fixed")  # kept beside the new one
    assert new["regraded_from"] == old["qa_id"] and new["verdict"] == "error"
    assert "pytest was interrupted" in new["verdict_reason"] and "_bitarray" in new["verdict_reason"]
    assert new["started_at"] == old["started_at"] and new["before_s"] == old["before_s"]  # the same runs, graded anew
    latest = dict(lk.latest_qa().select("trace_id", "verdict").collect().rows())
    assert latest == {"legacy": "error", "current": "verified"}

    # Scores follow verdicts: the judge scored the new verdict in a new row, and the old one stays.
    scores = lk.scores().filter(pl.col("trace_id") == "legacy").sort("scored_at").collect()
    assert scores["qa_verdict"].to_list() == ["not_fixed", "error"]
    assert summary.judge.rows and {r["trace_id"] for r in summary.judge.rows} == {"legacy"}
    chosen = lk.dataset().filter(pl.col("trace_id") == "legacy").collect().row(0, named=True)
    assert chosen["verdict"] == "error" and chosen["overall"] == scores["overall"][-1]

    again = reprocess(lake=lake, stages=["regrade", "judge"])
    assert again.regrade.changed == [] and not again.judge.rows
    assert lk.tables.open("qa_runs").version() == version + 1  # one commit: the first regrade's
