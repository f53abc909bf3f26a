"""Shared Prefect task settings: stage tasks do their own caching (natural keys), retry only on
transient errors (the type says which), and take their big inputs quoted so Prefect does not walk them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from schemas.errors import is_transient

__all__ = ["STAGE", "retry_if_transient", "stage_task"]


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry when the failure is transient (see schemas.errors)."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # the state carries no readable result; be conservative
        return False
    return isinstance(exc, BaseException) and is_transient(exc)


STAGE: dict[str, Any] = {"cache_policy": NONE, "persist_result": False}
"""Keyword arguments for every stage task: no input hashing (inputs are large frames) and no result storage."""


def stage_task(name: str, *, retry_after: Sequence[float] = ()) -> Any:
    """A Prefect task decorator for a stage: the STAGE settings, and one retry after each delay in
    `retry_after` (seconds) when the failure is transient. `stage_task("x", retry_after=[5, 30])(fn)`."""
    retry = (
        {"retries": len(retry_after), "retry_delay_seconds": list(retry_after), "retry_condition_fn": retry_if_transient}
        if retry_after
        else {}
    )
    return task(name=name, **retry, **STAGE)
