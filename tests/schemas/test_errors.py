"""The error tree is honest: every class in it is raised somewhere, every exception the project
defines is in it (under PrtError), and the tree drawn in its docstring is the tree in the code."""

from __future__ import annotations

import ast
import inspect

from schemas import errors
from tests.conftest import REPO
from tests.test_layering import PACKAGES


def _production_sources():
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            yield path, ast.parse(path.read_text(), str(path))


def _error_classes() -> dict[str, type]:
    return {
        name: cls
        for name, cls in vars(errors).items()
        if inspect.isclass(cls) and issubclass(cls, errors.PrtError) and cls.__module__ == errors.__name__
    }


def test_every_error_class_is_raised_somewhere():
    made: set[str] = set()
    for path, tree in _production_sources():
        if path.name == "errors.py" and path.parent.name == "schemas":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                made.add(node.func.id)
    unused = sorted(set(_error_classes()) - made - {"PrtError"})
    assert unused == [], f"error classes nothing raises: {unused}"


def test_every_exception_the_project_defines_is_in_the_tree():
    stray = []
    for path, tree in _production_sources():
        if path.name == "errors.py" and path.parent.name == "schemas":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b) for b in node.bases}
                if any(b.endswith(("Error", "Exception")) for b in bases):
                    stray.append(f"{path.relative_to(REPO)}: {node.name}")
    assert stray == [], f"exceptions defined outside schemas/errors.py: {stray}"
    assert all(issubclass(cls, errors.PrtError) for cls in _error_classes().values())


def test_the_docstring_draws_the_tree_in_the_code():
    drawn = {line.split("──")[-1].split()[0] for line in errors.__doc__.splitlines() if "──" in line}
    assert drawn == set(_error_classes()) - {"PrtError"}
    for name, cls in _error_classes().items():
        parent = next(b for b in cls.__mro__[1:] if b in _error_classes().values()) if name != "PrtError" else None
        line = next((ln for ln in errors.__doc__.splitlines() if f"── {name} " in ln or ln.endswith(f"── {name}")), "")
        if parent is errors.DiffError:
            assert line.startswith("        └── "), name  # drawn under DiffError
        elif parent is not None:
            assert line.startswith("    ├── ") or line.startswith("    └── "), name
        transient = issubclass(cls, errors.TransientError)
        if name != "PrtError":
            assert ("(transient)" in line) == transient and ("(terminal)" in line) == (not transient), name


def test_every_error_survives_pickling_with_its_attributes():
    # Errors travel to and from ingest's worker processes: a rejected trace's listing holds one.
    import pickle

    from schemas import errors as e

    samples = [
        e.ConfigError("PRT_X is wrong"),
        e.InvalidInput("lake", "no lake there"),
        e.ObjectConflict("inbox/t/a"),
        e.StorageUnavailable("timed out", url="s3://b/x"),
        e.LeaseLost("b-1"),
        e.SandboxUnavailable("no docker", backend="docker"),
        e.RecorderError("not a repo", repo="/r"),
        e.UnsupportedTestCommand("make test", "not a runner"),
        e.JudgeFailed("openai-x", "scored none"),
        e.GzipError(True, "chunk 3"),
        e.ReplayError(4, "ev-1", "a.py", "does not apply"),
        e.TraceRejected("bad_json", "complete.json is not JSON", object_key="complete.json"),
    ]
    for err in samples:
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err) and vars(back) == vars(err), err
