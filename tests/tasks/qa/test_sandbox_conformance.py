"""One conformance suite, run against every sandbox back-end: containment is a property of the
interface, not of one implementation."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from schemas.settings import SandboxSettings
from tasks.qa.sandbox import RunSpec
from tests.conftest import SANDBOX_PARAMS, sandbox_or_skip

MEMORY_MB = 256
PIDS = 64
OUTPUT = 64 * 1024


@pytest.fixture(params=SANDBOX_PARAMS)
def sandbox(request):
    name, runtime = request.param
    settings = SandboxSettings(memory_mb=MEMORY_MB, pids=PIDS, output_bytes=OUTPUT, runtime=runtime)
    return sandbox_or_skip(name, settings)


@pytest.fixture
def run(sandbox):
    with sandbox.workspace() as ws:

        def _run(command: str, timeout_s: float = 60, files: dict[str, str] | None = None, env: dict[str, str] | None = None):
            for name, text in (files or {}).items():
                (ws / name).write_text(text)
            sandbox.prepare_workspace(ws)
            return sandbox.run(RunSpec(ws, command, timeout_s, env=env or {})), ws

        yield _run


def test_runs_as_non_root_in_the_workspace(run):
    r, ws = run("id -u; echo written > result.txt; python3 -c 'import sys; print(sys.version_info[:2])'")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.split()[0] == "1000"
    assert (ws / "result.txt").read_text() == "written\n"


@pytest.fixture
def host_listener():
    """A TCP server on the host, on loopback and on the host's outward address."""
    servers = []
    for host in ("127.0.0.1", _outward_ip()):
        s = socket.socket()
        s.bind((host, 0))
        s.listen()
        servers.append(s)
        threading.Thread(target=lambda s=s: _accept_forever(s), daemon=True).start()
    yield [s.getsockname() for s in servers]
    for s in servers:
        s.close()


def _accept_forever(s):
    while True:
        try:
            conn, _ = s.accept()
            conn.close()
        except OSError:
            return


def _outward_ip() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent; this only picks the outward interface
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


NET_PROBE = """
import socket, sys
targets = [(h, int(p)) for h, p in (a.split(":") for a in sys.argv[1:])] + [("1.1.1.1", 53), ("8.8.8.8", 443)]
for host, port in targets:
    try:
        socket.create_connection((host, port), timeout=3).close()
        print("CONNECTED", host, port)
    except OSError as e:
        print("blocked", host, port, e)
try:
    socket.getaddrinfo("example.org", 443)
    print("RESOLVED")
except OSError as e:
    print("dns blocked", e)
"""


def test_network_access_fails(run, host_listener):
    # The probe itself shows the host listeners are reachable from outside a sandbox.
    for host, port in host_listener:
        socket.create_connection((host, port), timeout=3).close()
    args = " ".join(f"{h}:{p}" for h, p in host_listener)
    r, _ = run(f"python3 net.py {args}", files={"net.py": NET_PROBE})
    assert r.exit_code == 0, r.stderr
    assert "CONNECTED" not in r.stdout and "RESOLVED" not in r.stdout
    assert r.stdout.count("blocked") == len(host_listener) + 3


FORK_BOMB = """
import os, time
n = 0
try:
    while n < 20000:
        if os.fork() == 0:
            time.sleep(3)
            os._exit(0)
        n += 1
except OSError as e:
    print("fork refused after", n, e)
print("forked", n)
"""


def test_fork_bomb_is_bounded(run):
    r, _ = run("python3 bomb.py", timeout_s=60, files={"bomb.py": FORK_BOMB})
    assert not r.timed_out
    forked = int(r.stdout.strip().splitlines()[-1].split()[-1])
    assert "fork refused" in r.stdout and forked < PIDS


MEMORY_HOG = """
blocks = []
for i in range(1, 64):
    blocks.append(bytearray(64 * 2**20))   # zero-filled: every page is touched
    print("allocated", i * 64, "MB", flush=True)
print("ALLOCATED ALL")
"""


def test_memory_hog_is_stopped(run):
    r, _ = run("python3 hog.py", timeout_s=60, files={"hog.py": MEMORY_HOG})
    assert not r.timed_out
    assert "ALLOCATED ALL" not in r.stdout
    assert r.exit_code != 0
    reached = [int(line.split()[1]) for line in r.stdout.splitlines() if line.startswith("allocated")]
    assert max(reached, default=0) <= MEMORY_MB


FILL = """
import os, sys
for folder in sys.argv[1:]:
    held = 0
    try:
        with open(os.path.join(folder, "fill"), "wb") as f:
            for _ in range(200):
                f.write(b"x" * 2**20)
                f.flush()
                held += 1
    except OSError:
        pass
    print(folder, held, flush=True)
    try:
        os.remove(os.path.join(folder, "fill"))
    except OSError:
        pass
"""


