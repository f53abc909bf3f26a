"""The recorder: capture a real debugging session from the terminal, with no IDE plug-in.

    prt record start --task-id BUG-7 --title "mean() is off"     snapshot HEAD, write the manifest
    prt run -- python -m pytest -q                              run it live; record cmd_run / test_run
    prt note hypothesis "mean divides by len - 1"                record rationale
    prt record commit                                            record the commit git just made
    prt record stop                                              write complete.json: ready for ingest
    prt record abort                                             discard the session
    prt record watch                                             record edits as files are saved

State lives in `<git dir>/prt/` (never in the working tree, never committed):

    session.json     the manifest, the writer's state (next seq, next chunk, running chain), the inbox
    shadow/          the last recorded content of every file: the base of the next diff
    index.json       size and mtime of each file when it was last recorded (to skip unchanged ones)
    staged/          new file content waiting to become the shadow (see below)
    lock             held while a command changes the state (`prt run` and `watch` may overlap)

Edits are captured whenever `prt run`, `prt note`, `prt record commit` or `stop` runs (and by
`watch`): every tracked or new, non-ignored file whose content differs from its shadow becomes a
`file_edit` with a unified diff against the shadow and the sha256 of the new bytes. The shadow
starts as the snapshot (HEAD), so the edits replay exactly onto it in verification.

Every command ends by flushing its events as one chunk, in this order:

    1. the new content of each edited file is staged in `staged/`;
    2. session.json is replaced (atomically) by one holding the new writer state and, under
       "pending", the chunk and the shadow updates it implies: this is the commit point;
    3. the shadow updates are applied, the chunk is put in the inbox, "pending" is cleared.

A crash before 2 loses only the command that was running (the shadow did not move, so its edits
are found again by the next command); a crash after 2 is finished by the next command, which
redoes step 3 (each part is idempotent; immutable puts make a re-sent chunk a no-op).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from client.environment import capture_environment, default_install, dependency_files, find_python, interpreter_of
from client.snapshot import iter_snapshot, link_reason, snapshot_git
from client.storage import fs_for, join
from client.testruns.harness import HARNESS_DIR
from client.testruns.reports import parse_report
from client.testruns.runners import RUNNERS, Runner, parse_test_command
from client.writer import TraceWriter, WriterState
from schemas.errors import InvalidInput, RecorderError, ReportError, UnsupportedTestCommand
from schemas.manifest import Manifest
from schemas.types import TRACE_ID_RE
from schemas.version import CODE_VERSION

__all__ = ["Recorder", "RecorderError", "test_runner"]

MAX_FILE_BYTES = 512 * 1024
"""Files larger than this are not diffed (a diff must fit in one event line)."""
MAX_OUTPUT_BYTES = 16 * 2**20
"""Output kept per command; the rest is cut (the terminal still shows all of it)."""


@dataclass
class Captured:
    exit_code: int
    duration_s: float
    stdout: str
    stderr: str


def _check_test_command(command: str) -> None:
    try:
        parse_test_command(command)
    except UnsupportedTestCommand as exc:
        raise RecorderError(f"--test-command: {exc}") from None


def test_runner(argv: list[str]) -> type[Runner] | None:
    """The test framework `argv` runs, if `prt run` records it as a test run (client/testruns/runners.py):
    `pytest`, `py.test`, `python -m pytest`, `python -m unittest [discover] ...`."""
    return next((r for r in RUNNERS.values() if argv and r.matches(argv)), None)


def _with_reporter(argv: list[str], runner: type[Runner], env: dict[str, str], report_dir: Path) -> list[str]:
    """argv and env that run the same tests with the reporter of client/testruns/harness/ recording each one."""
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(HARNESS_DIR)) if p)
    env["PRT_REPORT_DIR"] = str(report_dir)
    if runner.name == "pytest":
        env["PYTEST_ADDOPTS"] = f"{env.get('PYTEST_ADDOPTS', '')} -p prt_pytest".strip()
        return argv
    wrapped = runner.qa_argv(argv)
    # A wrapper that QA runs with the sandbox's python3 runs here with this interpreter: it only
    # watches the developer's own command (go test), in the developer's environment.
    return [sys.executable, *wrapped[1:]] if wrapped[0] == "python3" else wrapped


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RecorderError(f"git {' '.join(args)} failed in {repo}: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


def _repo_root(cwd: Path) -> Path:
    try:
        return Path(_git(cwd, "rev-parse", "--show-toplevel").strip())
    except RecorderError:
        raise RecorderError(f"{cwd} is not inside a git repository; the recorder snapshots the repo at HEAD") from None


def _trace_id(task_id: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", task_id).strip("-._")[:80] or "session"
    tid = f"{stem}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    if not TRACE_ID_RE.match(tid):
        tid = f"session-{uuid.uuid4().hex}"
    return tid


class Recorder:
    """The recording session of one git repository."""

    def __init__(self, cwd: str | os.PathLike[str] = "."):
        self.repo = _repo_root(Path(cwd).resolve())
        git_dir = Path(_git(self.repo, "rev-parse", "--absolute-git-dir").strip())
        self.dir = git_dir / "prt"
        self.shadow = self.dir / "shadow"
        self.staged = self.dir / "staged"
        self._index: dict[str, list[int]] = {}  # index.json while a command runs

    # -- state ------------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return (self.dir / "session.json").is_file()

    def _load(self) -> dict[str, Any]:
        if not self.active:
            raise RecorderError(f"no session is being recorded in {self.repo}; start one with `prt record start`")
        return json.loads((self.dir / "session.json").read_text())

    def _save(self, name: str, data: Any) -> None:
        tmp = self.dir / f".{name}.tmp"
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.dir / name)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _writer(self) -> Iterator[tuple[TraceWriter, list[list[str]]]]:
        """A writer resumed from session.json, and the list of shadow updates its edits imply;
        on a clean exit the events become one chunk and the updates are committed with it."""
        session = self._load()
        if "pending" in session:
            self._finish(session)
        shutil.rmtree(self.staged, ignore_errors=True)  # left by a command that died before its commit
        w = self._open_writer(session)
        self._index = json.loads((self.dir / "index.json").read_text())
        ops: list[list[str]] = []
        yield w, ops
        chunk = w.next_chunk()
        session["writer"] = w.state(flush=False).model_dump()
        if chunk is not None:
            key, body = chunk
            session["pending"] = {"key": key, "body": base64.b64encode(body).decode(), "ops": ops}
        self._save("session.json", session)  # the commit point
        if chunk is not None:
            self._finish(session)
        self._save("index.json", self._index)  # after the shadow: a stale index only costs a re-read

    def _open_writer(self, session: dict[str, Any]) -> TraceWriter:
        return TraceWriter(
            session["inbox"],
            session["manifest"],
            resume=WriterState.model_validate(session["writer"]),
            chunk_max_events=1 << 30,
            chunk_max_bytes=1 << 62,
            manifest_at_close=True,
        )

    def _finish(self, session: dict[str, Any]) -> None:
        """Step 3 of a committed chunk: move the shadow, send the chunk, clear "pending"."""
        pending = session["pending"]
        for op, path in pending["ops"]:
            if op == "put":
                staged = self.staged / path
                if staged.is_file():  # else this move was already done
                    (self.shadow / path).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staged, self.shadow / path)
            else:
                (self.shadow / path).unlink(missing_ok=True)
        self._open_writer(session).put(pending["key"], base64.b64decode(pending["body"]))
        del session["pending"]
        self._save("session.json", session)

    # -- files ------------------------------------------------------------------------------

    def _worktree_files(self) -> list[str]:
        """Tracked and new (untracked, not ignored) files, relative to the repo root."""
        out = _git(self.repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
        return sorted({p for p in out.split("\0") if p})

    def _capture_edits(self, w: TraceWriter, ops: list[list[str]]) -> list[str]:
        """Record every file that changed since it was last recorded, staging the shadow updates
        in `ops`; returns warnings."""
        index = self._index
        warnings = []
        paths = set(self._worktree_files())
        paths |= {str(p.relative_to(self.shadow)) for p in self.shadow.rglob("*") if p.is_file()}
        for path in sorted(paths):
            target = self.repo / path
            shadow = self.shadow / path
            exists = target.is_file() and not target.is_symlink()
            if exists:
                st = target.stat()
                stamp = [st.st_size, st.st_mtime_ns]
                if index.get(path) == stamp:
                    continue
                if st.st_size > MAX_FILE_BYTES:
                    warnings.append(f"{path} is over {MAX_FILE_BYTES} bytes; its changes are not recorded")
                    index[path] = stamp
                    continue
                after = target.read_bytes()
            elif shadow.is_file():
                after, stamp = b"", None  # deleted: recorded as emptied (a replay cannot delete)
            else:
                continue
            before = shadow.read_bytes() if shadow.is_file() else b""
            if after == before and (exists or not shadow.is_file()):
                if stamp:
                    index[path] = stamp
                continue
            try:
                before_text, after_text = before.decode("utf-8"), after.decode("utf-8")
            except UnicodeDecodeError:
                warnings.append(f"{path} is not UTF-8 text; its changes are not recorded")
                if stamp:
                    index[path] = stamp
                continue
            try:
                w.edit_file(path, before_text, after_text)
            except InvalidInput as exc:
                warnings.append(f"{path}: {exc}")
                continue
            if exists:
                staged = self.staged / path
                staged.parent.mkdir(parents=True, exist_ok=True)
                staged.write_bytes(after)
                ops.append(["put", path])
                index[path] = stamp
            else:
                ops.append(["delete", path])
                index.pop(path, None)
        return warnings

    def capture(self) -> list[str]:
        """Record the edits made since the last recorded state (what `watch` calls on each change)."""
        with self._locked(), self._writer() as (w, ops):
            warnings = self._capture_edits(w, ops)
        return warnings

    # -- commands ------------------------------------------------------------------------------

    def start(
        self,
        *,
        task_id: str,
        title: str,
        inbox: str,
        participant: str,
        description: str = "",
        test_command: str = "python -m pytest -q",
        timeout_s: float = 300.0,
        python: str | None = None,
        install: list[str] | None = None,
        image: str | None = None,
    ) -> tuple[str, list[str]]:
        """Snapshot HEAD, capture the environment and begin recording: (trace id, warnings).

        The snapshot goes to the inbox now; the manifest stays here until `stop`, so the test
        command, build steps and image can still change (`set`)."""
        _check_test_command(test_command)
        with self._locked():
            if self.active:
                tid = self._load()["manifest"]["trace_id"]
                raise RecorderError(f"a session ({tid}) is already being recorded here; stop or abort it first")
            try:
                head = _git(self.repo, "rev-parse", "--verify", "HEAD").strip()
            except RecorderError:
                raise RecorderError(
                    f"{self.repo} has no commit yet; commit the starting state first (the recorder snapshots HEAD)"
                ) from None
            self._refuse_escaping_links(head)
            snapshot = snapshot_git(self.repo, head)
            origin = subprocess.run(
                ["git", "-C", str(self.repo), "remote", "get-url", "origin"], capture_output=True, text=True
            ).stdout.strip()
            env, warnings = capture_environment(self.repo, python)
            interpreter = os.path.abspath(find_python(python))  # not resolved: a virtualenv's python is a link to its base
            tracked = _git(self.repo, "ls-files", "-z").split("\0")
            built = _git(self.repo, "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--", "*.so", "*.pyd")
            tid = _trace_id(task_id)
            manifest = {
                "trace_id": tid,
                "session": {"participant_id": participant, "consent": True},
                "task": {"id": task_id, "title": title, "description": description},
                "repo": {"origin": origin or self.repo.name, "start_commit": head},
                "environment": {
                    "os": platform.system().lower() or "unknown",
                    **env,
                    "install": default_install(self.repo, built.split("\0")) if install is None else install,
                    "dependency_files": dependency_files([f for f in tracked if f]),
                    **({"image": image} if image else {}),
                },
                "qa": {"test_command": test_command, "timeout_s": timeout_s},
                "client": {"name": "prt-recorder", "version": CODE_VERSION},
                "started_at": datetime.now(UTC).isoformat(),
            }
            w = TraceWriter(inbox, manifest, snapshot=snapshot, manifest_at_close=True)
            w.artifact(snapshot)  # the manifest waits for stop
            shutil.rmtree(self.shadow, ignore_errors=True)
            self.shadow.mkdir(parents=True)
            self._unpack(snapshot)
            session = {
                "inbox": inbox,
                "manifest": w.manifest.model_dump(mode="json", exclude_none=True),
                "repo": str(self.repo),
                "python": interpreter,
                "python_given": python is not None,
            }
            session["writer"] = w.state(flush=False).model_dump()
            self._save("index.json", {})
            self._save("session.json", session)
            return tid, warnings

    def set(
        self,
        *,
        test_command: str | None = None,
        install: list[str] | None = None,
        image: str | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Change what QA will do with this session before `stop` writes the manifest; returns the
        manifest's qa and environment parts as they are now."""
        if test_command is not None:
            _check_test_command(test_command)
        with self._locked():
            session = self._load()
            manifest = dict(session["manifest"])
            qa, environment = dict(manifest["qa"]), dict(manifest["environment"])
            if test_command is not None:
                qa["test_command"] = test_command
            if timeout_s is not None:
                qa["timeout_s"] = timeout_s
            if install is not None:
                environment["install"] = install
            if image is not None:
                environment["image"] = image
            manifest.update(qa=qa, environment=environment)
            try:
                checked = Manifest.model_validate(manifest)
            except ValidationError as exc:
                raise RecorderError(f"prt record set: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
            session["manifest"] = checked.model_dump(mode="json", exclude_none=True)
            self._save("session.json", session)
            return {"qa": session["manifest"]["qa"], "environment": session["manifest"]["environment"]}

    def _refuse_escaping_links(self, commit: str) -> None:
        """Symbolic links are part of a snapshot only when relative and inside the repo (protocol v1)."""
        listing = _git(self.repo, "ls-tree", "-r", "-z", commit)
        for entry in listing.split("\0"):
            if not entry.startswith("120000 "):
                continue
            meta, _, path = entry.partition("\t")
            target = _git(self.repo, "cat-file", "blob", meta.split()[2])
            reason = link_reason(path, target)
            if reason:
                raise RecorderError(
                    f"{path} is a symbolic link to {target!r}, which {reason}; a snapshot may only hold relative links "
                    "that stay inside the repo. Replace it with the file, or commit a relative link, then start again",
                    repo=str(self.repo),
                )

    def dirty_files(self) -> list[str]:
        """Files that differ from HEAD (modified, new, deleted): the next command records them as edits."""
        out = _git(self.repo, "status", "--porcelain=v1", "-z", "--untracked-files=all")
        entries = out.split("\0")
        paths, i = [], 0
        while i < len(entries):
            entry = entries[i]
            if entry:
                paths.append(entry[3:])
                if entry[0] in "RC":  # a rename or copy is followed by its source path
                    i += 1
            i += 1
        return sorted(paths)

    def _unpack(self, snapshot: bytes) -> None:
        """The snapshot's regular files into the shadow (links are not diffed: edits are recorded on files)."""
        for entry in iter_snapshot(snapshot, max_unpacked=2**62):
            if entry.kind == "file":
                target = self.shadow / entry.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(entry.data)

    def run(self, argv: list[str], *, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
        """Run `argv` as the developer would (live output, same exit code) and record it."""
        if not argv:
            raise RecorderError("give a command to run: prt run -- CMD ...")
        with self._locked(), self._writer() as (w, ops):
            warnings = self._capture_edits(w, ops)
        for message in warnings:
            print(f"prt: {message}", file=sys.stderr)
        command = shlex.join(argv)
        env = dict(os.environ)
        runner = test_runner(argv)
        if runner is not None:
            self._follow_interpreter(argv)
        report_dir = Path(tempfile.mkdtemp(prefix="prt-report-")) if runner else None
        run_argv = _with_reporter(argv, runner, env, report_dir) if runner and report_dir else argv
        try:
            result = _tee(run_argv, Path.cwd(), env, stdout or sys.stdout, stderr or sys.stderr)
            with self._locked(), self._writer() as (w, _):
                if not (runner and report_dir and self._record_test_run(w, runner.name, command, result, report_dir)):
                    w.cmd_run(
                        command,
                        exit_code=result.exit_code,
                        duration_s=result.duration_s,
                        stdout=result.stdout,
                        stderr=result.stderr,
                    )
        finally:
            if report_dir is not None:
                shutil.rmtree(report_dir, ignore_errors=True)
        return result.exit_code

    def _follow_interpreter(self, argv: list[str]) -> None:
        """The tests run with another Python than the one the environment came from: capture it
        from this one (the session's manifest is written at stop), unless --python said which."""
        used = interpreter_of(argv)
        if used is None:
            return
        used = os.path.abspath(used)
        with self._locked():
            session = self._load()
            if session.get("python_given") or session.get("python") == used:
                return
            env, warnings = capture_environment(self.repo, used)
            manifest = dict(session["manifest"])
            manifest["environment"] = {**manifest["environment"], **env}
            session.update(manifest=manifest, python=used)
            self._save("session.json", session)
        print(
            f"prt: the tests run with {used}; the environment is now captured from it ({len(env['packages'])} packages)",
            file=sys.stderr,
        )
        for message in warnings:
            print(f"prt: {message}", file=sys.stderr)

    def _record_test_run(self, w: TraceWriter, framework: str, command: str, result: Captured, report_dir: Path) -> bool:
        """A test_run from the reporter's results; False (record a cmd_run instead) when it wrote none."""
        mains = sorted(report_dir.glob("main-*.xml"))
        if not mains:
            return False
        try:
            report = parse_report(mains[0].read_bytes(), exit_code=result.exit_code)
        except ReportError:
            return False
        statuses = list(report.tests.values())
        w.test_run(
            framework,
            command,
            passed=statuses.count("passed"),
            failed=statuses.count("failed"),
            # A file that did not import counts as an error, but is no failing test: QA would take it
            # for one the session meant to fix (often it is a dependency the developer lacks too).
            errors=statuses.count("error") + len(report.collection_errors),
            skipped=statuses.count("skipped"),
            duration_s=round(result.duration_s, 3),
            failing_tests=sorted(t for t, s in report.tests.items() if s in ("failed", "error")),
        )
        return True

    def note(self, kind: str, text: str) -> None:
        with self._locked(), self._writer() as (w, ops):
            self._capture_edits(w, ops)
            w.note(kind, text)

    def commit(self) -> str:
        """Record the commit at HEAD (made with git just before), after the edits it holds."""
        sha, _, message = _git(self.repo, "log", "-1", "--format=%H%n%B").partition("\n")
        with self._locked(), self._writer() as (w, ops):
            self._capture_edits(w, ops)
            w.commit(sha.strip(), message.strip() or "(no message)")
        return sha.strip()

    def stop(self) -> tuple[str, int]:
        """Capture the last edits, write complete.json and end the session: (trace id, events)."""
        with self._locked():
            with self._writer() as (w, ops):
                self._capture_edits(w, ops)
            session = self._load()
            w = self._open_writer(session)
            w.close()
            shutil.rmtree(self.dir)
            return w.trace_id, w.event_count

    def abort(self) -> str:
        """Discard the session: its objects leave the inbox (where this machine can delete) and the state goes."""
        with self._locked():
            session = self._load()
            tid = session["manifest"]["trace_id"]
            with contextlib.suppress(Exception):  # a grant-only inbox cannot be listed or deleted from here
                fs, root = fs_for(session["inbox"])
                prefix = join(root, tid)
                if fs.exists(prefix):
                    fs.rm(prefix, recursive=True)
            shutil.rmtree(self.dir)
            return tid

    def status(self) -> dict[str, Any]:
        session = self._load()
        return {
            "environment": session["manifest"]["environment"],
            "test_command": session["manifest"]["qa"]["test_command"],
            "trace_id": session["manifest"]["trace_id"],
            "inbox": session["inbox"],
            "events": session["writer"]["next_seq"],
            "chunks": session["writer"]["next_chunk_seq"],
        }

    def watch(self, interval_s: float = 1.0, stop: threading.Event | None = None, on_change=None) -> None:
        """Record edits as they are saved, until `stop` is set (or Ctrl-C)."""
        stop = stop or threading.Event()
        last = None
        while not stop.is_set() and self.active:
            stamp = self._stamp()
            if stamp != last:
                try:
                    warnings = self.capture()
                except RecorderError:
                    return  # the session was stopped or aborted meanwhile
                if on_change:
                    on_change(warnings)
                last = stamp
            stop.wait(interval_s)

    def _stamp(self) -> tuple:
        out = []
        for path in self._worktree_files():
            try:
                st = (self.repo / path).stat()
            except OSError:
                continue
            out.append((path, st.st_size, st.st_mtime_ns))
        return tuple(out)


def _tee(argv: list[str], cwd: Path, env: dict[str, str], out: IO[str], err: IO[str]) -> Captured:
    """Run argv with its output shown live and kept (up to MAX_OUTPUT_BYTES each)."""
    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        message = f"prt: command not found: {argv[0]}\n"
        err.write(message)
        return Captured(127, time.monotonic() - start, "", message)
    kept: dict[str, bytearray] = {"out": bytearray(), "err": bytearray()}

    def pump(src, name: str, dst: IO[str]) -> None:
        for chunk in iter(lambda: src.read1(65536), b""):
            text = chunk.decode("utf-8", errors="replace")
            dst.write(text)
            dst.flush()
            room = MAX_OUTPUT_BYTES - len(kept[name])
            if room > 0:
                kept[name] += chunk[:room]

    threads = [
        threading.Thread(target=pump, args=(proc.stdout, "out", out), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, "err", err), daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.wait()
        code = proc.returncode
    for t in threads:
        t.join()
    if code < 0:  # killed by a signal: report it the way a shell does
        code = 128 - code
    return Captured(
        code,
        time.monotonic() - start,
        kept["out"].decode("utf-8", errors="replace"),
        kept["err"].decode("utf-8", errors="replace"),
    )
