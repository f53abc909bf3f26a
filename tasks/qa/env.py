"""Environments for QA: the Python a session ran with and its installed packages, built by the
pipeline once per distinct spec, in the sandbox, cached on the QA host, and mounted read-only
into every test run that shares the spec.

    spec      the base (a sandbox image and rootfs with its Python: the nearest to the session's),
              the locked requirements (name==version), the editable installs of the repo itself,
              and the repo's build configuration when it has editable installs
    wheels    downloaded on the host, as wheels only (a wheel is unpacked, never run); a package
              with no wheel comes as its source archive, fetched from the index without running
              it. Nothing of the repo or its packages executes on the host.
    build     in the sandbox, without network: a virtualenv at /run/prt/env (seeing the base's
              own packages, pytest among them), pip installing from the downloaded files only,
              then the repo's editable installs from the snapshot; the log is kept
    cache     <workdir>/prt-envs/<env_id>/env; a second trace with the same spec builds nothing.
              Concurrent builds of one spec wait for each other (a file lock).

The same environment serves both back-ends: the docker image of a base is its rootfs, imported,
so the virtualenv's interpreter path is the same in both.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import tomllib
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from tasks.qa.sandbox import Mount, RunSpec, Sandbox

__all__ = ["ENV_MOUNT", "ENV_VERSION", "EnvBuild", "EnvCache", "EnvSpec", "env_spec", "nearest_python"]

ENV_VERSION = "1"
"""Bump when the way environments are built changes: every environment is built again."""
ENV_MOUNT = "/run/prt/env"
WHEELS_MOUNT = "/run/prt/wheels"
BUILD_FILES = ("pyproject.toml", "setup.py", "setup.cfg")
"""What an editable install of the repo is built from."""
_BUILD_TOOLS = ("setuptools", "wheel")
_NAME = re.compile(r"[-_.]+")


def _norm(name: str) -> str:
    return _NAME.sub("-", name).lower()


def nearest_python(wanted: str | None, available: list[str]) -> str | None:
    """The available X.Y nearest to `wanted` (X.Y[.Z]): the same minor if there, else the closest,
    the newer on a tie. None when nothing is available."""
    if not available:
        return None
    try:
        major, minor = (int(p) for p in (wanted or "").split(".")[:2])
    except ValueError:
        return sorted(available, key=lambda v: tuple(int(p) for p in v.split(".")))[-1]

    def distance(v: str) -> tuple[int, int]:
        a, b = (int(p) for p in v.split(".")[:2])
        return (abs((a - major) * 100 + (b - minor)), -(a * 100 + b))

    return min(available, key=distance)


@dataclass(frozen=True)
class EnvSpec:
    """What an environment is built from; its hash is the environment's id."""

    python: str
    """X.Y of the base the environment is built on."""
    base_id: str
    """Identity of that base's image or rootfs: a rebuilt base builds its environments again."""
    requirements: tuple[str, ...]
    """name==version of every package installed from the index, sorted."""
    editable: tuple[str, ...] = ()
    """Repo-relative folders installed in editable mode from the snapshot."""
    build_config: str = ""
    """sha256 of the repo's build files when it has editable installs (another setup.py: another environment)."""

    @property
    def env_id(self) -> str:
        key = json.dumps([ENV_VERSION, self.python, self.base_id, self.requirements, self.editable, self.build_config])
        return "env-" + hashlib.sha256(key.encode()).hexdigest()[:20]


def env_spec(packages: list[dict] | None, python: str, base_id: str, snapshot: Path) -> EnvSpec | None:
    """The spec for a session's recorded packages, on a base with `python`; None when the session
    recorded none (QA then runs in the base as it is)."""
    if packages is None:
        return None
    requirements, editable = set(), set()
    for p in packages:
        if p.get("editable") and p.get("path"):
            editable.add(p["path"])
        else:
            requirements.add(f"{_norm(p['name'])}=={p['version']}")
    build_config = ""
    if editable:
        digest = hashlib.sha256()
        for folder in sorted(editable):
            for name in BUILD_FILES:
                f = snapshot / folder / name
                if f.is_file() and not f.is_symlink():
                    digest.update(f"{folder}/{name}\0".encode() + f.read_bytes())
        build_config = digest.hexdigest()[:20]
    return EnvSpec(python, base_id, tuple(sorted(requirements)), tuple(sorted(editable)), build_config)


@dataclass
class EnvBuild:
    """An environment ready to mount, or why there is none."""

    env_id: str
    path: Path | None
    cached: bool
    seconds: float
    log: bytes = b""
    error: str | None = None
    """Set when the build failed: the trace's verdict is error (env_build_failed)."""


