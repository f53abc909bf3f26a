"""The producer side installs alone: a fresh virtualenv with `pip install pr-telemetry` (no extras)
records a session with `prt record` / `prt run` / `prt note`, uploads it, and has none of the
pipeline's packages."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

PIPELINE = ("prefect", "deltalake", "great_expectations", "polars", "pyarrow", "docker", "openai")


def _run(argv, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kw)
    assert r.returncode == 0, (argv, r.stdout[-3000:], r.stderr[-3000:])
    return r


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("client-venv")
    source = root / "source"  # setuptools builds in the source tree: build from a copy of the tracked files
    for rel in _run(["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard"]).stdout.splitlines():
        if (REPO / rel).is_file():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, source / rel)
    venv.create(root / "venv", with_pip=True)
    py = root / "venv" / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "-q", "-c", str(REPO / "requirements.lock"), str(source)])
    return root / "venv" / "bin"


def test_the_client_installs_without_the_pipeline_and_records_a_session(client_venv, tmp_path):
    py, prt = client_venv / "python", client_venv / "prt"
    for name in PIPELINE:
        found = subprocess.run([str(py), "-c", f"import {name}"], capture_output=True, text=True, cwd=tmp_path)
        assert found.returncode != 0 and "No module named" in found.stderr, name
    installed = _run([str(py), "-m", "pip", "list", "--format=json"]).stdout
    assert len(json.loads(installed)) < 40  # not the ~220 packages of the pipeline

    repo = tmp_path / "calculator"
    shutil.copytree(REPO / "examples" / "repos" / "calculator", repo)
    git = ["git", "-C", str(repo), "-c", "user.name=Dev", "-c", "user.email=dev@example.org"]
    _run([*git, "init", "-q", "-b", "main"])
    _run([*git, "add", "-A"])
    _run([*git, "commit", "-q", "-m", "start"])
    env = {
        "PATH": f"{client_venv}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PRT_PARTICIPANT": "dev-solo",
        "PRT_INBOX": str(tmp_path / "inbox"),
    }
    started = _run(
        [str(prt), "record", "start", "--task-id", "BUG-1", "--title", "mean is off", "--consent", "yes"], cwd=repo, env=env
    )
    trace_id = started.stdout.split("recording ")[1].split()[0]
    # The developer's own interpreter runs the tests (it has pytest); the recorder only watches it.
    failing = subprocess.run(
        [str(prt), "run", "--", sys.executable, "-m", "pytest", "-q"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert failing.returncode == 1, failing.stderr[-2000:]
    _run([str(prt), "note", "hypothesis", "mean() divides by len - 1"], cwd=repo, env=env)
    stats = repo / "stats.py"
    stats.write_text(stats.read_text().replace("sum(values) / (len(values) - 1)", "sum(values) / len(values)"))
    _run([str(prt), "run", "--", sys.executable, "-m", "pytest", "-q"], cwd=repo, env=env)
    _run([str(prt), "record", "stop"], cwd=repo, env=env)

    folder = tmp_path / "inbox" / trace_id
    assert (folder / "complete.json").is_file() and (folder / "manifest.json").is_file()
    chunks = sorted((folder / "chunks").iterdir())
    events = [json.loads(line) for c in chunks for line in c.read_text().splitlines()]
    assert [e["type"] for e in events] == ["test_run", "rationale_note", "file_edit", "test_run"]
    assert events[0]["failing_tests"] and events[-1]["failed"] == 0

    _run([str(prt), "upload", str(folder), "--inbox", str(tmp_path / "other-inbox")], env=env)
    assert (tmp_path / "other-inbox" / trace_id / "complete.json").read_bytes() == (folder / "complete.json").read_bytes()

    refused = subprocess.run([str(prt), "ingest", "--inbox", str(tmp_path / "inbox")], env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "pip install 'pr-telemetry[pipeline]'" in refused.stderr
