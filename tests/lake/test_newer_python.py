"""Readers on current Python: `pip install pr-telemetry[read]` on Python 3.13 reads the lake and
exports a training set from it.

The interpreter is Debian trixie's, from the rootfs `.ci/run` builds for the sandboxes (no
registry here to pull a python:3.13 image from). The host downloads the cp313 wheels (the lock's
versions) and nothing else crosses: the install and the run happen in bubblewrap on that rootfs
without network, the repo copied in, the examples' lake bound read-only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from schemas.settings import SandboxSettings
from tests.conftest import REPO

pytestmark = pytest.mark.slow

PYTHON = "3.13"
READER = """
import json, sys
import polars as pl
from lake import Lake
from tasks.research.export import export

lake, out = sys.argv[1], sys.argv[2]
lk = Lake(lake)
verified = lk.dataset(verdict="verified").collect().height
report = export(lk, out, "parquet", split="train=0.5,test=0.5", split_by="repo")
back = pl.read_parquet(out + "/data/*.parquet")
print(json.dumps({"python": sys.version.split()[0], "verified": verified, "records": report.records,
                  "read_back": sorted(back["trace_id"].to_list()), "pipeline": "prefect" in sys.modules}))
"""


def _run(argv, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=900, **kw)
    assert r.returncode == 0, (argv[-6:], r.stdout[-3000:], r.stderr[-3000:])
    return r


def _rootfs() -> Path:
    root = Path(SandboxSettings().rootfs)
    trixie = root.with_name(root.name + "-trixie")
    if not (trixie / "usr" / "bin" / f"python{PYTHON}").exists() or not shutil.which("bwrap"):
        if os.environ.get("PRT_REQUIRE_DOCKER") == "1":  # CI builds it: its absence there is a failure
            pytest.fail(f"no Python {PYTHON} rootfs at {trixie} (PRT_DEBIAN_SUITE=trixie docker/build-offline.sh)")
        pytest.skip(f"no Python {PYTHON} rootfs at {trixie}")
    return trixie


def _requirements() -> list[str]:
    """The `read` extra and the base install, resolved against the lock's versions."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["read"], *project["optional-dependencies"]["s3"]]
    return [r for r in reqs if not r.startswith("pr-telemetry")] + ["setuptools>=69", "pip"]


def test_the_reader_installs_and_exports_on_python_3_13(examples_lake, tmp_path):
    rootfs = _rootfs()
    wheels, work = tmp_path / "wheels", tmp_path / "work"
    work.mkdir()
    _run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", PYTHON, "--implementation", "cp",
          "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux_2_28_x86_64",
          "--platform", "any", "-c", str(REPO / "requirements.lock"), "-d", str(wheels), *_requirements()])  # fmt: skip
    source = work / "source"  # setuptools builds in the source tree: a copy of the tracked files
    for rel in _run(["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard"]).stdout.splitlines():
        if (REPO / rel).is_file():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, source / rel)
    (work / "reader.py").write_text(READER)
    lake = str(Path(examples_lake).resolve())
    pip_wheel = next(wheels.glob("pip-*.whl"))
    box = ["bwrap", "--ro-bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
           "--bind", str(work), "/work", "--ro-bind", str(wheels), "/tmp/wheels", "--ro-bind", lake, "/tmp/lake",
           "--unshare-net", "--die-with-parent", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin",
           "--setenv", "HOME", "/tmp", "--chdir", "/work", "--"]  # fmt: skip
    _run([*box, f"/usr/bin/python{PYTHON}", "-m", "venv", "--without-pip", "/work/venv"])
    _run([*box, "/work/venv/bin/python", f"/tmp/wheels/{pip_wheel.name}/pip", "install", "-q", "--no-index", "--find-links", "/tmp/wheels",
          "/work/source[read]"])  # fmt: skip
    out = json.loads(_run([*box, "/work/venv/bin/python", "/work/reader.py", "/tmp/lake", "/work/set"]).stdout.splitlines()[-1])
    assert out["python"].startswith(PYTHON + ".") and not out["pipeline"]
    assert out["verified"] == 2 and out["records"] == 3
    assert out["read_back"] == ["example-failed-attempt", "example-multi-file-fix", "example-simple-fix"]
