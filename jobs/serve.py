"""serve_inbox: the long-running job. Each trace is ingested, verified and scored as it arrives.

Three stages run side by side, joined by queues, each taking the newest work first in small
batches: ingest (this thread; batches on the worker processes, tasks/ingest/feed.py), QA (a
thread: `parallel` traces per verification run) and the judge (a thread). A trace dropped while
a backlog drains waits for the batches in flight, not for the backlog; the slow stage (QA)
never holds the fast ones. While ingest drains a backlog, QA and the judge take only traces
completed since it formed, so the backlog drains at ingest's own pace; its traces come next.
With nothing new, QA and the judge catch up on traces of the lake no run has verified or scored
(a stopped server's, or ones `prt ingest` wrote).

SIGTERM or SIGINT stops it cleanly: no new batch starts, the batches in flight finish and
commit, QA and the judge finish the group they are on, and it returns. A second signal exits at
once: the crash rules of ingest hold (claimed batches are resumed by the next run) and QA and
judging write all of a group's rows or none.
"""

from __future__ import annotations

import contextvars
import heapq
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass, field

from client.storage import fs_for
from jobs.judge import judge_traces
from jobs.qa import verify_traces
from lake.read import Lake
from schemas.settings import get_ingest_settings, get_sandbox_settings, get_settings
from tasks.ingest.batch import Batch, BatchReport, IngestSummary, create_tables, run_batch
from tasks.ingest.claims import Claims
from tasks.ingest.feed import Feed
from tasks.ingest.pool import BatchPool, ingest_batch_task
from tasks.ingest.validate import warm_up
from tasks.judge import get_judge
from tasks.judge.store import unscored
from tasks.publish import publish_run_artifacts
from tasks.stage import run_id as current_run_id
from tasks.stage import run_logger

__all__ = ["NewestFirst", "ServeSummary", "serve_inbox"]


KEEP = 5_000
"""Trace ids and failures a server keeps for its summary, the latest: it may run for months."""


@dataclass
class ServeSummary:
    ingest: IngestSummary = field(default_factory=IngestSummary)
    """The latest batches' traces (at most KEEP of each kind); the totals are below."""
    ingested: int = 0
    events: int = 0
    quarantined: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    scored: int = 0
    failed: list[str] = field(default_factory=list)
    """What a QA or judge run could not do (it is tried again at the next catch-up); the latest KEEP."""

    def add(self, report: BatchReport) -> None:
        self.ingested += len(report.ingested)
        self.events += report.events
        self.quarantined += len(report.quarantined)
        self.ingest.add(report)
        for name in ("ingested", "quarantined", "cleaned"):
            del getattr(self.ingest, name)[:-KEEP]

    def fail(self, what: str) -> None:
        self.failed.append(what)
        del self.failed[:-KEEP]

    def markdown(self) -> str:
        return "\n".join(
            [
                f"# Serve\n\n- ingested: **{self.ingested}** traces ({self.events} events), quarantined: **{self.quarantined}**"
                f" (the tables below: the latest {KEEP:,} of each)\n",
                self.ingest.markdown(),
                "# QA",
                "",
                "- verdicts: " + (", ".join(f"{v} {n}" for v, n in sorted(self.verdicts.items())) or "none"),
                "",
                "# Judge",
                "",
                f"- scored: {self.scored}",
                *(["", "**Failed (tried again later):**", *[f"- {f}" for f in self.failed[-20:]]] if self.failed else []),
            ]
        )


