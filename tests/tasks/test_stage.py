"""tasks/stage.py: a stage is a Prefect task run inside a flow run and a plain call elsewhere, with
the same retries on transient errors either way."""

from __future__ import annotations

import logging

import pytest

from schemas.errors import ConfigError, StorageUnavailable
from tasks.stage import attempt, in_flow_run, run_id, run_logger, stage_task


def _flaky(fails: int, exc: type[Exception] = StorageUnavailable):
    calls: list[int] = []

    def fn(x: int) -> tuple[int, bool]:
        calls.append(attempt())
        if len(calls) <= fails:
            raise exc("the store blinked")
        return x * 2, in_flow_run()

    return fn, calls


def test_outside_a_flow_run_a_stage_is_a_call_with_its_retries(caplog):
    fn, calls = _flaky(2)
    stage = stage_task("flaky", retry_after=[0, 0])(fn)
    with caplog.at_level(logging.WARNING, logger="prt"):
        assert stage(21) == (42, False)
    assert calls == [1, 2, 3]  # attempt() counts the tries, as Prefect's run_count does
    assert "flaky failed (StorageUnavailable: the store blinked); try 2 of 3" in caplog.text
    assert run_id() == "local" and run_logger("ingest").name == "prt.ingest"


def test_a_stage_gives_up_after_its_retries_and_never_retries_a_terminal_error():
    fn, calls = _flaky(5)
    with pytest.raises(StorageUnavailable):
        stage_task("flaky", retry_after=[0])(fn)(1)
    assert calls == [1, 2]
    fn, calls = _flaky(1, ConfigError)
    with pytest.raises(ConfigError):
        stage_task("flaky", retry_after=[0, 0])(fn)(1)
    assert calls == [1]


def test_a_submitted_stage_is_a_future_that_raises_what_the_stage_raised():
    ok, _ = _flaky(1)
    bad, _ = _flaky(9, ConfigError)
    assert stage_task("ok", retry_after=[0])(ok).submit(2).result(timeout=30) == (4, False)
    with pytest.raises(ConfigError):
        stage_task("bad")(bad).submit(2).result(timeout=30)


def test_inside_a_flow_run_a_stage_is_a_task_run_with_the_same_retries(prefect_api):
    from prefect import flow
    from prefect.context import FlowRunContext

    fn, calls = _flaky(1)
    stage = stage_task("flaky-in-flow", retry_after=[0])(fn)

    @flow(name="stage-probe")
    def probe() -> tuple:
        return stage(5), stage.submit(6).result(), run_id() == str(FlowRunContext.get().flow_run.id)

    called, submitted, same_run = probe()
    assert called == (10, True) and submitted == (12, True) and same_run
    assert calls == [1, 2, 1]  # Prefect's retry: run_count 2
