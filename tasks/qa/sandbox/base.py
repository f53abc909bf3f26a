"""The sandbox interface: run one shell command over a workspace folder, contained.

Every back-end gives the same guarantees, checked by one conformance suite
(tests/tasks/qa/test_sandbox_conformance.py): no network, a non-root user, memory, process and CPU
limits, a wall-clock timeout that kills, capped output, an environment with nothing from the
host but what the caller passes, and no writes outside the workspace (and a private /tmp).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from schemas.settings import SandboxSettings

__all__ = [
    "SANDBOX_UID",
    "Mount",
    "OutputCap",
    "RunResult",
    "RunSpec",
    "Sandbox",
    "remove_tree",
    "rootfs_identity",
    "rootfs_python",
]

log = logging.getLogger(__name__)

SANDBOX_UID = 1000
"""The unprivileged user inside every sandbox (`sandbox` in the image and the rootfs)."""


@dataclass(frozen=True)
class Mount:
    """A host folder the command sees besides its workspace (QA's reporter and its results folder)."""

    source: Path
    target: str
    """Absolute path inside the sandbox, under /run/ (a private tmpfs in every back-end)."""
    read_only: bool = True

    def __post_init__(self):
        if not self.target.startswith("/run/") or ".." in self.target.split("/"):
            raise ValueError(f"mount target {self.target!r} must lie under /run/")


@dataclass(frozen=True)
class RunSpec:
    """What to run. The workspace is mounted read-write at /work and is the working directory."""

    workspace: Path
    command: str
    timeout_s: float
    env: dict[str, str] = field(default_factory=dict)
    """The only variables the command sees, besides PATH, HOME and LANG."""
    image: str | None = None
    """Docker image; None for the back-end's default. The namespace back-end always uses its rootfs."""
    mounts: tuple[Mount, ...] = ()
    """Extra folders; a writable one is made writable by the sandbox user, like the workspace."""
    base: str | None = None
    """A base other than the default (`Sandbox.bases()`): another Debian release, another Python."""


@dataclass
class RunResult:
    exit_code: int | None
    """None when the command was killed at the timeout or never started."""
    timed_out: bool
    duration_s: float
    """Wall time of the command itself."""
    start_s: float
    """Time to set the sandbox up before the command ran."""
    stdout: str
    stderr: str
    output_truncated: bool
    oom_killed: bool = False
    error: str | None = None
    """Why the sandbox itself failed (not the command), when it did."""

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out

    @classmethod
    def sandbox_failed(cls, error: str, start_s: float, stdout: str = "", stderr: str = "") -> RunResult:
        """The sandbox itself failed (`error`) after `start_s` seconds; the command did not run to an exit code."""
        return cls(None, False, 0.0, start_s, stdout, stderr, False, error=error)


def remove_tree(path: Path) -> None:
    """Remove a folder whatever a test left in it: Python's rmtree recurses once per level, and a
    test can build a tree deeper than the interpreter's recursion limit; rm walks it without."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except (OSError, RecursionError):
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], capture_output=True, check=False)
    if os.path.lexists(path):
        log.warning("could not remove %s", path)


def rootfs_python(rootfs: Path) -> str | None:
    """X.Y of a rootfs's python3 (the link /usr/bin/python3 -> python3.X)."""
    try:
        target = os.readlink(rootfs / "usr" / "bin" / "python3")
    except OSError:
        return None
    return target.removeprefix("python") if target.startswith("python3.") else None


def rootfs_identity(rootfs: Path) -> str | None:
    try:
        return (rootfs / "etc" / "prt-rootfs-id").read_text().strip()
    except OSError:
        return None


class OutputCap:
    """Keeps the head and the tail of a stream, up to `limit` bytes in all, and counts the rest."""

    def __init__(self, limit: int):
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self._lock = threading.Lock()

    def feed(self, data: bytes) -> None:
        with self._lock:
            self.total += len(data)
            room = self.head_limit - len(self.head)
            if room > 0:
                self.head += data[:room]
                data = data[room:]
            if data:
                self.tail += data
                if len(self.tail) > self.tail_limit:
                    del self.tail[: len(self.tail) - self.tail_limit]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.head) + len(self.tail)

    def text(self) -> str:
        if not self.truncated:
            return (self.head + self.tail).decode("utf-8", "replace")
        cut = self.total - len(self.head) - len(self.tail)
        marker = f"\n[... {cut} bytes cut by the sandbox ...]\n".encode()
        return (self.head + marker + self.tail).decode("utf-8", "replace")


