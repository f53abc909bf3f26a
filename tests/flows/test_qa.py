"""The QA flow: real sandboxes, real Delta tables, verdicts checked against what the repos really do."""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl
import pytest

from client.storage import fs_for, join
from client.upload import find_trace_dirs, upload_trace_dir
from flows.ingest import ingest_inbox
from flows.qa import verify_traces
from lake import Lake
from schemas.errors import SandboxUnavailable
from schemas.settings import SandboxSettings, get_sandbox_settings
from tasks.qa.regrade import regrade_row
from tasks.qa.sandbox import get_sandbox
from tasks.qa.store import load_qa_inputs
from tests.conftest import EXAMPLES, SANDBOX_PARAMS, sandbox_or_skip
from tests.support.repos import CALC, FIXED_ADD
from tests.support.tracegen import write_repo_trace

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture(params=[p for p in SANDBOX_PARAMS if p.id != "docker-gvisor"])
def backend(request):
    name, runtime = request.param
    sandbox_or_skip(name, SandboxSettings(runtime=runtime))
    return name


def _verdicts(lake: str) -> dict[str, dict]:
    return {r["trace_id"]: r for r in Lake(lake).qa_runs().collect().to_dicts()}


def test_examples_verify_as_recorded_and_only_once(tmp_path, backend):
    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    for d in find_trace_dirs(EXAMPLES):
        upload_trace_dir(d, inbox)
    ingest_inbox(inbox=inbox, lake=lake)

    summary = verify_traces(lake=lake, sandbox=backend)
    assert dict(summary.verdicts()) == {"verified": 2, "not_fixed": 1}
    runs = _verdicts(lake)
    assert runs["example-simple-fix"]["fail_to_pass"] == [
        "tests/test_stats.py::test_mean",
        "tests/test_stats.py::test_mean_single_value",
    ]
    assert runs["example-multi-file-fix"]["fail_to_pass"] == [
        "tests/test_cart.py::test_total_with_discount",
        "tests/test_regression.py::test_mixed_discounts_are_applied_once",  # written during the session
    ]
    assert runs["example-failed-attempt"]["verdict"] == "not_fixed"
    assert all(r["scope"] == "targeted" for r in runs.values())  # the default: the tests each session ran or wrote
    assert all(r["backend"] == backend and r["edits_replayed"] >= 1 for r in runs.values())

    # The saved evidence re-grades to the same verdicts without running anything.
    fs, root = fs_for(lake)
    inputs = {i.trace_id: i for i in load_qa_inputs(Lake(lake), list(runs))}
    for r in runs.values():
        before = fs.cat_file(join(root, "artifacts", r["junit_before_ref"][7:]))
        after = fs.cat_file(join(root, "artifacts", r["junit_after_ref"][7:]))
        g = regrade_row(r, before, after, inputs[r["trace_id"]])
        assert (g.verdict, list(g.fail_to_pass), list(g.targeted)) == (r["verdict"], r["fail_to_pass"], r["targeted"])
        assert "--- stdout ---" in fs.cat_file(join(root, "artifacts", r["log_after_ref"][7:])).decode()

    version = Lake(lake).tables.open("qa_runs").version()
    again = verify_traces(lake=lake, sandbox=backend, trace_ids=list(runs))
    assert again.rows == [] and sorted(again.already) == sorted(runs)
    assert Lake(lake).tables.open("qa_runs").version() == version  # nothing run, nothing written


