"""verify_traces: prove, in a sandbox, whether each trace's recorded edits fix its failing tests."""

from __future__ import annotations

import uuid
from concurrent.futures import FIRST_COMPLETED, wait

from client.storage import fs_for
from lake.read import Lake
from schemas.settings import get_sandbox_settings, get_settings
from tasks.publish import publish_run_artifacts
from tasks.qa.cache import live_snapshots, prune_qa_cache, qa_workdir
from tasks.qa.sandbox import get_sandbox
from tasks.qa.store import QaSummary, load_inputs_task, outcome_of, pending_task, store_task, verify_task
from tasks.stage import run_id as current_run_id
from tasks.stage import run_logger

__all__ = ["verify_traces"]


def verify_traces(
    lake: str | None = None,
    trace_ids: list[str] | None = None,
    sandbox: str | None = None,
    parallel: int | None = None,
    reruns: int | None = None,
) -> QaSummary:
    """Verify every trace that has no QA run yet (or the given trace ids): replay, test before and
    after, grade, and write qa_runs. A trace already verified with the same qa_id is not run again.

    sandbox: auto | docker | namespace (default PRT_SANDBOX). parallel: sandboxes at once.
    reruns: extra runs of the after state to flag flaky tests.
    """
    logger = run_logger("qa")
    lake = lake or get_settings().lake
    settings = get_sandbox_settings()
    parallel = parallel or settings.parallel
    reruns = settings.reruns if reruns is None else reruns
    run_id = current_run_id()
    box = get_sandbox(sandbox, settings)
    lk = Lake(lake, create=True)
    lake_fs, lake_root = fs_for(lake)
    summary = QaSummary(backend=box.version())

    cleaned = prune_qa_cache(qa_workdir(settings), live=live_snapshots(lk))
    if cleaned.snapshots or cleaned.environments or cleaned.leftovers:
        logger.info("QA cache: removed %s the lake no longer holds or a killed run left", cleaned)
    inputs = load_inputs_task(lk, trace_ids)
    todo, summary.already = pending_task(inputs, box, lk)
    logger.info(
        "%d traces to verify with %s (%d already verified), %d at a time",
        len(todo),
        box.version(),
        len(summary.already),
        parallel,
    )

    group = max(parallel * 4, 4)
    pending: list = []
    done: list = []
    inputs_of: dict = {}
    queue = list(todo)
    while queue or pending:
        while queue and len(pending) < parallel:
            batch_id = f"qa-{uuid.uuid4().hex[:12]}"
            inp = queue.pop(0)
            fut = verify_task.submit(inp, lake_fs, lake_root, box, reruns=reruns, run_id=run_id, batch_id=batch_id)
            inputs_of[fut] = inp
            pending.append(fut)
        finished = wait(pending, return_when=FIRST_COMPLETED).done
        for fut in finished:
            pending.remove(fut)
            outcome = outcome_of(fut.exception() or fut.result(), inputs_of.pop(fut), summary)
            if outcome is not None:
                done.append(outcome)
            else:
                logger.error("QA of %s could not run: %s", *summary.failed[-1])
        if len(done) >= group or (done and not queue and not pending):
            store_task(done, lk.tables, lake_fs, lake_root, run_id=run_id)
            summary.rows += [o.row for o in done]
            logger.info("verified %d of %d traces", len(summary.rows), len(todo))
            done = []

    publish_run_artifacts("qa", summary.table(), summary.markdown(), f"verification of {lake} with {box.version()}")
    logger.info("QA: %s", ", ".join(f"{v} {n}" for v, n in sorted(summary.verdicts().items())) or "nothing to verify")
    return summary
