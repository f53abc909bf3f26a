"""Verification on real repositories: environments built from the packages a trace recorded (in the
sandbox, cached, shared by both back-ends), build steps, the nearest Python, targeted runs and Go.

Small fixture repos are written by the tests; their dependencies (six, pytest, setuptools) come
from the package index as wheels, as they would for any trace.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pytest

from client.diffs import EditSpec, unified_diff
from client.snapshot import snapshot_dir
from schemas.settings import SandboxSettings
from tasks.qa.env import EnvSpec, env_spec, nearest_python
from tasks.qa.verify import QaInput, verify_trace
from tests.conftest import SANDBOX_PARAMS, sandbox_or_skip

pytestmark = pytest.mark.slow

SIX = {
    "lib.py": "import six\n\n\ndef is_text(x):\n    return isinstance(x, six.binary_type)\n",
    "tests/test_lib.py": "from lib import is_text\n\n\ndef test_text():\n    assert is_text('a')\n\n\ndef test_bytes():\n    assert not is_text(b'a')\n",
}
SIX_FIX = {"lib.py": SIX["lib.py"].replace("six.binary_type", "six.text_type")}
SIX_PACKAGES = (
    ("six", "1.16.0", False, None),
    ("pytest", "8.3.4", False, None),
    ("pluggy", "1.5.0", False, None),
    ("iniconfig", "2.0.0", False, None),
    ("packaging", "24.2", False, None),
)
"""A developer's whole environment: pytest with what it needs (the base's own pluggy is older)."""

SRC_LAYOUT = {
    "pyproject.toml": (
        "[build-system]\nrequires = ['setuptools>=61']\nbuild-backend = 'setuptools.build_meta'\n\n[project]\nname = 'mypkg'\n"
        "version = '0.1'\n\n[project.entry-points.'mypkg.plugins']\ndouble = 'mypkg.plugins:double'\n"
    ),
    "src/mypkg/__init__.py": (
        "from importlib.metadata import entry_points\n\n\ndef plugins():\n    return {e.name: e.load() for e in entry_points(group='mypkg.plugins')}\n"
    ),
    "src/mypkg/plugins.py": "def double(x):\n    return x + x + 1\n",
    "tests/test_plugins.py": "from mypkg import plugins\n\n\ndef test_double():\n    assert plugins()['double'](2) == 4\n",
}
SRC_FIX = {"src/mypkg/plugins.py": "def double(x):\n    return x + x\n"}

C_EXTENSION = {
    "setup.py": "from setuptools import Extension, setup\n\nsetup(name='fastmath', version='0.1', ext_modules=[Extension('fastmath', ['fastmath.c'])])\n",
    "fastmath.c": (
        "#include <Python.h>\n"
        'static PyObject *add(PyObject *s, PyObject *a) { long x, y; if (!PyArg_ParseTuple(a, "ll", &x, &y)) return NULL; return PyLong_FromLong(x - y); }\n'
        'static PyMethodDef M[] = {{"add", add, METH_VARARGS, ""}, {NULL, NULL, 0, NULL}};\n'
        'static struct PyModuleDef D = {PyModuleDef_HEAD_INIT, "fastmath", NULL, -1, M};\n'
        "PyMODINIT_FUNC PyInit_fastmath(void) { return PyModule_Create(&D); }\n"
    ),
    "tests/test_fast.py": "import fastmath\n\n\ndef test_add():\n    assert fastmath.add(2, 3) == 5\n",
}
C_FIX = {"fastmath.c": C_EXTENSION["fastmath.c"].replace("x - y", "x + y")}

GO = {
    "go.mod": "module example.com/calc\n\ngo 1.19\n",
    "calc.go": "package calc\n\nfunc Add(a, b int) int { return a - b }\n",
    "calc_test.go": (
        'package calc\n\nimport "testing"\n\nfunc TestAdd(t *testing.T) {\n\tif Add(2, 3) != 5 {\n\t\tt.Fatal("add")\n\t}\n}\n\n'
        'func TestZero(t *testing.T) {\n\tif Add(0, 0) != 0 {\n\t\tt.Fatal("zero")\n\t}\n}\n'
    ),
}
GO_FIX = {"calc.go": GO["calc.go"].replace("a - b", "a + b")}

SYMLINKED = {
    "data/expected.txt": "4\n",
    "calc.py": "def double(x):\n    return x * 3\n",
    "tests/test_calc.py": (
        "from pathlib import Path\n\nfrom calc import double\n\n\ndef test_double():\n"
        "    assert double(2) == int(Path(__file__).with_name('expected.txt').read_text())\n"
    ),
}
SYMLINKED_FIX = {"calc.py": "def double(x):\n    return x * 2\n"}


@pytest.fixture(scope="module")
def workdir() -> Path:
    """A work folder the sandbox users can reach (pytest's own tmp folders are private), its own env cache."""
    path = Path(tempfile.mkdtemp(prefix="prt-env-test-"))
    os.chmod(path, 0o755)
    return path


@pytest.fixture(params=[p for p in SANDBOX_PARAMS if p.id != "docker-gvisor"])
def sandbox(request, workdir):
    name, runtime = request.param
    return sandbox_or_skip(name, SandboxSettings(runtime=runtime, workdir=str(workdir)))


def _verify(sandbox, files, edits, command, *, packages=None, install=(), python="3.11.7", targets=(), links=None) -> dict:
    repo = Path(tempfile.mkdtemp())
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    for path, target in (links or {}).items():
        os.symlink(target, repo / path)
    snapshot = snapshot_dir(repo)
    specs = tuple(
        EditSpec(i, f"e{i}", path, unified_diff(files.get(path, ""), text, path), hashlib.sha256(text.encode()).hexdigest())
        for i, (path, text) in enumerate(edits.items())
    )
    inp = QaInput(
        "env-test", "sha256:" + hashlib.sha256(snapshot).hexdigest(), command, 300.0, None, specs,
        tuple(targets), python, packages, tuple(install), "targeted",
    )  # fmt: skip
    return verify_trace(inp, snapshot, sandbox, run_id="test", batch_id="test").row


def test_an_environment_is_built_once_in_the_sandbox_and_reused(sandbox, workdir):
    first = _verify(sandbox, SIX, SIX_FIX, "python -m pytest -q", packages=SIX_PACKAGES, targets=["tests/test_lib.py::test_text"])
    assert first["verdict"] == "verified", first["verdict_reason"]
    assert first["env_id"].startswith("env-") and (
        first["env_cached"] or first["env_log_ref"]
    )  # built here, or by the other back-end
    again = _verify(sandbox, SIX, SIX_FIX, "python -m pytest -q", packages=SIX_PACKAGES, targets=["tests/test_lib.py::test_text"])
    assert (again["verdict"], again["env_id"], again["env_cached"]) == ("verified", first["env_id"], True)
    assert again["env_build_s"] < 1.0  # a lookup, not a build
    # Targeted: the session named one test, QA ran that one, before and after.
    assert again["scope"] == "targeted" and again["run_command"] == "python -m pytest -q tests/test_lib.py::test_text"
    assert again["fail_to_pass"] == ["tests/test_lib.py::test_text"] and again["pass_to_pass"] == []
    # Without the environment, the tests cannot import six: that is an error, not a verdict.
    bare = _verify(sandbox, SIX, SIX_FIX, "python -m pytest -q", packages=None)
    assert bare["verdict"] == "error" and "six" in bare["verdict_reason"] and bare.get("env_id") is None


def test_both_back_ends_share_an_environment(workdir):
    settings = SandboxSettings(workdir=str(workdir))
    namespace, docker = sandbox_or_skip("namespace", settings), sandbox_or_skip("docker", settings)
    assert namespace.bases()[None][1] == docker.bases()[None][1]  # one rootfs id: one environment for both
    a = _verify(namespace, SIX, SIX_FIX, "python -m pytest -q", packages=SIX_PACKAGES)
    b = _verify(docker, SIX, SIX_FIX, "python -m pytest -q", packages=SIX_PACKAGES)
    assert a["env_id"] == b["env_id"] and b["env_cached"] and b["verdict"] == "verified"


def test_an_editable_install_of_the_repo_comes_from_the_snapshot(sandbox):
    """A src/ layout whose behaviour comes through its installed entry points."""
    row = _verify(sandbox, SRC_LAYOUT, SRC_FIX, "python -m pytest -q", packages=(("mypkg", "0.1", True, "."),))
    assert row["verdict"] == "verified", row["verdict_reason"]
    assert row["fail_to_pass"] == ["tests/test_plugins.py::test_double"]


def test_build_steps_run_before_every_run_so_a_fixed_c_extension_is_rebuilt(sandbox):
    row = _verify(sandbox, C_EXTENSION, C_FIX, "python -m pytest -q", packages=(("setuptools", "68.0.0", False, None),),
                  install=["python setup.py build_ext --inplace"])  # fmt: skip
    assert row["verdict"] == "verified", row["verdict_reason"]
    without = _verify(sandbox, C_EXTENSION, C_FIX, "python -m pytest -q", packages=(("setuptools", "68.0.0", False, None),))
    assert without["verdict"] == "error" and "could not be collected" in without["verdict_reason"]
    broken = _verify(sandbox, C_EXTENSION, C_FIX, "python -m pytest -q", install=["python setup.py no_such_command"])
    assert broken["verdict"] == "error" and "the build steps failed" in broken["verdict_reason"]


def test_a_build_that_fails_is_an_error_with_its_log(sandbox):
    row = _verify(sandbox, SIX, SIX_FIX, "python -m pytest -q", packages=(("prt-no-such-package-xyz", "0.0.1", False, None),))
    assert row["verdict"] == "error" and row["verdict_reason"].startswith("env_build_failed:")
    assert row["env_log_ref"] and row.get("before_exit_code") is None and row.get("after_exit_code") is None  # no test ran


def test_the_nearest_python_runs_the_tests(sandbox):
    bases = sandbox.bases()
    if "3.13" not in {py for py, _ in bases.values()}:
        if os.environ.get("PRT_REQUIRE_DOCKER") == "1":
            pytest.fail("no Python 3.13 base: .ci/run builds one with PRT_DEBIAN_SUITE=trixie docker/build-offline.sh")
        pytest.skip("no Python 3.13 base (make base-trixie)")
    row = _verify(sandbox, SIX, SIX_FIX, "python -m pytest -q", packages=SIX_PACKAGES, python="3.13.1")
    assert (row["verdict"], row["env_python"]) == ("verified", "3.13"), row["verdict_reason"]
    older = _verify(sandbox, SIX, SIX_FIX, "python -m pytest -q", packages=SIX_PACKAGES, python="3.10.4")
    assert older["env_python"] == "3.11"


def test_go_test_end_to_end(sandbox):
    row = _verify(sandbox, GO, GO_FIX, "go test ./...", targets=["example.com/calc::TestAdd"])
    assert row["verdict"] == "verified", row["verdict_reason"]
    assert row["framework"] == "go" and row["fail_to_pass"] == ["example.com/calc::TestAdd"]
    assert row["run_command"] == "go test -run '^(TestAdd)$' example.com/calc"
    full = _verify(sandbox, GO, GO_FIX, "go test ./...")
    assert full["fail_to_pass"] == ["example.com/calc::TestAdd"] and full["pass_to_pass"] == ["example.com/calc::TestZero"]
    broken = _verify(sandbox, GO, {"calc.go": "package calc\n\nfunc Add(a, b int) int { return a +\n"}, "go test ./...")
    assert broken["verdict"] == "error" and "could not be collected" in broken["verdict_reason"]


def test_relative_links_inside_the_repo_are_part_of_the_snapshot(sandbox):
    row = _verify(sandbox, SYMLINKED, SYMLINKED_FIX, "python -m pytest -q", links={"tests/expected.txt": "../data/expected.txt"})
    assert row["verdict"] == "verified", row["verdict_reason"]


def test_the_nearest_python_rule():
    assert nearest_python("3.11.7", ["3.11", "3.13"]) == "3.11"
    assert nearest_python("3.12.1", ["3.11", "3.13"]) == "3.13"  # a tie: the newer
    assert nearest_python("3.9", ["3.11", "3.13"]) == "3.11"
    assert nearest_python(None, ["3.11", "3.13"]) == "3.13"
    assert nearest_python("3.11", []) is None


def test_an_environment_is_keyed_by_what_it_is_built_from(tmp_path):
    packages = [{"name": "Six", "version": "1.16.0"}, {"name": "mypkg", "version": "0.1", "editable": True, "path": "."}]
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'mypkg'\n")
    spec = env_spec(packages, "3.11", "rootfs-1", tmp_path)
    assert spec == EnvSpec("3.11", "rootfs-1", ("six==1.16.0",), (".",), spec.build_config) and spec.build_config
    same = env_spec(list(reversed(packages)), "3.11", "rootfs-1", tmp_path)
    assert same.env_id == spec.env_id
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'mypkg'\nversion = '2'\n")
    assert env_spec(packages, "3.11", "rootfs-1", tmp_path).env_id != spec.env_id  # the build config changed
    assert env_spec(packages, "3.13", "rootfs-2", tmp_path).env_id != spec.env_id
    assert env_spec(None, "3.11", "rootfs-1", tmp_path) is None
