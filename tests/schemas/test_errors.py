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
