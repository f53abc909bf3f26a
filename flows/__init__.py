"""The jobs (jobs/) as Prefect flows. `local_runs()` is how `prt` runs them when its runs are tracked."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["local_runs"]


@contextmanager
def local_runs() -> Iterator[None]:
    """Flow runs started inside this block send no Prefect heartbeats, unless the heartbeat
    frequency is set explicitly (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, or a Prefect profile).

    Heartbeats feed Prefect's zombie detection for deployment runs, which a worker starts and may
    lose; deployments keep them. A local run has nothing to gain from them: its batches are taken
    over through their leases if it dies. And each run waits for its heartbeat thread at the end,
    which sleeps in one-second steps: up to a second of doing nothing per flow run, subflows too.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings

    if "heartbeat_frequency" in get_current_settings().flows.model_fields_set:
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
