"""Grade a verification from its saved evidence: JUnit reports in, verdict out.

Pure functions of the saved reports (like the SWE-bench harness grades from its logs), so a run
can be re-graded without re-running anything: `grade(parse_junit(before), parse_junit(after))`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from schemas.qa import TestStatus, Verdict

__all__ = ["Grade", "ReportError", "counts", "flaky_tests", "grade", "parse_junit"]

MAX_REPORT_BYTES = 32 * 2**20


class ReportError(ValueError):
    """A JUnit report is missing, too large, or not a report."""


def _node_id(case) -> str:
    name = case.get("name", "?")
    classname = case.get("classname", "")
    file = case.get("file")
    if file:
        module = file.removesuffix(".py").replace("/", ".")
        rest = classname[len(module) + 1 :] if classname.startswith(module + ".") else ""
        return "::".join([file, *([p for p in rest.split(".") if p]), name])
    if classname:
        return classname.replace(".", "/") + ".py::" + name
    return name


def parse_junit(xml: bytes) -> dict[str, TestStatus]:
    """Per-test statuses from a JUnit XML report (pytest's xunit1 family gives exact node ids).

    Parsed with defusedxml: reports come from untrusted code, and entity bombs must not reach the host's parser.
    """
    if len(xml) > MAX_REPORT_BYTES:
        raise ReportError(f"the JUnit report is {len(xml)} bytes, over the {MAX_REPORT_BYTES}-byte limit")
    try:
        root = ElementTree.fromstring(xml)
    except (ElementTree.ParseError, DefusedXmlException) as exc:
        raise ReportError(f"the JUnit report is not valid XML ({exc})") from None
    statuses: dict[str, TestStatus] = {}
    for case in root.iter("testcase"):
        tags = {child.tag for child in case}
        status: TestStatus = "passed"
        if "error" in tags:
            status = "error"
        elif "failure" in tags:
            status = "failed"
        elif "skipped" in tags:
            status = "skipped"
        node = _node_id(case)
        # A test reported twice (an error in teardown after a pass) keeps its worst status.
        if statuses.get(node) not in ("failed", "error"):
            statuses[node] = status
    return statuses


def counts(report: dict[str, TestStatus] | None) -> tuple[int | None, int | None, int | None]:
    """(passed, failed or errored, skipped)."""
    if report is None:
        return None, None, None
    values = list(report.values())
    return values.count("passed"), values.count("failed") + values.count("error"), values.count("skipped")


@dataclass(frozen=True)
class Grade:
    verdict: Verdict
    reason: str
    fail_to_pass: tuple[str, ...] = ()
    pass_to_pass: tuple[str, ...] = ()
    pass_to_fail: tuple[str, ...] = ()
    fail_to_fail: tuple[str, ...] = ()
    flaky: tuple[str, ...] = field(default=())


def grade(
    before: dict[str, TestStatus] | None,
    after: dict[str, TestStatus] | None,
    *,
    replay_error: str | None = None,
    run_error: str | None = None,
    flaky: tuple[str, ...] = (),
) -> Grade:
    """The verdict of one verification (see schemas/qa.py for what each verdict means)."""
    if replay_error:
        return Grade("replay_mismatch", replay_error)
    if run_error or before is None or after is None:
        return Grade("error", run_error or "a test run produced no report")
    if not after:
        return Grade("error", "the after run collected no tests")
    passing_before = {t for t, s in before.items() if s == "passed"}
    tests = sorted(set(before) | set(after))
    f2p = tuple(t for t in tests if t not in passing_before and after.get(t) == "passed")
    p2p = tuple(t for t in tests if t in passing_before and after.get(t) == "passed")
    p2f = tuple(t for t in tests if t in passing_before and after.get(t) in ("failed", "error", None))
    f2f = tuple(t for t in tests if t not in passing_before and after.get(t) in ("failed", "error"))
    lists = {"fail_to_pass": f2p, "pass_to_pass": p2p, "pass_to_fail": p2f, "fail_to_fail": f2f, "flaky": flaky}
    if p2f:
        return Grade("regression", f"{len(p2f)} test(s) passed before the edits and fail after, e.g. {p2f[0]}", **lists)
    if f2p and f2f:
        return Grade("partial", f"{len(f2p)} test(s) fixed, {len(f2f)} still failing, e.g. {f2f[0]}", **lists)
    if f2p:
        return Grade("verified", f"{len(f2p)} test(s) fixed and every test passes after the edits", **lists)
    return Grade("not_fixed", f"no failing test passes after the edits ({len(f2f)} still failing)", **lists)


def flaky_tests(runs: list[dict[str, TestStatus]]) -> tuple[str, ...]:
    """Tests whose status differs between repeated runs of the same state."""
    if len(runs) < 2:
        return ()
    names = set().union(*runs)
    return tuple(sorted(t for t in names if len({r.get(t) for r in runs}) > 1))