def test_memory_backed_folders_are_capped(run):
    """tmpfs pages are host memory outside the process's limit: every writable one is capped
    (the namespace back-end once let a test hold 2,000 MiB in /dev/shm against a 1,024 MiB limit)."""
    r, _ = run("python3 fill.py /dev/shm /run /dev /tmp", timeout_s=120, files={"fill.py": FILL})
    held = {folder: int(mib) for folder, mib in (line.split() for line in r.stdout.splitlines())}
    assert set(held) >= {"/dev/shm", "/run", "/dev"}, r.stdout + r.stderr
    assert max(held["/dev/shm"], held["/run"], held["/dev"]) <= 64, held
    assert held.get("/tmp", 0) <= MEMORY_MB, held  # docker counts tmpfs in the memory limit: it may kill first


def test_sleeping_command_is_killed_at_the_timeout(run, sandbox):
    t0 = time.monotonic()
    r, _ = run("echo started; sleep 600", timeout_s=2)
    assert r.timed_out and r.exit_code is None
    assert r.duration_s < 15 and time.monotonic() - t0 < 30
    assert "started" in r.stdout


def test_output_flood_is_capped(run):
    r, _ = run("python3 -c \"import sys; sys.stdout.write('x' * 50_000_000)\"; echo; echo tail-marker", timeout_s=120)
    assert r.exit_code == 0, r.stderr[-500:]
    assert r.output_truncated
    assert len(r.stdout.encode()) < OUTPUT + 200
    assert r.stdout.rstrip().endswith("tail-marker")  # the end of the output is kept


WRITES = """
import os
for path in ["/etc/prt-escape", "/usr/prt-escape", "/prt-escape", "/work/../prt-escape-2", "/var/prt-escape"]:
    try:
        with open(path, "w") as f:
            f.write("escaped")
        print("WROTE", path)
    except OSError as e:
        print("refused", path, e.strerror)
with open("/tmp/private-tmp", "w") as f:
    f.write("ok")
print("tmp ok")
"""


def test_writes_outside_the_workspace_fail(run):
    r, _ = run("python3 writes.py", files={"writes.py": WRITES})
    assert r.exit_code == 0, r.stderr
    assert "WROTE" not in r.stdout and r.stdout.count("refused") == 5
    for path in ("/etc/prt-escape", "/usr/prt-escape", "/prt-escape", "/prt-escape-2", "/var/prt-escape", "/tmp/private-tmp"):
        assert not os.path.exists(path), path  # nothing reached the host


def test_host_environment_is_not_visible(run, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "host-secret-do-not-leak")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-host-secret-do-not-leak")
    r, _ = run("env; cat /proc/1/environ 2>/dev/null | tr '\\\\0' '\\\\n'", env={"PYTEST_ADDOPTS": "-q"})
    assert r.exit_code is not None
    assert "do-not-leak" not in r.stdout + r.stderr
    names = {line.split("=", 1)[0] for line in r.stdout.splitlines() if "=" in line}
    assert "PYTEST_ADDOPTS" in names and "AWS_SECRET_ACCESS_KEY" not in names


def test_host_is_unchanged_afterwards(run, sandbox):
    marker = f"{time.time_ns() % 10**9}.5"  # a sleep length no other process on the host has
    r, ws = run(f"sleep {marker} & sleep {marker} & echo spawned", timeout_s=3)
    assert "spawned" in r.stdout
    time.sleep(1)
    assert _processes_with(marker) == []  # background children died with the sandbox
    if sandbox.name == "docker":
        left = subprocess.run(
            ["docker", "ps", "-aq", "--filter", "label=prt.sandbox=1"], capture_output=True, text=True
        ).stdout.split()
        assert left == []
    assert sorted(p.name for p in ws.iterdir()) == []  # nothing but what the command wrote


def _processes_with(marker: str) -> list[int]:
    """Host processes whose command line contains `marker` (gVisor's guests are not host processes,
    so there this only proves the sandbox is gone, which the docker check below covers)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def test_extra_mounts_are_read_only_or_writable_as_asked(sandbox, tmp_path):
    from tasks.qa.sandbox import Mount

    source = tmp_path / "lib"  # private to root, as /root or pytest's folders are: the sandbox mounts a copy
    source.mkdir()
    (source / "tool.py").write_text("print('from the host')\n")
    lib = sandbox.shared_copy(source)
    assert sandbox.shared_copy(source) == lib  # made once per content
    with sandbox.workspace() as ws, sandbox.workspace() as results:
        sandbox.prepare_workspace(ws)
        mounts = (Mount(lib, "/run/prt/lib"), Mount(results, "/run/prt/out", read_only=False))
        command = "python3 /run/prt/lib/tool.py; echo x > /run/prt/lib/new && echo lib-writable; echo result > /run/prt/out/r.txt"
        r = sandbox.run(RunSpec(ws, command, 60, mounts=mounts))
        assert r.exit_code == 0, r.stderr
        assert "from the host" in r.stdout and "lib-writable" not in r.stdout
        assert (results / "r.txt").read_text() == "result\n" and not (lib / "new").exists()
        assert not list(ws.iterdir())  # the results folder is not part of the workspace
    with pytest.raises(ValueError, match="must lie under /run/"):
        Mount(lib, "/etc/prt")