def test_each_verdict(tmp_path, backend):
    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    failing = ["tests/test_calc.py::test_add", "tests/test_calc.py::test_neg"]
    write_repo_trace(inbox, "v-partial", CALC, [("calc.py", FIXED_ADD)], failing=failing)
    write_repo_trace(inbox, "v-other-tests-fail", CALC, [("calc.py", FIXED_ADD)], failing=failing[:1])
    write_repo_trace(inbox, "v-verified", CALC, [("calc.py", FIXED_ADD.replace("return a\n", "return -a\n"))])
    write_repo_trace(inbox, "v-regression", CALC, [("calc.py", FIXED_ADD.replace("return a * b", "return a ** b"))])
    write_repo_trace(inbox, "v-not-fixed", CALC, [("README.md", "docs only\n")])
    write_repo_trace(inbox, "v-mismatch", CALC, [("calc.py", FIXED_ADD), ("calc.py", FIXED_ADD + "\n# more\n")], bad_hash_at=1)
    write_repo_trace(inbox, "v-not-pytest", CALC, [("calc.py", FIXED_ADD)], test_command="echo no tests here")
    slow = {**CALC, "tests/test_slow.py": "import time\n\n\ndef test_slow():\n    time.sleep(600)\n"}
    write_repo_trace(inbox, "v-timeout", slow, [("calc.py", FIXED_ADD)], timeout_s=3)
    ingest_inbox(inbox=inbox, lake=lake)

    verify_traces(lake=lake, sandbox=backend)
    runs = _verdicts(lake)
    assert {t: r["verdict"] for t, r in runs.items()} == {
        "v-partial": "partial",
        "v-other-tests-fail": "verified",  # test_neg fails before and after, and the session never targeted it
        "v-verified": "verified",
        "v-regression": "regression",
        "v-not-fixed": "not_fixed",
        "v-mismatch": "replay_mismatch",
        "v-not-pytest": "error",
        "v-timeout": "error",
    }
    assert runs["v-partial"]["fail_to_pass"] == ["tests/test_calc.py::test_add"]
    assert runs["v-partial"]["fail_to_fail"] == ["tests/test_calc.py::test_neg"]
    assert runs["v-partial"]["targeted"] == ["tests/test_calc.py::test_add", "tests/test_calc.py::test_neg"]
    # The session targeted test_add alone: QA ran it alone (PRT_QA_SCOPE=targeted, the default).
    other = runs["v-other-tests-fail"]
    assert (other["scope"], other["run_command"]) == ("targeted", "python -m pytest -q tests/test_calc.py::test_add")
    assert other["fail_to_pass"] == ["tests/test_calc.py::test_add"] and other["fail_to_fail"] == []
    assert runs["v-regression"]["scope"] == "full"  # no test runs, no test files: nothing to target
    assert runs["v-regression"]["pass_to_fail"] == ["tests/test_calc.py::test_mul"]
    mismatch = runs["v-mismatch"]
    assert mismatch["mismatch_seq"] == 2 and "edit seq 2 (event ev-000002) to calc.py" in mismatch["verdict_reason"]
    assert mismatch["before_exit_code"] is None  # nothing ran
    assert runs["v-timeout"]["timed_out"] and "timeout" in runs["v-timeout"]["verdict_reason"]
    assert "QA does not know how to run the test command 'echo no tests here'" in runs["v-not-pytest"]["verdict_reason"]


FLAKY = {
    "conftest.py": "",
    "tests/test_flaky.py": "import random\nimport pytest\n\n\n@pytest.mark.parametrize('i', range(3))\ndef test_coin(i):\n    assert random.random() < 0.5\n",
    "tests/test_fixed.py": "from lib import value\n\n\ndef test_value():\n    assert value() == 2\n",
    "lib.py": "def value():\n    return 1\n",
}


@pytest.fixture
def namespace():
    return sandbox_or_skip("namespace", SandboxSettings()).name


def test_reruns_flag_flaky_tests(tmp_path, namespace):
    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    write_repo_trace(inbox, "flaky", FLAKY, [("lib.py", "def value():\n    return 2\n")])
    ingest_inbox(inbox=inbox, lake=lake)
    verify_traces(lake=lake, sandbox="namespace", reruns=4)
    run = _verdicts(lake)["flaky"]
    assert run["flaky"] and all(t.startswith("tests/test_flaky.py::test_coin[") for t in run["flaky"])
    assert "tests/test_fixed.py::test_value" in run["fail_to_pass"]


@pytest.mark.docker
def test_manifest_can_name_an_image(tmp_path):
    sandbox_or_skip("docker", SandboxSettings())
    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    write_repo_trace(inbox, "img-default", CALC, [("calc.py", FIXED_ADD)], image="prt-sandbox:1")
    write_repo_trace(inbox, "img-missing", CALC, [("calc.py", FIXED_ADD)], image="no-such-image:404")
    ingest_inbox(inbox=inbox, lake=lake)
    verify_traces(lake=lake, sandbox="docker")
    runs = _verdicts(lake)
    assert runs["img-default"]["verdict"] == "verified" and runs["img-default"]["image"] == "prt-sandbox:1"
    assert runs["img-missing"]["verdict"] == "error" and "no-such-image:404" in runs["img-missing"]["verdict_reason"]


