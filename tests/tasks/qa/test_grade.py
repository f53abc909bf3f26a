"""The verdict is a pure function of the saved reports: literal inputs, literal answers."""

from __future__ import annotations

import pytest

from client.testruns.reports import RunReport, counts, parse_junit, parse_report
from schemas.errors import ReportError
from tasks.qa.grade import flaky_tests, grade, matches_target

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
    assert counts(parse_report(XUNIT1)) == (2, 2, 1)


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


def report(tests, **facts) -> RunReport:
    return RunReport(tests, framework="pytest", **{"exit_status": 1 if set(tests.values()) & {F, E} else 0, **facts})


@pytest.mark.parametrize(
    ("before", "after", "targets", "verdict", "f2p", "p2f"),
    [
        pytest.param({"a": F, "b": P}, {"a": P, "b": P}, (), "verified", ("a",), (), id="verified"),
        pytest.param(
            {"a": E, "b": P, "c": S}, {"a": P, "b": P, "c": S}, (), "verified", ("a",), (), id="error-to-pass-and-skips"
        ),
        pytest.param({"b": P}, {"a": P, "b": P}, (), "verified", ("a",), (), id="missing-before-counts-as-failing"),
        pytest.param(
            {"a": F, "c": F, "b": P}, {"a": P, "c": F, "b": P}, (), "verified", ("a",), (), id="untargeted-fail-to-fail"
        ),
        pytest.param(
            {"a": F, "c": F, "b": P}, {"a": P, "c": F, "b": P}, ("c",), "partial", ("a",), (), id="targeted-still-failing"
        ),
        pytest.param({"a": F, "c": F}, {"a": P}, ("c",), "partial", ("a",), (), id="targeted-failing-then-gone"),
        pytest.param({"a": F, "c": P}, {"a": P, "c": S}, ("c",), "partial", ("a",), (), id="targeted-newly-skipped"),
        pytest.param({"a": F, "b": P}, {"a": F, "b": P}, ("a",), "not_fixed", (), (), id="not-fixed"),
        pytest.param({"a": P}, {"a": P}, (), "not_fixed", (), (), id="nothing-was-failing"),
        pytest.param({"a": F, "b": P}, {"a": P, "b": F}, (), "regression", ("a",), ("b",), id="regression-beats-fix"),
        pytest.param({"a": F, "b": P}, {"a": P}, (), "regression", ("a",), ("b",), id="deleted-test-is-a-regression"),
        pytest.param({"a": F}, {"a": P}, ("zzz::nope",), "error", (), (), id="targeted-tests-never-ran"),
    ],
)
def test_verdicts(before, after, targets, verdict, f2p, p2f):
    g = grade(report(before), report(after), targets=targets)
    assert (g.verdict, g.fail_to_pass, g.pass_to_fail) == (verdict, f2p, p2f), g.reason


@pytest.mark.parametrize(
    ("target", "test_id", "hit"),
    [
        ("tests/test_a.py", "tests/test_a.py::test_x", True),
        ("tests/test_a.py::test_x", "tests/test_a.py::test_x[1-2]", True),
        ("tests/test_a.py::TestK", "tests/test_a.py::TestK::test_x", True),
        ("tests", "tests/sub/test_a.py::test_x", True),
        ("./tests/", "tests/test_a.py::test_x", True),
        ("tests.test_a.TestK.test_x", "tests/test_a.py::TestK::test_x", True),  # unittest's spelling of a pytest test
        ("tests/test_a.py", "tests.test_a.TestK.test_x", True),
        ("tests/test_a.py::test_x", "tests/test_a.py::test_xy", False),
        ("tests/test_a.py", "tests/test_ab.py::test_x", False),
        ("test", "tests/test_a.py::test_x", False),
    ],
)
def test_targets_match_tests_by_file_class_folder_and_spelling(target, test_id, hit):
    assert matches_target(test_id, target) is hit


