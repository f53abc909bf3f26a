"""Verify one trace: replay its edits over the repo snapshot and run the tests after and before, sandboxed.

    replay  every file_edit applied in order on the host, as text (never executed); each must
            apply and hash to its buffer_hash_after, else the verdict is replay_mismatch
    after   the snapshot with every edit applied
    before  the snapshot at start_commit plus the final version of every file that shapes which
            tests run (as SWE-bench applies its test patch): the session's test files, each file
            the after run collected tests from, and changed test configuration (conftest.py,
            pytest.ini, the pytest sections of tox.ini, setup.cfg and pyproject.toml). A regression
            test written during the session counts as FAIL_TO_PASS, and a config that deselects
            or adds tests acts on both runs alike
    grade   per-test statuses and the runner's own facts from each run's report (tasks/qa/grade.py)

The test command is parsed and its runner run directly, never through a shell (client/testruns/runners.py);
the reporter writes to a results folder outside the workspace. Test code only ever runs inside
the sandbox. The reports and the (capped) logs are kept as artifacts, so a verdict can be
re-graded from them without running anything.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from xml.etree import ElementTree as ET  # writing only: what is read goes through defusedxml

from defusedxml import ElementTree

from client.diffs import EditSpec, replay_edits
from client.snapshot import extract_snapshot
from client.testruns.harness import HARNESS_DIR
from client.testruns.reports import RunReport, counts, merge_reports, parse_report
from client.testruns.runners import LIB_MOUNT, OUT_MOUNT, TestCommand, parse_test_command
from schemas.errors import ReplayError, ReportError, SnapshotError, TransientError, UnsupportedTestCommand
from schemas.settings import get_ingest_settings, get_qa_settings
from schemas.version import CODE_VERSION
from tasks.qa.cache import qa_workdir
from tasks.qa.env import ENV_MOUNT, EnvCache, env_spec, nearest_python
from tasks.qa.grade import GRADER_VERSION, flaky_tests, grade
from tasks.qa.sandbox import Mount, RunResult, RunSpec, Sandbox

__all__ = [
    "RUNNER_VERSION",
    "QaInput",
    "QaOutcome",
    "changed_test_config",
    "is_test_file",
    "qa_id",
    "session_targets",
    "snapshot_tree_id",
    "verify_trace",
]

log = logging.getLogger(__name__)

RUNNER_VERSION = "2"
"""Bump when the procedure changes (workspace layout, runner options): every trace re-verifies."""
_TEST_FILE = re.compile(r"(^|/)(tests?/|test_[^/]*\.py$|[^/]*_test\.py$|conftest\.py$|[^/]*_test\.go$|testdata/)")
_REPORT_NAME = re.compile(r"(main|worker)-[0-9a-f]{16}\.xml")
_CONFIG_SECTIONS = {"tox.ini": "pytest", "setup.cfg": "tool:pytest"}


@dataclass(frozen=True)
class QaInput:
    trace_id: str
    snapshot_ref: str
    test_command: str
    timeout_s: float
    image: str | None
    edits: tuple[EditSpec, ...]
    targets: tuple[str, ...] = ()
    """What the session targeted: its test runs' named and failing tests (tasks/qa/store.py adds its test files)."""
    python: str | None = None
    """The Python the session ran with (manifest environment.python_version)."""
    packages: tuple[tuple[str, str, bool, str | None], ...] | None = None
    """(name, version, editable, path) of every installed distribution; None: not recorded."""
    install: tuple[str, ...] = ()
    """Build steps run from the repo root before every test run."""
    scope: str = "full"
    """targeted (the session's targets only) or full (the whole suite)."""


@dataclass
class QaOutcome:
    row: dict
    artifacts: dict[str, bytes] = field(default_factory=dict)
    """hex -> bytes: test reports and logs, stored under <lake>/artifacts/."""


def is_test_file(path: str) -> bool:
    """Files pytest would collect as tests, their conftest.py, or anything under a tests/ folder."""
    return bool(_TEST_FILE.search(path))


def _pytest_section(name: str, text: str) -> object:
    """The part of a config file that configures pytest (raises ValueError when unreadable)."""
    if name == "pyproject.toml":
        try:
            return tomllib.loads(text).get("tool", {}).get("pytest")
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(str(exc)) from None
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise ValueError(str(exc)) from None
    section = _CONFIG_SECTIONS[name]
    return dict(parser[section]) if parser.has_section(section) else None


