"""The layering is enforced, not a comment: import-linter's contracts (pyproject.toml) hold, and an
AST check finds no private name used across modules and no Delta call outside lake/. Each check
is also run on a copy of the tree with a violation planted, and must fail there."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("schemas", "lake", "tasks", "jobs", "flows", "expectations", "client", "bench")
_DELTA_CALLS = {"scan_delta", "read_delta", "write_delta", "write_deltalake"}


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(lint), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def _modules(root: Path):
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            yield ".".join(parts), path


def layering_violations(root: Path) -> list[str]:
    """Private names of one of our modules used from another, and Delta calls outside lake/."""
    ours = {m for m, _ in _modules(root)}
    out = []
    for module, path in _modules(root):
        tree = ast.parse(path.read_text(), str(path))
        aliases: dict[str, str] = {}  # local name -> our module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                if any(p.startswith("_") and not p.startswith("__") for p in node.module.split(".")):
                    out.append(f"{module}: imports the private module {node.module}")
                for a in node.names:
                    target = f"{node.module}.{a.name}"
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        out.append(f"{module}: imports the private name {target}")
                    if target in ours:
                        aliases[a.asname or a.name] = target
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] in PACKAGES:
                        if any(p.startswith("_") and not p.startswith("__") for p in a.name.split(".")):
                            out.append(f"{module}: imports the private module {a.name}")
                        aliases[a.asname or a.name] = a.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                base = ast.unparse(node.value)
                if base in aliases and aliases[base] != module:
                    out.append(f"{module}: uses the private name {aliases[base]}.{node.attr}")
            if isinstance(node, ast.Attribute) and node.attr in _DELTA_CALLS and not module.startswith(("lake", "bench")):
                out.append(f"{module}: calls {node.attr} (Delta is called only in lake/)")
    return sorted(set(out))


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_import_contracts_hold():
    r = _lint_imports(REPO)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "9 kept, 0 broken" in r.stdout


def test_no_private_names_across_modules_and_no_delta_outside_the_lake():
    assert layering_violations(REPO) == []


@pytest.mark.parametrize(
    ("module", "code", "broken"),
    [
        pytest.param(
            "schemas/_planted.py", "import tasks.ingest\n", "schemas imports nothing of ours BROKEN", id="schemas-imports-tasks"
        ),
        pytest.param("lake/_planted.py", "from tasks.qa import grade\n", "lake never imports tasks", id="lake-imports-tasks"),
        pytest.param("tasks/_planted.py", "import flows.ingest\n", "tasks never imports jobs, flows", id="tasks-imports-flows"),
        pytest.param("jobs/_planted.py", "import flows.ingest\n", "jobs are plain Python", id="jobs-imports-flows"),
        pytest.param(
            "jobs/_planted2.py", "from prefect import get_run_logger\n", "only flows import Prefect", id="jobs-imports-prefect"
        ),
        pytest.param("tasks/_planted3.py", "import prefect\n", "only flows import Prefect", id="tasks-imports-prefect"),
        pytest.param("client/_planted_writer.py", "", "", id="unlisted-module-is-free"),
        pytest.param(
            "client/snapshot.py", "import polars\n", "the producer side imports only schemas", id="producer-imports-polars"
        ),
        pytest.param(
            "tasks/_planted2.py", "import deltalake\n", "Delta is called only in lake BROKEN", id="tasks-imports-deltalake"
        ),
    ],
)
def test_a_planted_violation_breaks_its_contract(tree_copy, module, code, broken):
    path = tree_copy / module
    saved = path.read_text() if path.exists() else None
    path.write_text((saved or "") + code)
    try:
        r = _lint_imports(tree_copy)
    finally:
        if saved is None:
            path.unlink()
        else:
            path.write_text(saved)
    if broken:
        assert r.returncode != 0 and broken in r.stdout, r.stdout[-3000:]
    else:
        assert r.returncode == 0, r.stdout[-3000:]


@pytest.mark.parametrize(
    ("code", "found"),
    [
        pytest.param("from tasks.ingest.validate import _validations\n", "imports the private name", id="private-name"),
        pytest.param(
            "import tasks.ingest.validate\n\ntasks.ingest.validate._validations()\n", "uses the private name", id="private-attr"
        ),
        pytest.param(
            "from tasks import stage as _s\nimport polars\n\npolars.scan_delta('x')\n", "calls scan_delta", id="polars-delta"
        ),
    ],
)
def test_a_planted_private_call_or_delta_call_is_found(tree_copy, code, found):
    path = tree_copy / "flows" / "planted.py"
    path.write_text(code)
    try:
        assert any(found in v for v in layering_violations(tree_copy))
    finally:
        path.unlink()