@dataclass
class EnvCache:
    """Environments under `<root>/<env_id>/env`, with their wheels in `<root>/wheels/cp<XY>/`."""

    root: Path
    timeout_s: float = 900.0
    pip: list[str] = field(default_factory=lambda: [sys.executable, "-m", "pip"])
    """The host's pip (as configured: index, certificates) downloads wheels and source archives."""
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def get(self, spec: EnvSpec, sandbox: Sandbox, snapshot: Path, *, base: str | None = None) -> EnvBuild:
        """The environment for `spec`: from the cache, or built now (in `sandbox`, on `base`)."""
        env_id = spec.env_id
        with self._guard:
            lock = self._locks.setdefault(env_id, threading.Lock())
        t0 = time.monotonic()
        with lock, self._file_lock(env_id):
            done = self.root / env_id / "env"
            if (self.root / env_id / "ready").is_file():
                return EnvBuild(env_id, done, True, time.monotonic() - t0)
            return self._build(spec, sandbox, snapshot, base, t0)

    @contextlib.contextmanager
    def _file_lock(self, env_id: str):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{env_id}.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- downloads, on the host: files only, nothing run ----------------------------------------

    def _wheels(self, spec: EnvSpec, log: list[str]) -> Path:
        tag = "cp" + spec.python.replace(".", "")
        wheels = self.root / "wheels" / tag
        wheels.mkdir(parents=True, exist_ok=True)
        have = {_norm(_dist_name(p.name)) + "==" + _dist_version(p.name) for p in wheels.iterdir() if p.is_file()}
        missing = [r for r in spec.requirements if r not in have]
        if missing:
            failed = self._download(missing, wheels, spec.python, log)
            for requirement in failed:
                self._source_archive(requirement, wheels, spec.python, log)
        self._download(list(_BUILD_TOOLS), wheels, spec.python, log, deps=True)
        return wheels

    def _download(self, requirements: list[str], dest: Path, python: str, log: list[str], *, deps: bool = False) -> list[str]:
        """Wheels for `requirements` into `dest`; returns those that have none."""
        if not requirements:
            return []
        machine = platform.machine()
        platforms = [f"manylinux_2_{n}_{machine}" for n in range(17, 41)] + [
            f"manylinux2014_{machine}", f"manylinux2010_{machine}", f"manylinux1_{machine}", f"linux_{machine}"
        ]  # fmt: skip
        base = [*self.pip, "download", "--only-binary=:all:", "--dest", str(dest), "--python-version", python,
                "--implementation", "cp", *[a for p in platforms for a in ("--platform", p)], "--progress-bar", "off"]  # fmt: skip
        if not deps:
            base.append("--no-deps")
        out = subprocess.run([*base, *requirements], capture_output=True, text=True, timeout=self.timeout_s)
        log.append(
            f"$ pip download {' '.join(requirements[:20])}{' ...' if len(requirements) > 20 else ''}\n{out.stdout[-4000:]}{out.stderr[-4000:]}"
        )
        if out.returncode == 0:
            return []
        failed = []
        for r in requirements:  # find which ones have no wheel
            one = subprocess.run([*base, r], capture_output=True, text=True, timeout=self.timeout_s)
            if one.returncode != 0:
                failed.append(r)
                log.append(f"no wheel for {r}: {one.stderr.strip().splitlines()[-1] if one.stderr.strip() else ''}")
        return failed

    def _source_archive(self, requirement: str, dest: Path, python: str, log: list[str]) -> None:
        """The source archive of `name==version`, from the package index's JSON API, checked
        against the index's sha256; the archive is only stored here, never built on the host."""
        import requests

        name, version = requirement.split("==", 1)
        index = _index_url(self.pip)
        r = requests.get(
            f"{index.rstrip('/')}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=60,
            verify=os.environ.get("PIP_CERT") or _pip_cert(self.pip) or True,
        )  # fmt: skip
        r.raise_for_status()
        for f in r.json().get("files", []):
            fn = f["filename"]
            if fn.endswith(".tar.gz") and _norm(_dist_name(fn)) == _norm(name) and _dist_version(fn) == version:
                data = requests.get(
                    urllib.parse.urljoin(r.url, f["url"]), timeout=300, verify=_pip_cert(self.pip) or True
                ).content
                if hashlib.sha256(data).hexdigest() != f.get("hashes", {}).get("sha256", hashlib.sha256(data).hexdigest()):
                    raise RuntimeError(f"{f['filename']} does not match the index's sha256")
                (dest / f["filename"]).write_bytes(data)
                log.append(f"source archive {f['filename']} (built in the sandbox)")
                self._download(_archive_build_requires(dest / f["filename"]), dest, python, log, deps=True)
                return
        raise RuntimeError(f"{requirement}: no wheel and no source archive on {index}")

    # -- the build, in the sandbox ---------------------------------------------------------------

    def _build(self, spec: EnvSpec, sandbox: Sandbox, snapshot: Path, base: str | None, t0: float) -> EnvBuild:
        log: list[str] = [
            f"environment {spec.env_id}: Python {spec.python}, {len(spec.requirements)} packages, editable {list(spec.editable)}"
        ]
        try:
            wheels = self._wheels(spec, log)
            extra = [r for folder in spec.editable for r in _repo_build_requires(snapshot / folder)]
            if extra:
                self._download(extra, wheels, spec.python, log, deps=True)
        except (subprocess.SubprocessError, OSError, RuntimeError, ValueError) as exc:
            log.append(f"download failed: {exc}")
            return EnvBuild(
                spec.env_id,
                None,
                False,
                time.monotonic() - t0,
                "\n".join(log).encode(),
                f"the packages could not be downloaded: {exc}",
            )
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=self.root))
        os.chmod(staging, 0o755)  # the sandbox's own uid reaches the environment through it
        env_dir = staging / "env"
        env_dir.mkdir()
        script = _build_script(spec)
        with sandbox.workspace() as ws:
            shutil.copytree(snapshot, ws, dirs_exist_ok=True, symlinks=True)
            sandbox.prepare_workspace(ws)
            mounts = (Mount(env_dir, ENV_MOUNT, read_only=False), Mount(wheels, WHEELS_MOUNT))
            env = {"PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}
            result = sandbox.run(RunSpec(ws, script, self.timeout_s, env=env, mounts=mounts, base=base))
        log.append(f"$ (in the sandbox, no network)\n{script}\n--- exit {result.exit_code} ---\n{result.stdout}\n{result.stderr}")
        seconds = time.monotonic() - t0
        if result.error or result.timed_out or result.exit_code != 0:
            why = result.error or ("timed out" if result.timed_out else f"the build exited {result.exit_code}")
            shutil.rmtree(staging, ignore_errors=True)
            tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or [""]
            return EnvBuild(spec.env_id, None, False, seconds, "\n".join(log).encode(), f"{why}: {tail[0][:300]}")
        _read_only(env_dir)
        target = self.root / spec.env_id
        shutil.rmtree(target, ignore_errors=True)
        (staging / "spec.json").write_text(
            json.dumps({"env_id": spec.env_id, **spec.__dict__, "snapshot": snapshot.name}, default=list, indent=1)
        )
        (staging / "build.log").write_bytes("\n".join(log).encode())
        os.rename(staging, target)
        (target / "ready").touch()
        return EnvBuild(spec.env_id, target / "env", False, seconds, "\n".join(log).encode())


def _build_script(spec: EnvSpec) -> str:
    """The build, as the sandbox runs it: our own lines, every package name quoted."""
    py = f"{ENV_MOUNT}/bin/python"
    pip = f"{py} -m pip install --no-index --find-links {WHEELS_MOUNT} --no-warn-script-location"
    lines = ["set -e", f"python3 -m venv --system-site-packages {ENV_MOUNT}"]
    if spec.requirements:
        lines.append(f"{pip} --no-deps " + " ".join(shlex.quote(r) for r in spec.requirements))
    for folder in spec.editable:
        lines.append(f"{pip} --no-deps -e {shlex.quote('/work/' + folder if folder != '.' else '/work')}")
    return "\n".join(lines)


def _read_only(path: Path) -> None:
    """Everything readable by every sandbox user (a namespace run has a uid of its own), nothing writable."""
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames:
            if not os.path.islink(os.path.join(dirpath, name)):
                os.chmod(os.path.join(dirpath, name), 0o755)
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, 0o755 if os.stat(p).st_mode & 0o100 else 0o644)
    os.chmod(path, 0o755)