def test_auto_falls_back_to_namespace_and_never_runs_unsandboxed(monkeypatch, namespace):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert get_sandbox("auto", get_sandbox_settings()).name == "namespace"
    with pytest.raises(SandboxUnavailable, match="no sandbox back-end can run here"):
        get_sandbox("auto", SandboxSettings(rootfs="/nonexistent/rootfs"))


@pytest.mark.docker
def test_auto_prefers_docker():
    sandbox_or_skip("docker", SandboxSettings())
    assert get_sandbox("auto", SandboxSettings()).name == "docker"


def test_qa_runs_columns_match_the_spec(tmp_path, namespace):
    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    write_repo_trace(inbox, "cols", CALC, [("calc.py", FIXED_ADD)])
    ingest_inbox(inbox=inbox, lake=lake)
    verify_traces(lake=lake, sandbox="namespace")
    df = Lake(lake).qa_runs().collect()
    row = df.row(0, named=True)
    assert row["before_failed"] == 2 and row["after_passed"] == 2 and row["after_failed"] == 1
    assert row["run_date"] is not None and row["replay_s"] >= 0 and row["before_s"] > 0
    assert df.select(pl.col("qa_id").str.len_chars()).item() == 24


def test_full_scope_runs_the_whole_suite(tmp_path, namespace, monkeypatch):
    from schemas.settings import get_qa_settings

    monkeypatch.setenv("PRT_QA_SCOPE", "full")
    get_qa_settings.cache_clear()
    try:
        inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
        for d in find_trace_dirs(EXAMPLES):
            upload_trace_dir(d, inbox)
        ingest_inbox(inbox=inbox, lake=lake)
        verify_traces(lake=lake, sandbox="namespace")
    finally:
        get_qa_settings.cache_clear()
    runs = _verdicts(lake)
    multi = runs["example-multi-file-fix"]
    assert multi["scope"] == "full" and multi["run_command"] == multi["test_command"]
    assert multi["verdict"] == "verified" and len(multi["pass_to_pass"]) >= 5  # every other passing test, too


DEEP_TEST = (
    "import os\n\n\ndef test_builds_a_deep_tree():\n    start = os.getcwd()\n    for _ in range(3000):\n"
    "        os.mkdir('d')\n        os.chdir('d')\n    os.chdir(start)\n"
)


def test_one_poison_trace_never_stops_the_others(tmp_path, backend):
    """Traces that pass ingest but break QA's host side get their own row; the honest ones their verdicts."""
    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    fixed = CALC["calc.py"].replace("return a - b", "return a + b").replace("return a\n", "return -a\n")
    write_repo_trace(inbox, "poison-edit-is-a-folder", CALC, [("tests", "not a folder\n")])
    write_repo_trace(inbox, "poison-edit-under-a-file", CALC, [("calc.py/inner.py", "x = 1\n")])
    write_repo_trace(inbox, "poison-deep-tree", {**CALC, "tests/test_deep.py": DEEP_TEST}, [("calc.py", fixed)])
    for i in range(3):
        write_repo_trace(inbox, f"honest-{i}", CALC, [("calc.py", fixed)])
    ingest_inbox(inbox=inbox, lake=lake)

    summary = verify_traces(lake=lake, sandbox=backend)
    runs = _verdicts(lake)
    assert len(runs) == 6 and not summary.failed
    assert {t: runs[t]["verdict"] for t in runs if t.startswith("honest")} == dict.fromkeys(
        ("honest-0", "honest-1", "honest-2"), "verified"
    )
    assert runs["poison-edit-is-a-folder"]["verdict"] == "replay_mismatch"
    assert "the path is a folder in the snapshot" in runs["poison-edit-is-a-folder"]["verdict_reason"]
    assert "lies under calc.py, which is a file" in runs["poison-edit-under-a-file"]["verdict_reason"]
    assert runs["poison-deep-tree"]["verdict"] == "verified"  # its 3,000-deep folders were removed after each run
    workspaces = Path(get_sandbox_settings().workdir or tempfile.gettempdir()) / "prt-sandbox"
    assert not [p for p in workspaces.glob("ws-*") if (p / "d").exists()]
