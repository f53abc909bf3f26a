"""How a stage's functions run: as Prefect task runs inside a Prefect flow run, as plain calls otherwise.

Inside a flow run (a deployment, or `prt` with a Prefect API configured) a stage is a task run
with its name, state and retries in the UI. Outside one (`prt` on its own, a script, a worker
process of the ingest pool) it is a plain call with the same retries, and Prefect is never
imported: `import prefect` alone costs a second, more than the rest of an empty run.

    score = stage_task("score-batch", retry_after=[5, 30])(score_batch)
    score(judge, batch)                    # a task run in a flow run, a call elsewhere
    score.submit(judge, batch).result()    # the same, concurrently: a concurrent.futures.Future

Stage tasks cache nothing and persist no result (their inputs are large frames and the lake is
their output), take every argument quoted so Prefect does not walk it looking for futures, and
retry only on transient errors (the type says which: schemas.errors).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, ParamSpec, TypeVar

from schemas.errors import is_transient

__all__ = ["Stage", "attempt", "in_flow_run", "run_id", "run_logger", "stage_task"]

P = ParamSpec("P")
R = TypeVar("R")

_LOCAL_THREADS = 32
"""Threads for stages submitted outside a flow run (what Prefect's thread pool runner would give)."""
_attempt: contextvars.ContextVar[int] = contextvars.ContextVar("prt_stage_attempt", default=1)


def in_flow_run() -> bool:
    """True inside a Prefect flow run (its task runs too). Never imports Prefect: a process that
    has not imported it is in no flow run."""
    if "prefect.context" not in sys.modules:
        return False
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def run_id() -> str:
    """The Prefect flow run's id, or "local" outside one (recorded in the lake's `run_id` columns)."""
    if not in_flow_run():
        return "local"
    from prefect.runtime import flow_run

    return flow_run.get_id() or "local"


def run_logger(name: str) -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger in a flow run (its lines show in the UI); else the `prt.<name>` logger."""
    if in_flow_run():
        from prefect import get_run_logger

        return get_run_logger()
    return logging.getLogger(f"prt.{name}")


def attempt() -> int:
    """Which try of the running stage this is: 1, then 2 on its first retry, and so on."""
    if in_flow_run():
        from prefect.runtime import task_run

        return task_run.run_count or 1
    return _attempt.get()


class Stage(Generic[P, R]):
    """A stage function with a name and retries; call it, or `submit` it to run concurrently."""

    def __init__(self, fn: Callable[P, R], name: str, retry_after: Sequence[float] = ()):
        functools.update_wrapper(self, fn)
        self.fn, self.name, self.retry_after = fn, name, tuple(retry_after)
        self._task: Any = None

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if in_flow_run():
            return self._prefect_task()(*_quoted(args), **_quoted(kwargs))
        return self._call_with_retries(*args, **kwargs)

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Run in a thread (the flow's task runner in a flow run); the future raises what the stage raised."""
        if not in_flow_run():
            return _local_pool().submit(contextvars.copy_context().run, self._call_with_retries, *args, **kwargs)
        done: Future[R] = Future()
        prefect_future = self._prefect_task().submit(*_quoted(args), **_quoted(kwargs))

        def settle(f: Any) -> None:
            try:
                outcome = f.result(raise_on_failure=False)  # the exception itself when the task run failed
            except BaseException as exc:  # a state with no result to read (crashed): still an answer
                done.set_exception(exc)
                return
            if isinstance(outcome, BaseException):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)

        prefect_future.add_done_callback(settle)
        return done

    def _call_with_retries(self, *args: P.args, **kwargs: P.kwargs) -> R:
        for n, delay in enumerate([*self.retry_after, None], start=1):
            token = _attempt.set(n)
            try:
                return self.fn(*args, **kwargs)
            except Exception as exc:
                if delay is None or not is_transient(exc):
                    raise
                logging.getLogger(f"prt.{self.name}").warning(
                    "%s failed (%s: %s); try %d of %d in %g s",
                    self.name,
                    type(exc).__name__,
                    exc,
                    n + 1,
                    len(self.retry_after) + 1,
                    delay,
                )
                time.sleep(delay)
            finally:
                _attempt.reset(token)
        raise AssertionError("unreachable")

    def _prefect_task(self) -> Any:
        if self._task is None:
            from prefect import task
            from prefect.cache_policies import NONE

            retry = (
                {
                    "retries": len(self.retry_after),
                    "retry_delay_seconds": list(self.retry_after),
                    "retry_condition_fn": _retry_if_transient,
                }
                if self.retry_after
                else {}
            )
            self._task = task(self.fn, name=self.name, cache_policy=NONE, persist_result=False, **retry)
        return self._task


def stage_task(name: str, *, retry_after: Sequence[float] = ()) -> Callable[[Callable[P, R]], Stage[P, R]]:
    """A stage decorator: `stage_task("x", retry_after=[5, 30])(fn)` retries once after each delay
    (seconds) when the failure is transient."""
    return lambda fn: Stage(fn, name, retry_after)


def _retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry when the failure is transient (see schemas.errors)."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # the state carries no readable result; be conservative
        return False
    return isinstance(exc, BaseException) and is_transient(exc)


def _quoted(values: Any) -> Any:
    from prefect.utilities.annotations import quote

    if isinstance(values, dict):
        return {k: quote(v) for k, v in values.items()}
    return tuple(quote(v) for v in values)


@functools.cache
def _local_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=_LOCAL_THREADS, thread_name_prefix="prt-stage")
