"""Test reports: what one test run says, read from JUnit XML (producer-safe: the recorder and QA share it).

The reporters of client/testruns/harness/ write JUnit XML whose <testcase> elements carry the
exact test id and file, and whose <properties> carry the runner's own facts (exit status, tests
collected, collection errors, outcomes a conftest changed). Any other runner's plain JUnit XML
reads too (pytest's own --junitxml: a `collection failure` error is a file that could not be
collected, not a test).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from schemas.errors import ReportError
from schemas.qa import TestStatus

__all__ = ["MAX_REPORT_BYTES", "ReportError", "RunReport", "TestStatus", "counts", "merge_reports", "parse_junit", "parse_report"]

MAX_REPORT_BYTES = 32 * 2**20
_WORST = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


@dataclass(frozen=True)
class RunReport:
    """What one test run says: per-test statuses and the runner's own facts (None: not recorded)."""

    tests: dict[str, TestStatus]
    files: dict[str, str] = field(default_factory=dict)
    """Test id -> the file it came from, relative to the repo root (where the report says)."""
    framework: str | None = None
    exit_status: int | None = None
    """The runner's exit status as it recorded it (pytest's ExitCode)."""
    process_exit: int | None = None
    """The exit code of the test process, as the sandbox saw it."""
    collected: int | None = None
    collection_errors: tuple[str, ...] = ()
    """"path: message" for each file or module that could not be collected."""
    tampered: tuple[str, ...] = ()
    """Tests whose outcome a conftest or plugin changed (a raised phase reported as passed)."""


def _node_id(case) -> str:
    """A pytest node id from a plain xunit1 testcase (pytest's own --junitxml)."""
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


def _status(case) -> TestStatus:
    tags = {child.tag for child in case}
    if "error" in tags:
        return "error"
    if "failure" in tags:
        return "failed"
    if "skipped" in tags:
        return "skipped"
    return "passed"


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def parse_report(xml: bytes, *, exit_code: int | None = None) -> RunReport:
    """A RunReport from JUnit XML: the reporters of client/testruns/harness/ (exact ids, the runner's facts as
    properties) or any runner's plain JUnit XML (pytest's own: a `collection failure` error is a
    file that could not be collected, not a test). Parsed with defusedxml: reports come from
    untrusted code, and entity bombs must not reach the host's parser."""
    if len(xml) > MAX_REPORT_BYTES:
        raise ReportError(f"the test report is {len(xml)} bytes, over the {MAX_REPORT_BYTES}-byte limit")
    try:
        root = ElementTree.fromstring(xml)
    except (ElementTree.ParseError, DefusedXmlException) as exc:
        raise ReportError(f"the test report is not valid XML ({exc})") from None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests: dict[str, TestStatus] = {}
    files: dict[str, str] = {}
    props: dict[str, list[str]] = {}
    framework = None
    collection_errors: list[str] = []
    for suite in suites:
        framework = framework or suite.get("name")
        for p in suite.iter("property"):
            props.setdefault(p.get("name", ""), []).append(p.get("value", ""))
        for case in suite.iter("testcase"):
            status = _status(case)
            error = case.find("error")
            if error is not None and error.get("message") == "collection failure" and case.get("id") is None:
                collection_errors.append(f"{case.get('file') or case.get('name', '?')}: {_last_error_line(error.text)}")
                continue
            node = case.get("id") or _node_id(case)
            # A test reported twice (an error in teardown after a pass) keeps its worst status.
            if node not in tests or _WORST[status] > _WORST[tests[node]]:
                tests[node] = status
            if case.get("file"):
                files[node] = case.get("file", "")
    framework = (props.get("prt.framework") or [framework])[0]
    return RunReport(
        tests,
        files,
        framework,
        exit_status=_int((props.get("prt.exit_status") or [None])[0]),
        process_exit=exit_code,
        collected=_int((props.get("prt.collected") or [None])[0]),
        collection_errors=tuple(collection_errors + props.get("prt.collection_error", [])),
        tampered=tuple(props.get("prt.tampered", [])),
    )


def _last_error_line(text: str | None) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    errors = [ln[1:].strip() for ln in lines if ln.startswith("E ")]
    return (errors[-1] if errors else lines[-1] if lines else "")[:300]


def merge_reports(main: RunReport, others: Iterable[RunReport]) -> RunReport:
    """The main process's report with its workers' tests (pytest-xdist); worst status wins."""
    tests, files = dict(main.tests), dict(main.files)
    errors, tampered = list(main.collection_errors), list(main.tampered)
    for r in others:
        for t, s in r.tests.items():
            if t not in tests or _WORST[s] > _WORST[tests[t]]:
                tests[t] = s
        files.update(r.files)
        errors += r.collection_errors
        tampered += r.tampered
    return replace(main, tests=tests, files=files, collection_errors=tuple(errors), tampered=tuple(tampered))


def parse_junit(xml: bytes) -> dict[str, TestStatus]:
    """Per-test statuses of a JUnit XML report."""
    return parse_report(xml).tests


def counts(report: RunReport | None) -> tuple[int | None, int | None, int | None]:
    """(passed, failed or errored, skipped)."""
    if report is None:
        return None, None, None
    values = list(report.tests.values())
    return values.count("passed"), values.count("failed") + values.count("error"), values.count("skipped")
