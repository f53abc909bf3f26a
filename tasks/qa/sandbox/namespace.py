"""The namespace back-end: bubblewrap over the sandbox rootfs, no daemon needed.

    setpriv (a throw-away uid, no capabilities, no new privileges)
      prlimit (processes, address space, CPU seconds, file size)
        bwrap --unshare-all (user, pid, net, ipc, uts, cgroup namespaces)
              rootfs read-only at /, workspace read-write at /work, private /tmp, empty environment

The network namespace has no interfaces but loopback, so nothing leaves the sandbox. Memory is
bounded by the address-space limit (allocations fail instead of the kernel's OOM killer, which
docker uses); CPU by CPU seconds; processes by RLIMIT_NPROC on a uid that nothing else uses.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from schemas.settings import SandboxSettings
from tasks.qa.sandbox.base import SANDBOX_UID, OutputCap, RunResult, RunSpec, Sandbox, rootfs_identity

__all__ = ["NamespaceSandbox"]

_FSIZE = 256 * 2**20  # largest file a sandboxed process may write
_TMP_SIZE = 256 * 2**20
_SHM_SIZE = 64 * 2**20
"""/dev/shm and /run, as docker sizes /dev/shm: tmpfs pages are host memory that no process limit
counts. /dev itself (bwrap cannot size it) is read-only."""


class NamespaceSandbox(Sandbox):
    name = "namespace"

    def __init__(self, settings: SandboxSettings):
        super().__init__(settings)
        self.rootfs = Path(settings.rootfs)

    @classmethod
    def available(cls, settings: SandboxSettings) -> str | None:
        for tool in ("bwrap", "prlimit", "setpriv"):
            if shutil.which(tool) is None:
                return f"{tool} is not installed (apt-get install bubblewrap util-linux)"
        if rootfs_identity(Path(settings.rootfs)) is None:
            return f"no sandbox rootfs at {settings.rootfs}; build it with docker/build-rootfs.sh"
        probe = subprocess.run(
            ["bwrap", "--unshare-all", "--ro-bind", settings.rootfs, "/", "--", "/bin/true"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if probe.returncode != 0:
            return f"bubblewrap cannot create namespaces here: {probe.stderr.strip()[:200]}"
        return None

    def version(self) -> str:
        bwrap = subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout.strip()
        return f"namespace/{bwrap.replace(' ', '-')}"

    def image_id(self, image: str | None) -> str:
        return rootfs_identity(self.rootfs) or "rootfs-missing"

    def prepare_workspace(self, path: Path) -> None:
        pass  # ownership is set per run, to that run's throw-away uid

    def rootfs_for(self, base: str | None) -> Path:
        return self.rootfs if base is None else self.rootfs.with_name(f"{self.rootfs.name}-{base}")

    def has_base(self, base: str | None) -> bool:
        return rootfs_identity(self.rootfs_for(base)) is not None

    def _argv(self, spec: RunSpec, host_uid: int) -> list[str]:
        s = self.settings
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/home/sandbox", "LANG": "C.UTF-8", **spec.env}
        privileges: list[str] = []
        nproc = s.pids
        if os.geteuid() == 0:
            privileges = [
                "setpriv",
                f"--reuid={host_uid}",
                f"--regid={host_uid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
            ]
        else:  # RLIMIT_NPROC counts all of this user's processes: leave room for those already running
            nproc += _process_count(os.getuid())
        cpu_s = max(1, int(spec.timeout_s * s.cpus) + 1)
        limits = ["prlimit", f"--nproc={nproc}", f"--as={s.memory_mb * 2**20}", f"--cpu={cpu_s}", f"--fsize={_FSIZE}", "--"]
        bwrap = [
            "bwrap",
            "--unshare-all",
            "--unshare-user",
            "--die-with-parent",
            "--new-session",
            "--ro-bind", str(self.rootfs_for(spec.base)), "/",
            "--proc", "/proc",
            "--dev", "/dev",
            "--size", str(_SHM_SIZE), "--tmpfs", "/dev/shm",
            "--remount-ro", "/dev",
            "--size", str(_TMP_SIZE), "--tmpfs", "/tmp",
            "--bind", str(spec.workspace), "/work",
            "--size", str(_SHM_SIZE), "--tmpfs", "/run",
            "--chdir", "/work",
            "--uid", str(SANDBOX_UID),
            "--gid", str(SANDBOX_UID),
            "--hostname", "sandbox",
            "--disable-userns",
            "--clearenv",
        ]  # fmt: skip
        for m in spec.mounts:
            bwrap += ["--ro-bind" if m.read_only else "--bind", str(m.source), m.target]
        for k, v in env.items():
            bwrap += ["--setenv", k, v]
        return [*privileges, *limits, *bwrap, "--", "/bin/sh", "-c", spec.command]

    def run(self, spec: RunSpec) -> RunResult:
        t0 = time.monotonic()
        host_uid = os.getuid()
        if os.geteuid() == 0:
            host_uid = 200_000 + secrets.randbelow(100_000)  # a uid of its own: the process limit counts only this run
            _chown_tree(spec.workspace, host_uid)
            for m in spec.mounts:
                if not m.read_only:
                    _chown_tree(m.source, host_uid)
        argv = self._argv(spec, host_uid)
        out, err = OutputCap(self.settings.output_bytes), OutputCap(self.settings.output_bytes)
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, env={}
            )
        except OSError as exc:
            return RunResult.sandbox_failed(f"could not start bubblewrap: {exc}", time.monotonic() - t0)
        started = time.monotonic()
        readers = [
            threading.Thread(target=_drain, args=(proc.stdout, out), daemon=True),
            threading.Thread(target=_drain, args=(proc.stderr, err), daemon=True),
        ]
        for r in readers:
            r.start()
        timed_out = False
        try:
            proc.wait(timeout=spec.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        duration = time.monotonic() - started
        for r in readers:
            r.join(timeout=10)
        exit_code = None if timed_out else proc.returncode
        error = None
        if exit_code is not None and exit_code != 0 and b"bwrap:" in bytes(err.head[:200]):
            error = f"bubblewrap failed: {err.text()[:300]}"
        return RunResult(
            exit_code, timed_out, duration, started - t0, out.text(), err.text(), out.truncated or err.truncated, error=error
        )


def _drain(stream, cap: OutputCap) -> None:
    while chunk := stream.read(65536):
        cap.feed(chunk)
    stream.close()


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _process_count(uid: int) -> int:
    n = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    n += 1
            except OSError:
                continue
    return n


def _chown_tree(root: Path, uid: int) -> None:
    os.chown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)
