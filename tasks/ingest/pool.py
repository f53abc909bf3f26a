"""Ingest batches in worker processes, so that a batch's Python work uses every core.

The workers come from a fork server that imports the pipeline (polars, deltalake, Great
Expectations and its suites) once; each worker is then a cheap fork of it, free of the
threads of the flow's process (Prefect's API client, the temporary server), which a plain fork
would copy in an unknown state. A worker runs `tasks.ingest.batch.run_batch` — every stage of one
batch — and sends back a small `BatchReport`. Batches share nothing but the lake, where the
claims and the Delta app transactions already make concurrent batches safe (the same rules
that let several ingest runs share one inbox).

If a worker dies (killed, out of memory), the pool breaks and the run fails; its batches stay
claimed under `<lake>/_ingest/` and the next run resumes them, like after any crash. If the
process that owns the pool dies, its workers notice within a second and exit: they would
otherwise wait forever for work, holding their memory.

A script that runs the pool (or `ingest_inbox(workers=2)`) needs the usual
`if __name__ == "__main__":` guard: the fork server imports the script's main module, and
top-level code there would run again in it.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace

from schemas.settings import IngestSettings
from tasks.ingest.batch import Batch, BatchReport, create_tables, run_batch
from tasks.ingest.claims import Claims, process_started
from tasks.ingest.schedule import Schedule
from tasks.stage import attempt, stage_task

__all__ = ["BatchPool", "ingest_batch_task", "run_in_pool", "warm"]

PRELOAD = ["tasks.ingest.forkserver", "tasks.ingest.batch", "great_expectations"]
"""Imported once by the fork server (seconds); every worker inherits them. The first makes the
fork server exit without tearing them down (tasks/ingest/forkserver.py)."""


def warm(owner: tuple[int, str] | None = None, environ: dict[str, str] | None = None) -> None:
    """Per worker, after the fork: build the Great Expectations suites (milliseconds, imports done),
    then move everything alive so far out of the garbage collector's sight. The pipeline's
    imports leave about a million objects that live as long as the worker; every full
    collection walked them all (0.15 s each, several per batch). Frozen, a full collection
    sees only what batches create: 3 ms. With `owner` (the pid and start time of the process
    that owns the pool), exit once that process is gone, even if it went during this set-up. With
    `environ`, take the owner's environment as it is now: the fork server kept the one of the
    moment it started, which a long-lived owner (a notebook, a server, the test suite) may have
    changed since (credentials, endpoints, settings)."""
    if environ is not None:
        os.environ.clear()
        os.environ.update(environ)
    from tasks.ingest.validate import warm_up

    warm_up()
    gc.freeze()
    if owner is not None:
        threading.Thread(target=_exit_without, args=owner, name="prt-owner-watch", daemon=True).start()


def _exit_without(owner: int, started: str, every_s: float = 1.0) -> None:
    """Exit this worker once `owner` has died. Killed without a chance to shut its pool down, it
    leaves the workers (and the fork server, which they keep alive) waiting for work forever:
    the pool's queues stay open in the workers themselves, so they never see the end of them."""
    while process_started(owner) == started:
        time.sleep(every_s)
    os._exit(1)


def _ready(_: int) -> int:
    return os.getpid()


class BatchPool:
    """`workers` processes, each running one batch at a time."""

    def __init__(self, workers: int):
        # polars allocates through jemalloc, which by default keeps freed pages for 10 s: a worker
        # would carry one batch's peak into the next. Return them within half a second instead
        # (read once, when the fork server starts; a value set by the user wins).
        os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:500,muzzy_decay_ms:0")
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        self.workers = workers
        self._executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=ctx,
            initializer=warm,
            initargs=((os.getpid(), process_started(os.getpid())), dict(os.environ)),
        )
        self._spawned = False

    def start(self) -> None:
        """Start every worker now (the fork server too, on first use) instead of at the first batch."""
        for ready in self._spawn(self.workers):
            ready.result()

    def submit(self, *args, **kwargs) -> Future[BatchReport]:
        """`run_batch(*args, **kwargs)` in a worker. The first call starts every worker, not just
        one: the executor would start the next only with the next batch, and a worker takes
        0.1-0.2 s to fork and warm up."""
        future = self._executor.submit(run_batch, *args, **kwargs)
        self._spawn(self.workers - 1)
        return future

    def _spawn(self, n: int) -> list[Future[int]]:
        """Once per pool: `n` trivial jobs, each of which the executor starts a new worker for
        (it starts one per job while none is idle, up to `workers`)."""
        if self._spawned:
            return []
        self._spawned = True
        return [self._executor.submit(_ready, i) for i in range(n)]

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BatchPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@stage_task("ingest-batch", retry_after=[5, 30])
def ingest_batch_task(pool: BatchPool, batch: Batch, *args, **kwargs) -> BatchReport:
    """Every stage of one batch, in a worker process of `pool`. A retry resumes the batch, so it
    writes only what the failed try left out."""
    if attempt() > 1:
        batch = replace(batch, resumed=True)
    return pool.submit(batch, *args, **kwargs).result()


def run_in_pool(schedule: Schedule, workers: int, inbox: str, lake: str, settings: IngestSettings, claims: Claims) -> None:
    """Every batch of `schedule` on `workers` processes, each batch one stage (a task run in a flow run).

    One batch more than there are workers waits in the pool's queue, claimed and ready, so a
    worker that finishes starts the next batch at once instead of idling while this process
    claims one (or scans the next part of the inbox: that happens here, while the workers are
    busy). Its data is read only when a worker takes it."""
    with BatchPool(workers) as pool:
        running: deque = deque()
        created = False
        for batch in schedule:
            if batch is not None and not created:  # before the first batch, not for an empty inbox
                create_tables(lake)
                created = True
            if batch is None:  # the schedule waits for every running batch
                while running:
                    schedule.record(running.popleft().result())
                continue
            while len(running) > workers:
                schedule.record(running.popleft().result())
            own = replace(batch, listings={t: batch.listings[t] for t in batch.members if t in batch.listings})
            running.append(ingest_batch_task.submit(pool, own, inbox, lake, settings, claims))
