"""The test runners QA can run, and how: a recorded test command is parsed, never run through a shell.

A test command is `[NAME=value ...] RUNNER [ARGS ...]` in shell words. QA runs RUNNER itself,
with the reporter of client/testruns/harness/ loaded, so that per-test results, collection errors and
the runner's exit status reach the grader from a folder outside the workspace, written by the
test process alone. A command with shell operators or expansions (`;`, `&&`, `|`, `>`, `$`, a
backquote) could write over those results, so QA refuses it with a reason (verdict `error`).

    runner     recorded as                                   QA runs
    pytest     pytest, py.test, python[X.Y] -m pytest        the same, plus -p prt_pytest,
                                                             --continue-on-collection-errors and
                                                             no --maxfail / -x (a before run must
                                                             run every test, not stop at the first)
    unittest   python[X.Y] -m unittest [discover] ...        python[X.Y] -m prt_unittest ...
    go         go test [ARGS]                                python3 -m prt_go go test ARGS (go test -json)

A new framework is a `Runner` subclass registered in RUNNERS: how to recognise its command,
the argv QA runs, and which tests a command names (the session's targets, tasks/qa/grade.py).
"""

from __future__ import annotations

import os
import re
import shlex
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from schemas.errors import UnsupportedTestCommand

__all__ = ["LIB_MOUNT", "OUT_MOUNT", "RUNNERS", "Runner", "TestCommand", "UnsupportedTestCommand", "parse_test_command"]

LIB_MOUNT = "/run/prt/lib"
"""Where the sandbox sees client/testruns/harness/ (read-only)."""
OUT_MOUNT = "/run/prt/out"
"""Where the reporter writes its results inside the sandbox (outside the workspace)."""

_PYTHON = re.compile(r"python[0-9.]*")
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)
_OWNED_ENV = {"PRT_REPORT_DIR", "PRT_HARD_EXIT", "PRT_QA"}
_SHELL_OPERATOR = re.compile(r"[;&|<>()]")


class Runner(ABC):
    """One test framework QA knows."""

    name: ClassVar[str]
    runner_failures: ClassVar[dict[int, str]] = {}
    """Exit statuses that mean the runner itself failed, with what each means."""

    @classmethod
    @abstractmethod
    def matches(cls, argv: list[str]) -> bool:
        """Whether `argv` (after NAME=value assignments) runs this framework."""

    @classmethod
    @abstractmethod
    def qa_argv(cls, argv: list[str]) -> list[str]:
        """The argv QA runs in the sandbox for the recorded `argv`, its reporter loaded."""

    @classmethod
    @abstractmethod
    def named_tests(cls, argv: list[str]) -> list[str]:
        """Tests, files or folders the command names (none for a whole-suite run)."""

    @classmethod
    @abstractmethod
    def targeted(
        cls, argv: list[str], targets: list[str], exists: Callable[[str], bool]
    ) -> tuple[list[str], dict[str, str]] | None:
        """The recorded argv rewritten to run only `targets` (test ids, files, folders, in any
        runner's spelling), and the environment it needs; None when no target can be named to this
        runner. `exists(path)` says whether a repo-relative path is in the tree under test."""

    @classmethod
    def id_roots(cls, argv: list[str]) -> list[str]:
        """Folders the runner's test ids are relative to, when not the repo root."""
        return []


def _is_python_module(argv: list[str], module: str) -> bool:
    return len(argv) >= 3 and bool(_PYTHON.fullmatch(os.path.basename(argv[0]))) and argv[1:3] == ["-m", module]


def _split(args: list[str], takes_value: set[str]) -> tuple[list[str], list[str]]:
    """(options with their values, positional arguments) of `args`."""
    options, positionals, value_of = [], [], None
    for arg in args:
        if value_of is not None:
            options.append(arg)
            value_of = None
        elif arg == "--":
            continue
        elif arg.startswith("-"):
            options.append(arg)
            value_of = arg if arg in takes_value else None
        else:
            positionals.append(arg.removeprefix("./"))
    return options, positionals


def _positionals(args: list[str], takes_value: set[str]) -> list[str]:
    return _split(args, takes_value)[1]


