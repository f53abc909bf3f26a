"""The docker back-end (the docker SDK), optionally under gVisor (`PRT_SANDBOX_RUNTIME=runsc`).

Each run is a fresh container: network none, user 1000, all capabilities dropped,
no-new-privileges, read-only root with private tmpfs /tmp and home, memory (no swap), pids and
CPU limits, a file-size ulimit, a capped log, and the workspace bind-mounted at /work.
`container.wait(timeout=...)` only times out the HTTP call, so a timeout kills and removes the
container explicitly.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

from schemas.errors import SandboxUnavailable
from schemas.settings import SandboxSettings
from tasks.qa.sandbox.base import SANDBOX_UID, OutputCap, RunResult, RunSpec, Sandbox

__all__ = ["DockerSandbox"]

_FSIZE = 256 * 2**20


def _client(timeout: int = 60):
    import docker

    return docker.from_env(timeout=timeout)


class DockerSandbox(Sandbox):
    name = "docker"

    def __init__(self, settings: SandboxSettings):
        super().__init__(settings)
        why = self.available(settings)
        if why:
            raise SandboxUnavailable(f"docker sandbox: {why}", backend="docker")
        self.client = _client()

    @classmethod
    def available(cls, settings: SandboxSettings) -> str | None:
        try:
            from docker.errors import DockerException

            import docker

            client = docker.from_env(timeout=5)
            client.ping()
        except (ImportError, DockerException, OSError) as exc:
            return f"no docker engine answers ({str(exc)[:120]})"
        if settings.runtime and settings.runtime not in client.info().get("Runtimes", {}):
            return f"the docker daemon has no runtime {settings.runtime!r} (register it in /etc/docker/daemon.json)"
        try:
            client.images.get(settings.image)
        except Exception:
            return f"image {settings.image} is not present; build it with docker/build-offline.sh"
        return None

    def version(self) -> str:
        server = self.client.version().get("Version", "?")
        return f"docker/{server}/{self.settings.runtime or 'runc'}"

    def image_id(self, image: str | None) -> str:
        from docker.errors import ImageNotFound

        try:
            return self.client.images.get(image or self.settings.image).id
        except ImageNotFound:
            return "missing:" + (image or self.settings.image)

    def image_for(self, base: str | None) -> str:
        return self.settings.image if base is None else f"{self.settings.image}-{base}"

    def has_base(self, base: str | None) -> bool:
        return not self.image_id(self.image_for(base)).startswith("missing:")

    def prepare_workspace(self, path: Path) -> None:
        if os.geteuid() == 0:
            for dirpath, dirnames, filenames in os.walk(path):
                for name in dirnames + filenames:
                    os.chown(os.path.join(dirpath, name), SANDBOX_UID, SANDBOX_UID, follow_symlinks=False)
            os.chown(path, SANDBOX_UID, SANDBOX_UID)
        else:
            os.chmod(path, 0o777)  # the container's user is not this user; the folder is private to this run anyway

    def run(self, spec: RunSpec) -> RunResult:
        from docker.errors import APIError, ImageNotFound
        from docker.types import LogConfig, Ulimit
        from requests.exceptions import ConnectionError as RequestsConnectionError
        from requests.exceptions import ReadTimeout

        s = self.settings
        t0 = time.monotonic()
        image = spec.image or self.image_for(spec.base)
        for m in spec.mounts:
            if not m.read_only:
                self.prepare_workspace(m.source)
        env = {"HOME": "/home/sandbox", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", **spec.env}
        ulimits = [Ulimit(name="fsize", soft=_FSIZE, hard=_FSIZE), Ulimit(name="nofile", soft=4096, hard=4096)]
        pids_limit = s.pids
        if s.runtime == "runsc":
            # Under gVisor the pids cgroup counts the sandbox's own host threads and stub processes:
            # a tight limit kills the whole sandbox. gVisor enforces RLIMIT_NPROC inside, per sandbox.
            ulimits.append(Ulimit(name="nproc", soft=s.pids, hard=s.pids))
            pids_limit = max(4096, s.pids * 16)
        try:
            container = self.client.containers.create(
                image,
                ["/bin/sh", "-c", spec.command],
                user=f"{SANDBOX_UID}:{SANDBOX_UID}",
                working_dir="/work",
                environment=env,
                hostname="sandbox",
                network_mode="none",
                mem_limit=f"{s.memory_mb}m",
                memswap_limit=f"{s.memory_mb}m",
                pids_limit=pids_limit,
                nano_cpus=int(s.cpus * 1e9),
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                read_only=True,
                tmpfs={
                    "/tmp": f"rw,exec,nosuid,size=256m,uid={SANDBOX_UID},gid={SANDBOX_UID}",
                    "/home/sandbox": f"rw,nosuid,size=64m,uid={SANDBOX_UID},gid={SANDBOX_UID}",
                },
                volumes={
                    str(spec.workspace): {"bind": "/work", "mode": "rw"},
                    **{str(m.source): {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in spec.mounts},
                },
                ulimits=ulimits,
                log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
                runtime=s.runtime,
                labels={"prt.sandbox": "1"},
            )
        except ImageNotFound:
            return RunResult.sandbox_failed(f"image {image} is not available on this docker engine", time.monotonic() - t0)
        except APIError as exc:
            why = f"docker could not create the container: {exc.explanation or exc}"
            return RunResult.sandbox_failed(why, time.monotonic() - t0)
        out, err = OutputCap(s.output_bytes), OutputCap(s.output_bytes)
        try:
            stream = container.attach(stdout=True, stderr=True, stream=True, demux=True, logs=True)
            reader = threading.Thread(target=_drain, args=(stream, out, err), daemon=True)
            container.start()
            started = time.monotonic()
            reader.start()
            timed_out = False
            exit_code: int | None = None
            try:
                exit_code = container.wait(timeout=spec.timeout_s)["StatusCode"]
            except (RequestsConnectionError, ReadTimeout):
                timed_out = True
                container.kill()
            duration = time.monotonic() - started
            reader.join(timeout=10)
            container.reload()
            oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
            return RunResult(
                exit_code,
                timed_out,
                duration,
                started - t0,
                out.text(),
                err.text(),
                out.truncated or err.truncated,
                oom_killed=oom,
            )
        except APIError as exc:
            why = f"docker failed: {exc.explanation or exc}"
            return RunResult.sandbox_failed(why, time.monotonic() - t0, out.text(), err.text())
        finally:
            with contextlib.suppress(APIError):
                container.remove(force=True)


def _drain(stream, out: OutputCap, err: OutputCap) -> None:
    try:
        for o, e in stream:
            if o:
                out.feed(o)
            if e:
                err.feed(e)
    except Exception:  # the stream ends when the container is killed and removed
        return
