"""What the session's environment was, captured where the developer works, so QA can build it again.

The interpreter is the one the developer's tests run with: `--python`, else the activated
virtualenv's (`$VIRTUAL_ENV/bin/python`), else `python3` on PATH. It is asked (a short script,
its standard library only) for its version and every installed distribution: name, version, and
whether it is an editable install of the repo itself (PEP 610's direct_url.json, or a legacy
`setup.py develop` whose metadata lies in the repo). The repo's own dependency files are listed;
a repo with a setup.py whose C extensions the developer built in place gets the build step QA
must repeat (`python setup.py build_ext --inplace`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from schemas.errors import RecorderError

__all__ = ["DEPENDENCY_FILES", "capture_environment", "default_install", "dependency_files", "find_python", "interpreter_of"]

DEPENDENCY_FILES = (
    "requirements*.txt", "requirements/*.txt", "constraints*.txt", "pyproject.toml", "setup.py", "setup.cfg",
    "Pipfile", "Pipfile.lock", "poetry.lock", "uv.lock", "pdm.lock", "environment.yml", "go.mod", "go.sum",
    "package.json", "package-lock.json",
)  # fmt: skip
"""Files that declare a repo's dependencies (globs from the repo root)."""

_OWN_DISTRIBUTIONS = {"pr-telemetry"}
"""The recorder itself, when it is installed in the same environment: not the repo's dependency."""

_CAPTURE = r"""
import json, os, sys
try:
    import importlib.metadata as md
except ImportError:
    md = None
out = {"python_version": "%d.%d.%d" % tuple(sys.version_info[:3]), "packages": []}
for d in (md.distributions() if md else []):
    name = d.metadata["Name"]
    if not name:
        continue
    item = {"name": name, "version": d.version, "editable": False, "location": None}
    text = d.read_text("direct_url.json")
    if text:
        info = json.loads(text)
        if info.get("dir_info", {}).get("editable"):
            item["editable"], item["location"] = True, info.get("url")
    if not item["editable"]:
        where = getattr(d, "_path", None)
        if where is not None and str(where).endswith(".egg-info") and "site-packages" not in str(where):
            item["editable"], item["location"] = True, str(os.path.dirname(str(where)))
    out["packages"].append(item)
print(json.dumps(out))
"""


def find_python(explicit: str | None = None) -> str:
    """The interpreter whose environment the session's tests use."""
    if explicit:
        return explicit
    venv = os.environ.get("VIRTUAL_ENV")
    if venv and (Path(venv) / "bin" / "python").exists():
        return str(Path(venv) / "bin" / "python")
    found = shutil.which("python3") or shutil.which("python")
    if not found:
        raise RecorderError("no python3 on PATH; say which interpreter runs the tests with --python")
    return found


def interpreter_of(argv: list[str]) -> str | None:
    """The Python a test command runs with: `python… -m ...` itself, or the interpreter in the
    first line of a console script such as `pytest`; None for anything else (go test)."""
    program = shutil.which(argv[0]) if argv else None
    if not program:
        return None
    if os.path.basename(argv[0]).startswith("python"):
        return program
    try:
        with open(program, "rb") as f:
            first = f.readline(512)
    except OSError:
        return None
    if first.startswith(b"#!") and b"python" in first:
        words = first[2:].decode("utf-8", "replace").split()
        return words[-1] if words and words[0].endswith("/env") else (words[0] if words else None)
    return None


def _relative(location: str | None, repo: Path) -> str | None:
    if not location:
        return None
    path = Path(unquote(urlparse(location).path)) if location.startswith("file:") else Path(location)
    try:
        rel = path.resolve().relative_to(repo.resolve())
    except ValueError:
        return None  # installed from outside the repo
    return rel.as_posix() or "."


def capture_environment(repo: Path, python: str | None = None) -> tuple[dict, list[str]]:
    """(the manifest's `environment` fields: python_version and packages, warnings for the user)."""
    interpreter = find_python(python)
    try:
        # Not from the repo: its own build leftovers (an .egg-info) would read as an installed copy.
        out = subprocess.run(
            [interpreter, "-I", "-c", _CAPTURE], capture_output=True, text=True, timeout=120, cwd=tempfile.gettempdir()
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RecorderError(f"could not ask {interpreter} for its environment: {exc}", repo=str(repo)) from None
    if out.returncode != 0:
        raise RecorderError(
            f"{interpreter} could not list its environment: {out.stderr.strip()[-300:]}; say which interpreter runs the "
            "tests with --python",
            repo=str(repo),
        )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    packages, warnings, seen = [], [], set()
    for p in sorted(found["packages"], key=lambda p: p["name"].lower()):
        key = p["name"].lower().replace("_", "-")
        if key in seen or key in _OWN_DISTRIBUTIONS:
            continue
        seen.add(key)
        entry = {"name": p["name"], "version": p["version"]}
        if p["editable"]:
            path = _relative(p["location"], repo)
            if path is None:
                warnings.append(
                    f"{p['name']} is an editable install from outside this repo; QA will install {p['name']}=={p['version']} "
                    "from the package index instead"
                )
            else:
                entry.update(editable=True, path=path)
        packages.append(entry)
    return {"python_version": found["python_version"], "packages": packages}, warnings


def dependency_files(files: list[str]) -> list[str]:
    """The tracked files among `files` (repo-relative) that declare dependencies."""
    from fnmatch import fnmatch

    return sorted(f for f in files if any(fnmatch(f, pattern) for pattern in DEPENDENCY_FILES))


def default_install(repo: Path, ignored_files: list[str]) -> list[str]:
    """Build steps QA must repeat that the developer ran without saying: C extensions built in place."""
    built_in_place = [f for f in ignored_files if f.endswith((".so", ".pyd")) and "/site-packages/" not in f]
    if (repo / "setup.py").is_file() and built_in_place:
        return ["python setup.py build_ext --inplace"]
    return []