def _outermost(names: set[str], separators: tuple[str, ...]) -> list[str]:
    """`names` without those another one already covers (a test inside a named file or module)."""
    return sorted(n for n in names if not any(n.startswith(o + sep) for o in names if o != n for sep in separators))


def _as_path_target(target: str, exists: Callable[[str], bool]) -> str | None:
    """A target in pytest's spelling (path[::names]) if its file or folder is in the tree: a dotted
    unittest id becomes the file it names plus the rest as node names."""
    target = target.removeprefix("./")
    if "::" in target or "/" in target or target.endswith(".py"):
        return target if exists(target.split("::")[0].rstrip("/")) else None
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        path = "/".join(parts[:i])
        if exists(path + ".py"):
            return "::".join([path + ".py", *parts[i:]])
        if i == len(parts) and exists(path):
            return path
    return None


def _as_dotted(target: str, root: str, exists: Callable[[str], bool]) -> str | None:
    """A target in unittest's spelling, relative to the folder `root` (`.` for the repo root)."""
    target = target.removeprefix("./")
    prefix = "" if root in ("", ".") else root.rstrip("/") + "/"
    if "::" in target or "/" in target or target.endswith(".py"):
        path, _, rest = target.partition("::")
        path = path.rstrip("/")
        if not exists(path) or not path.startswith(prefix):
            return None
        module = path[len(prefix) :].removesuffix(".py").replace("/", ".")
        names = [n.split("[")[0] for n in rest.split("::") if n]
        return ".".join([module, *names])
    return target  # already dotted, relative to the root


class Pytest(Runner):
    name = "pytest"
    runner_failures: ClassVar[dict[int, str]] = {
        2: "pytest was interrupted",
        3: "pytest hit an internal error",
        4: "pytest could not start (a usage error, or a conftest.py that failed to import)",
        5: "pytest collected no tests",
    }
    _VALUE_OPTIONS: ClassVar[set[str]] = {
        "-k", "-m", "-p", "-o", "-c", "-W", "-r", "-n", "--deselect", "--ignore", "--ignore-glob", "--rootdir",
        "--basetemp", "--junitxml", "--junit-xml", "--junit-prefix", "--maxfail", "--tb", "--durations",
        "--durations-min", "--import-mode", "--log-level", "--log-file", "--log-cli-level", "--log-format",
        "--log-date-format", "--confcutdir", "--override-ini", "--capture", "--color", "--cov", "--cov-report",
        "--numprocesses", "--dist", "--reruns", "--timeout", "--pyargs", "--config-file", "--inifile",
    }  # fmt: skip

    @classmethod
    def matches(cls, argv: list[str]) -> bool:
        return os.path.basename(argv[0]) in ("pytest", "py.test") or _is_python_module(argv, "pytest")

    @classmethod
    def qa_argv(cls, argv: list[str]) -> list[str]:
        ours = ["-p", "prt_pytest", "-p", "no:cacheprovider", "--continue-on-collection-errors", "--maxfail=2147483647"]
        if "--" in argv:  # everything after `--` is a path to pytest
            cut = argv.index("--")
            return [*argv[:cut], *ours, *argv[cut:]]
        return [*argv, *ours]

    @classmethod
    def named_tests(cls, argv: list[str]) -> list[str]:
        start = 3 if _is_python_module(argv, "pytest") else 1
        return _positionals(argv[start:], cls._VALUE_OPTIONS)

    @classmethod
    def targeted(
        cls, argv: list[str], targets: list[str], exists: Callable[[str], bool]
    ) -> tuple[list[str], dict[str, str]] | None:
        start = 3 if _is_python_module(argv, "pytest") else 1
        options, _ = _split(argv[start:], cls._VALUE_OPTIONS)
        named = _outermost({t for t in (_as_path_target(x, exists) for x in targets) if t}, ("::", "/"))
        return ([*argv[:start], *options, *named], {}) if named else None


