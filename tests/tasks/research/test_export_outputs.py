"""Nothing silently lost on the way out: outputs stored as artifacts are read back, and every cut
says how much it cut, keeping the end of a test run's output where its failures are."""

from __future__ import annotations

import io

from rich.console import Console

from client.writer import TraceWriter
from flows.ingest import ingest_inbox
from lake import Lake
from tasks.research.export import build_records
from tasks.research.show import show_trace
from tests.support.tracegen import SNAPSHOT, T0, manifest

FAILED = ["FAILED tests/test_stats.py::test_mean - assert 2.5 == 2.0", "FAILED tests/test_stats.py::test_median - IndexError"]


def _pytest_output(size: int) -> str:
    lines = ["============================= test session starts =============================="]
    i = 0
    while sum(map(len, lines)) < size:
        lines.append(f"tests/test_stats.py:{i}: in test_{i}\n    assert mean([1, 2, 3, {i}]) == {i}\nE   AssertionError")
        i += 1
    return "\n".join([*lines, "=========================== short test summary info ============================", *FAILED,
                      "========================= 2 failed, 40 passed in 0.31s =========================", ""])  # fmt: skip


def test_an_80_kb_test_output_keeps_its_failures_in_export_and_show(tmp_path, prefect_api):
    inbox, lake_url = str(tmp_path / "inbox"), str(tmp_path / "lake")
    output = _pytest_output(80_000)
    clock = iter(T0 + i for i in range(100))
    with TraceWriter(inbox, manifest("big-output"), snapshot=SNAPSHOT, clock=lambda: next(clock)) as w:
        w.note("plan", "run the tests")
        event = w.cmd_run("python -m pytest -q", 1, 0.4, stdout=output, stderr="warning: deprecated\n")
    assert "stdout_ref" in event.model_dump(exclude_none=True)  # over the inline limit: an artifact
    assert ingest_inbox(inbox=inbox, lake=lake_url).ingested == ["big-output"]

    lake = Lake(lake_url)
    (record,) = build_records(lake).records
    step = next(s for s in record["steps"] if s["type"] == "command")
    assert all(line in step["output"] for line in FAILED) and "warning: deprecated" in step["output"]
    assert "2 failed, 40 passed" in step["output"] and step["output"].startswith("=====")
    cut = int(step["output"].split("[... ")[1].split(" bytes cut ...]")[0])
    assert cut + len(step["output"].encode()) - len(f"\n[... {cut} bytes cut ...]\n") == len(
        (output + "warning: deprecated\n").encode()
    )

    buf = io.StringIO()
    show_trace(lake, "big-output", Console(file=buf, width=200, color_system=None))
    shown = buf.getvalue()
    assert all(line in shown for line in FAILED) and "bytes cut ...]" in shown


def test_duplicate_sessions_share_a_dedup_group_and_dedup_keeps_one(tmp_path, prefect_api):
    from tests.support.tracegen import write_trace

    inbox, lake_url = str(tmp_path / "inbox"), str(tmp_path / "lake")
    write_trace(inbox, "fix-a")
    write_trace(inbox, "fix-b", texts={"note": "another developer, the same fix"})  # same repo, commit and patch
    write_trace(inbox, "fix-c", texts={"diff_note": "ok"})  # the same fix and a comment: near
    assert sorted(ingest_inbox(inbox=inbox, lake=lake_url).ingested) == ["fix-a", "fix-b", "fix-c"]
    every = build_records(Lake(lake_url))
    assert [r["dedup_group"] for r in every.records] == ["fix-a", "fix-a", "fix-a"]
    assert every.dedup.exact_pairs == 1 and every.dedup.near_pairs >= 1 and every.dropped == 0
    assert {r["participant"] for r in every.records} == {every.records[0]["participant"]}
    assert every.records[0]["participant"].startswith("p_") and every.records[0]["session"]["started_at"].endswith("Z")
    kept = build_records(Lake(lake_url), dedup=True)
    assert [r["trace_id"] for r in kept.records] == ["fix-a"] and kept.dropped == 2
    assert (
        kept.summary()
        == "duplicates: 3 records in 1 groups (1 exact, 2 near pairs); 2 left out (--dedup keeps the best-scored of each group)"
    )
