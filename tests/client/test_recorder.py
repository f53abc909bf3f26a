"""The recorder: a real session recorded with `prt record`/`prt run`/`prt note` in a temporary git
repo, then the whole pipeline on it. Also the recorder's own guarantees: pytest recognised, exit
codes passed through, edits diffed against the last recorded state, crashes losing nothing,
abort leaving nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from lake import Lake
from schemas.settings import get_sandbox_settings
from tests.conftest import REPO, SANDBOX_PARAMS, sandbox_or_skip
from tests.support.tracegen import objects

CALCULATOR = REPO / "examples" / "repos" / "calculator"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path) -> Path:
    """The calculator repo (mean() divides by len - 1; test_mean fails) as a fresh git repo."""
    path = tmp_path / "calculator"
    shutil.copytree(CALCULATOR, path)
    _git(path, "init", "-q", "-b", "main")
    _git(path, "-c", "user.name=Dev", "-c", "user.email=dev@example.org", "add", "-A")
    _git(path, "-c", "user.name=Dev", "-c", "user.email=dev@example.org", "commit", "-q", "-m", "start")
    return path


def prt(repo: Path, env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "client.cli", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300
    )
    if check:
        assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


@pytest.fixture
def env(cli_env, tmp_path) -> dict:
    # These sessions run their tests with this test suite's own interpreter, whose environment is
    # the whole pipeline: QA verifies them in the base image. Environments have tests of their own
    # (test_the_environment_travels_with_the_trace_and_qa_builds_it, tests/tasks/qa/test_environments.py).
    return {
        **cli_env,
        "PRT_PARTICIPANT": "dev-alice",
        "PRT_INBOX": str(tmp_path / "inbox"),
        "PRT_LAKE": str(tmp_path / "lake"),
        "PRT_QA_ENVIRONMENTS": "false",
    }


def _events(inbox: str, trace_id: str) -> list[dict]:
    objs = objects(inbox, trace_id)
    lines = []
    for key in sorted(k for k in objs if k.startswith("chunks/")):
        lines += objs[key].decode().splitlines()
    return [json.loads(line) for line in lines]


def _fix(repo: Path) -> None:
    stats = repo / "stats.py"
    stats.write_text(stats.read_text().replace("sum(values) / (len(values) - 1)", "sum(values) / len(values)"))


@pytest.mark.parametrize("backend", SANDBOX_PARAMS)
def test_a_recorded_session_ingests_verifies_and_scores(repo, env, backend):
    name, runtime = backend
    settings = get_sandbox_settings().model_copy(update={"runtime": runtime})
    sandbox_or_skip(name, settings)
    started = prt(repo, env, "record", "start", "--task-id", "BUG-12", "--title", "mean() is off by one", "--consent", "yes")
    trace_id = started.stdout.split("recording ")[1].split()[0]

    failing = prt(repo, env, "run", "--", sys.executable, "-m", "pytest", "-q", check=False)
    assert failing.returncode == 1 and "test_mean" in failing.stdout  # live output, same exit code
    prt(repo, env, "note", "hypothesis", "mean() divides by len - 1 instead of len")
    _fix(repo)
    passing = prt(repo, env, "run", "--", sys.executable, "-m", "pytest", "-q")
    assert "passed" in passing.stdout
    grep = prt(repo, env, "run", "--", "grep", "-c", "def ", "stats.py")
    assert grep.stdout.strip() == "2"
    _git(repo, "-c", "user.name=Dev", "-c", "user.email=dev@example.org", "commit", "-q", "-am", "Fix mean")
    prt(repo, env, "record", "commit")
    prt(repo, env, "record", "stop")
    assert not (repo / ".git" / "prt").exists() and _git(repo, "status", "--porcelain") == ""

    events = _events(env["PRT_INBOX"], trace_id)
    assert [e["type"] for e in events] == ["test_run", "rationale_note", "file_edit", "test_run", "cmd_run", "commit"]
    first, _, edit, second, cmd, commit = events
    assert (first["failed"], first["failing_tests"]) == (
        2,
        ["tests/test_stats.py::test_mean", "tests/test_stats.py::test_mean_single_value"],
    )
    assert second["failed"] == 0 and second["passed"] == first["passed"] + 2
    assert edit["file_path"] == "stats.py" and "-    return sum(values) / (len(values) - 1)" in edit["diff_unified"]
    assert cmd["command"].startswith("grep") and cmd["exit_code"] == 0 and cmd["stdout"] == "2\n"
    assert commit["sha"] == _git(repo, "rev-parse", "HEAD").strip() and commit["message"] == "Fix mean"

    process = prt(repo, {**env, **({"PRT_SANDBOX_RUNTIME": runtime} if runtime else {})}, "process", "--sandbox", name)
    assert "1 ingested" in process.stdout, process.stdout
    lk = Lake(env["PRT_LAKE"])
    qa = lk.qa_runs().filter(pl.col("trace_id") == trace_id).collect().row(0, named=True)
    assert qa["verdict"] == "verified", qa
    assert sorted(qa["fail_to_pass"]) == ["tests/test_stats.py::test_mean", "tests/test_stats.py::test_mean_single_value"]
    score = lk.scores().filter(pl.col("trace_id") == trace_id).collect().row(0, named=True)
    assert score["status"] == "scored" and score["qa_verdict"] == "verified" and score["problem_understanding"] >= 2


def test_edits_are_diffed_against_the_last_recorded_state(repo, env):
    prt(repo, env, "record", "start", "--task-id", "T", "--title", "t", "--consent", "yes")
    (repo / "stats.py").write_text((repo / "stats.py").read_text() + "\n# one\n")
    prt(repo, env, "note", "observation", "first change")
    (repo / "stats.py").write_text((repo / "stats.py").read_text() + "# two\n")
    (repo / "new_helper.py").write_text("X = 1\n")  # a new file counts too
    (repo / "README.md").unlink()  # and a deletion (recorded as emptying the file)
    prt(repo, env, "note", "observation", "second change")
    trace_id = json.loads((repo / ".git" / "prt" / "session.json").read_text())["manifest"]["trace_id"]
    prt(repo, env, "record", "stop")
    edits = [e for e in _events(env["PRT_INBOX"], trace_id) if e["type"] == "file_edit"]
    assert [e["file_path"] for e in edits] == ["stats.py", "README.md", "new_helper.py", "stats.py"]
    assert (
        "+# one" in edits[0]["diff_unified"] and "+# two" in edits[3]["diff_unified"] and "+# one" not in edits[3]["diff_unified"]
    )
    assert edits[3]["buffer_hash_after"] == hashlib.sha256((repo / "stats.py").read_bytes()).hexdigest()
    assert edits[1]["buffer_hash_after"] == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("where", ["before the commit point", "after the commit point"])
def test_a_crash_loses_at_most_the_running_command_and_never_breaks_the_diffs(repo, env, where, monkeypatch):
    from client.diffs import apply_unified_diff
    from client.recorder import Recorder

    prt(repo, env, "record", "start", "--task-id", "T", "--title", "t", "--consent", "yes")
    prt(repo, env, "note", "plan", "one")
    start = (repo / "stats.py").read_text()
    rec = Recorder(repo)
    stats = repo / "stats.py"
    stats.write_text(stats.read_text() + "# one\n")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "before the commit point":  # the session file is never replaced
        save = Recorder._save
        monkeypatch.setattr(Recorder, "_save", lambda self, name, data: crash() if "pending" in data else save(self, name, data))
    else:  # the session is committed; the shadow moves and the put never happen
        monkeypatch.setattr(Recorder, "_finish", crash)
    with pytest.raises(KeyboardInterrupt):
        rec.note("plan", "two")
    monkeypatch.undo()
    session = json.loads((repo / ".git" / "prt" / "session.json").read_text())
    assert ("pending" in session) == (where == "after the commit point")

    stats.write_text(stats.read_text() + "# two\n")
    prt(repo, env, "note", "plan", "three")  # finishes a committed chunk first, then records
    trace_id = rec.status()["trace_id"]
    prt(repo, env, "record", "stop")
    events = _events(env["PRT_INBOX"], trace_id)
    edits = [e for e in events if e["type"] == "file_edit"]
    if where == "before the commit point":  # "two" is lost; its edit is found again by "three"
        assert [e.get("text") for e in events] == ["one", None, "three"]
        assert "+# one" in edits[0]["diff_unified"] and "+# two" in edits[0]["diff_unified"]
    else:
        assert [e.get("text") for e in events] == ["one", None, "two", None, "three"]
        assert "+# one" in edits[0]["diff_unified"] and "+# one" not in edits[1]["diff_unified"]
    replayed = start
    for edit in edits:  # what verification does: each diff applies to the state the last one left
        replayed = apply_unified_diff(replayed, edit["diff_unified"])
    assert replayed == stats.read_text()
    assert edits[-1]["buffer_hash_after"] == hashlib.sha256(stats.read_bytes()).hexdigest()


def test_consent_and_abort(repo, env):
    refused = prt(repo, env, "record", "start", "--task-id", "T", "--title", "t", "--consent", "no", check=False)
    assert refused.returncode == 1 and not (repo / ".git" / "prt" / "session.json").exists()
    asked = prt(repo, env, "record", "start", "--task-id", "T", "--title", "t", check=False)  # no terminal to ask on
    assert asked.returncode != 0 and "--consent yes" in asked.stderr
    prt(repo, env, "record", "start", "--task-id", "T", "--title", "t", "--consent", "yes")
    again = prt(repo, env, "record", "start", "--task-id", "T", "--title", "t", "--consent", "yes", check=False)
    assert again.returncode != 0 and "already being recorded" in again.stderr
    prt(repo, env, "run", "--", "true")
    assert objects(env["PRT_INBOX"])
    prt(repo, env, "record", "abort")
    assert objects(env["PRT_INBOX"]) == {} and not (repo / ".git" / "prt").exists()
    outside = prt(repo.parent, env, "note", "plan", "x", check=False)
    assert outside.returncode != 0 and "not inside a git repository" in outside.stderr


def test_watch_records_saved_edits(repo, env):
    import threading
    import time

    from client.recorder import Recorder

    prt(repo, env, "record", "start", "--task-id", "T", "--title", "t", "--consent", "yes")
    rec = Recorder(repo)
    stop = threading.Event()
    seen = []
    thread = threading.Thread(target=rec.watch, kwargs={"interval_s": 0.1, "stop": stop, "on_change": seen.append})
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:  # the first look records nothing new
            time.sleep(0.05)
        _fix(repo)
        while rec.status()["events"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    trace_id = rec.status()["trace_id"]
    prt(repo, env, "record", "stop")
    edits = [e for e in _events(env["PRT_INBOX"], trace_id) if e["type"] == "file_edit"]
    assert [e["file_path"] for e in edits] == ["stats.py"]  # recorded once, by watch, not again by stop


def test_start_says_what_it_cannot_do_and_what_it_will_record(tmp_path, repo, env):
    empty = tmp_path / "empty"
    empty.mkdir()
    _git(empty, "init", "-q")
    no_commit = prt(empty, env, "record", "start", "--task-id", "T", "--title", "t", "--consent", "yes", check=False)
    assert no_commit.returncode != 0 and "has no commit yet" in no_commit.stderr

    (repo / "stats.py").write_text((repo / "stats.py").read_text() + "# before the session\n")
    (repo / "scratch.py").write_text("x = 1\n")
    started = prt(repo, env, "record", "start", "--task-id", "T", "--title", "t", "--consent", "yes")
    assert "2 file(s) differ from HEAD (scratch.py, stats.py)" in started.stderr


UNITTEST_REPO = {
    "calc.py": "def add(a, b):\n    return a - b\n",
    "tests/__init__.py": "",
    "tests/test_calc.py": (
        "import unittest\n\nfrom calc import add\n\n\nclass TestAdd(unittest.TestCase):\n"
        "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n    def test_zero(self):\n        self.assertEqual(add(0, 0), 0)\n"
    ),
}


def test_unittest_runs_are_test_runs_with_class_qualified_ids_and_verify(tmp_path, env):
    repo = tmp_path / "unittest-repo"
    for path, text in UNITTEST_REPO.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "-c", "user.name=Dev", "-c", "user.email=dev@example.org", "add", "-A")
    _git(repo, "-c", "user.name=Dev", "-c", "user.email=dev@example.org", "commit", "-q", "-m", "start")
    refused = prt(repo, env, "record", "start", "--task-id", "U", "--title", "t", "--consent", "yes",
                  "--test-command", "python -m unittest && echo done", check=False)  # fmt: skip
    assert refused.returncode != 0 and "shell operators" in refused.stdout + refused.stderr
    started = prt(repo, env, "record", "start", "--task-id", "U-1", "--title", "add() subtracts", "--consent", "yes",
                  "--test-command", "python -m unittest discover -s tests -t .")  # fmt: skip
    trace_id = started.stdout.split("recording ")[1].split()[0]
    failing = prt(repo, env, "run", "--", sys.executable, "-m", "unittest", "discover", "-s", "tests", "-t", ".", check=False)
    assert failing.returncode == 1 and "FAILED (failures=1)" in failing.stderr  # unittest's own output and exit code
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    prt(repo, env, "run", "--", sys.executable, "-m", "unittest", "-v", "tests.test_calc")
    prt(repo, env, "record", "stop")

    first, _, second = _events(env["PRT_INBOX"], trace_id)
    assert first["type"] == "test_run" and first["framework"] == "unittest"
    assert (first["passed"], first["failed"], first["failing_tests"]) == (1, 1, ["tests.test_calc.TestAdd.test_add"])
    assert (second["passed"], second["failed"], second["command"].split()[1:]) == (
        2,
        0,
        ["-m", "unittest", "-v", "tests.test_calc"],
    )

    sandbox_or_skip("namespace", get_sandbox_settings())
    prt(repo, env, "process", "--sandbox", "namespace")
    qa = Lake(env["PRT_LAKE"]).qa_runs().filter(pl.col("trace_id") == trace_id).collect().row(0, named=True)
    assert (qa["verdict"], qa["framework"], qa["fail_to_pass"]) == ("verified", "unittest", ["tests.test_calc.TestAdd.test_add"])
    assert qa["targeted"] == ["tests.test_calc.TestAdd.test_add", "tests.test_calc.TestAdd.test_zero"]


@pytest.fixture(scope="module")
def dev_venv(tmp_path_factory) -> Path:
    """A developer's virtualenv with the repo's dependency and pytest, from the package index."""
    import venv

    root = tmp_path_factory.mktemp("dev-venv")
    venv.create(root, with_pip=True)
    subprocess.run(
        [str(root / "bin" / "python"), "-m", "pip", "install", "-q", "six==1.16.0", "pytest==8.3.4"], check=True, timeout=600
    )
    return root


SIX_REPO = {
    "lib.py": "import six\n\n\ndef is_text(x):\n    return isinstance(x, six.binary_type)\n",
    "tests/test_lib.py": "from lib import is_text\n\n\ndef test_text():\n    assert is_text('a')\n",
}


def test_the_environment_travels_with_the_trace_and_qa_builds_it(tmp_path, env, dev_venv):
    repo = tmp_path / "six-repo"
    for path, text in SIX_REPO.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "-c", "user.name=Dev", "-c", "user.email=dev@example.org", "add", "-A")
    _git(repo, "-c", "user.name=Dev", "-c", "user.email=dev@example.org", "commit", "-q", "-m", "start")
    active = {**env, "VIRTUAL_ENV": str(dev_venv), "PATH": f"{dev_venv}/bin:{env['PATH']}"}  # an activated virtualenv
    env = {**env, "PRT_QA_ENVIRONMENTS": "true"}
    started = prt(repo, active, "record", "start", "--task-id", "ENV-1", "--title", "is_text is wrong", "--consent", "yes")
    trace_id = started.stdout.split("recording ")[1].split()[0]
    assert "manifest.json" not in objects(env["PRT_INBOX"], trace_id)  # written at stop: it may still change
    prt(repo, active, "run", "--", "python", "-m", "pytest", "-q", check=False)
    (repo / "lib.py").write_text(SIX_REPO["lib.py"].replace("binary_type", "text_type"))
    prt(repo, active, "run", "--", "python", "-m", "pytest", "-q")
    changed = prt(repo, active, "record", "set", "--test-command", "python -m pytest -q tests")
    assert "python -m pytest -q tests" in changed.stdout
    prt(repo, active, "record", "stop")

    manifest = json.loads(objects(env["PRT_INBOX"], trace_id)["manifest.json"])
    packages = {p["name"].lower(): p["version"] for p in manifest["environment"]["packages"]}
    assert packages["six"] == "1.16.0" and packages["pytest"] == "8.3.4"
    assert (
        manifest["environment"]["python_version"].startswith("3.11")
        and manifest["qa"]["test_command"] == "python -m pytest -q tests"
    )

    sandbox_or_skip("namespace", get_sandbox_settings())
    prt(repo, env, "process", "--sandbox", "namespace")
    qa = Lake(env["PRT_LAKE"]).qa_runs().filter(pl.col("trace_id") == trace_id).collect().row(0, named=True)
    assert (qa["verdict"], qa["env_python"]) == ("verified", "3.11"), qa["verdict_reason"]
    assert qa["env_id"].startswith("env-") and qa["fail_to_pass"] == ["tests/test_lib.py::test_text"]


def test_a_link_that_leaves_the_repo_is_refused_at_start(repo, env):
    (repo / "secrets").symlink_to("/etc/shadow")
    _git(repo, "-c", "user.name=Dev", "-c", "user.email=dev@example.org", "add", "secrets")
    _git(repo, "-c", "user.name=Dev", "-c", "user.email=dev@example.org", "commit", "-q", "-m", "a link")
    refused = prt(repo, env, "record", "start", "--task-id", "T", "--title", "t", "--consent", "yes", check=False)
    assert refused.returncode == 2 and "secrets is a symbolic link to '/etc/shadow', which is absolute" in refused.stderr
    assert not (repo / ".git" / "prt" / "session.json").exists()


def test_the_environment_follows_the_interpreter_the_tests_run_with(repo, env, dev_venv):
    """No virtualenv active, python3 on PATH is not what runs the tests: the first test run's interpreter is."""
    started = prt(repo, env, "record", "start", "--task-id", "T", "--title", "t", "--consent", "yes")
    trace_id = started.stdout.split("recording ")[1].split()[0]
    ran = prt(repo, env, "run", "--", str(dev_venv / "bin" / "python"), "-m", "pytest", "-q", check=False)
    assert f"the tests run with {dev_venv}/bin/python" in ran.stderr
    prt(repo, env, "record", "stop")
    manifest = json.loads(objects(env["PRT_INBOX"], trace_id)["manifest.json"])
    assert {p["name"].lower() for p in manifest["environment"]["packages"]} >= {"six", "pytest"}
    assert len(manifest["environment"]["packages"]) < 20  # the virtualenv's, not the host's
