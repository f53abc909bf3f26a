"""Unified diffs: make them (the SDK, the export's final patch) and replay them strictly (no fuzz,
no offsets), checking the recorded hashes.

Runs on the host on plain text only: applying a diff never executes anything from the trace.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from schemas.errors import DiffError, ReplayError

__all__ = ["DiffError", "EditSpec", "ReplayError", "apply_unified_diff", "replay_edits", "unified_diff"]

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_HEADER_PREFIXES = ("--- ", "+++ ", "diff ", "index ", "new file mode", "deleted file mode", "similarity ", "rename ")


@dataclass(frozen=True, slots=True)
class EditSpec:
    """One recorded file_edit, as the replay needs it."""

    seq: int
    event_id: str
    file_path: str
    diff_unified: str
    buffer_hash_after: str


def _hunk_body(lines: list[str], i: int) -> tuple[list[tuple[str, str]], int]:
    body: list[tuple[str, str]] = []
    while i < len(lines) and not lines[i].startswith("@@"):
        line = lines[i]
        if line.startswith("\\"):  # "\ No newline at end of file" applies to the line before it
            if not body:
                raise DiffError("a 'No newline' marker before any hunk line")
            op, text = body[-1]
            body[-1] = (op, text.removesuffix("\n"))
        elif line in ("\n", ""):
            body.append((" ", "\n"))  # some tools strip the space of an empty context line
        elif line[0] in " +-":
            if line.startswith(("--- ", "+++ ")) and _looks_like_next_file(lines, i):
                break
            body.append((line[0], line[1:]))
        else:
            raise DiffError(f"unexpected diff line {line[:40]!r}")
        i += 1
    return body, i


def _looks_like_next_file(lines: list[str], i: int) -> bool:
    return lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")


def apply_unified_diff(original: str, diff: str) -> str:
    """Apply a single-file unified diff to `original`; every hunk must match exactly where it says."""
    src = original.splitlines(keepends=True)
    lines = diff.splitlines(keepends=True)
    out: list[str] = []
    pos = 0
    i = 0
    while i < len(lines) and not lines[i].startswith("@@"):
        if not lines[i].startswith(_HEADER_PREFIXES):
            raise DiffError(f"unexpected text before the first hunk: {lines[i][:40]!r}")
        i += 1
    if i == len(lines):
        if diff.strip():
            raise DiffError("the diff has no hunks")
        return original
    while i < len(lines):
        m = _HUNK.match(lines[i])
        if not m:
            raise DiffError(f"bad hunk header {lines[i][:60]!r}")
        old_start, old_len = int(m[1]), int(m[2] if m[2] is not None else 1)
        new_len = int(m[4] if m[4] is not None else 1)
        body, i = _hunk_body(lines, i + 1)
        start = old_start - 1 if old_len > 0 else old_start
        if start < pos or start > len(src):
            raise DiffError(f"hunk @@ -{old_start},{old_len} is out of order or past the end of the file")
        out.extend(src[pos:start])
        pos = start
        old_seen = new_seen = 0
        for op, text in body:
            if op in " -":
                if pos >= len(src) or src[pos] != text:
                    found = src[pos][:60] if pos < len(src) else "end of file"
                    raise DiffError(f"line {pos + 1} is {found!r}, the diff expects {text[:60]!r}")
                pos += 1
                old_seen += 1
            if op in " +":
                out.append(text)
                new_seen += 1
        if (old_seen, new_seen) != (old_len, new_len):
            raise DiffError(
                f"hunk @@ -{old_start},{old_len} has {old_seen} old and {new_seen} new lines, the header says {old_len} and {new_len}"
            )
    out.extend(src[pos:])
    return "".join(out)


def unified_diff(before: str, after: str, path: str) -> str:
    """A unified diff from `before` to `after` with `a/` and `b/` headers, as `git diff` writes it."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"a/{path}" if before else "/dev/null",
        tofile=f"b/{path}",
    )
    out = []
    for line in lines:
        out.append(line)
        if not line.endswith("\n"):  # last line without a newline, as diff marks it
            out.append("\n\\ No newline at end of file\n")
    return "".join(out)


def replay_edits(files: Mapping[str, bytes], edits: Iterable[EditSpec]) -> dict[str, bytes]:
    """Apply `edits` in order to `files` (path -> bytes); raise `ReplayError` on the first that fails.

    Returns the new state of every file that an edit touched.
    """
    state: dict[str, bytes] = {}
    for edit in edits:
        before = state.get(edit.file_path, files.get(edit.file_path, b""))
        try:
            after_text = apply_unified_diff(before.decode("utf-8"), edit.diff_unified)
        except UnicodeDecodeError:
            raise ReplayError(edit.seq, edit.event_id, edit.file_path, "the file is not UTF-8 text") from None
        except DiffError as exc:
            raise ReplayError(edit.seq, edit.event_id, edit.file_path, f"the diff does not apply ({exc})") from None
        after = after_text.encode("utf-8")
        digest = hashlib.sha256(after).hexdigest()
        if digest != edit.buffer_hash_after:
            raise ReplayError(
                edit.seq,
                edit.event_id,
                edit.file_path,
                f"sha256 after replay is {digest[:12]}…, the trace recorded {edit.buffer_hash_after[:12]}…",
            )
        state[edit.file_path] = after
    return state
