"""Grade a verification from its saved evidence: the two runs' reports in, verdict out.

Pure functions of the saved reports (like the SWE-bench harness grades from its logs), so a run
can be re-graded without running anything: `grade(parse_report(before), parse_report(after))` (client/testruns/reports.py).

The rules, in order (GRADER_VERSION; schemas/qa.py says what each verdict means):

1. an edit that does not replay                                  -> replay_mismatch
2. a run that cannot be trusted or never really ran              -> error, naming it:
   no report, a timeout, a sandbox failure; the runner's own failure (pytest exit status 2, 3,
   4 or 5); no tests at all; a file that could not be collected (in the before run only files
   whose final version joined it may fail: a regression test that imports what the fix adds);
   an outcome a conftest or plugin changed; and, when the session targeted tests, none of them ran
3. a test that passed before fails, errors or is gone after (PASS_TO_FAIL)   -> regression
4. a test fixed (FAIL_TO_PASS), but a test the session targeted is not passing after -> partial
5. a test fixed                                                   -> verified
6. nothing fixed                                                  -> not_fixed

FAIL_TO_FAIL tests outside the session's targets (a test that needs a tool the sandbox lacks)
are reported and do not block `verified`. The session's targets are its own test files and the
tests its test runs named or saw fail (tasks/qa/store.py gathers them from its events).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from client.testruns.reports import RunReport
from client.testruns.runners import RUNNERS
from schemas.qa import TestStatus, Verdict

__all__ = ["GRADER_VERSION", "Grade", "flaky_tests", "grade", "matches_target"]

GRADER_VERSION = "2"
"""Bump when the rules change: `prt reprocess --stages regrade` re-grades stored reports with them."""


def _canonical(name: str) -> str:
    """One spelling for a test, file or folder, whichever runner named it: tests/test_a.py::T::t,
    tests.test_a.T.t (unittest) and tests/test_a.py -> tests.test_a."""
    path, sep, rest = name.removeprefix("./").partition("::")
    path = path[:-3] if path.endswith(".py") else path.rstrip("/")
    return path.replace("/", ".") + ("." + rest.replace("::", ".") if sep else "")


def matches_target(test_id: str, target: str) -> bool:
    """Whether `test_id` is `target` or lies inside it (a file, folder, class or parametrized test)."""
    t, x = _canonical(test_id), _canonical(target)
    return t == x or t.startswith(x + ".") or t.startswith(x + "[")


@dataclass(frozen=True)
class Grade:
    verdict: Verdict
    reason: str
    fail_to_pass: tuple[str, ...] = ()
    pass_to_pass: tuple[str, ...] = ()
    pass_to_fail: tuple[str, ...] = ()
    fail_to_fail: tuple[str, ...] = ()
    flaky: tuple[str, ...] = ()
    targeted: tuple[str, ...] = ()
    """Tests that ran and that the session targeted."""


def _trouble(report: RunReport, which: str, may_fail_to_collect: frozenset[str]) -> str | None:
    """Why a run cannot be graded as a run, or None."""
    if report.tampered:
        return (
            f"{which} run: a conftest or plugin changed the outcome of {len(report.tampered)} test(s), "
            f"e.g. {report.tampered[0]}; the results cannot be trusted"
        )
    status = report.exit_status if report.exit_status is not None else report.process_exit
    if report.exit_status is not None and report.process_exit is not None and report.exit_status != report.process_exit:
        return f"{which} run: the test process exited {report.process_exit}, but its runner recorded {report.exit_status}"
    runner = RUNNERS.get(report.framework or "")
    if status is not None and status not in (0, 1):
        meaning = (runner.runner_failures.get(status) if runner else None) or f"the test runner exited {status}"
        first = f" ({report.collection_errors[0]})" if report.collection_errors else ""
        return f"{which} run: {meaning}{first}"
    allowed = {_canonical(p) for p in may_fail_to_collect}
    broken = [e for e in report.collection_errors if _canonical(e.split(": ", 1)[0]) not in allowed]
    if broken:
        return f"{which} run: {len(broken)} test file(s) could not be collected, e.g. {broken[0]}"
    # A before run whose only tests are the session's own, not importable yet, ran what it could.
    if not report.tests and (which == "after" or not report.collection_errors):
        return f"{which} run: no tests ran"
    return None


def grade(
    before: RunReport | None,
    after: RunReport | None,
    *,
    targets: Iterable[str] = (),
    before_files: Iterable[str] = (),
    replay_error: str | None = None,
    run_error: str | None = None,
    flaky: tuple[str, ...] = (),
) -> Grade:
    """The verdict of one verification (the rules are in the module docstring).

    targets: what the session targeted (test ids, files, folders). before_files: files whose
    final version joined the before run; only they may fail to collect there.
    """
    if replay_error:
        return Grade("replay_mismatch", replay_error)
    if run_error or before is None or after is None:
        return Grade("error", run_error or "a test run produced no report")
    trouble = _trouble(after, "after", frozenset()) or _trouble(before, "before", frozenset(before_files))
    if trouble:
        return Grade("error", trouble)
    targets = sorted(set(targets))
    tests = sorted(set(before.tests) | set(after.tests))
    targeted = tuple(t for t in tests if any(matches_target(t, x) for x in targets))
    if targets and not targeted:
        shown = ", ".join(targets[:3]) + (", ..." if len(targets) > 3 else "")
        return Grade(
            "error",
            f"none of the tests the session targeted ({shown}) ran in QA; check qa.test_command",
            flaky=flaky,
        )
    passing_before = {t for t, s in before.tests.items() if s == "passed"}
    f2p = tuple(t for t in tests if t not in passing_before and after.tests.get(t) == "passed")
    p2p = tuple(t for t in tests if t in passing_before and after.tests.get(t) == "passed")
    p2f = tuple(t for t in tests if t in passing_before and after.tests.get(t) in ("failed", "error", None))
    f2f = tuple(t for t in tests if t not in passing_before and after.tests.get(t) in ("failed", "error"))
    lists = {
        "fail_to_pass": f2p,
        "pass_to_pass": p2p,
        "pass_to_fail": p2f,
        "fail_to_fail": f2f,
        "flaky": flaky,
        "targeted": targeted,
    }
    if p2f:
        return Grade("regression", f"{len(p2f)} test(s) passed before the edits and fail after, e.g. {p2f[0]}", **lists)
    unfixed = tuple(t for t in targeted if _not_passing_after(t, before, after))
    if f2p and unfixed:
        return Grade(
            "partial",
            f"{len(f2p)} test(s) fixed, but {len(unfixed)} the session targeted still do not pass, e.g. {unfixed[0]}",
            **lists,
        )
    if f2p:
        rest = f"; {len(f2f)} other test(s) fail before and after" if f2f else ""
        return Grade("verified", f"{len(f2p)} test(s) fixed, none broken, every targeted test passes{rest}", **lists)
    return Grade("not_fixed", f"no failing test passes after the edits ({len(f2f)} still failing)", **lists)


def _not_passing_after(test: str, before: RunReport, after: RunReport) -> bool:
    status = after.tests.get(test)
    if status in ("failed", "error"):
        return True
    if status is None:
        return test in before.tests  # it ran before and is gone
    return status == "skipped" and before.tests.get(test) != "skipped"


def flaky_tests(runs: list[dict[str, TestStatus]]) -> tuple[str, ...]:
    """Tests whose status differs between repeated runs of the same state."""
    if len(runs) < 2:
        return ()
    names = set().union(*runs)
    return tuple(sorted(t for t in names if len({r.get(t) for r in runs}) > 1))
