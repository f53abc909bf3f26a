"""The verdict is a pure function of the saved reports: literal inputs, literal answers."""

from __future__ import annotations

import pytest

from tasks.grade import ReportError, counts, flaky_tests, grade, parse_junit

XUNIT1 = b"""<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5">
<testcase classname="tests.test_calc" file="tests/test_calc.py" line="3" name="test_add" time="0.001"/>
<testcase classname="tests.test_calc" file="tests/test_calc.py" line="6" name="test_mean"><failure message="assert 3.0 == 2">...</failure></testcase>
<testcase classname="tests.test_calc.TestDivide" file="tests/test_calc.py" line="9" name="test_zero[1-0]"><error message="boom"/></testcase>
<testcase classname="tests.test_calc" file="tests/test_calc.py" line="12" name="test_later"><skipped message="todo"/></testcase>
<testcase classname="test_top" file="test_top.py" line="1" name="test_x"/>
</testsuite></testsuites>"""


def test_parse_xunit1_gives_pytest_node_ids():
    assert parse_junit(XUNIT1) == {
        "tests/test_calc.py::test_add": "passed",
        "tests/test_calc.py::test_mean": "failed",
        "tests/test_calc.py::TestDivide::test_zero[1-0]": "error",
        "tests/test_calc.py::test_later": "skipped",
        "test_top.py::test_x": "passed",
    }
    assert counts(parse_junit(XUNIT1)) == (2, 2, 1)


def test_parse_without_file_attribute_falls_back_to_classname():
    xml = b'<testsuite><testcase classname="tests.test_a" name="test_b"/></testsuite>'
    assert parse_junit(xml) == {"tests/test_a.py::test_b": "passed"}


def test_a_teardown_error_after_a_pass_keeps_the_error():
    xml = b'<testsuite><testcase classname="t" file="t.py" name="test_a"/><testcase classname="t" file="t.py" name="test_a"><error/></testcase></testsuite>'
    assert parse_junit(xml) == {"t.py::test_a": "error"}


@pytest.mark.parametrize(
    "xml",
    [
        pytest.param(b"<testsuite><testcase", id="truncated"),
        pytest.param(b"not xml at all", id="garbage"),
        pytest.param(
            b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
            b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><testsuite><testcase name="&c;"/></testsuite>',
            id="entity-bomb",
        ),
    ],
)
def test_bad_reports_are_errors_not_crashes(xml):
    with pytest.raises(ReportError):
        parse_junit(xml)


F, P, E, S = "failed", "passed", "error", "skipped"


@pytest.mark.parametrize(
    ("before", "after", "verdict", "f2p", "p2f"),
    [
        pytest.param({"a": F, "b": P}, {"a": P, "b": P}, "verified", ("a",), (), id="verified"),
        pytest.param({"a": E, "b": P, "c": S}, {"a": P, "b": P, "c": S}, "verified", ("a",), (), id="error-to-pass-and-skips"),
        pytest.param({"b": P}, {"a": P, "b": P}, "verified", ("a",), (), id="missing-before-counts-as-failing"),
        pytest.param({"a": F, "c": F, "b": P}, {"a": P, "c": F, "b": P}, "partial", ("a",), (), id="partial"),
        pytest.param({"a": F, "b": P}, {"a": F, "b": P}, "not_fixed", (), (), id="not-fixed"),
        pytest.param({"a": P}, {"a": P}, "not_fixed", (), (), id="nothing-was-failing"),
        pytest.param({"a": F, "b": P}, {"a": P, "b": F}, "regression", ("a",), ("b",), id="regression-beats-fix"),
        pytest.param({"a": F, "b": P}, {"a": P}, "regression", ("a",), ("b",), id="deleted-test-is-a-regression"),
    ],
)
def test_verdicts(before, after, verdict, f2p, p2f):
    g = grade(before, after)
    assert (g.verdict, g.fail_to_pass, g.pass_to_fail) == (verdict, f2p, p2f)


def test_replay_and_run_errors_win():
    assert grade({"a": F}, {"a": P}, replay_error="edit seq 4 did not apply").verdict == "replay_mismatch"
    assert grade({"a": F}, None, run_error="after run: timed out").verdict == "error"
    assert grade({"a": F}, {}).verdict == "error"  # nothing collected after the edits


def test_flaky_tests_are_those_that_change_between_runs():
    assert flaky_tests([{"a": P, "b": P}, {"a": P, "b": F}, {"a": P, "b": P}]) == ("b",)
    assert flaky_tests([{"a": P}]) == ()
