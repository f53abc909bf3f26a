"""The batches of one ingest run: planned from the inbox listing, claimed just before they run.

Batches left by a crashed run come first (resumed). Then the inbox is scanned in parts (on a
local disk: 256, 1,024, 4,096... trace folders) and each part's traces are planned into batches
bounded by traces, events and bytes; the first batches run while the rest is still being listed.
The run's last batches are shared out so they end level on the workers. A batch that finds a
trace decompressing to more than planned hands it back (`BatchReport.deferred`); once every
running batch is done, those traces are planned again with their measured size.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

from fsspec import AbstractFileSystem

from schemas.errors import TraceRejected
from schemas.settings import IngestSettings
from tasks.ingest.batch import Batch, BatchReport, IngestSummary
from tasks.ingest.claims import Claims, claim_batch, recover_batches, safe_key
from tasks.ingest.inbox import InboxObject, TraceListing, scan_inbox_task, scan_parts

__all__ = ["Schedule", "plan_batches", "plan_last_batches", "stray_listing"]


class Schedule:
    """Iterate for the run's batches; a None asks the caller to finish every running batch (and
    `record` their reports) before the next is handed out. `summary` collects what the run did."""

    def __init__(
        self,
        inbox_fs: AbstractFileSystem,
        inbox_root: str,
        claims: Claims,
        settings: IngestSettings,
        *,
        run_id: str,
        logger: logging.Logger | logging.LoggerAdapter,
    ):
        self.inbox_fs, self.inbox_root, self.claims = inbox_fs, inbox_root, claims
        self.settings, self.run_id, self.logger = settings, run_id, logger
        self.summary = IngestSummary()
        self._planned: dict[str, TraceListing] = {}
        self._batches = 0
        self._handed_back: list[TraceListing] = []

    def __iter__(self) -> Iterator[Batch | None]:
        settings, summary = self.settings, self.summary
        orphans = recover_batches(self.claims)
        if orphans:
            scan = scan_inbox_task(self.inbox_fs, self.inbox_root, settings)
            self._planned.update(scan.traces)
            for info, members in orphans:
                self.logger.info("resuming batch %s left by an earlier run (%d traces)", info.batch_id, len(members))
                self._batches += 1
                yield Batch(info, members, scan.traces, True)
        claimed = self.claims.claimed()
        waiting: list[TraceListing] = []  # the last, perhaps not full, batch of a part: joins the next part
        parts = scan_parts(self.inbox_fs, self.inbox_root)
        for n, part in enumerate(parts, 1):
            scan = scan_inbox_task(self.inbox_fs, self.inbox_root, settings, part=part)
            candidates = [t for t in scan.traces.values() if t.status in ("ready", "rejected", "expired")]
            candidates += [stray_listing(self.inbox_root, obj) for obj in scan.stray]
            summary.in_progress += sorted(t.trace_id for t in candidates if safe_key(t.trace_id) in claimed)
            summary.pending += sorted(t.trace_id for t in scan.by_status("pending"))
            todo = waiting + [t for t in candidates if safe_key(t.trace_id) not in claimed]
            if n < len(parts):
                groups = plan_batches(todo, settings)
                waiting = groups.pop() if groups else []
            else:  # the rest of the inbox, known now: batches that end the run level on the workers
                groups = plan_last_batches(todo, settings, workers=settings.workers, planned=self._batches)
            for group in groups:
                yield self._claim(group)
        while True:
            yield None
            if not self._handed_back:
                return
            # Every worker is idle here: these batches alone should end level on them.
            groups = plan_last_batches(self._handed_back, settings, workers=settings.workers, planned=0)
            self._handed_back.clear()
            for group in groups:
                yield self._claim(group)

    def _claim(self, group: list[TraceListing]) -> Batch:
        info, won = claim_batch(self.claims, self.run_id, [t.trace_id for t in group], logger=self.logger)
        self._planned.update((t.trace_id, t) for t in group)
        self._batches += 1
        return Batch(info, won, {t.trace_id: t for t in group}, False)

    def record(self, report: BatchReport) -> None:
        """Count a finished batch; traces it handed back are planned again after the running batches."""
        self.summary.add(report)
        self.logger.info("batch %s: %d ingested, %d quarantined", report.batch_id, len(report.ingested), len(report.quarantined))
        for tid, size in report.deferred:
            self._planned[tid].read_bytes = size
            self._handed_back.append(self._planned[tid])
        if report.deferred:
            self.logger.info(
                "batch %s: %d trace(s) decompress to more than planned; they go to later batches: %s",
                report.batch_id,
                len(report.deferred),
                ", ".join(tid for tid, _ in report.deferred[:10]),
            )


def stray_listing(root: str, obj: InboxObject) -> TraceListing:
    """A stray object at the inbox root, dressed as a one-object trace so it can be quarantined."""
    if obj.is_link:  # e.g. a trace folder that is a link to elsewhere: never followed
        problem = TraceRejected(
            "unsafe_path", f"{obj.key} at the inbox root is a link; links are never followed", object_key=obj.key
        )
    else:
        problem = TraceRejected("stray_object", f"{obj.key} lies at the inbox root, outside any trace folder", object_key=obj.key)
    return TraceListing(obj.key, obj.path, {obj.key: obj}, status="rejected", problem=problem)


def plan_batches(
    listings: Sequence[TraceListing], settings: IngestSettings, *, in_order: bool = False
) -> list[list[TraceListing]]:
    """Group traces so that no batch exceeds the trace, event or byte limits (a lone huge trace
    still gets a batch): by trace id, or `in_order` as given (`prt serve`: newest first)."""
    batches: list[list[TraceListing]] = []
    current: list[TraceListing] = []
    events = size = 0
    for t in listings if in_order else sorted(listings, key=lambda t: t.trace_id):
        t_bytes = t.batch_bytes  # a sum over the trace's objects: once per trace
        if current and (
            len(current) >= settings.batch_max_traces
            or events + t.event_count > settings.batch_max_events
            or size + t_bytes > settings.batch_max_bytes
        ):
            batches.append(current)
            current, events, size = [], 0, 0
        current.append(t)
        events += t.event_count
        size += t_bytes
    if current:
        batches.append(current)
    return batches


def plan_last_batches(
    listings: Sequence[TraceListing], settings: IngestSettings, *, workers: int, planned: int
) -> list[list[TraceListing]]:
    """`plan_batches` for the last traces of a run, which ends level on `workers` processes: as
    many batches as the bounds need, or a few more so that the run's count (`planned` before
    these) is a multiple of `workers`, and the traces shared out so the batches weigh the same.
    A trace weighs its share of whichever bound it fills most. Otherwise the last batch, often
    a small remainder, runs alone while the other workers wait."""
    groups = plan_batches(listings, settings)
    if workers <= 1 or not groups:
        return groups
    count = len(groups) + (-(planned + len(groups)) % workers)
    ordered = [t for g in groups for t in g]
    if count > len(ordered):
        return groups

    def weight(t: TraceListing) -> float:
        return max(
            1 / settings.batch_max_traces,
            t.event_count / settings.batch_max_events,
            t.batch_bytes / settings.batch_max_bytes,
        )

    weights = [weight(t) for t in ordered]
    target = sum(weights) / count
    even: list[list[TraceListing]] = [[]]
    filled = 0.0
    for i, (t, w) in enumerate(zip(ordered, weights, strict=True)):
        left = len(ordered) - i  # every batch to come needs a trace
        if even[-1] and len(even) < count and (filled + w / 2 > target * len(even) or left == count - len(even)):
            even.append([])
        even[-1].append(t)
        filled += w
    fits = all(len(plan_batches(g, settings)) == 1 for g in even)
    return even if len(even) == count and fits else groups
