"""Grading attacks, run on every sandbox back-end like the conformance suite: sessions built to come
out `verified` without fixing anything, and runs that never really ran. None may end `verified`;
honest fixes still must.

Each case is a small repo, the session's edits (path -> new text), its test command and what its
own test runs targeted; `verify_trace` runs it for real in the sandbox.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import pytest

from client.diffs import EditSpec, unified_diff
from client.snapshot import snapshot_dir
from schemas.settings import SandboxSettings
from tasks.qa.verify import QaInput, verify_trace
from tests.conftest import SANDBOX_PARAMS, sandbox_or_skip

CALC = {
    "calc.py": "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n",
    "tests/test_calc.py": (
        "from calc import add, mul\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n"
    ),
}
BROKEN_ADD = "tests/test_calc.py::test_add"
FIX = {"calc.py": CALC["calc.py"].replace("a - b", "a + b")}
COMMENT = {"calc.py": CALC["calc.py"] + "# prt-ok\n"}  # an edit that fixes nothing

FLIP_CONFTEST = """import pathlib
import pytest


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if "# prt-ok" in pathlib.Path("calc.py").read_text():
        outcome.get_result().outcome = "passed"
"""
FORGED = (
    '<testsuites><testsuite name="pytest"><properties><property name="prt.framework" value="pytest"/>'
    '<property name="prt.exit_status" value="0"/></properties>'
    '<testcase id="tests/test_calc.py::test_add" file="tests/test_calc.py"/>'
    '<testcase id="tests/test_calc.py::test_mul" file="tests/test_calc.py"/></testsuite></testsuites>'
)

UNITTEST_REPO = {
    "calc.py": CALC["calc.py"],
    "tests/__init__.py": "",
    "tests/test_calc.py": (
        "import unittest\n\nfrom calc import add, mul\n\n\nclass TestCalc(unittest.TestCase):\n"
        "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n    def test_mul(self):\n        self.assertEqual(mul(2, 3), 6)\n"
    ),
}

# name: (repo files, edits, test command, the session's targets, expected verdict, words in the reason)
CASES = {
    "honest-fix": (CALC, FIX, "python -m pytest -q", [BROKEN_ADD], "verified", ""),
    "honest-fix-new-regression-test-imports-what-the-fix-adds": (
        CALC,
        {
            "calc.py": CALC["calc.py"] + "\n\ndef neg(a):\n    return -a\n",
            "tests/test_neg.py": "from calc import neg\n\n\ndef test_neg():\n    assert neg(2) == -2\n",
        },
        "python -m pytest -q",
        [],
        "verified",
        "",
    ),
    "honest-fix-unittest": (UNITTEST_REPO, FIX, "python -m unittest", ["tests.test_calc.TestCalc.test_add"], "verified", ""),
    "a-config-deselects-the-failing-test-and-collects-a-new-one": (
        CALC,
        {
            **COMMENT,
            "pytest.ini": "[pytest]\naddopts = --deselect tests/test_calc.py::test_add\npython_files = test_*.py check_*.py\n",
            "check_extra.py": "def test_extra():\n    assert True\n",
        },
        "python -m pytest -q",
        [BROKEN_ADD],
        "error",
        "none of the tests the session targeted",
    ),
    "a-config-deselects-and-the-session-named-nothing": (
        CALC,
        {
            **COMMENT,
            "pytest.ini": "[pytest]\naddopts = --deselect tests/test_calc.py::test_add\npython_files = test_*.py check_*.py\n",
            "check_extra.py": "def test_extra():\n    assert True\n",
        },
        "python -m pytest -q",
        [],
        "not_fixed",
        "",
    ),
    "the-command-overwrites-the-report": (
        CALC,
        {**COMMENT, "fake.xml": FORGED},
        "python -m pytest -q; cp fake.xml .prt-junit.xml",
        [BROKEN_ADD],
        "error",
        "shell operators",
    ),
    "the-command-writes-the-results-folder": (
        CALC,
        {**COMMENT, "fake.xml": FORGED},
        "python -m pytest -q && cp fake.xml /run/prt/out/main-0000000000000000.xml",
        [BROKEN_ADD],
        "error",
        "shell operators",
    ),
    "a-test-forges-a-second-report": (
        CALC,
        {
            **COMMENT,
            "tests/test_forge.py": "def test_forge():\n    open('/run/prt/out/main-0000000000000000.xml', 'w').write("
            + repr(FORGED)
            + ")\n",
        },
        "python -m pytest -q",
        [BROKEN_ADD],
        "error",
        "2 reports of a main test process",
    ),
    "a-snapshot-conftest-flips-failures-when-the-code-says-so": (
        {**CALC, "conftest.py": FLIP_CONFTEST},
        COMMENT,
        "python -m pytest -q",
        [BROKEN_ADD],
        "error",
        "a conftest or plugin changed the outcome",
    ),
    "an-edited-conftest-flips-failures": (
        CALC,
        {**COMMENT, "conftest.py": FLIP_CONFTEST},
        "python -m pytest -q",
        [BROKEN_ADD],
        "error",
        "a conftest or plugin changed the outcome",
    ),
    "every-test-module-fails-to-import": (
        {**CALC, "tests/test_calc.py": "import _not_built_extension\n" + CALC["tests/test_calc.py"]},
        FIX,
        "python -m pytest -q",
        [BROKEN_ADD],
        "error",
        "could not be collected",
    ),
    "a-conftest-fails-to-import": (
        {**CALC, "conftest.py": "import _not_installed\n"},
        FIX,
        "python -m pytest -q",
        [],
        "error",
        "could not start",
    ),
    "a-usage-error": (CALC, FIX, "python -m pytest -q --no-such-option", [], "error", "usage error"),
    "no-tests-collected": (CALC, FIX, "python -m pytest -q -k no_test_has_this_name", [], "error", "collected no tests"),
    "pytest-on-a-unittest-repo-that-needs-discovery": (
        {**UNITTEST_REPO, "tests/__init__.py": "raise ImportError('run me with unittest discover')\n"},
        FIX,
        "python -m pytest -q",
        [],
        "error",
        "",
    ),
    "unittest-import-error": (
        {**UNITTEST_REPO, "tests/test_calc.py": "import _missing\n" + UNITTEST_REPO["tests/test_calc.py"]},
        FIX,
        "python -m unittest",
        [],
        "error",
        "could not be collected",
    ),
}


@pytest.fixture(params=SANDBOX_PARAMS)
def sandbox(request):
    name, runtime = request.param
    return sandbox_or_skip(name, SandboxSettings(runtime=runtime))


def _verify(sandbox, files: dict[str, str], edits: dict[str, str], command: str, targets: list[str]) -> dict:
    repo = Path(tempfile.mkdtemp())
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    snapshot = snapshot_dir(repo)
    specs = tuple(
        EditSpec(i, f"e{i}", path, unified_diff(files.get(path, ""), text, path), hashlib.sha256(text.encode()).hexdigest())
        for i, (path, text) in enumerate(edits.items())
    )
    inp = QaInput("attack", "sha256:" + hashlib.sha256(snapshot).hexdigest(), command, 60.0, None, specs, tuple(targets))
    return verify_trace(inp, snapshot, sandbox, run_id="test", batch_id="test").row


@pytest.mark.parametrize("case", list(CASES))
def test_grading_attacks_never_verify(sandbox, case):
    files, edits, command, targets, verdict, words = CASES[case]
    row = _verify(sandbox, files, edits, command, targets)
    assert row["verdict"] == verdict, row["verdict_reason"]
    assert words in row["verdict_reason"]
    if verdict == "verified":
        assert row["fail_to_pass"] and not row["pass_to_fail"]


def test_a_config_change_is_flagged_and_joins_the_before_run(sandbox):
    files, edits, command, targets, _, _ = CASES["a-config-deselects-and-the-session-named-nothing"]
    row = _verify(sandbox, files, edits, command, targets)
    assert row["test_config_changed"] is True
    assert row["before_files"] == ["check_extra.py", "pytest.ini"]  # both shape collection, so both ran before too
    assert row["pass_to_pass"] == ["check_extra.py::test_extra", "tests/test_calc.py::test_mul"]
    honest = _verify(sandbox, *CASES["honest-fix"][:4])
    assert honest["test_config_changed"] is False and honest["framework"] == "pytest"
    assert honest["fail_to_pass"] == [BROKEN_ADD] and honest["targeted"] == [BROKEN_ADD]


def test_unittest_ids_are_class_qualified(sandbox):
    row = _verify(sandbox, *CASES["honest-fix-unittest"][:4])
    assert row["framework"] == "unittest"
    assert row["fail_to_pass"] == ["tests.test_calc.TestCalc.test_add"]
    assert row["pass_to_pass"] == ["tests.test_calc.TestCalc.test_mul"]