class NewestFirst:
    """Trace ids waiting for a stage, the most recently completed first (by their complete.json's
    time; catch-up ids, with none, last)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._known: set[str] = set()
        self._ready = threading.Condition()

    def add(self, ids: Iterable[str], completed: dict[str, float] | None = None) -> None:
        with self._ready:
            for tid in ids:
                if tid not in self._known:
                    self._known.add(tid)
                    heapq.heappush(self._heap, (-(completed or {}).get(tid, 0.0), tid))
            self._ready.notify_all()

    def take(self, n: int, timeout: float, *, newer_than: float | None = None) -> list[str]:
        """Up to `n` ids, newest first, only those completed after `newer_than` when given; []
        when none came within `timeout` seconds."""

        def ready() -> bool:
            return bool(self._heap) and (newer_than is None or -self._heap[0][0] > newer_than)

        with self._ready:
            if not ready():
                self._ready.wait(timeout)
            out = []
            while len(out) < n and ready():
                out.append(heapq.heappop(self._heap)[1])
            self._known.difference_update(out)
            return out

    def wake(self) -> None:
        with self._ready:
            self._ready.notify_all()


def serve_inbox(
    inbox: str | None = None,
    lake: str | None = None,
    sandbox: str | None = None,
    judge: str | None = None,
    workers: int | None = None,
    poll_s: float | None = None,
    stop_after_s: float | None = None,
) -> ServeSummary:
    """Watch the inbox and ingest, verify and score each complete trace as it arrives, newest first,
    until SIGTERM or SIGINT (or `stop_after_s` seconds). The deployment runs it for good; a new
    trace reaches the lake's tables within seconds."""
    settings = get_settings()
    inbox, lake = inbox or settings.inbox, lake or settings.lake
    ingest_settings = get_ingest_settings()
    if workers is not None:
        ingest_settings = ingest_settings.model_copy(update={"workers": workers})
    poll_s = poll_s or settings.serve_poll_s
    logger = run_logger("serve")
    run_id = current_run_id()
    stop = threading.Event()
    summary = ServeSummary()
    lk = Lake(lake, create=True)
    parallel = get_sandbox_settings().parallel
    judge_id = get_judge(judge).judge_id
    to_verify, to_score = NewestFirst(), NewestFirst()
    completed: dict[str, float] = {}  # trace -> its complete.json's time, from ingest until it is scored

    def verify(group: list[str]) -> None:
        result = verify_traces(lake=lake, trace_ids=group, sandbox=sandbox)
        for verdict, n in result.verdicts().items():
            summary.verdicts[verdict] = summary.verdicts.get(verdict, 0) + n
        for t, why in result.failed:
            summary.fail(f"QA of {t}: {why}")
            completed.pop(t, None)
        to_score.add([r["trace_id"] for r in result.rows] + list(result.already), completed)

    def score(group: list[str]) -> None:
        summary.scored += len(judge_traces(lake=lake, judge=judge, trace_ids=group).rows)
        for tid in group:
            completed.pop(tid, None)

    def catch_up_qa() -> list[str]:
        seen = lk.qa_runs().select("trace_id")
        return lk.traces().select("trace_id").join(seen, on="trace_id", how="anti").collect()["trace_id"].to_list()

    inbox_fs, inbox_root = fs_for(inbox)
    lake_fs, lake_root = fs_for(lake)
    claims = Claims(lake_fs, lake_root, lease_s=ingest_settings.lease_s)
    feed = Feed(inbox_fs, inbox_root, claims, ingest_settings, run_id=run_id, poll_s=poll_s, logger=logger)

    def newer_than() -> float | None:  # while ingest drains a backlog, its traces wait: they would slow it
        return feed.backlog_since

    common = {
        "stop": stop,
        "logger": logger,
        "summary": summary,
        "catch_up_s": settings.serve_catch_up_s,
        "newer_than": newer_than,
    }
    stages = [
        _Stage("qa", to_verify, parallel, verify, catch_up_qa, **common),
        _Stage("judge", to_score, 200, score, lambda: unscored(lk, judge_id), **common),
    ]
    threads = [threading.Thread(target=contextvars.copy_context().run, args=(s.run,), name=f"prt-serve-{s.name}") for s in stages]
    logger.info(
        "serving %s into %s: looking for complete traces every %g s, %d ingest worker(s), %d sandboxes",
        inbox, lake, poll_s, ingest_settings.workers, parallel,
    )  # fmt: skip
    deadline = None if stop_after_s is None else time.monotonic() + stop_after_s
    with _stop_on_signals(stop, logger):
        for t in threads:
            t.start()
        try:
            _ingest_as_they_come(
                feed, stop, deadline, inbox, lake, ingest_settings, claims, summary, to_verify, completed, logger
            )
        finally:
            stop.set()
            for s in stages:
                s.queue.wake()
            for t in threads:
                t.join()
    publish_run_artifacts("serve", summary.ingest.rows(), summary.markdown(), f"serving {inbox} into {lake}")
    logger.info(
        "stopped: %d ingested, %d quarantined, %s verified, %d scored",
        summary.ingested, summary.quarantined, sum(summary.verdicts.values()), summary.scored,
    )  # fmt: skip
    return summary


