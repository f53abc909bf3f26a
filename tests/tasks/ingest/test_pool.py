"""The ingest worker pool: its workers go away with the process that owns it, however it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tasks.ingest.claims import process_started
from tasks.ingest.pool import PRELOAD
from tests.conftest import REPO

OWNER = """
import sys
from tasks.ingest.pool import BatchPool

if __name__ == "__main__":
    pool = BatchPool(2)
    pool.start()
    print(" ".join(str(pid) for pid in pool._executor._processes), flush=True)
    sys.stdin.read()  # until killed
"""


def _alive(pid: int) -> bool:
    return process_started(pid) != ""  # gone or a zombie: not alive


def test_workers_exit_when_the_owner_is_killed(tmp_path):
    script = tmp_path / "owner.py"
    script.write_text(OWNER)
    owner = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        workers = [int(p) for p in owner.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(p) for p in workers)
    finally:
        owner.kill()  # SIGKILL: no chance to shut the pool down
        owner.wait()
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in workers if _alive(p)]
    for pid in left:  # a failure must not leave them running for the rest of the suite
        os.kill(pid, signal.SIGKILL)
    assert not left, "workers outlived the process that owned the pool"


def test_only_a_fork_server_leaves_without_teardown():
    # The pool's fork server runs `python -c 'from multiprocessing.forkserver import main; main(...)'`
    # and imports tasks.ingest.forkserver first (PRELOAD); there it exits at once when its owner
    # does (measured: its stdout closed 0.03 s after prt's exit, against ~1 s with the teardown).
    # Anywhere else the module changes nothing.
    probe = "import tasks.ingest.forkserver as f, atexit; print(f.in_fork_server(), atexit._ncallbacks())"
    shaped = subprocess.run([sys.executable, "-c", f"from multiprocessing.forkserver import main; {probe}"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
    plain = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert shaped.stdout.split()[0] == "True" and int(shaped.stdout.split()[1]) > int(plain.stdout.split()[1])
    assert plain.stdout.split()[0] == "False"
    assert PRELOAD[0] == "tasks.ingest.forkserver"


LATER_ENV = """
import os
from tasks.ingest.pool import BatchPool

def seen():
    return os.environ.get("PRT_PROBE", "unset")

if __name__ == "__main__":
    with BatchPool(1) as first:  # starts the fork server, with PRT_PROBE unset
        before = first._executor.submit(seen).result()
    os.environ["PRT_PROBE"] = "set later"  # e.g. credentials a notebook sets after its first ingest
    with BatchPool(1) as second:
        print(before, "|", second._executor.submit(seen).result())
"""


def test_workers_see_the_owners_environment_as_it_is_when_the_pool_starts(tmp_path):
    script = tmp_path / "later_env.py"
    script.write_text(LATER_ENV)
    env = {k: v for k, v in os.environ.items() if k != "PRT_PROBE"} | {"PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "unset | set later"