def changed_test_config(originals: dict[str, bytes], final: dict[str, bytes]) -> list[str]:
    """Files among `final` whose change alters pytest's configuration: conftest.py, pytest.ini, and
    the pytest sections of tox.ini, setup.cfg and pyproject.toml (an unreadable one counts as changed)."""
    out = []
    for path, data in sorted(final.items()):
        name = PurePosixPath(path).name
        before = originals.get(path)
        if data == before:
            continue
        if name in ("conftest.py", "pytest.ini", ".pytest.ini"):
            out.append(path)
        elif name in ("tox.ini", "setup.cfg", "pyproject.toml"):
            try:
                old = _pytest_section(name, (before or b"").decode("utf-8"))
                new = _pytest_section(name, data.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                out.append(path)
                continue
            if old != new:
                out.append(path)
    return out


def session_targets(inp: QaInput, command: TestCommand) -> set[str]:
    """What the session targeted: the tests its test runs named or saw fail, the tests the QA command
    names, and its own test files (edited or added). A file under the folder the runner's ids are
    relative to (unittest's discovery folder) is named both ways."""
    found = {*inp.targets, *command.named_tests(), *(e.file_path for e in inp.edits if is_test_file(e.file_path))}
    for root in command.id_roots():
        found |= {t[len(root) + 1 :] for t in found if t.startswith(root + "/")}
    return found


def qa_id(inp: QaInput, backend_version: str, image_id: str) -> str:
    """Same snapshot, edits, image, command and back-end: same id, so nothing is verified twice."""
    key = {
        "snapshot": inp.snapshot_ref,
        "edits": [
            [e.seq, e.file_path, e.buffer_hash_after, hashlib.sha256(e.diff_unified.encode()).hexdigest()] for e in inp.edits
        ],
        "image": image_id,
        "command": inp.test_command,
        "timeout_s": inp.timeout_s,
        "backend": backend_version,
        "runner": RUNNER_VERSION,
        "python": inp.python,
        "packages": inp.packages,
        "install": inp.install,
        "scope": inp.scope,
        "targets": sorted(inp.targets) if inp.scope == "targeted" else None,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def snapshot_tree_id(root: Path) -> str:
    """The git tree id of the files under `root` (git's own object hashing): equal to
    `git rev-parse <start_commit>^{tree}` when the snapshot is that commit's files."""

    def obj(kind: str, body: bytes) -> bytes:
        return hashlib.sha1(f"{kind} {len(body)}\0".encode() + body).digest()

    def tree(folder: Path) -> bytes | None:
        entries = []
        for entry in os.scandir(folder):
            if entry.is_symlink():
                entries.append((entry.name, b"120000", obj("blob", os.readlink(entry.path).encode())))
            elif entry.is_dir():
                sub = tree(Path(entry.path))
                if sub is not None:  # git does not track empty folders
                    entries.append((entry.name + "/", b"40000", sub))
            elif entry.is_file():
                mode = b"100755" if os.stat(entry.path).st_mode & 0o100 else b"100644"
                entries.append((entry.name, mode, obj("blob", Path(entry.path).read_bytes())))
        if not entries:
            return None
        body = b"".join(mode + b" " + name.rstrip("/").encode() + b"\0" + digest for name, mode, digest in sorted(entries))
        return obj("tree", body)

    digest = tree(root)
    return (digest or obj("tree", b"")).hex()


def _snapshot_dir(snapshot: bytes, workdir: Path) -> Path:
    """The snapshot extracted once per content (host side, by the reader ingest checked it with), reused by every run."""
    digest = hashlib.sha256(snapshot).hexdigest()
    cache = workdir / "prt-snapshots"
    target = cache / digest
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=cache))
    try:
        extract_snapshot(snapshot, tmp, max_unpacked=get_ingest_settings().max_snapshot_unpacked_bytes)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.rename(tmp, target)
    except OSError:  # another run extracted it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _check_edit_paths(base: Path, edits: tuple[EditSpec, ...]) -> None:
    """ReplayError for an edit whose path cannot be a file in the snapshot: a folder there, a link,
    under a file, or a folder of another edit's file."""
    files = {e.file_path for e in edits}
    for e in edits:
        target = base / e.file_path
        if target.is_symlink():
            raise ReplayError(e.seq, e.event_id, e.file_path, "the path is a symbolic link in the snapshot")
        if target.is_dir():
            raise ReplayError(e.seq, e.event_id, e.file_path, "the path is a folder in the snapshot")
        parts = e.file_path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if (base / parent).is_symlink() or (base / parent).is_file() or parent in files:
                raise ReplayError(e.seq, e.event_id, e.file_path, f"the path lies under {parent}, which is a file")


