"""Arrow schemas of the lake's Delta tables: the one source for table creation, evolution and docs.

Every column carries a `description` in its field metadata; `docs/tables.md` is generated from
these specs (`python -m schemas.tables`) and a test fails when the file drifts from them.
Columns are only ever added (a later code version evolves an existing table in place).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

__all__ = ["TABLES", "TableSpec", "render_markdown"]


def _f(name: str, type_: pa.DataType, description: str, *, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"description": description})


_STR, _I32, _I64, _F64, _BOOL, _DATE = pa.string(), pa.int32(), pa.int64(), pa.float64(), pa.bool_(), pa.date32()
_TS = pa.timestamp("us", tz="UTC")
_STRS = pa.list_(pa.string())
_PACKAGES = pa.list_(
    pa.struct([("name", pa.string()), ("version", pa.string()), ("editable", pa.bool_()), ("path", pa.string())])
)


@dataclass(frozen=True)
class TableSpec:
    name: str
    description: str
    schema: pa.Schema
    keys: tuple[str, ...]
    partition_by: tuple[str, ...]
    stats_columns: tuple[str, ...] = ()
    """Columns with min/max statistics in the Delta log (file skipping). Only keys, dates and
    numbers: text content never goes into the log, so erasure can remove it from the data files."""

    @property
    def columns(self) -> list[str]:
        return self.schema.names


def _provenance(date_col: str, date_desc: str) -> list[pa.Field]:
    return [
        _f(date_col, _DATE, date_desc, nullable=False),
        _f("pipeline_run_id", _STR, "Prefect flow run (or CLI run) that wrote the row."),
        _f("batch_id", _STR, "Ingest batch that wrote the row; the Delta commit carries it too."),
        _f("code_version", _STR, "Version of this package that produced the row."),
    ]


TRACES = TableSpec(
    "traces",
    "One row per ingested trace: the manifest, the completion record and the chain head.",
    pa.schema(
        [
            _f("trace_id", _STR, "Trace id from the inbox (natural key).", nullable=False),
            _f("trace_version", _STR, "Inbox protocol version of the trace, e.g. 1.0."),
            _f(
                "participant",
                _STR,
                "Keyed pseudonym of the participant id (HMAC-SHA256 with the pipeline's secret); never the id itself.",
            ),
            _f("task_id", _STR, "Task or bug id."),
            _f("task_title", _STR, "Task title (redacted)."),
            _f("task_description", _STR, "Task description (redacted)."),
            _f("repo_origin", _STR, "Where the repo came from (redacted: credentials in URLs are removed)."),
            _f("start_commit", _STR, "Commit the session started from."),
            _f("snapshot_ref", _STR, "sha256:<hex> of the repo snapshot; the blob is at <lake>/artifacts/<hex>."),
            _f("env_os", _STR, "Client operating system."),
            _f("env_python", _STR, "The Python the session's tests ran with, e.g. 3.11.7."),
            _f("env_image", _STR, "Sandbox image named by the manifest, if any."),
            _f("test_command", _STR, "The test runner invocation, run from the repo root (redacted)."),
            _f("test_timeout_s", _F64, "Wall-clock limit of one test run in QA."),
            _f("client_name", _STR, "Producer that wrote the trace."),
            _f("client_version", _STR, "Producer version."),
            _f("started_at", _TS, "Session start (manifest)."),
            _f("ended_at", _TS, "Session end (complete.json)."),
            _f("event_count", _I32, "Number of events."),
            _f("chunk_count", _I32, "Number of chunk objects."),
            _f("chain_head", _STR, "Hash-chain head over the original event lines; re-checkable from events.line_sha256."),
            _f("redaction_count", _I32, "Secrets redacted from this trace's events and manifest."),
            _f("manifest_extra", _STR, "Unknown manifest fields, as JSON (null when none)."),
            _f(
                "env_packages",
                _PACKAGES,
                "The installed distributions the session ran with (name, version, editable install of the repo and its path); null when the client did not say.",
            ),
            _f("env_install", _STRS, "Build steps run from the repo root before every test run in QA (redacted)."),
            _f("env_dependency_files", _STRS, "The repo's files that declare its dependencies."),
            _f("ingested_at", _TS, "When the batch that ingested the trace started."),
            *_provenance("ingest_date", "Partition: UTC date of ingest."),
            _f("parser_version", _STR, "Version of the trace parser and validation rules."),
        ]
    ),
    keys=("trace_id",),
    partition_by=("ingest_date",),
    stats_columns=("trace_id", "started_at", "event_count"),
)

EVENTS = TableSpec(
    "events",
    "One row per event, all five types in one wide table; columns of other types are null.",
    pa.schema(
        [
            _f("trace_id", _STR, "Trace the event belongs to.", nullable=False),
            _f("seq", _I32, "Position in the trace, 0-based (key with trace_id).", nullable=False),
            _f("event_id", _STR, "Client-chosen event id, unique within the trace."),
            _f("type", _STR, "file_edit | cmd_run | test_run | commit | rationale_note."),
            _f("ts_client_s", _F64, "Client clock, Unix seconds."),
            _f("ts", _TS, "Client clock as a timestamp."),
            _f("file_path", _STR, "file_edit: path relative to the repo root."),
            _f("diff_unified", _STR, "file_edit: unified diff against the previous state (redacted)."),
            _f("buffer_hash_after", _STR, "file_edit: sha256 of the whole file after the edit."),
            _f("command", _STR, "cmd_run: command line (redacted)."),
            _f("exit_code", _I32, "cmd_run: exit status; negative for a signal."),
            _f("duration_s", _F64, "cmd_run and test_run: wall time in seconds."),
            _f("stdout", _STR, "cmd_run: inline standard output (redacted)."),
            _f("stdout_ref", _STR, "cmd_run: sha256:<hex> of the stored (redacted) output at <lake>/artifacts/<hex>."),
            _f("stderr", _STR, "cmd_run: inline standard error (redacted)."),
            _f("stderr_ref", _STR, "cmd_run: sha256:<hex> of the stored (redacted) error output."),
            _f("framework", _STR, "test_run: test framework, e.g. pytest."),
            _f("passed", _I32, "test_run: tests passed."),
            _f("failed", _I32, "test_run: tests failed."),
            _f("errors", _I32, "test_run: tests errored."),
            _f("skipped", _I32, "test_run: tests skipped."),
            _f("failing_tests", _STRS, "test_run: node ids of failing tests."),
            _f("sha", _STR, "commit: commit sha."),
            _f("message", _STR, "commit: commit message (redacted)."),
            _f("kind", _STR, "rationale_note: plan | hypothesis | observation | decision | next_step."),
            _f("text", _STR, "rationale_note: the note (redacted)."),
            _f("extra", _STR, "Unknown fields of the event, as JSON (null when none)."),
            _f("line_sha256", _STR, "sha256 of the original event line: the chain stays verifiable after redaction."),
            _f("redactions", _STRS, "What was redacted, as field:rule (never the secret)."),
            *_provenance("ingest_date", "Partition: UTC date of ingest."),
        ]
    ),
    keys=("trace_id", "seq"),
    partition_by=("ingest_date",),
    stats_columns=("trace_id", "seq", "ts"),
)

METRICS = TableSpec(
    "metrics",
    "One row per ingested trace: process measures computed from its events.",
    pa.schema(
        [
            _f("trace_id", _STR, "Trace (natural key).", nullable=False),
            _f("duration_s", _F64, "ended_at - started_at."),
            _f("active_s", _F64, "First to last event."),
            _f("n_events", _I32, "Events in the trace."),
            _f("n_file_edits", _I32, "file_edit events."),
            _f("n_cmd_runs", _I32, "cmd_run events."),
            _f("n_test_runs", _I32, "test_run events."),
            _f("n_commits", _I32, "commit events."),
            _f("n_notes", _I32, "rationale_note events."),
            _f("n_plans", _I32, "Notes of kind plan."),
            _f("n_hypotheses", _I32, "Notes of kind hypothesis."),
            _f("n_observations", _I32, "Notes of kind observation."),
            _f("n_decisions", _I32, "Notes of kind decision."),
            _f("n_next_steps", _I32, "Notes of kind next_step."),
            _f("files_touched", _I32, "Distinct files edited."),
            _f("lines_added", _I32, "Lines added over all diffs (churn, not the net patch)."),
            _f("lines_removed", _I32, "Lines removed over all diffs."),
            _f("failed_cmds", _I32, "cmd_run events with a non-zero exit code."),
            _f("test_runs_failing", _I32, "test_run events with failures or errors."),
            _f("test_runs_passing", _I32, "test_run events with passes and no failures or errors."),
            _f("reproduced_before_edit", _BOOL, "A failing test run came before the first edit."),
            _f("notes_before_first_edit", _I32, "Rationale notes before the first edit."),
            _f("time_to_first_edit_s", _F64, "Session start to the first edit."),
            _f("time_to_first_test_s", _F64, "Session start to the first test run."),
            _f("time_to_first_pass_s", _F64, "Session start to the first passing test run (null if none)."),
            _f("final_tests_pass", _BOOL, "The last test run passed (null without test runs)."),
            _f("max_idle_s", _F64, "Longest gap between consecutive events."),
            _f("output_bytes", _I64, "Bytes of inline stdout and stderr."),
            _f("artifact_outputs", _I32, "Outputs stored as artifacts (too large to inline)."),
            *_provenance("ingest_date", "Partition: UTC date of ingest."),
        ]
    ),
    keys=("trace_id",),
    partition_by=("ingest_date",),
    stats_columns=("trace_id",),
)

QUARANTINE = TableSpec(
    "quarantine",
    "One row per rejected attempt to ingest a trace: a stable reason code and a message that names the object.",
    pa.schema(
        [
            _f("trace_id", _STR, "Trace id as found in the inbox (may be unsafe; never used as a path).", nullable=False),
            _f(
                "quarantine_id",
                _STR,
                "Id of this rejection (key with trace_id): hash of the batch and the trace.",
                nullable=False,
            ),
            _f("reason", _STR, "Stable reason code, e.g. chain_mismatch (see schemas/errors.py)."),
            _f("message", _STR, "What is wrong, naming the trace and the object (redacted)."),
            _f("object_key", _STR, "Inbox object at fault, relative to the trace folder, when one is."),
            _f("expectation", _STR, "Great Expectations rule that failed, for reason expectation_failed."),
            _f("participant", _STR, "Pseudonym of the participant when the manifest could be read."),
            _f("raw_prefix", _STR, "Where the raw objects were moved, relative to the lake (null when nothing was kept)."),
            _f(
                "readmitted_by",
                _STR,
                "Batch that re-admitted the trace after a rule change (reprocess); null while it stays quarantined.",
            ),
            _f("detected_at", _TS, "When the batch that rejected the trace started."),
            *_provenance("ingest_date", "Partition: UTC date of the rejection."),
        ]
    ),
    keys=("trace_id", "quarantine_id"),
    partition_by=("ingest_date",),
    stats_columns=("trace_id", "quarantine_id"),
)

QA_RUNS = TableSpec(
    "qa_runs",
    "One row per verification of a trace: the tests run before and after the recorded edits, in a sandbox.",
    pa.schema(
        [
            _f("trace_id", _STR, "Trace verified.", nullable=False),
            _f(
                "qa_id",
                _STR,
                "Hash of snapshot, edits, image, command, timeout and back-end version (key with trace_id): same inputs, same id, never run twice.",
                nullable=False,
            ),
            _f("verdict", _STR, "verified | partial | not_fixed | regression | replay_mismatch | error (see schemas/qa.py)."),
            _f("verdict_reason", _STR, "Why, in a sentence (the edit that did not replay, the run that timed out, ...)."),
            _f("fail_to_pass", _STRS, "Tests failing (or missing) before the edits and passing after."),
            _f("pass_to_pass", _STRS, "Tests passing before and after."),
            _f("pass_to_fail", _STRS, "Tests passing before and failing or missing after."),
            _f(
                "fail_to_fail",
                _STRS,
                "Tests failing before and after (outside the session's targets they do not block verified).",
            ),
            _f("flaky", _STRS, "Tests whose after status changed between re-runs of the after state."),
            _f("before_passed", _I32, "Before run: tests passed."),
            _f("before_failed", _I32, "Before run: tests failed or errored."),
            _f("before_skipped", _I32, "Before run: tests skipped."),
            _f("after_passed", _I32, "After run: tests passed."),
            _f("after_failed", _I32, "After run: tests failed or errored."),
            _f("after_skipped", _I32, "After run: tests skipped."),
            _f("before_exit_code", _I32, "Exit code of the before run (null when killed)."),
            _f("after_exit_code", _I32, "Exit code of the after run (null when killed)."),
            _f("timed_out", _BOOL, "A run hit the manifest's timeout_s and was killed."),
            _f("edits_replayed", _I32, "file_edit events replayed."),
            _f("mismatch_seq", _I32, "seq of the file_edit that did not replay, for replay_mismatch."),
            _f("sandbox_start_s", _F64, "Seconds to set the sandboxes up (all runs)."),
            _f("before_s", _F64, "Seconds of the before run."),
            _f("replay_s", _F64, "Seconds to replay the edits and prepare the workspaces."),
            _f("after_s", _F64, "Seconds of the after run (first one)."),
            _f("backend", _STR, "Sandbox back-end: docker or namespace."),
            _f("backend_version", _STR, "Back-end identity, e.g. docker/20.10/runsc."),
            _f("image", _STR, "Image name (docker) or rootfs (namespace) the tests ran in."),
            _f("image_id", _STR, "Image id or rootfs id."),
            _f("test_command", _STR, "Command run from the repo root."),
            _f("junit_before_ref", _STR, "sha256:<hex> of the before run's report (JUnit XML) at <lake>/artifacts/<hex>."),
            _f("junit_after_ref", _STR, "sha256:<hex> of the after run's report (JUnit XML)."),
            _f("log_before_ref", _STR, "sha256:<hex> of the before run's output (capped)."),
            _f("log_after_ref", _STR, "sha256:<hex> of the after run's output (capped)."),
            _f("runner_version", _STR, "Version of the verification procedure (workspace layout, runner options)."),
            _f("started_at", _TS, "When this verification started (for a re-graded row: when its runs started)."),
            _f("framework", _STR, "Test runner QA ran: pytest | unittest (client/testruns/runners.py)."),
            _f(
                "test_config_changed",
                _BOOL,
                "The edits change test configuration (conftest.py, pytest.ini, the pytest sections of tox.ini, setup.cfg or pyproject.toml); such a change joins the before run too.",
            ),
            _f(
                "before_files",
                _STRS,
                "Files whose final version joined the before run: the session's test files, files the after run collected tests from, changed test configuration.",
            ),
            _f(
                "targeted",
                _STRS,
                "Tests that ran and that the session targeted (its test files, the tests its test runs named or saw fail).",
            ),
            _f(
                "snapshot_tree",
                _STR,
                "Git tree id of the snapshot's files: compare with `git rev-parse <start_commit>^{tree}` in the public repo.",
            ),
            _f("scope", _STR, "targeted (only the tests the session targeted ran) or full (the whole suite): PRT_QA_SCOPE."),
            _f(
                "run_command",
                _STR,
                "The runner invocation QA ran: the test command, narrowed to the targets when the scope is targeted.",
            ),
            _f("env_python", _STR, "Python X.Y the tests ran with: the base nearest to the session's."),
            _f("env_id", _STR, "The environment built from the trace's recorded packages (null: the base as it is)."),
            _f("env_cached", _BOOL, "The environment was already built (by an earlier trace with the same spec)."),
            _f("env_build_s", _F64, "Seconds to get the environment: download and build, or the cache lookup."),
            _f("env_log_ref", _STR, "sha256:<hex> of the environment build's log (downloads and the sandboxed build)."),
            _f("grader_version", _STR, "Version of the grading rules that gave the verdict (tasks/qa/grade.py)."),
            _f("graded_at", _TS, "When the verdict was given; the latest one is the trace's verdict."),
            _f(
                "regraded_from",
                _STR,
                "qa_id of the row this one re-graded from its stored reports, without running (reprocess stage regrade).",
            ),
            *_provenance("run_date", "Partition: UTC date of the verification."),
        ]
    ),
    keys=("trace_id", "qa_id"),
    partition_by=("run_date",),
    stats_columns=("trace_id", "qa_id", "started_at"),
)

_DIMS = ("problem_understanding", "causal_linking", "experiment_design", "efficiency", "reproducibility", "safety_hygiene")

SCORES = TableSpec(
    "scores",
    "One row per trace, judge and QA verdict seen: six rubric scores (0-5), the weighted overall, and why.",
    pa.schema(
        [
            _f("trace_id", _STR, "Trace scored.", nullable=False),
            _f(
                "judge_id",
                _STR,
                "Judge kind + hash of rubric, prompt, model and parameters (key with trace_id and qa_verdict): a new judge version adds rows beside the old.",
                nullable=False,
            ),
            _f("judge_kind", _STR, "heuristic | openai."),
            _f("model", _STR, "Model name for model judges (null for heuristic)."),
            _f(
                "status",
                _STR,
                "scored | unparsed (the reply broke the format; raw_reply kept) | error (the endpoint failed; retried on the next run).",
            ),
            _f("overall", _F64, "Weighted mean of the six dimensions (weights in schemas/rubric.py)."),
            *[_f(d, _F64, f"Rubric dimension {d}, 0-5.") for d in _DIMS],
            *[_f(f"why_{d}", _STR, f"Short rationale for {d}.") for d in _DIMS],
            _f(
                "qa_verdict",
                _STR,
                "Latest QA verdict when the judge scored (null: no QA run yet; key with trace_id and judge_id): a new verdict is scored again, beside the old row.",
            ),
            _f("raw_reply", _STR, "The model's reply, kept when it could not be parsed."),
            _f("error", _STR, "What went wrong, for status error or unparsed."),
            _f("prompt_tokens", _I32, "Tokens sent (model judges)."),
            _f("completion_tokens", _I32, "Tokens received (model judges)."),
            _f("latency_s", _F64, "Seconds the model took (model judges)."),
            _f("judge_version", _STR, "Version of the judge's code and features."),
            _f("scored_at", _TS, "When the score was produced."),
            *_provenance("run_date", "Partition: UTC date of judging."),
        ]
    ),
    keys=("trace_id", "judge_id", "qa_verdict"),
    partition_by=("run_date",),
    stats_columns=("trace_id", "judge_id", "overall"),
)

TABLES: dict[str, TableSpec] = {t.name: t for t in (TRACES, EVENTS, METRICS, QUARANTINE, QA_RUNS, SCORES)}


def render_markdown() -> str:
    """docs/tables.md: every table and column with its meaning, from the specs above."""
    out = [
        "# Lake tables",
        "",
        "Generated from `schemas/tables.py` by `python -m schemas.tables > docs/tables.md`; a test fails when this file drifts.",
        "",
    ]
    for spec in TABLES.values():
        out += [
            f"## `{spec.name}`",
            "",
            spec.description,
            "",
            f"Key: `({', '.join(spec.keys)})` · partitioned by `{', '.join(spec.partition_by)}`",
            "",
            "| column | type | meaning |",
            "| --- | --- | --- |",
        ]
        for field in spec.schema:
            desc = (field.metadata or {}).get(b"description", b"").decode().replace("|", "\\|")
            null = "" if field.nullable else " (not null)"
            out.append(f"| `{field.name}` | {field.type}{null} | {desc} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(render_markdown(), end="")