def _ingest_as_they_come(feed, stop, deadline, inbox, lake, settings, claims, summary, to_verify, completed, logger) -> None:
    """Keep one batch more than there are workers in flight, the newest traces first, until stopped;
    then let the batches in flight finish."""

    def done(batch: Batch, future: Future) -> None:
        try:
            report = future.result()
        except Exception as exc:  # after its retries: the batch stays claimed, a later run resumes it
            logger.error("batch %s failed (%s: %s); the next run resumes it", batch.info.batch_id, type(exc).__name__, exc)
            feed.release(batch.members)
            return
        # by the listing the batch was planned from: the watch forgets a folder once ingest removes it
        completed.update((t, getattr(batch.listings.get(t), "completed_at", None) or 0.0) for t in report.ingested)
        feed.record(report, batch.members)
        summary.add(report)
        to_verify.add(report.ingested, completed)
        if report.ingested or report.quarantined:
            logger.info("batch %s: %d ingested, %d quarantined", report.batch_id, len(report.ingested), len(report.quarantined))

    create_tables(lake)  # before batches run side by side
    with _batch_runner(settings.workers, logger) as submit:
        running: dict[Future, Batch] = {}
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            batch = feed.next_batch() if len(running) <= settings.workers else None
            if batch is not None:
                running[submit(batch, inbox, lake, settings, claims)] = batch
                continue
            if running:
                finished, _ = wait(running, timeout=feed.poll_s, return_when=FIRST_COMPLETED)
                for f in finished:
                    done(running.pop(f), f)
            else:
                stop.wait(feed.poll_s)
        for f in list(running):  # the batches in flight finish: nothing is left half-done
            f.exception()
            done(running.pop(f), f)


@contextmanager
def _batch_runner(workers: int, logger: logging.Logger | logging.LoggerAdapter) -> Iterator[Callable[..., Future]]:
    """Submit a batch: to worker processes, or (one worker) to a thread of this process."""
    t0 = time.perf_counter()
    if workers > 1:
        with BatchPool(workers) as pool:
            pool.start()  # now, not with the first trace: the fork server imports the pipeline (seconds)
            logger.info("ready: %d ingest workers started in %.1f s", workers, time.perf_counter() - t0)
            yield lambda batch, *args: ingest_batch_task.submit(pool, batch, *args)
        return
    from concurrent.futures import ThreadPoolExecutor

    warm_up()  # Great Expectations' import and suites, now rather than in the first trace's batch
    logger.info("ready: ingest in this process, set up in %.1f s", time.perf_counter() - t0)
    with ThreadPoolExecutor(1, thread_name_prefix="prt-serve-ingest") as one:
        context = contextvars.copy_context()
        yield lambda batch, *args: one.submit(context.run, run_batch, batch, *args, as_tasks=True)


@dataclass
class _Stage:
    """One of QA and the judge: take the newest ids, run them in groups of `group`, catch up when idle."""

    name: str
    queue: NewestFirst
    group: int
    run_group: Callable[[list[str]], None]
    backlog: Callable[[], list[str]]
    stop: threading.Event
    logger: logging.Logger | logging.LoggerAdapter
    summary: ServeSummary
    catch_up_s: float
    newer_than: Callable[[], float | None]

    def run(self) -> None:
        last_catch_up = -float("inf")
        while not self.stop.is_set():
            ids = self.queue.take(self.group, timeout=1.0, newer_than=self.newer_than())
            if not ids:
                if time.monotonic() - last_catch_up >= self.catch_up_s:
                    last_catch_up = time.monotonic()
                    self._catch_up()
                continue
            try:
                self.run_group(ids)
            except Exception as exc:  # one group's failure never stops the server; catch-up retries it
                self.summary.fail(f"{self.name} of {', '.join(ids[:5])}: {type(exc).__name__}: {str(exc)[:300]}")
                self.logger.error(
                    "%s of %d traces failed (%s: %s); tried again at the next catch-up",
                    self.name,
                    len(ids),
                    type(exc).__name__,
                    exc,
                )

    def _catch_up(self) -> None:
        try:
            old = self.backlog()
        except Exception as exc:
            self.logger.warning("%s: could not look for traces left to do (%s: %s)", self.name, type(exc).__name__, exc)
            return
        if old:
            self.logger.info("%s: %d traces of the lake left to do; after the new ones", self.name, len(old))
            self.queue.add(old)


@contextmanager
def _stop_on_signals(stop: threading.Event, logger) -> Iterator[None]:
    """SIGTERM and SIGINT set `stop`; a second one exits at once. Only the main thread can take
    signals: elsewhere (a flow run in a thread) the caller stops it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: object) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)
        logger.info("%s: finishing the batches in flight, then stopping (again to stop at once)", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
