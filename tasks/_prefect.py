"""Shared Prefect task settings: stage tasks do their own caching (natural keys), retry only on
transient errors (the type says which), and take their big inputs quoted so Prefect does not walk them."""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NONE

from schemas.errors import is_transient

__all__ = ["STAGE", "retry_if_transient"]


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry when the failure is transient (see schemas.errors)."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # the state carries no readable result; be conservative
        return False
    return isinstance(exc, BaseException) and is_transient(exc)


STAGE: dict[str, Any] = {"cache_policy": NONE, "persist_result": False}
"""Keyword arguments for every stage task: no input hashing (inputs are large frames) and no result storage."""
