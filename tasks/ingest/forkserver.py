"""Imported first by the ingest pool's fork server (tasks/ingest/pool.py, PRELOAD), to make it exit
at once when its owner is done.

The fork server holds the pipeline's imports (Great Expectations alone: a million objects). On its
owner's exit it used to tear them down, 1.3 s during which it still held the owner's stdout and
stderr: whoever read `prt ingest` through a pipe (`| tee`, a subprocess capturing its output, CI)
waited that long after `prt` itself had exited. It has nothing to flush or clean up (its workers
have exited by then), so it leaves without the teardown. Anywhere but in a fork server this
module does nothing.
"""

from __future__ import annotations

import atexit
import os
import sys

__all__ = ["in_fork_server"]


def _leave_now() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    os._exit(0)


def in_fork_server() -> bool:
    """This process is a fork server: its main module runs multiprocessing.forkserver.main."""
    server = sys.modules.get("multiprocessing.forkserver")
    return server is not None and getattr(sys.modules.get("__main__"), "main", None) is server.main


if in_fork_server():
    atexit.register(_leave_now)
