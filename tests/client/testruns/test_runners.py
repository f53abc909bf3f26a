"""Test commands: what QA runs for each, and which it refuses (it never runs a shell)."""

from __future__ import annotations

import shlex

import pytest

from client.testruns.runners import parse_test_command
from schemas.errors import UnsupportedTestCommand


@pytest.mark.parametrize(
    ("command", "framework", "runs", "env"),
    [
        ("python -m pytest -q", "pytest", "python -m pytest -q -p prt_pytest", {}),
        ("pytest -x tests/test_a.py", "pytest", "pytest -x tests/test_a.py -p prt_pytest", {}),
        ("py.test", "pytest", "py.test -p prt_pytest", {}),
        ("python3.11 -m pytest -- -weird-name.py", "pytest", "python3.11 -m pytest -p prt_pytest", {}),
        (
            "PYTHONPATH=src LANG=C python -m pytest -k 'a or b'",
            "pytest",
            "python -m pytest -k 'a or b' -p prt_pytest",
            {"LANG": "C"},
        ),
        ("python -m unittest discover -s tests", "unittest", "python -m prt_unittest discover -s tests", {}),
        ("python3 -m unittest tests.test_a", "unittest", "python3 -m prt_unittest tests.test_a", {}),
    ],
)
def test_runner_commands_run_without_a_shell(command, framework, runs, env):
    cmd = parse_test_command(command)
    line = cmd.sandbox_command()
    assert cmd.framework == framework and line.startswith("exec " + runs)
    assert shlex.split(line)[1:] == shlex.split(line.removeprefix("exec "))  # every word quoted: nothing for a shell to expand
    if framework == "pytest":  # a before run must run every test: -x and --maxfail are overridden after the command's own
        words = shlex.split(line)
        end = words.index("--") if "--" in words else len(words)
        ours = ["-p", "prt_pytest", "-p", "no:cacheprovider", "--continue-on-collection-errors", "--maxfail=2147483647"]
        assert words[end - len(ours) : end] == ours
    sandbox_env = cmd.sandbox_env()
    assert {k: sandbox_env[k] for k in env} == env
    assert sandbox_env["PRT_REPORT_DIR"] == "/run/prt/out" and sandbox_env["PYTHONPATH"].endswith("/run/prt/lib")
    if "PYTHONPATH=src" in command:
        assert sandbox_env["PYTHONPATH"] == "src:/run/prt/lib"


@pytest.mark.parametrize(
    ("command", "why"),
    [
        ("python -m pytest -q; cp fake.xml .prt-junit.xml", "shell operators"),
        ("python -m pytest && echo ok", "shell operators"),
        ("python -m pytest | tee log", "shell operators"),
        ("python -m pytest > log 2>&1", "shell operators"),
        ("python -m pytest $ARGS", "shell expansion"),
        ("python -m pytest `cat args`", "shell expansion"),
        ("make test", "does not know how to run"),
        ("tox -e py311", "does not know how to run"),
        ("sh -c 'python -m pytest'", "does not know how to run"),
        ("PRT_REPORT_DIR=/work python -m pytest", "which QA sets itself"),
        ("FOO=1", "runs nothing"),
        ("python -m pytest 'unclosed", "not valid shell words"),
    ],
)
def test_commands_qa_cannot_run_safely_are_refused_with_a_reason(command, why):
    with pytest.raises(UnsupportedTestCommand, match=why):
        parse_test_command(command)


@pytest.mark.parametrize(
    ("command", "named"),
    [
        ("python -m pytest -q", []),
        ("python -m pytest -q ./tests/test_a.py::test_x -k slow --tb short tests/b/", ["tests/test_a.py::test_x", "tests/b/"]),
        ("pytest --deselect tests/x.py::t -p no:warnings tests/y.py", ["tests/y.py"]),
        ("python -m unittest discover -s tests -p 'test_*.py'", []),
        ("python -m unittest -v tests.test_a.TestK", ["tests.test_a.TestK"]),
    ],
)
def test_the_tests_a_command_names_are_the_sessions_targets(command, named):
    assert parse_test_command(command).named_tests() == named


FILES = {"tests/test_a.py", "tests/sub/test_b.py", "pkg/mod.py", "calc_test.go"}


def _exists(path: str) -> bool:
    return path in FILES or any(f.startswith(path.rstrip("/") + "/") for f in FILES)


@pytest.mark.parametrize(
    ("command", "targets", "runs", "env"),
    [
        pytest.param(
            "python -m pytest -q -x tests",
            ["tests/test_a.py::test_x"],
            "python -m pytest -q -x tests/test_a.py::test_x",
            {},
            id="pytest-node",
        ),
        pytest.param(
            "pytest tests",
            ["tests.test_a.TestK.test_y", "tests/sub/test_b.py"],
            "pytest tests/sub/test_b.py tests/test_a.py::TestK::test_y",
            {},
            id="unittest-ids-for-pytest",
        ),
        pytest.param(
            "pytest", ["tests/test_a.py", "tests/test_a.py::test_x"], "pytest tests/test_a.py", {}, id="covered-by-its-file"
        ),
        pytest.param(
            "python -m unittest discover -s tests -v",
            ["tests/test_a.py", "test_a.TestK.test_y"],
            "python -m unittest -v test_a",
            {"PYTHONPATH": "tests"},
            id="unittest-discovery-folder",
        ),
        pytest.param(
            "python -m unittest",
            ["tests/sub/test_b.py::TestB::test_z"],
            "python -m unittest tests.sub.test_b.TestB.test_z",
            {},
            id="pytest-id-for-unittest",
        ),
        pytest.param(
            "go test ./...",
            ["example.com/m::TestAdd", "example.com/m::TestSub/case"],
            "go test -run '^(TestAdd|TestSub)$' example.com/m",
            {},
            id="go",
        ),
    ],
)
def test_a_command_narrowed_to_the_sessions_targets(command, targets, runs, env):
    narrowed = parse_test_command(command).targeted(targets, _exists)
    assert narrowed is not None and shlex.join(narrowed.argv) == runs
    assert {k: v for k, v in narrowed.env} == env


def test_targets_no_runner_can_name_leave_the_command_as_it_is():
    assert parse_test_command("python -m pytest tests").targeted(["nope/gone.py::test_x"], _exists) is None
    assert parse_test_command("go test ./...").targeted(["tests/test_a.py"], _exists) is None
