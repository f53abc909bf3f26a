"""reprocess: a changed validation rule newly quarantines or re-admits traces from the lake's own copies."""

from __future__ import annotations

import polars as pl
import pytest

from client.writer import TraceWriter
from flows.ingest import ingest_inbox
from flows.reprocess import reprocess
from lake import Lake
from schemas.settings import get_ingest_settings
from tests.support.tracegen import SNAPSHOT, T0, archived, lake_text, manifest, objects, write_trace

pytestmark = pytest.mark.usefixtures("prefect_api")

SECRET = "ghp_" + "R" * 36


def _wide_trace(inbox: str, trace_id: str, participant: str = "dev-wide") -> None:
    """A session with one 200 kB output line (inline) and a secret in a note."""
    clock = iter(T0 + i for i in range(100))
    with TraceWriter(
        inbox,
        manifest(trace_id, participant=participant),
        snapshot=SNAPSHOT,
        inline_output_bytes=10**6,
        clock=lambda: next(clock),
    ) as w:
        w.note("observation", f"the token {SECRET} leaked into the logs")
        w.cmd_run("python -m pytest -q", exit_code=1, duration_s=1.0, stdout="E" * 200_000)
        w.test_run("pytest", "python -m pytest -q", passed=1, failed=1)


@pytest.fixture
def line_limit(monkeypatch):
    def set_limit(n: int | None):
        if n is None:
            monkeypatch.delenv("PRT_MAX_LINE_BYTES", raising=False)
        else:
            monkeypatch.setenv("PRT_MAX_LINE_BYTES", str(n))
        get_ingest_settings.cache_clear()

    yield set_limit
    get_ingest_settings.cache_clear()


def _state(lake: str) -> dict:
    lk = Lake(lake)
    return {
        "traces": sorted(lk.traces().collect()["trace_id"]),
        "events": lk.events().group_by("trace_id").len().sort("trace_id").collect().rows(),
        "open_quarantine": sorted(lk.quarantine().filter(pl.col("readmitted_by").is_null()).collect()["trace_id"]),
    }


def test_tightened_rule_quarantines_then_relaxed_rule_readmits(storage_url, line_limit):
    inbox, lake = storage_url("inbox"), storage_url("lake")
    write_trace(inbox, "t-small")
    _wide_trace(inbox, "t-wide")
    ingest_inbox(inbox=inbox, lake=lake)
    lk = Lake(lake)
    before = lk.traces().filter(pl.col("trace_id") == "t-wide").select("chain_head", "participant").collect().row(0)
    assert _state(lake)["traces"] == ["t-small", "t-wide"]

    line_limit(100_000)  # a stricter rule
    s = reprocess(lake=lake, stages=["validate"])
    assert [(t, r) for t, r, _ in s.validate.requarantined] == [("t-wide", "line_too_large")]
    assert s.validate.still_valid == 1
    state = _state(lake)
    assert (
        state["traces"] == ["t-small"]
        and [t for t, _ in state["events"]] == ["t-small"]
        and state["open_quarantine"] == ["t-wide"]
    )
    q = lk.quarantine().collect().row(0, named=True)
    assert q["participant"] == before[1] and q["raw_prefix"].startswith("quarantine/t-wide/")
    assert not [k for k in objects(lake) if k.startswith("raw/t-wide/")]  # the archive moved to quarantine
    assert any(k.startswith(q["raw_prefix"] + "/objects/chunks/") for k in objects(lake))

    versions = {n: lk.tables.open(n).version() for n in ("traces", "events", "quarantine")}
    again = reprocess(lake=lake, stages=["validate"])
    assert again.validate.requarantined == [] and again.validate.readmitted == [] and again.validate.still_quarantined == 1
    assert {n: lk.tables.open(n).version() for n in versions} == versions  # idempotent: nothing written

    line_limit(None)  # the rule is relaxed again
    s = reprocess(lake=lake, stages=["validate"])
    assert s.validate.readmitted == ["t-wide"]
    state = _state(lake)
    assert state["traces"] == ["t-small", "t-wide"] and state["open_quarantine"] == []
    assert dict(state["events"])["t-wide"] == 3
    after = lk.traces().filter(pl.col("trace_id") == "t-wide").select("chain_head", "participant").collect().row(0)
    assert after == before  # same chain head, same pseudonym (not hashed twice)
    assert lk.quarantine().collect().row(0, named=True)["readmitted_by"]
    assert not [k for k in objects(lake) if k.startswith(q["raw_prefix"])]
    assert "_archived.json" in archived(lake, "t-wide")


def test_trace_quarantined_at_ingest_is_readmitted_with_its_chain_intact(storage_url, line_limit):
    inbox, lake = storage_url("inbox"), storage_url("lake")
    line_limit(100_000)
    _wide_trace(inbox, "t-late", participant="carol@example.org")
    ingest_inbox(inbox=inbox, lake=lake)
    assert _state(lake)["open_quarantine"] == ["t-late"]
    text = lake_text(lake)
    assert SECRET not in text and "carol@example.org" not in text  # the quarantine copy is redacted and pseudonymised

    line_limit(None)
    s = reprocess(lake=lake, stages=["validate"])
    assert s.validate.readmitted == ["t-late"]
    lk = Lake(lake)
    trace = lk.traces().collect().row(0, named=True)
    assert trace["participant"].startswith("p_") and trace["event_count"] == 3
    note = lk.events().filter(pl.col("seq") == 0).collect().row(0, named=True)
    assert "[REDACTED:github_token]" in note["text"] and note["redactions"] == ["text:github_token"]
    assert SECRET not in lake_text(lake)


def test_reprocess_qa_and_judge_stages_are_idempotent(tmp_path):
    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    write_trace(inbox, "t-j")
    ingest_inbox(inbox=inbox, lake=lake)
    first = reprocess(lake=lake, stages=["judge"])
    assert first.judge.by_status() == {"scored": 1}
    second = reprocess(lake=lake, stages=["judge"], trace_ids=["t-j"])
    assert second.judge.rows == []
    assert Lake(lake).scores().collect().height == 1