class Sandbox(ABC):
    """One back-end. `name` is its registry key; `version()` goes into QA ids."""

    name: ClassVar[str]

    def __init__(self, settings: SandboxSettings):
        self.settings = settings

    @classmethod
    @abstractmethod
    def available(cls, settings: SandboxSettings) -> str | None:
        """None when the back-end can run here, else why not (shown to the user)."""

    @abstractmethod
    def version(self) -> str:
        """Identity of the back-end and its environment (runtime, image or rootfs id)."""

    @abstractmethod
    def image_id(self, image: str | None) -> str:
        """Identity of the environment a run would use (image id or rootfs id)."""

    def bases(self) -> dict[str | None, tuple[str, str]]:
        """The bases this back-end can run on: None (the default) and each extra Debian release
        built next to it (`PRT_DEBIAN_SUITE=trixie docker/build-offline.sh`), each as (Python X.Y,
        rootfs id). The rootfs id is the same for both back-ends, so they share environments."""
        found: dict[str | None, tuple[str, str]] = {}
        root = Path(self.settings.rootfs)
        candidates = [(None, root)] + [
            (p.name.removeprefix(root.name + "-"), p) for p in sorted(root.parent.glob(root.name + "-*"))
        ]
        for name, path in candidates:
            python, rootfs_id = rootfs_python(path), rootfs_identity(path)
            if python and rootfs_id and self.has_base(name):
                found[name] = (python, rootfs_id)
        return found

    def has_base(self, base: str | None) -> bool:
        """Whether this back-end can run on `base` (its rootfs or image is there)."""
        return True

    @abstractmethod
    def run(self, spec: RunSpec) -> RunResult:
        """Run `spec.command` over `spec.workspace`; never raises for the command's own failures."""

    @abstractmethod
    def prepare_workspace(self, path: Path) -> None:
        """Make `path` writable by the sandbox user (called before a run)."""

    def base_dir(self) -> Path:
        """`<workdir>/prt-sandbox/` (mode 0711: traversable, not listable): every folder a sandbox
        mounts lives here, because a sandbox running as its own uid cannot enter private folders
        such as pytest's or /root."""
        base = Path(self.settings.workdir or tempfile.gettempdir()) / "prt-sandbox"
        base.mkdir(exist_ok=True)
        os.chmod(base, 0o711)
        return base

    def shared_copy(self, source: Path) -> Path:
        """A read-only copy of the files in `source` that every sandbox run can mount, made once per content."""
        files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix == ".py")
        digest = hashlib.sha256(b"".join(p.name.encode() + b"\0" + p.read_bytes() for p in files)).hexdigest()[:16]
        target = self.base_dir() / f"{source.name}-{digest}"
        if not target.is_dir():
            tmp = Path(tempfile.mkdtemp(prefix=".copy-", dir=self.base_dir()))
            for p in files:
                shutil.copyfile(p, tmp / p.name)
                os.chmod(tmp / p.name, 0o644)
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, target)
            except OSError:  # another run made it meanwhile
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    @contextmanager
    def workspace(self) -> Iterator[Path]:
        """A fresh, empty workspace folder that the sandbox user can reach (under `base_dir()`); removed afterwards."""
        path = Path(tempfile.mkdtemp(prefix="ws-", dir=self.base_dir()))
        try:
            yield path
        finally:
            remove_tree(path)
