"""The QA stage's I/O: which traces need verifying, their inputs from the lake, and storing results.

A trace needs verifying when the lake has no qa_runs row with its current qa_id (tasks/qa/verify.py):
a new sandbox image or back-end version verifies again, an unchanged one never runs twice.
Results go in one Delta MERGE per group of traces (insert-only on `(trace_id, qa_id)`), after
their evidence is stored under <lake>/artifacts/.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field

import polars as pl
from fsspec import AbstractFileSystem

from client.diffs import EditSpec
from client.storage import join, put_immutable
from client.testruns.runners import parse_test_command
from lake.frames import polars_schema, to_arrow
from lake.read import Lake
from lake.tables import LakeTables
from schemas.errors import UnsupportedTestCommand
from schemas.settings import get_qa_settings
from schemas.tables import QA_RUNS
from tasks.qa.sandbox import Sandbox
from tasks.qa.verify import QaInput, QaOutcome, qa_id, verify_trace
from tasks.stage import stage_task

__all__ = [
    "QaSummary",
    "load_qa_inputs",
    "outcome_of",
    "pending_inputs",
    "run_verification",
    "store_outcomes",
    "test_run_targets",
]


def load_qa_inputs(lake: Lake, trace_ids: list[str] | None = None, *, only_unverified: bool = True) -> list[QaInput]:
    """Inputs for the given traces (default: every trace without any QA run yet), in trace_id order."""
    traces = lake.traces().select(
        "trace_id", "snapshot_ref", "test_command", "test_timeout_s", "env_image", "env_python", "env_packages", "env_install"
    )
    if trace_ids:
        traces = traces.filter(pl.col("trace_id").is_in(trace_ids))
    elif only_unverified:
        done = lake.table("qa_runs").select("trace_id").unique()
        traces = traces.join(done, on="trace_id", how="anti")
    traces_df = traces.collect().sort("trace_id")
    scope = get_qa_settings().scope
    ids = traces_df["trace_id"].to_list()
    if not ids:
        return []
    events = (
        lake.events()
        .filter(pl.col("trace_id").is_in(ids) & pl.col("type").is_in(["file_edit", "test_run"]))
        .select(
            "trace_id", "seq", "type", "event_id", "file_path", "diff_unified", "buffer_hash_after", "command", "failing_tests"
        )
        .collect()
        .sort("trace_id", "seq")
    )
    by_trace: dict[str, list[EditSpec]] = {}
    targets: dict[str, set[str]] = {}
    for r in events.iter_rows(named=True):
        if r["type"] == "file_edit":
            by_trace.setdefault(r["trace_id"], []).append(
                EditSpec(r["seq"], r["event_id"], r["file_path"], r["diff_unified"], r["buffer_hash_after"])
            )
        else:
            targets.setdefault(r["trace_id"], set()).update(test_run_targets(r["command"], r["failing_tests"]))
    return [
        QaInput(
            r["trace_id"],
            r["snapshot_ref"],
            r["test_command"],
            r["test_timeout_s"],
            r["env_image"],
            tuple(by_trace.get(r["trace_id"], ())),
            tuple(sorted(targets.get(r["trace_id"], ()))),
            r["env_python"],
            None
            if r["env_packages"] is None
            else tuple((p["name"], p["version"], bool(p["editable"]), p["path"]) for p in r["env_packages"]),
            tuple(r["env_install"] or ()),
            scope,
        )
        for r in traces_df.iter_rows(named=True)
    ]


def test_run_targets(command: str | None, failing_tests: list[str] | None) -> list[str]:
    """What one of the session's test runs targeted: the tests it saw fail and those its command names."""
    out = list(failing_tests or [])
    with contextlib.suppress(UnsupportedTestCommand):  # a command QA would not run still named its failures above
        out += parse_test_command(command or "").named_tests()
    return out


def pending_inputs(inputs: list[QaInput], sandbox: Sandbox, lake: Lake) -> tuple[list[QaInput], list[str]]:
    """Split inputs into those to run and the trace ids already verified with the same qa_id."""
    version = sandbox.version()
    images: dict[str | None, str] = {}
    keyed = []
    for inp in inputs:
        if inp.image not in images:
            images[inp.image] = sandbox.image_id(inp.image)
        keyed.append((inp, qa_id(inp, version, images[inp.image])))
    ids = [k for _, k in keyed]
    done = set(lake.table("qa_runs").filter(pl.col("qa_id").is_in(ids)).select("trace_id", "qa_id").collect().iter_rows())
    todo = [inp for inp, k in keyed if (inp.trace_id, k) not in done]
    skipped = [inp.trace_id for inp, k in keyed if (inp.trace_id, k) in done]
    return todo, skipped


