"""`prt show` shows what a trace holds; it never lets the trace drive the terminal."""

from __future__ import annotations

import io

from rich.console import Console

from client.writer import TraceWriter
from flows.ingest import ingest_inbox
from lake import Lake
from tasks.research.show import show_trace
from tests.support.tracegen import SNAPSHOT, T0, manifest

FAKE = "\x1b[1A\x1b[2K\x1b[32m3 passed\x1b[0m"  # up one line, erase it, print a green "3 passed"


def test_terminal_escapes_and_markup_in_a_trace_are_shown_not_obeyed(tmp_path, prefect_api):
    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    m = manifest("hostile", task={"id": "T-1", "title": "[bold red]not markup[/] \u202eevil", "description": "a\rb"})
    clock = iter(T0 + i for i in range(100))
    with TraceWriter(inbox, m, snapshot=SNAPSHOT, clock=lambda: next(clock)) as w:
        w.note("observation", "before " + FAKE)
        w.cmd_run("pytest -q", 1, 0.5, stdout="1 failed\n" + FAKE + "\x9b2J")
        w.test_run("pytest", "pytest -q", 0, 1, failing_tests=["tests/test_x.py::test_" + FAKE])
        w.commit("a" * 40, "fix " + FAKE)
    assert ingest_inbox(inbox=inbox, lake=lake).ingested == ["hostile"]

    buf = io.StringIO()
    show_trace(Lake(lake), "hostile", Console(file=buf, width=200, color_system=None, force_terminal=False))
    out = buf.getvalue()
    for raw in ("\x1b", "\x9b", "\u202e", "\r"):
        assert raw not in out, repr(raw)
    assert out.count("\\x1b[1A\\x1b[2K") >= 4 and "\\x9b2J" in out and "\\u202eevil" in out
    assert "[bold red]not markup[/]" in out  # printed as written, not read as rich markup