def _read_originals(base: Path, paths: set[str]) -> dict[str, bytes]:
    out = {}
    for p in paths:
        f = base / p
        if f.is_file() and not f.is_symlink():
            out[p] = f.read_bytes()
    return out


def _workspace_from(ws: Path, base: Path, overlay: dict[str, bytes]) -> None:
    shutil.copytree(base, ws, dirs_exist_ok=True, symlinks=True)  # links stay links: each resolves inside
    for path, data in overlay.items():
        target = ws / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


@dataclass
class _Run:
    result: RunResult
    report: RunReport | None = None
    evidence: bytes | None = None
    """The reporter's XML as stored (workers' suites merged in)."""
    error: str | None = None


def _read_results(out: Path, exit_code: int | None) -> tuple[RunReport, bytes]:
    """The report(s) the reporter wrote into `out`: exactly one from the main process, any number
    from pytest-xdist workers, nothing else; ReportError otherwise."""
    names = sorted(os.listdir(out))
    strangers = [n for n in names if not _REPORT_NAME.fullmatch(n)]
    if strangers:
        raise ReportError(f"the results folder holds files its reporter did not write ({', '.join(strangers[:3])})")
    mains = [n for n in names if n.startswith("main-")]
    if len(mains) != 1:
        raise ReportError(f"the results folder holds {len(mains)} reports of a main test process, not 1")
    total = sum((out / n).lstat().st_size for n in names)
    if total > 32 * 2**20:
        raise ReportError(f"the test reports are {total} bytes, over the 32 MiB limit")
    blobs = [(out / n).read_bytes() for n in [*mains, *(n for n in names if n.startswith("worker-"))]]
    main = parse_report(blobs[0], exit_code=exit_code)
    if len(blobs) == 1:
        return main, blobs[0]
    workers = [parse_report(b) for b in blobs[1:]]
    merged = ElementTree.fromstring(blobs[0])
    for b in blobs[1:]:
        merged.extend(ElementTree.fromstring(b).iter("testsuite"))
    return merge_reports(main, workers), ET.tostring(merged, encoding="utf-8")


@dataclass(frozen=True)
class _Setting:
    """Where a run happens: the base, the built environment (mounted read-only), the build steps."""

    base: str | None = None
    env_dir: Path | None = None
    install: tuple[str, ...] = ()

    def mounts(self) -> tuple[Mount, ...]:
        return (Mount(self.env_dir, ENV_MOUNT),) if self.env_dir else ()

    def variables(self) -> dict[str, str]:
        base = {"PYTHONDONTWRITEBYTECODE": "1", "CI": "1"}
        if self.env_dir:
            base.update(PATH=f"{ENV_MOUNT}/bin:/usr/local/bin:/usr/bin:/bin", VIRTUAL_ENV=ENV_MOUNT)
        return base


def _run_tests(
    sandbox: Sandbox, base: Path, overlay: dict[str, bytes], inp: QaInput, command: TestCommand, where: _Setting
) -> _Run:
    """One sandboxed run of the test runner over base+overlay, after the build steps (a sandbox run
    of their own, which cannot reach the results folder)."""
    with sandbox.workspace() as ws, sandbox.workspace() as out:
        _workspace_from(ws, base, overlay)
        sandbox.prepare_workspace(ws)
        if where.install:
            script = "set -e\n" + "\n".join(where.install)
            built = sandbox.run(
                RunSpec(ws, script, inp.timeout_s, env=where.variables(), image=inp.image, mounts=where.mounts(), base=where.base)
            )
            if built.error or built.timed_out or built.exit_code != 0:
                why = built.error or ("timed out" if built.timed_out else f"exited {built.exit_code}")
                return _Run(built, error=f"the build steps failed ({why}): {_last_words(built)}")
        env = {**command.sandbox_env(), **where.variables()}
        env["PYTHONPATH"] = command.sandbox_env()["PYTHONPATH"]
        mounts = (Mount(sandbox.shared_copy(HARNESS_DIR), LIB_MOUNT), Mount(out, OUT_MOUNT, read_only=False), *where.mounts())
        spec = RunSpec(ws, command.sandbox_command(), inp.timeout_s, env=env, image=inp.image, mounts=mounts, base=where.base)
        result = sandbox.run(spec)
        if result.error:
            return _Run(result, error=f"the sandbox failed: {result.error}")
        if result.timed_out:
            return _Run(result, error=f"the tests ran past the {inp.timeout_s:.0f} s timeout and were killed")
        try:
            report, evidence = _read_results(out, result.exit_code)
        except ReportError as exc:
            meaning = command.runner.runner_failures.get(result.exit_code) if not any(out.iterdir()) else None
            what = meaning or f"{exc}; {command.framework} exited {result.exit_code}"
            return _Run(result, error=f"{what} (exit status {result.exit_code}): {_last_words(result)}".rstrip(": "))
        return _Run(result, report, evidence)