class Unittest(Runner):
    name = "unittest"
    runner_failures: ClassVar[dict[int, str]] = {2: "unittest could not start (a usage error)", 5: "unittest ran no tests"}
    _VALUE_OPTIONS: ClassVar[set[str]] = {
        "-k",
        "--durations",
        "-s",
        "--start-directory",
        "-p",
        "--pattern",
        "-t",
        "--top-level-directory",
    }

    @classmethod
    def matches(cls, argv: list[str]) -> bool:
        return _is_python_module(argv, "unittest")

    @classmethod
    def qa_argv(cls, argv: list[str]) -> list[str]:
        return [argv[0], "-m", "prt_unittest", *argv[3:]]

    @classmethod
    def named_tests(cls, argv: list[str]) -> list[str]:
        args = argv[3:]
        if args[:1] == ["discover"]:
            return []  # a discovery runs a whole folder: what failed in it is named by failing_tests
        return _positionals(args, cls._VALUE_OPTIONS)

    @classmethod
    def _top(cls, argv: list[str]) -> str:
        """The folder a discovery's test ids are relative to (its top-level folder, else its start folder)."""
        args = argv[3:]
        if args[:1] != ["discover"]:
            return "."
        options, positionals = _split(args[1:], cls._VALUE_OPTIONS)
        value = {options[i]: options[i + 1] for i in range(len(options) - 1) if options[i] in cls._VALUE_OPTIONS}
        top = value.get("-t") or value.get("--top-level-directory")
        start = value.get("-s") or value.get("--start-directory") or (positionals[0] if positionals else ".")
        return (top or start).removeprefix("./").rstrip("/") or "."

    @classmethod
    def id_roots(cls, argv: list[str]) -> list[str]:
        top = cls._top(argv)
        return [] if top == "." else [top]

    @classmethod
    def targeted(
        cls, argv: list[str], targets: list[str], exists: Callable[[str], bool]
    ) -> tuple[list[str], dict[str, str]] | None:
        top = cls._top(argv)
        args = argv[3:]
        options, _ = _split(args[1:] if args[:1] == ["discover"] else args, cls._VALUE_OPTIONS)
        keep, skip = [], False
        for o in options:  # discovery's own options do not apply to named tests
            if skip:
                skip = False
            elif o in ("-s", "--start-directory", "-p", "--pattern", "-t", "--top-level-directory"):
                skip = True
            else:
                keep.append(o)
        named = _outermost({t for t in (_as_dotted(x, top, exists) for x in targets) if t}, (".",))
        if not named:
            return None
        return [*argv[:3], *keep, *named], ({} if top == "." else {"PYTHONPATH": top})


class GoTest(Runner):
    name = "go"
    runner_failures: ClassVar[dict[int, str]] = {2: "go test could not run", 5: "go test ran no tests"}
    _VALUE_OPTIONS: ClassVar[set[str]] = {
        "-run",
        "-skip",
        "-count",
        "-timeout",
        "-tags",
        "-p",
        "-parallel",
        "-cpu",
        "-bench",
        "-coverprofile",
    }
    env: ClassVar[dict[str, str]] = {
        "GOCACHE": "/tmp/go-cache",
        "GOPATH": "/tmp/go",
        "GOPROXY": "off",
        "GOFLAGS": "-mod=mod",
        "GOTELEMETRY": "off",
    }
    """Go writes its build cache under HOME, which is read-only in the sandbox; modules come from the repo only."""

    @classmethod
    def matches(cls, argv: list[str]) -> bool:
        return os.path.basename(argv[0]) == "go" and argv[1:2] == ["test"]

    @classmethod
    def qa_argv(cls, argv: list[str]) -> list[str]:
        return ["python3", "-m", "prt_go", "go", "test", *[a for a in argv[2:] if a != "-json"]]

    @classmethod
    def named_tests(cls, argv: list[str]) -> list[str]:
        return []  # packages and -run patterns name no single test id; what failed is named by failing_tests

    @classmethod
    def targeted(
        cls, argv: list[str], targets: list[str], exists: Callable[[str], bool]
    ) -> tuple[list[str], dict[str, str]] | None:
        by_package: dict[str, set[str]] = {}
        for t in targets:
            package, sep, test = t.partition("::")
            if sep and test:
                by_package.setdefault(package, set()).add(re.escape(test.split("/")[0]))
        if not by_package:
            return None
        options, _ = _split(argv[2:], cls._VALUE_OPTIONS)
        keep, skip = [], False
        for o in options:
            if skip:
                skip = False
            elif o in ("-run",):
                skip = True
            elif not o.startswith("-run="):
                keep.append(o)
        names = sorted({n for tests in by_package.values() for n in tests})
        return ["go", "test", *keep, "-run", f"^({'|'.join(names)})$", *sorted(by_package)], {}


