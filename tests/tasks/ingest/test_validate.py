"""The Great Expectations suites on a batch's frames: which traces break which rule, and what a run leaves behind."""

from __future__ import annotations

import hashlib

import polars as pl
import pytest

from expectations.suites import RULES
from tasks.ingest.validate import _validations, check_expectations


def _frames(n_traces: int = 3, n_events: int = 4) -> dict[str, pl.DataFrame]:
    tids = [f"t-{i}" for i in range(n_traces)]
    events = pl.DataFrame(
        {
            "trace_id": [t for t in tids for _ in range(n_events)],
            "seq": [s for _ in tids for s in range(n_events)],
            "event_id": [f"{t}-e{s}" for t in tids for s in range(n_events)],
            "type": ["cmd_run"] * (n_traces * n_events),
            "line_sha256": [hashlib.sha256(f"{t}{s}".encode()).hexdigest() for t in tids for s in range(n_events)],
            "from_start_s": [float(s) for _ in tids for s in range(n_events)],
            "to_end_s": [float(s - n_events) for _ in tids for s in range(n_events)],
        }
    )
    traces = pl.DataFrame(
        {
            "trace_id": tids,
            "participant": ["p_" + hashlib.md5(t.encode()).hexdigest() for t in tids],
            "duration_s": [60.0] * n_traces,
            "uncounted_events": [0] * n_traces,
        }
    )
    return {"events": events, "traces": traces}


def test_a_clean_batch_passes():
    assert check_expectations(_frames()) == {}


def test_each_broken_trace_is_named_with_its_rule():
    frames = _frames()
    events = frames["events"].with_columns(
        # t-0: a repeated seq; t-2: a digest that is not hex
        seq=pl.when((pl.col("trace_id") == "t-0") & (pl.col("seq") == 3)).then(2).otherwise(pl.col("seq")),
        line_sha256=pl.when((pl.col("trace_id") == "t-2") & (pl.col("seq") == 1))
        .then(pl.lit("zz"))
        .otherwise(pl.col("line_sha256")),
    )
    traces = frames["traces"].with_columns(
        duration_s=pl.when(pl.col("trace_id") == "t-1").then(-5.0).otherwise(pl.col("duration_s"))
    )
    failures = check_expectations({"events": events, "traces": traces})
    assert {t: name for t, (name, _) in failures.items()} == {
        "t-0": "events.key_unique",
        "t-1": "traces.session_length",
        "t-2": "events.line_sha256_hex",
    }
    assert failures["t-2"][1] == (
        "trace t-2: Great Expectations rule events.line_sha256_hex failed on 1 events row(s): {'line_sha256': 'zz'}"
    )


@pytest.mark.parametrize("rule", [r for r in RULES if r.frame == "traces"], ids=lambda r: r.name)
def test_every_traces_rule_is_in_its_suite(rule):
    names = [e.meta["name"] for e in _validations()["traces"].suite.expectations]
    assert rule.name in names


def test_runs_leave_no_results_behind():
    """A worker validates thousands of batches: nothing may pile up in Great Expectations' context."""
    check_expectations(_frames())
    store = _validations()["events"]._validation_results_store
    before = len(store.list_keys())
    for _ in range(3):
        check_expectations(_frames())
    assert len(store.list_keys()) == before