@pytest.mark.parametrize(
    ("before", "after", "reason"),
    [
        pytest.param(report({}, exit_status=2), report({"a": P}), "before run: pytest was interrupted", id="exit-2"),
        pytest.param(report({"a": F}), report({}, exit_status=4), "after run: pytest could not start", id="exit-4"),
        pytest.param(report({"a": F}), report({}, exit_status=5), "after run: pytest collected no tests", id="exit-5"),
        pytest.param(report({"a": F}, exit_status=3), report({"a": P}), "before run: pytest hit an internal error", id="exit-3"),
        pytest.param(report({}, exit_status=0), report({"a": P}), "before run: no tests ran", id="nothing-before"),
        pytest.param(
            report({"a": F}, collection_errors=("tests/test_b.py: ModuleNotFoundError: No module named 'lib'",)),
            report({"a": P, "b": P}),
            "before run: 1 test file(s) could not be collected, e.g. tests/test_b.py: ModuleNotFoundError",
            id="collection-error-in-a-file-the-session-did-not-change",
        ),
        pytest.param(
            report({"a": F}),
            report({"a": P}, collection_errors=("tests/test_b.py: ImportError",)),
            "after run: 1 test file(s) could not be collected",
            id="collection-error-after",
        ),
        pytest.param(
            report({"a": F}),
            report({"a": P}, tampered=("a (call raised AssertionError)",)),
            "a conftest or plugin changed",
            id="tampered",
        ),
        pytest.param(
            report({"a": F}),
            report({"a": P}, process_exit=0, exit_status=1),
            "exited 0, but its runner recorded 1",
            id="exit-mismatch",
        ),
    ],
)
def test_runs_that_never_really_ran_are_errors_not_verdicts(before, after, reason):
    g = grade(before, after)
    assert g.verdict == "error" and reason in g.reason, g.reason


def test_the_sessions_new_test_file_may_fail_to_collect_before_the_fix():
    # The regression test imports what the fix adds: before the fix the file cannot be imported.
    before = report(
        {"tests/test_old.py::test_y": P}, collection_errors=("tests/test_new.py: ImportError: cannot import name 'median'",)
    )
    after = report({"tests/test_old.py::test_y": P, "tests/test_new.py::test_median": P})
    g = grade(before, after, before_files=["tests/test_new.py"], targets=["tests/test_new.py"])
    assert (g.verdict, g.fail_to_pass) == ("verified", ("tests/test_new.py::test_median",))
    assert grade(before, after).verdict == "error"  # a file the session did not write: the environment is broken
    only_new = report({}, collection_errors=before.collection_errors)
    assert grade(only_new, after, before_files=["tests/test_new.py"]).verdict == "verified"


def test_legacy_reports_grade_by_the_process_exit_code():
    xml = b"""<testsuites><testsuite name="pytest"><testcase classname="" name="tests.test_bad" file="tests/test_bad.py"><error message="collection failure">E   ModuleNotFoundError: No module named 'nosuchmod'</error></testcase></testsuite></testsuites>"""
    r = parse_report(xml, exit_code=2)
    assert r.tests == {} and r.collection_errors == ("tests/test_bad.py: ModuleNotFoundError: No module named 'nosuchmod'",)
    g = grade(r, r)
    assert g.verdict == "error" and "interrupted" in g.reason and "nosuchmod" in g.reason


def test_reports_of_the_harness_carry_the_runners_facts(tmp_path):
    from client.testruns.harness.prt_junit import write_report

    write_report(
        str(tmp_path), "pytest", "8.0", 1, 2,
        {"tests/t.py::test_a": ("passed", "tests/t.py", 0.1, ""), "tests/t.py::K::test_b[x.y]": ("failed", "tests/t.py", 0.2, "assert 0\x00")},
        ["tests/u.py: ImportError: nope"], ["tests/t.py::test_c (call raised AssertionError)"],
    )  # fmt: skip
    (path,) = tmp_path.iterdir()
    r = parse_report(path.read_bytes(), exit_code=1)
    assert r.tests == {"tests/t.py::test_a": P, "tests/t.py::K::test_b[x.y]": F}
    assert r.files == {"tests/t.py::test_a": "tests/t.py", "tests/t.py::K::test_b[x.y]": "tests/t.py"}
    assert (r.framework, r.exit_status, r.process_exit, r.collected) == ("pytest", 1, 1, 2)
    assert r.collection_errors == ("tests/u.py: ImportError: nope",) and len(r.tampered) == 1


def test_replay_and_run_errors_win():
    assert grade(report({"a": F}), report({"a": P}), replay_error="edit seq 4 did not apply").verdict == "replay_mismatch"
    assert grade(report({"a": F}), None, run_error="after run: timed out").verdict == "error"


def test_flaky_tests_are_those_that_change_between_runs():
    assert flaky_tests([{"a": P, "b": P}, {"a": P, "b": F}, {"a": P, "b": P}]) == ("b",)
    assert flaky_tests([{"a": P}]) == ()
