"""Verify one trace: replay its edits over the repo snapshot and run the tests before and after, sandboxed.

    before  the snapshot at start_commit, plus the session's final version of its test files
            (like SWE-bench's test patch: a regression test written during the session counts)
    replay  every file_edit applied in order on the host, as text (never executed); each must
            apply and hash to its buffer_hash_after, else the verdict is replay_mismatch
    after   the snapshot with every edit applied
    grade   per-test statuses from each run's JUnit XML -> FAIL_TO_PASS, PASS_TO_PASS, verdict

Test code only ever runs inside the sandbox. The JUnit reports and the (capped) logs are kept as
artifacts, so a verdict can be re-graded from them (tasks/grade.py) without running anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from schemas.types import unsafe_path_reason
from schemas.version import CODE_VERSION
from tasks.grade import ReportError, counts, flaky_tests, grade, parse_junit
from tasks.replay import EditSpec, ReplayError, replay_edits
from tasks.sandbox import RunResult, RunSpec, Sandbox

__all__ = ["RUNNER_VERSION", "QaInput", "QaOutcome", "is_test_file", "qa_id", "verify_trace"]

RUNNER_VERSION = "1"
"""Bump when the procedure changes (workspace layout, pytest options): every trace re-verifies."""
JUNIT = ".prt-junit.xml"
_TEST_FILE = re.compile(r"(^|/)(tests?/|test_[^/]*\.py$|[^/]*_test\.py$|conftest\.py$)")


@dataclass(frozen=True)
class QaInput:
    trace_id: str
    snapshot_ref: str
    test_command: str
    timeout_s: float
    image: str | None
    edits: tuple[EditSpec, ...]


@dataclass
class QaOutcome:
    row: dict
    artifacts: dict[str, bytes] = field(default_factory=dict)
    """hex -> bytes: JUnit reports and logs, stored under <lake>/artifacts/."""


def is_test_file(path: str) -> bool:
    """Files pytest would collect as tests, their conftest.py, or anything under a tests/ folder."""
    return bool(_TEST_FILE.search(path))


def qa_id(inp: QaInput, backend_version: str, image_id: str) -> str:
    """Same snapshot, edits, image, command and back-end: same id, so nothing is verified twice."""
    key = {
        "snapshot": inp.snapshot_ref,
        "edits": [
            [e.seq, e.file_path, e.buffer_hash_after, hashlib.sha256(e.diff_unified.encode()).hexdigest()] for e in inp.edits
        ],
        "image": image_id,
        "command": inp.test_command,
        "timeout_s": inp.timeout_s,
        "backend": backend_version,
        "runner": RUNNER_VERSION,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def _snapshot_dir(snapshot: bytes, workdir: Path) -> Path:
    """The snapshot extracted once per content (host side, files only), reused by every run."""
    digest = hashlib.sha256(snapshot).hexdigest()
    cache = workdir / "prt-snapshots"
    target = cache / digest
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=cache))
    with tarfile.open(fileobj=io.BytesIO(snapshot), mode="r:gz") as tar:
        members = []
        for m in tar.getmembers():
            name = m.name.removeprefix("./").rstrip("/")
            if not name or (m.isdir() and name == "."):
                continue
            if not (m.isreg() or m.isdir()) or unsafe_path_reason(name):
                raise ValueError(f"snapshot entry {m.name!r} is not a safe file")  # ingest already refused these
            members.append(m)
        tar.extractall(tmp, members=members, filter="data")
    try:
        os.rename(tmp, target)
    except OSError:  # another run extracted it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _read_originals(base: Path, paths: set[str]) -> dict[str, bytes]:
    out = {}
    for p in paths:
        f = base / p
        if f.is_file() and not f.is_symlink():
            out[p] = f.read_bytes()
    return out


def _workspace_from(ws: Path, base: Path, overlay: dict[str, bytes]) -> None:
    shutil.copytree(base, ws, dirs_exist_ok=True, symlinks=False)
    for path, data in overlay.items():
        target = ws / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (ws / JUNIT).unlink(missing_ok=True)


def _run_tests(
    sandbox: Sandbox, base: Path, overlay: dict[str, bytes], inp: QaInput
) -> tuple[RunResult, dict | None, bytes | None, str | None]:
    """One sandboxed run over base+overlay: (result, statuses, junit bytes, error)."""
    with sandbox.workspace() as ws:
        _workspace_from(ws, base, overlay)
        sandbox.prepare_workspace(ws)
        env = {
            "PYTEST_ADDOPTS": f"-p no:cacheprovider -o junit_family=xunit1 --junitxml=/work/{JUNIT}",
            "PYTHONDONTWRITEBYTECODE": "1",
            "CI": "1",
        }
        result = sandbox.run(RunSpec(ws, inp.test_command, inp.timeout_s, env=env, image=inp.image))
        if result.error:
            return result, None, None, f"the sandbox failed: {result.error}"
        if result.timed_out:
            return result, None, None, f"the tests ran past the {inp.timeout_s:.0f} s timeout and were killed"
        report = ws / JUNIT
        if not report.is_file() or report.is_symlink():
            last = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or [""]
            return (
                result,
                None,
                None,
                f"the test command exited {result.exit_code} without writing a JUnit report (is it pytest?) {last[0][:200]}".rstrip(),
            )
        if report.stat().st_size > 32 * 2**20:
            return result, None, None, "the JUnit report is over 32 MiB"
        xml = report.read_bytes()
        try:
            return result, parse_junit(xml), xml, None
        except ReportError as exc:
            return result, None, xml, str(exc)


def _log(result: RunResult) -> bytes:
    return f"$ exit {result.exit_code} (timed out: {result.timed_out})\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}\n".encode()


def verify_trace(
    inp: QaInput,
    snapshot: bytes,
    sandbox: Sandbox,
    *,
    reruns: int = 0,
    run_id: str,
    batch_id: str,
    workdir: Path | None = None,
) -> QaOutcome:
    """Run one verification and return its qa_runs row and evidence. Never raises for the trace's own failures."""
    started = datetime.now().astimezone()
    workdir = workdir or Path(sandbox.settings.workdir or tempfile.gettempdir())
    image_id = sandbox.image_id(inp.image)
    row: dict = {
        "trace_id": inp.trace_id,
        "qa_id": qa_id(inp, sandbox.version(), image_id),
        "backend": sandbox.name,
        "backend_version": sandbox.version(),
        "image": inp.image or (sandbox.settings.image if sandbox.name == "docker" else sandbox.settings.rootfs),
        "image_id": image_id,
        "test_command": inp.test_command,
        "edits_replayed": 0,
        "runner_version": RUNNER_VERSION,
        "started_at": started,
        "run_date": started.date(),
        "pipeline_run_id": run_id,
        "batch_id": batch_id,
        "code_version": CODE_VERSION,
        "timed_out": False,
        "sandbox_start_s": 0.0,
    }
    artifacts: dict[str, bytes] = {}

    def keep(data: bytes) -> str:
        h = hashlib.sha256(data).hexdigest()
        artifacts[h] = data
        return f"sha256:{h}"

    t0 = time.monotonic()
    base = _snapshot_dir(snapshot, workdir)
    originals = _read_originals(base, {e.file_path for e in inp.edits})
    try:
        final = replay_edits(originals, inp.edits)
    except ReplayError as exc:
        g = grade(None, None, replay_error=str(exc))
        row.update(
            _grade_columns(g),
            mismatch_seq=exc.edit.seq,
            edits_replayed=[e.seq for e in inp.edits].index(exc.edit.seq),
            replay_s=time.monotonic() - t0,
        )
        return QaOutcome(row, artifacts)
    row["edits_replayed"] = len(inp.edits)
    tests_only = {p: d for p, d in final.items() if is_test_file(p)}
    row["replay_s"] = time.monotonic() - t0

    before, before_report, before_xml, before_err = _run_tests(sandbox, base, tests_only, inp)
    after, after_report, after_xml, after_err = _run_tests(sandbox, base, final, inp)
    reports = [after_report] if after_report is not None else []
    starts = before.start_s + after.start_s
    for _ in range(reruns if after_report is not None else 0):
        again, again_report, _, _ = _run_tests(sandbox, base, final, inp)
        starts += again.start_s
        if again_report is not None:
            reports.append(again_report)

    run_error = (before_err and f"before run: {before_err}") or (after_err and f"after run: {after_err}")
    g = grade(before_report, after_report, run_error=run_error, flaky=flaky_tests(reports))
    bp, bf, bs = counts(before_report)
    ap, af, as_ = counts(after_report)
    row.update(
        _grade_columns(g),
        before_passed=bp,
        before_failed=bf,
        before_skipped=bs,
        after_passed=ap,
        after_failed=af,
        after_skipped=as_,
        before_exit_code=before.exit_code,
        after_exit_code=after.exit_code,
        timed_out=before.timed_out or after.timed_out,
        sandbox_start_s=starts,
        before_s=before.duration_s,
        after_s=after.duration_s,
        junit_before_ref=keep(before_xml) if before_xml else None,
        junit_after_ref=keep(after_xml) if after_xml else None,
        log_before_ref=keep(_log(before)),
        log_after_ref=keep(_log(after)),
    )
    return QaOutcome(row, artifacts)


def _grade_columns(g) -> dict:
    return {
        "verdict": g.verdict,
        "verdict_reason": g.reason,
        "fail_to_pass": list(g.fail_to_pass),
        "pass_to_pass": list(g.pass_to_pass),
        "pass_to_fail": list(g.pass_to_fail),
        "fail_to_fail": list(g.fail_to_fail),
        "flaky": list(g.flaky),
    }
