"""Render a trace as a compact, readable timeline: what a model judge reads, and `prt show` prints."""

from __future__ import annotations

from datetime import datetime

from tasks.judge.base import TraceView

__all__ = ["render_events", "render_trace"]

_MAX_BLOCK_LINES = 40


def _block(text: str | None, max_lines: int = _MAX_BLOCK_LINES) -> list[str]:
    if not text:
        return []
    lines = text.rstrip("\n").splitlines()
    if len(lines) > max_lines:
        half = max_lines // 2
        lines = [*lines[:half], f"... ({len(lines) - max_lines} lines cut) ...", *lines[-half:]]
    return ["    | " + line for line in lines]


def _offset(ts: float | None, start: datetime | None) -> str:
    if ts is None or start is None:
        return "[?]"
    return f"[+{ts - start.timestamp():.0f}s]"


def render_events(events: list[dict], start: datetime | None) -> list[str]:
    """One entry per event (a header line plus indented detail), in seq order."""
    out = []
    for e in events:
        when = _offset(e.get("ts_client_s"), start)
        t = e["type"]
        if t == "rationale_note":
            entry = [f"{when} {str(e.get('kind', 'note')).upper()}: {e.get('text', '')}"]
        elif t == "file_edit":
            entry = [f"{when} EDIT {e.get('file_path')}", *_block(e.get("diff_unified"))]
        elif t == "cmd_run":
            entry = [
                f"{when} RUN `{e.get('command')}` -> exit {e.get('exit_code')} ({e.get('duration_s') or 0:.1f}s)",
                *_block(e.get("stdout"), 20),
                *_block(e.get("stderr"), 10),
            ]
            if e.get("stdout_ref"):
                entry.append(f"    | (output stored as artifact {e['stdout_ref'][:19]}...)")
        elif t == "test_run":
            failing = e.get("failing_tests") or []
            entry = [
                f"{when} TESTS {e.get('framework')}: {e.get('passed')} passed, {e.get('failed')} failed, {e.get('errors') or 0} errors"
                + (f" (failing: {', '.join(failing[:5])}{' ...' if len(failing) > 5 else ''})" if failing else "")
            ]
        elif t == "commit":
            entry = [f"{when} COMMIT {str(e.get('sha'))[:10]}: {e.get('message')}"]
        else:
            entry = [f"{when} {t}"]
        out.append("\n".join(entry))
    return out


def render_trace(view: TraceView, max_chars: int) -> str:
    """The timeline of `view`, cut in the middle to fit `max_chars` (the start and the end matter most)."""
    entries = render_events(view.events, view.started_at)
    text = "\n".join(entries)
    if len(text) <= max_chars:
        return text
    head, tail, used = [], [], 0
    budget = max_chars - 100
    i, j = 0, len(entries) - 1
    while i <= j:
        for side in ("head", "tail"):
            if i > j:
                break
            entry = entries[i] if side == "head" else entries[j]
            if used + len(entry) + 1 > budget:
                i = j + 1
                break
            used += len(entry) + 1
            if side == "head":
                head.append(entry)
                i += 1
            else:
                tail.insert(0, entry)
                j -= 1
    cut = len(entries) - len(head) - len(tail)
    return "\n".join([*head, f"... ({cut} events cut to fit) ...", *tail])