def _repo_build_requires(folder: Path) -> list[str]:
    """The `[build-system] requires` of a folder's pyproject.toml (setuptools and wheel without one)."""
    f = folder / "pyproject.toml"
    if not f.is_file() or f.is_symlink():
        return []
    try:
        return list(tomllib.loads(f.read_text()).get("build-system", {}).get("requires", []))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return []


def _archive_build_requires(archive: Path) -> list[str]:
    """The `[build-system] requires` inside a source archive, read as data."""
    try:
        with tarfile.open(archive) as tar:
            for m in tar.getmembers():
                if m.isfile() and m.name.count("/") == 1 and m.name.endswith("/pyproject.toml"):
                    data = tar.extractfile(m).read()
                    return list(tomllib.loads(data.decode()).get("build-system", {}).get("requires", []))
    except (tarfile.TarError, tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
        return []
    return []


def _dist_name(filename: str) -> str:
    if filename.endswith(".whl"):
        return filename.split("-")[0]
    return filename.rsplit("-", 1)[0]


def _dist_version(filename: str) -> str:
    if filename.endswith(".whl"):
        return filename.split("-")[1]
    return filename.rsplit("-", 1)[-1].removesuffix(".tar.gz").removesuffix(".zip")


def _pip_config(pip: list[str], key: str) -> str | None:
    out = subprocess.run([*pip, "config", "get", key], capture_output=True, text=True)
    return out.stdout.strip() or None if out.returncode == 0 else None


def _index_url(pip: list[str]) -> str:
    return os.environ.get("PIP_INDEX_URL") or _pip_config(pip, "global.index-url") or "https://pypi.org/simple"


def _pip_cert(pip: list[str]) -> str | None:
    return os.environ.get("PIP_CERT") or _pip_config(pip, "global.cert")