def run_verification(
    inp: QaInput, lake_fs: AbstractFileSystem, lake_root: str, sandbox: Sandbox, *, reruns: int, run_id: str, batch_id: str
) -> QaOutcome:
    snapshot = lake_fs.cat_file(join(lake_root, "artifacts", inp.snapshot_ref.removeprefix("sha256:")))
    return verify_trace(inp, snapshot, sandbox, reruns=reruns, run_id=run_id, batch_id=batch_id)


def outcome_of(result: QaOutcome | BaseException, inp: QaInput, summary: QaSummary) -> QaOutcome | None:
    """A verification's outcome; None when its task failed even after its retries (the snapshot
    could not be read, the sandbox's daemon went away). That trace keeps no row, so the next run
    verifies it again, and the summary says why it failed: one trace never stops the others.
    (A trace's own problems never get here: verify_trace turns them into its error row.)"""
    if isinstance(result, QaOutcome):
        return result
    summary.failed.append((inp.trace_id, f"{type(result).__name__}: {str(result)[:300]}"))
    return None


def store_outcomes(
    outcomes: list[QaOutcome], tables: LakeTables, lake_fs: AbstractFileSystem, lake_root: str, *, run_id: str
) -> int:
    """Evidence first (content-addressed, so re-storing is a no-op), then one MERGE of the rows."""
    for out in outcomes:
        for hex_, data in out.artifacts.items():
            put_immutable(lake_fs, join(lake_root, "artifacts", hex_), data)
    if not outcomes:
        return 0
    df = pl.DataFrame([o.row for o in outcomes], schema=polars_schema(QA_RUNS))
    return tables.merge_rows(QA_RUNS, to_arrow(df, QA_RUNS), metadata={"pipeline_run_id": run_id, "prt_operation": "qa"})


@dataclass
class QaSummary:
    rows: list[dict] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    """Traces already verified with the same qa_id (not run again)."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(trace_id, why) of traces whose verification could not run at all; verified again next time."""
    backend: str = ""

    def verdicts(self) -> Counter:
        return Counter(r["verdict"] for r in self.rows)

    def table(self) -> list[dict]:
        out = [
            {
                "trace_id": r["trace_id"],
                "verdict": r["verdict"],
                "fail_to_pass": len(r["fail_to_pass"]),
                "reason": r["verdict_reason"],
                "seconds": round((r.get("before_s") or 0) + (r.get("after_s") or 0) + (r.get("sandbox_start_s") or 0), 2),
            }
            for r in self.rows
        ]
        out += [
            {"trace_id": t, "verdict": "(already verified)", "fail_to_pass": "", "reason": "same qa_id in qa_runs", "seconds": 0}
            for t in self.already
        ]
        out += [
            {
                "trace_id": t,
                "verdict": "(not run)",
                "fail_to_pass": "",
                "reason": f"{why}; verified again next time",
                "seconds": 0,
            }
            for t, why in self.failed
        ]
        return sorted(out, key=lambda r: r["trace_id"])

    def markdown(self) -> str:
        lines = [
            f"# QA ({self.backend})",
            "",
            f"- verified now: **{len(self.rows)}** traces · already verified: {len(self.already)}"
            + (f" · **could not run: {len(self.failed)}** (verified again next time)" if self.failed else ""),
            "",
        ]
        if self.rows:
            lines += ["| verdict | traces |", "| --- | --- |"] + [f"| {v} | {n} |" for v, n in sorted(self.verdicts().items())]
        return "\n".join(lines) + "\n"


verify_task = stage_task("verify-trace", retry_after=[5])(run_verification)
store_task = stage_task("store-qa-runs", retry_after=[1, 5, 20])(store_outcomes)
load_inputs_task = stage_task("load-qa-inputs")(load_qa_inputs)
pending_task = stage_task("pending-qa")(pending_inputs)