def _last_words(result: RunResult) -> str:
    """The line of the run's output most likely to say what went wrong."""
    lines = [ln.strip() for ln in (result.stderr + "\n" + result.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or [""])[-1][:300]


def _log(result: RunResult) -> bytes:
    return f"$ exit {result.exit_code} (timed out: {result.timed_out})\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}\n".encode()


def verify_trace(
    inp: QaInput,
    snapshot: bytes,
    sandbox: Sandbox,
    *,
    reruns: int = 0,
    run_id: str,
    batch_id: str,
    workdir: Path | None = None,
) -> QaOutcome:
    """Run one verification and return its qa_runs row and evidence. Never raises for the trace's own failures."""
    started = datetime.now().astimezone()
    workdir = workdir or qa_workdir(sandbox.settings)
    allowed = inp.image is None or sandbox.settings.image_allowed(inp.image)
    image_id = sandbox.image_id(inp.image) if allowed else "not-allowed"
    row: dict = {
        "trace_id": inp.trace_id,
        "qa_id": qa_id(inp, sandbox.version(), image_id),
        "backend": sandbox.name,
        "backend_version": sandbox.version(),
        "image": inp.image or (sandbox.settings.image if sandbox.name == "docker" else sandbox.settings.rootfs),
        "image_id": image_id,
        "test_command": inp.test_command,
        "edits_replayed": 0,
        "runner_version": RUNNER_VERSION,
        "grader_version": GRADER_VERSION,
        "started_at": started,
        "graded_at": started,
        "run_date": started.date(),
        "pipeline_run_id": run_id,
        "batch_id": batch_id,
        "code_version": CODE_VERSION,
        "timed_out": False,
        "sandbox_start_s": 0.0,
    }
    artifacts: dict[str, bytes] = {}

    def keep(data: bytes) -> str:
        h = hashlib.sha256(data).hexdigest()
        artifacts[h] = data
        return f"sha256:{h}"

    if not allowed:
        why = (
            f"environment.image {inp.image!r} is not an image QA may run: the default ({sandbox.settings.image}), "
            "its bases, or one listed in PRT_SANDBOX_ALLOWED_IMAGES"
        )
        row.update(_grade_columns(grade(None, None, run_error=why)))
        return QaOutcome(row, artifacts)
    try:
        return _verify(inp, snapshot, sandbox, reruns, workdir, row, artifacts, keep)
    except SnapshotError as exc:
        row.update(_grade_columns(grade(None, None, run_error=f"the snapshot cannot be used: {exc}")))
    except Exception as exc:  # a host-side failure of this trace must not stop the others: its row says what happened
        if isinstance(exc, TransientError):
            raise  # storage went away: no row, the task retries and the next run verifies the trace
        log.exception("QA of trace %s failed on the host", inp.trace_id)
        row.update(_grade_columns(grade(None, None, run_error=f"QA failed on the host: {type(exc).__name__}: {str(exc)[:300]}")))
    return QaOutcome(row, artifacts)


def _verify(inp, snapshot, sandbox, reruns, workdir, row, artifacts, keep) -> QaOutcome:
    """verify_trace's work; anything it raises becomes the trace's error row."""

    t0 = time.monotonic()
    base = _snapshot_dir(snapshot, workdir)
    row["snapshot_tree"] = snapshot_tree_id(base)
    originals = _read_originals(base, {e.file_path for e in inp.edits})
    try:
        _check_edit_paths(base, inp.edits)
        final = replay_edits(originals, inp.edits)
    except ReplayError as exc:
        g = grade(None, None, replay_error=str(exc))
        row.update(
            _grade_columns(g),
            mismatch_seq=exc.seq,
            edits_replayed=[e.seq for e in inp.edits].index(exc.seq),
            replay_s=time.monotonic() - t0,
        )
        return QaOutcome(row, artifacts)
    row["edits_replayed"] = len(inp.edits)
    config = changed_test_config(originals, final)
    row["test_config_changed"] = bool(config)
    row["replay_s"] = time.monotonic() - t0
    try:
        command = parse_test_command(inp.test_command)
    except UnsupportedTestCommand as exc:
        row.update(_grade_columns(grade(None, None, run_error=str(exc))))
        return QaOutcome(row, artifacts)
    row["framework"] = command.framework
    targets = session_targets(inp, command)

    where = _environment(inp, sandbox, base, workdir, row, keep)
    if where is None:  # the environment could not be built: the row says why
        return QaOutcome(row, artifacts)
    run_command, row["scope"] = command, "full"
    if inp.scope == "targeted" and targets:
        narrowed = command.targeted(sorted(targets), lambda path: path in final or os.path.lexists(base / path))
        if narrowed is not None:
            run_command, row["scope"] = narrowed, "targeted"
    row["run_command"] = run_command.command

    after = _run_tests(sandbox, base, final, inp, run_command, where)
    before = None
    before_files: list[str] = []
    if after.report is not None:
        collected_from = set(after.report.files.values())
        before_files = sorted(p for p in final if is_test_file(p) or p in config or p in collected_from)
        before = _run_tests(sandbox, base, {p: final[p] for p in before_files}, inp, run_command, where)
    row["before_files"] = before_files
    reports = [after.report.tests] if after.report is not None else []
    starts = after.result.start_s + (before.result.start_s if before else 0.0)
    for _ in range(reruns if after.report is not None else 0):
        again = _run_tests(sandbox, base, final, inp, run_command, where)
        starts += again.result.start_s
        if again.report is not None:
            reports.append(again.report.tests)

    run_error = (after.error and f"after run: {after.error}") or (before and before.error and f"before run: {before.error}")
    g = grade(
        before.report if before else None,
        after.report,
        targets=targets,
        before_files=before_files,
        run_error=run_error or None,
        flaky=flaky_tests(reports),
    )
    bp, bf, bs = counts(before.report if before else None)
    ap, af, as_ = counts(after.report)
    row.update(
        _grade_columns(g),
        before_passed=bp,
        before_failed=bf,
        before_skipped=bs,
        after_passed=ap,
        after_failed=af,
        after_skipped=as_,
        before_exit_code=before.result.exit_code if before else None,
        after_exit_code=after.result.exit_code,
        timed_out=after.result.timed_out or bool(before and before.result.timed_out),
        sandbox_start_s=starts,
        before_s=before.result.duration_s if before else None,
        after_s=after.result.duration_s,
        junit_before_ref=keep(before.evidence) if before and before.evidence else None,
        junit_after_ref=keep(after.evidence) if after.evidence else None,
        log_before_ref=keep(_log(before.result)) if before else None,
        log_after_ref=keep(_log(after.result)),
    )
    return QaOutcome(row, artifacts)


_CACHES: dict[Path, EnvCache] = {}
_CACHES_GUARD = threading.Lock()


def _environment(inp: QaInput, sandbox: Sandbox, base: Path, workdir: Path, row: dict, keep) -> _Setting | None:
    """Where the tests run: the base whose Python is nearest the session's, and, when the trace
    recorded its packages, the environment built from them (cached). None when that build failed;
    the row then holds the error verdict and the build log."""
    settings = get_qa_settings()
    bases = sandbox.bases() if inp.image is None else {}
    name = None
    if bases:
        python = nearest_python(inp.python, sorted({py for py, _ in bases.values()}))
        name = next(n for n, (py, _) in sorted(bases.items(), key=lambda kv: kv[0] is not None) if py == python)
        row["env_python"] = python
    install = tuple(inp.install)
    if inp.packages is None or inp.image is not None or not settings.environments or name not in bases:
        return _Setting(name, None, install)
    python, base_id = bases[name]
    packages = [{"name": n, "version": v, "editable": e, "path": p} for n, v, e, p in inp.packages]
    spec = env_spec(packages, python, base_id, base)
    with _CACHES_GUARD:
        cache = _CACHES.setdefault(workdir, EnvCache(workdir / "prt-envs", timeout_s=settings.env_timeout_s))
    build = cache.get(spec, sandbox, base, base=name)
    row.update(env_id=build.env_id, env_cached=build.cached, env_build_s=build.seconds)
    if build.log:
        row["env_log_ref"] = keep(build.log)
    if build.error:
        row.update(_grade_columns(grade(None, None, run_error=f"env_build_failed: {build.error}")))
        return None
    return _Setting(name, build.path, install)


def _grade_columns(g) -> dict:
    return {
        "verdict": g.verdict,
        "verdict_reason": g.reason,
        "fail_to_pass": list(g.fail_to_pass),
        "pass_to_pass": list(g.pass_to_pass),
        "pass_to_fail": list(g.pass_to_fail),
        "fail_to_fail": list(g.fail_to_fail),
        "flaky": list(g.flaky),
        "targeted": list(g.targeted),
    }
