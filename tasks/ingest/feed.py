"""The batches of a long-running ingest (`prt serve`): newest complete traces first, as they arrive.

`InboxWatch.poll` looks at the inbox cheaply: one listing of the trace folders (a delimited
listing on an object store: one page per 1,000 traces, whatever the objects in them) and one
look at `complete.json` for each folder not yet known complete. A folder known complete is not
looked at again until it leaves the inbox. So a poll costs the folder count plus the traces
still being uploaded, never a listing of every chunk of a big backlog.

`Feed.next_batch` hands out one claimed batch at a time: batches that crashed runs left behind
first, then the complete traces, the most recently completed first, so a trace that arrives
while a backlog drains waits for the batches in flight, not for the backlog. Only the traces of
the next batch (or a few more) are listed in full. Objects at the inbox root and traces whose
chunks never came are left to `prt ingest` (the scheduled `process-inbox`), which scans all.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from fsspec import AbstractFileSystem

from client.storage import join, object_mtime, top_folders
from schemas.layout import COMPLETE
from schemas.settings import IngestSettings
from tasks.ingest.batch import Batch, BatchReport
from tasks.ingest.claims import Claims, claim_batch, recover_batches, safe_key
from tasks.ingest.inbox import ScanPart, TraceListing, scan_inbox
from tasks.ingest.schedule import plan_batches

__all__ = ["Feed", "InboxWatch"]

_LOOKAHEAD = 4
"""Traces listed in full per batch handed out, as a multiple of the batch's trace limit: enough to plan it."""


@dataclass
class InboxWatch:
    """Which trace folders of the inbox hold a `complete.json`, and since when."""

    fs: AbstractFileSystem
    root: str
    complete: dict[str, float] = field(default_factory=dict)
    """folder -> when its complete.json was written."""

    def poll(self) -> dict[str, float]:
        """Look again: the complete folders (name -> complete.json's time), gone ones dropped."""
        names = top_folders(self.fs, self.root)
        present = set(names)
        for gone in set(self.complete) - present:
            del self.complete[gone]
        for name in names:
            if name not in self.complete and (at := object_mtime(self.fs, join(self.root, name, COMPLETE))) is not None:
                self.complete[name] = at
        return self.complete


class Feed:
    """Claimed batches of the newest complete traces; `None` when nothing is ready now."""

    def __init__(
        self,
        inbox_fs: AbstractFileSystem,
        inbox_root: str,
        claims: Claims,
        settings: IngestSettings,
        *,
        run_id: str,
        poll_s: float,
        logger: logging.Logger | logging.LoggerAdapter,
    ):
        self.fs, self.root, self.claims, self.settings = inbox_fs, inbox_root, claims, settings
        self.run_id, self.poll_s, self.logger = run_id, poll_s, logger
        self.watch = InboxWatch(inbox_fs, inbox_root)
        self._planned: dict[str, TraceListing] = {}  # listed, not handed out
        self._flight: dict[str, TraceListing] = {}  # in a batch handed out and not reported yet
        self._done: set[str] = set()  # reported; the poll that finds their folder gone forgets them
        self._waiting: dict[str, float] = {}  # complete but chunks missing: looked at again after poll_s
        self._last_poll = 0.0
        self._orphans = recover_batches(claims)
        self._orphans_checked = time.monotonic()
        self.backlog_since: float | None = None
        """Since when (epoch seconds) more traces have been complete than the batches handed out
        hold: a backlog is draining. None once the feed has caught up."""

    def next_batch(self) -> Batch | None:
        if not self._orphans and time.monotonic() - self._orphans_checked > self.settings.lease_s / 2:
            self._orphans = recover_batches(self.claims)  # a failed batch of ours, or a crashed run's, once its lease ran out
            self._orphans_checked = time.monotonic()
        if self._orphans:
            info, members = self._orphans.pop(0)
            scan = scan_inbox(self.fs, self.root, self.settings, part=ScanPart(tuple(members), root=False))
            self.logger.info("resuming batch %s left by an earlier run (%d traces)", info.batch_id, len(members))
            self._flight.update((t, scan.traces.get(t) or TraceListing(t, join(self.root, t))) for t in members)
            return Batch(info, members, scan.traces, True)
        now = time.monotonic()
        if now - self._last_poll >= self.poll_s:
            self.watch.poll()
            self._last_poll = now
            self._done &= set(self.watch.complete)
            self._waiting = {t: at for t, at in self._waiting.items() if t in self.watch.complete}
        ready = sorted(
            (t for t in self.watch.complete if t not in self._flight and t not in self._done and self._waiting.get(t, 0) <= now),
            key=lambda t: self.watch.complete[t],
            reverse=True,
        )
        if not ready:
            self.backlog_since = None
            return None
        claimed = self.claims.claimed()
        ready = [t for t in ready if safe_key(t) not in claimed][: self.settings.batch_max_traces * _LOOKAHEAD]
        listings = self._listed(ready)
        todo = [listings[t] for t in ready if t in listings and listings[t].status in ("ready", "rejected", "expired")]
        for t in ready:
            if t in listings and listings[t].status == "pending":
                self._waiting[t] = now + self.poll_s
        if not todo:
            return None
        group = plan_batches(todo, self.settings, in_order=True)[0]
        if len(group) < len(todo) and self.backlog_since is None:
            self.backlog_since = time.time()
        info, won = claim_batch(self.claims, self.run_id, [t.trace_id for t in group], logger=self.logger)
        for t in group:
            listing = self._planned.pop(t.trace_id)
            if t.trace_id in won:
                self._flight[t.trace_id] = listing
        return Batch(info, won, {t.trace_id: t for t in group}, False)

    def record(self, report: BatchReport, members: list[str]) -> None:
        """A batch is done: its traces leave the feed, but those it handed back (larger than
        planned), which are planned again with their measured size."""
        deferred = dict(report.deferred)
        for tid in members:
            listing = self._flight.pop(tid, None)
            if tid in deferred and listing is not None:
                listing.read_bytes = deferred[tid]
                self._planned[tid] = listing
            else:
                self._done.add(tid)

    def release(self, members: list[str]) -> None:
        """A batch failed: its traces stay claimed, and the next run that finds the claims resumes it."""
        for tid in members:
            self._flight.pop(tid, None)
            self._done.add(tid)

    def _listed(self, names: list[str]) -> dict[str, TraceListing]:
        """Full listings of `names`: kept from an earlier look unless complete.json changed since."""
        fresh = [n for n in names if n not in self._planned or self._planned[n].status == "pending"]
        if fresh:
            scan = scan_inbox(self.fs, self.root, self.settings, part=ScanPart(tuple(fresh), root=False))
            self._planned.update(scan.traces)
        return {n: self._planned[n] for n in names if n in self._planned}
