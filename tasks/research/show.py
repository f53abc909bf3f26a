"""`prt show TRACE_ID`: one trace as a readable terminal timeline (rich)."""

from __future__ import annotations

import re

import polars as pl
from rich.console import Console, Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from lake.read import Lake
from schemas.errors import InvalidInput
from schemas.rubric import DIMENSIONS

__all__ = ["show_trace"]

_VERDICT_STYLE = {
    "verified": "bold green",
    "partial": "yellow",
    "not_fixed": "red",
    "regression": "bold red",
    "replay_mismatch": "magenta",
    "error": "magenta",
}
_NOTE_STYLE = {"plan": "cyan", "hypothesis": "bold magenta", "observation": "blue", "decision": "bold cyan", "next_step": "cyan"}


# Everything a terminal would act on rather than show: C0 controls but tab and newline (ESC starts
# cursor moves and erases: "\x1b[1A\x1b[2K3 passed" would overwrite the line above), DEL, C1
# controls (0x9b is a one-byte CSI), and the bidi controls that reorder what is shown. Rich
# strips only a few of the C0 ones.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _safe(text: str | None) -> str:
    """`text` as something to look at: every control character written out as its escape (`\x1b`)."""
    if not text:
        return ""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text)


def _lines(text: str | None, limit: int, *, head: int | None = None) -> str:
    """At most `limit` lines of `text`: `head` from the start (half by default), the rest from the
    end, and a line between them saying what was cut."""
    lines = _safe(text).rstrip("\n").splitlines()
    if len(lines) > limit:
        first = limit // 2 if head is None else head
        last = limit - first
        cut = lines[first:-last]
        size = sum(len(line.encode("utf-8")) + 1 for line in cut)
        lines = [*lines[:first], f"[... {len(cut)} lines, {size} bytes cut ...]", *lines[-last:]]
    return "\n".join(lines)


def _event(e: dict, start: float, lake: Lake) -> Group | Text:
    when = Text(f"{'+%.0fs' % (e['ts_client_s'] - start):>7}  ", style="dim")
    t = e["type"]
    if t == "rationale_note":
        kind = e["kind"] or "note"
        return Text.assemble(when, (f"{_safe(kind).upper():<12}", _NOTE_STYLE.get(kind, "")), _safe(e["text"]))
    if t == "file_edit":
        head = Text.assemble(when, ("EDIT        ", "bold"), (_safe(e["file_path"]), "underline"))
        return Group(head, Syntax(_lines(e["diff_unified"], 40), "diff", theme="ansi_dark", background_color="default"))
    if t == "cmd_run":
        ok = e["exit_code"] == 0
        head = Text.assemble(
            when,
            ("RUN         ", "bold"),
            f"$ {_safe(e['command'])}  ",
            ("exit 0" if ok else f"exit {e['exit_code']}", "green" if ok else "red"),
        )
        # A test run prints its failures and summary last: keep 3 lines of the start, 15 of the end.
        output = _lines("".join(x for x in (lake.output(e, "stdout"), lake.output(e, "stderr")) if x), 18, head=3)
        return Group(head, Text("              " + output.replace("\n", "\n              "), style="dim")) if output else head
    if t == "test_run":
        bad = (e["failed"] or 0) + (e["errors"] or 0)
        summary = f"{e['passed']} passed, {e['failed']} failed, {e['errors'] or 0} errors"
        head = Text.assemble(when, ("TESTS       ", "bold"), ("✗ " if bad else "✓ ", "red" if bad else "green"), summary)
        failing = e["failing_tests"] or []
        return Group(head, *[Text(f"              ✗ {_safe(name)}", style="red") for name in failing[:10]]) if failing else head
    if t == "commit":
        return Text.assemble(when, ("COMMIT      ", "bold yellow"), _safe(f"{(e['sha'] or '')[:10]}  {e['message']}"))
    return Text.assemble(when, _safe(t))


def show_trace(lake: Lake, trace_id: str, console: Console) -> None:
    trace = lake.traces().filter(pl.col("trace_id") == trace_id).collect()
    if trace.is_empty():
        quarantined = lake.quarantine().filter(pl.col("trace_id") == trace_id).collect()
        if quarantined.height:
            q = quarantined.sort("detected_at").row(-1, named=True)
            raise InvalidInput("TRACE_ID", f"{trace_id} is quarantined ({q['reason']}): {q['message']}")
        raise InvalidInput("TRACE_ID", f"no trace {trace_id!r} in the lake at {lake.url}")
    t = trace.row(0, named=True)
    start = t["started_at"].timestamp()
    minutes = (t["ended_at"] - t["started_at"]).total_seconds() / 60
    header = Table.grid(padding=(0, 2))
    # Data goes in as Text, never as a string: rich would read "[...]" in a title as markup.
    header.add_row("task", Text.assemble((_safe(t["task_id"]), "bold"), " ", _safe(t["task_title"])))
    if t["task_description"]:
        header.add_row("", Text(_safe(t["task_description"])))
    header.add_row("repo", Text(_safe(f"{t['repo_origin']} @ {t['start_commit'][:12]}")))
    header.add_row(
        "session",
        Text(
            f"{t['started_at']:%Y-%m-%d %H:%M} UTC, {minutes:.1f} min, {t['event_count']} events, "
            f"participant {_safe(t['participant'])}"
        ),
    )
    header.add_row(
        "integrity", f"chain head {t['chain_head'][:16]}…, {t['redaction_count']} redaction(s), ingested {t['ingest_date']}"
    )

    qa = lake.latest_qa().filter(pl.col("trace_id") == trace_id).collect()
    if qa.height:
        r = qa.row(0, named=True)
        header.add_row(
            "QA",
            Text.assemble(
                (r["verdict"], _VERDICT_STYLE.get(r["verdict"], "")), _safe(f"  {r['verdict_reason']}  ({r['backend_version']})")
            ),
        )
        for name in r["fail_to_pass"] or []:
            header.add_row("", Text(f"FAIL_TO_PASS  {_safe(name)}", style="green"))
        for name in r["pass_to_fail"] or []:
            header.add_row("", Text(f"PASS_TO_FAIL  {_safe(name)}", style="red"))
    else:
        header.add_row("QA", Text("not verified yet (prt qa)", style="dim"))
    console.print(Panel(header, title=f"[bold]{trace_id}[/bold]", expand=True))

    scores = lake.scores().filter(pl.col("trace_id") == trace_id).sort("scored_at").collect()
    if scores.height:
        table = Table(title="scores", box=None, title_justify="left")
        table.add_column("judge", no_wrap=True)
        for col in ("status", "overall", *DIMENSIONS):
            table.add_column(col.replace("_", " "), justify="right")
        for r in scores.iter_rows(named=True):
            table.add_row(
                Text(_safe(r["judge_id"])),
                Text(_safe(r["status"])),
                *("" if r[c] is None else f"{r[c]:.2f}" for c in ("overall", *DIMENSIONS)),
            )
        console.print(table)

    events = lake.events().filter(pl.col("trace_id") == trace_id).sort("seq").collect()
    console.print(Text("timeline", style="bold"))
    for e in events.iter_rows(named=True):
        console.print(_event(e, start, lake))