RUNNERS: dict[str, type[Runner]] = {r.name: r for r in (Pytest, Unittest, GoTest)}


@dataclass(frozen=True)
class TestCommand:
    """A recorded test command QA can run: its runner, its NAME=value assignments, its argv."""

    __test__ = False  # not a pytest test class, whatever its name

    command: str
    runner: type[Runner]
    env: tuple[tuple[str, str], ...]
    argv: tuple[str, ...]

    @property
    def framework(self) -> str:
        return self.runner.name

    def sandbox_command(self) -> str:
        """The shell line the sandbox runs: `exec` of the runner, every word quoted (no expansion)."""
        return "exec " + shlex.join(self.runner.qa_argv(list(self.argv)))

    def sandbox_env(self) -> dict[str, str]:
        """The command's own assignments plus what the reporter needs (PYTHONPATH keeps the command's part first)."""
        env = {**getattr(self.runner, "env", {}), **dict(self.env)}
        env["PYTHONPATH"] = ":".join(p for p in (env.get("PYTHONPATH"), LIB_MOUNT) if p)
        env.update(PRT_REPORT_DIR=OUT_MOUNT, PRT_HARD_EXIT="1", PRT_QA="1")
        return env

    def named_tests(self) -> list[str]:
        return self.runner.named_tests(list(self.argv))

    def id_roots(self) -> list[str]:
        return self.runner.id_roots(list(self.argv))

    def targeted(self, targets: list[str], exists: Callable[[str], bool]) -> TestCommand | None:
        """This command narrowed to `targets` (see Runner.targeted), or None."""
        found = self.runner.targeted(list(self.argv), targets, exists)
        if found is None:
            return None
        argv, env = found
        merged = dict(self.env)
        for k, v in env.items():  # the command's own PYTHONPATH stays first
            merged[k] = ":".join(p for p in (merged.get(k), v) if p)
        return TestCommand(
            shlex.join([f"{k}={v}" for k, v in merged.items()] + argv), self.runner, tuple(merged.items()), tuple(argv)
        )


def parse_test_command(command: str) -> TestCommand:
    """The runner and arguments of `command`, or UnsupportedTestCommand saying why QA cannot run it."""
    if "$" in command or "`" in command:
        raise UnsupportedTestCommand(
            command, f"the test command {command!r} uses shell expansion ($ or `); QA runs the test runner without a shell"
        )
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError as exc:
        raise UnsupportedTestCommand(command, f"the test command {command!r} is not valid shell words ({exc})") from None
    if any(_SHELL_OPERATOR.fullmatch(w[:1]) and set(w) <= set(";&|<>()") for w in words):
        raise UnsupportedTestCommand(
            command,
            f"the test command {command!r} uses shell operators; QA runs the test runner itself, without a shell, "
            "so that nothing else can write its results. Record one runner invocation, e.g. 'python -m pytest -q tests'",
        )
    env: list[tuple[str, str]] = []
    while words and (m := _ASSIGNMENT.fullmatch(words[0])):
        if m[1] in _OWNED_ENV:
            raise UnsupportedTestCommand(command, f"the test command {command!r} sets {m[1]}, which QA sets itself")
        env.append((m[1], m[2]))
        words = words[1:]
    if not words:
        raise UnsupportedTestCommand(command, f"the test command {command!r} runs nothing")
    for runner in RUNNERS.values():
        if runner.matches(words):
            return TestCommand(command, runner, tuple(env), tuple(words))
    known = "pytest, py.test, python -m pytest, python -m unittest, go test"
    raise UnsupportedTestCommand(
        command,
        f"QA does not know how to run the test command {command!r}: it runs the test runner itself ({known}), "
        "never through a shell or a wrapper such as make or tox. Record the runner invocation as the test command",
    )
