"""Column-wise validation of a whole batch of traces: the fast path in front of the pydantic models.

The pydantic models (schemas/events.py, via tasks/assemble.assemble_trace) define what is valid.
This module checks the same rules for thousands of traces at once with polars: one JSON parse with
an explicit schema, one regex pass for the keys of every line, and vectorised range, pattern and
per-type checks. It only ever *accepts*: a trace it cannot vouch for — any failed check, an
unknown or repeated key, a parse error — goes to the pydantic path, which either accepts it too
or rejects it with the exact message. tests/tasks/ingest/test_fastpath.py checks the two paths agree on
generated traces (hypothesis).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import polars as pl

from schemas.errors import TraceRejected
from schemas.events import EVENT_FIELDS, EVENT_TYPES, NOTE_KINDS
from schemas.layout import ref_hex
from schemas.settings import IngestSettings
from schemas.types import MAX_NAME_BYTES, MAX_PATH_DEPTH, MAX_TS_S, MIN_TS_S
from tasks.ingest.assemble import AssembledTrace, Header, chain_error, check_header, original_digests, split_chunk
from tasks.ingest.inbox import TraceBlobs

__all__ = ["FastResult", "assemble_fast"]

_STR, _INT, _F = pl.String, pl.Int64, pl.Float64
READ_SCHEMA: dict[str, pl.DataType] = {
    "id": _STR, "seq": _INT, "ts_client_s": _F, "type": _STR,
    "file_path": _STR, "diff_unified": _STR, "buffer_hash_after": _STR,
    "command": _STR, "exit_code": _INT, "duration_s": _F, "stdout": _STR, "stdout_ref": _STR, "stderr": _STR, "stderr_ref": _STR,
    "framework": _STR, "passed": _INT, "failed": _INT, "errors": _INT, "skipped": _INT, "failing_tests": pl.List(_STR),
    "sha": _STR, "message": _STR, "kind": _STR, "text": _STR,
}  # fmt: skip
_KEY = r'[{,]\s*"(?:[^"\\]|\\.)*"\s*:\s*["\[{ntf]?'
"""A key and the first character of its value unless that is a number's (a digit or a minus): a
string, list, object, null or boolean value says so by its first character, a number by having
none. Every number then gives the same signature, with no pass to fold its digits. Inside JSON
strings every quote is escaped, so this matches real keys only (of the line and of nested
objects)."""
_JSON_STR = r'"(?:[^"\\]|\\.)*"'
_SURROGATE = r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}"
_STRING_LIST = rf'"failing_tests"\s*:\s*\[\s*(?:{_JSON_STR}\s*(?:,\s*{_JSON_STR}\s*)*)?\]'
_STRING_FIELDS = sorted(n for n, t in READ_SCHEMA.items() if t == _STR)
_NUMBER_FIELDS = sorted(n for n, t in READ_SCHEMA.items() if t in (_INT, _F))
_OPTIONAL = ["stderr", "stderr_ref", "stdout", "stdout_ref"]
_INT32 = 2**31 - 1
_REQUIRED = {
    "file_edit": ("file_path", "diff_unified", "buffer_hash_after"),
    "cmd_run": ("command", "exit_code", "duration_s"),
    "test_run": ("framework", "command", "passed", "failed", "duration_s"),
    "commit": ("sha", "message"),
    "rationale_note": ("kind", "text"),
}


@dataclass
class FastResult:
    accepted: list[AssembledTrace] = field(default_factory=list)
    events: pl.DataFrame | None = None
    """Event rows of the accepted traces (trace_id, seq, event_id, type, ts_client_s, fields..., line_sha256)."""
    slow: list[TraceBlobs] = field(default_factory=list)
    """Traces the fast path could not vouch for: the pydantic path decides."""
    rejected: list[tuple[TraceBlobs, TraceRejected]] = field(default_factory=list)
    deferred: list[TraceBlobs] = field(default_factory=list)
    """Traces not read at all: the batch was over its byte bound already."""


@dataclass
class _Candidate:
    tb: TraceBlobs
    header: Header
    lines: list[bytes]
    """Event lines in file order (chunk by chunk)."""
    chunks: list[tuple[str, int]]
    """(chunk key, number of lines) in file order."""


def _row_checks() -> pl.Expr:
    """True for a row that the pydantic models would accept (given its keys are all known)."""
    c = pl.col
    seconds = c("duration_s").is_null() | (c("duration_s").is_between(0, 7 * 24 * 3600) & c("duration_s").is_finite())
    ok = (
        c("type").is_in(EVENT_TYPES)
        & c("id").str.len_chars().is_between(1, 128)
        & c("seq").is_between(0, _INT32)
        & c("ts_client_s").is_between(MIN_TS_S, MAX_TS_S)
        & c("ts_client_s").is_finite()
        & seconds
        & (c("exit_code").is_null() | c("exit_code").is_between(-255, 255))
        & pl.all_horizontal([(c(n).is_null() | c(n).is_between(0, _INT32)) for n in ("passed", "failed", "errors", "skipped")])
        & (c("buffer_hash_after").is_null() | c("buffer_hash_after").str.contains(r"^[0-9a-f]{64}$"))
        & (c("sha").is_null() | c("sha").str.contains(r"^[0-9a-f]{7,64}$"))
        & (c("kind").is_null() | c("kind").is_in(NOTE_KINDS))
        & (c("text").is_null() | (c("text").str.len_chars() >= 1))
        & (c("framework").is_null() | c("framework").str.len_chars().is_between(1, 64))
        & pl.all_horizontal(
            [(c(n).is_null() | c(n).str.contains(r"^sha256:[0-9a-f]{64}$")) for n in ("stdout_ref", "stderr_ref")]
        )
        & ~(c("stdout").is_not_null() & c("stdout_ref").is_not_null())
        & ~(c("stderr").is_not_null() & c("stderr_ref").is_not_null())
        & (c("failing_tests").is_null() | c("failing_tests").list.eval(pl.element().is_not_null()).list.all())
        & _safe_path(c("file_path"))
    )
    for event_type, required in _REQUIRED.items():
        ok &= (c("type") != event_type) | pl.all_horizontal([c(n).is_not_null() for n in required])
    return ok


def _safe_path(p: pl.Expr) -> pl.Expr:
    """schemas.types.unsafe_path_reason, column-wise (null passes: required fields are checked apart)."""
    unsafe = (
        (p.str.len_chars() == 0)
        | (p.str.len_chars() > 4096)
        | p.str.contains(r"[\x00-\x1f\\]")
        | p.str.starts_with("/")
        | p.str.contains(r"^[A-Za-z]:")
        | p.str.contains(r"(^|/)\.\.(/|$)")
        | p.str.contains(r"(^|/)\.?(/|$)")
        | (p == ".git")
        | p.str.starts_with(".git/")
        | (p.str.split("/").list.eval(pl.element().str.len_bytes()).list.max() > MAX_NAME_BYTES)
        | (p.str.count_matches("/") >= MAX_PATH_DEPTH)
    )
    return p.is_null() | ~unsafe


_SIG_KEY = re.compile(r'[{,]\s*"((?:[^"\\]|\\.)*)"\s*:\s*(["\[{ntf]?)')


@lru_cache(maxsize=4096)
def _signature_ok(event_type: str | None, signature: str) -> tuple[bool, bool]:
    """(keys ok, has failing_tests) for one key signature: the line's keys, each with the first
    character of its value. Producers repeat a handful of signatures, so each is checked once."""
    pairs = _SIG_KEY.findall(signature)
    names = [n for n, _ in pairs]
    allowed = EVENT_FIELDS.get(event_type or "")
    if allowed is None or len(set(names)) != len(names) or not set(names) <= allowed:
        return False, False
    for name, first in pairs:
        if name in _STRING_FIELDS:
            ok = first == '"' or (first == "n" and name in _OPTIONAL)
        elif name in _NUMBER_FIELDS:
            ok = first == ""  # a number: the signature keeps none of its characters
        else:
            ok = first == "["
        if not ok:
            return False, False
    return True, "failing_tests" in names


def _keys_ok(df: pl.DataFrame) -> pl.DataFrame:
    """Per row: every key known for the row's type (unknown ones become `extra`: pydantic's job),
    none repeated (polars keeps the first of two, pydantic the last), and every value of the JSON
    type the model wants (polars would turn a number into a string; pydantic refuses it)."""
    sig = pl.col("_keys").list.join("").alias("_sig")
    df = df.with_columns(sig)
    unique = df.select("type", "_sig").unique()
    checked = [_signature_ok(t, sg) for t, sg in unique.iter_rows()]
    verdicts = unique.with_columns(
        _keys_ok=pl.Series([c[0] for c in checked], dtype=pl.Boolean), _list=pl.Series([c[1] for c in checked], dtype=pl.Boolean)
    )
    df = df.join(verdicts, on=["type", "_sig"], how="left", nulls_equal=True, maintain_order="left")
    # A list of strings must hold strings only (polars would turn [1, 2] into ["1", "2"]).
    list_ok = ~pl.col("_list") | pl.col("_text").str.contains(_STRING_LIST)
    # A surrogate escape: polars reads a lone one as a replacement, pydantic refuses it (bad_json).
    no_surrogate = ~pl.col("_text").str.contains(_SURROGATE)
    return df.with_columns(_keys_ok=pl.col("_keys_ok") & list_ok & no_surrogate).drop("_list", "_sig")


def _parse(lines: list[bytes]) -> pl.DataFrame | None:
    try:
        df = pl.read_ndjson(io.BytesIO(b"\n".join(lines)), schema=READ_SCHEMA)
    except Exception:  # any parse problem: let the pydantic path find and name it
        return None
    return df if df.height == len(lines) else None


def assemble_fast(tbs: list[TraceBlobs], settings: IngestSettings, *, max_bytes: int | None = None) -> FastResult:
    """Validate a batch of traces column-wise. Accepted traces come with their event rows. Once the
    traces read so far decompressed to more than `max_bytes`, the rest are left in `deferred`."""
    out = FastResult()
    candidates: list[_Candidate] = []
    total = 0
    for i, tb in enumerate(tbs):
        if max_bytes is not None and total > max_bytes:
            # What the traces so far decompressed to is over the batch's bound (a gzip trailer
            # understates a chunk of several members): the rest go back to the run, unread.
            out.deferred = tbs[i:]
            break
        used = 0
        try:
            header = check_header(tb, settings)
            lines: list[bytes] = []
            chunks: list[tuple[str, int]] = []
            for seq in range(header.complete.chunk_count):
                key = header.chunks[seq]
                chunk_lines = split_chunk(tb.trace_id, key, tb.blobs[key], settings, used=used)
                used += sum(map(len, chunk_lines)) + len(chunk_lines)
                lines += chunk_lines
                chunks.append((key, len(chunk_lines)))
        except TraceRejected as exc:
            out.rejected.append((tb, exc))
            total += used
            continue
        total += used
        if len(lines) != header.complete.event_count:
            out.slow.append(tb)
            continue
        candidates.append(_Candidate(tb, header, lines, chunks))
    if not candidates:
        return out

    index, df = _parse_all(candidates, out)
    if df is None:
        return out
    df = df.with_columns(_text=pl.Series([line for i in index for line in candidates[i].lines], dtype=pl.Binary).cast(pl.String))
    df = _keys_ok(df.with_columns(_keys=pl.col("_text").str.extract_all(_KEY)))
    df = df.with_columns(_ok=(_row_checks() & pl.col("_keys_ok")).fill_null(False))  # a null anywhere is a failed check
    # Lines must come in seq order in the files (what every producer writes); a trace whose
    # chunks hold its events out of order is left to the pydantic path, which sorts them.
    per_trace = df.group_by("_trace").agg(
        ok=pl.col("_ok").all() & (pl.col("seq") == pl.int_range(pl.len())).all() & (pl.col("id").n_unique() == pl.len())
    )
    good = sorted(per_trace.filter(pl.col("ok"))["_trace"].to_list())
    out.slow += [candidates[i].tb for i in index if i not in set(good)]

    with_refs = df.filter(
        pl.col("_trace").is_in(good) & (pl.col("stdout_ref").is_not_null() | pl.col("stderr_ref").is_not_null())
    )
    refs: dict[int, list[str]] = {}
    for i, *values in with_refs.select("_trace", "stdout_ref", "stderr_ref").iter_rows():
        refs.setdefault(i, []).extend(v for v in values if v)
    keep: list[int] = []
    kept_digests: list[bytes] = []
    for i in good:
        c = candidates[i]
        digests = original_digests(c.lines, c.tb.listing.digest_map)
        if chain_error(c.tb.trace_id, c.header.complete, digests) or any(
            ref_hex(r) not in c.header.artifacts for r in refs.get(i, ())
        ):
            out.slow.append(c.tb)
            continue
        keep.append(i)
        kept_digests += digests
        chunk_seqs: dict[str, list[int]] = {}
        first = 0
        for key, n in c.chunks:
            chunk_seqs[key] = list(range(first, first + n))
            first += n
        out.accepted.append(
            AssembledTrace(
                trace_id=c.tb.trace_id,
                manifest=c.header.manifest,
                complete=c.header.complete,
                events=None,
                lines=c.lines,
                digests=digests,
                artifacts=c.header.artifacts,
                objects=dict(c.tb.blobs),
                chunk_seqs=chunk_seqs,
                pseudonymized=c.tb.listing.pseudonymized,
            )
        )
    if keep:
        out.events = _event_rows(
            df.filter(pl.col("_trace").is_in(keep)), [candidates[i].tb.trace_id for i in keep], keep, kept_digests
        )
    return out


def _parse_all(candidates: list[_Candidate], out: FastResult) -> tuple[list[int], pl.DataFrame | None]:
    """All candidates' lines in one frame with a `_trace` column (the candidate's index); a
    candidate whose lines do not parse goes to the slow path."""
    parsed = _parse([line for c in candidates for line in c.lines])
    if parsed is not None:
        index = list(range(len(candidates)))
        counts = [len(c.lines) for c in candidates]
        return index, parsed.with_columns(_trace=pl.Series(np.repeat(np.arange(len(candidates), dtype=np.int32), counts)))
    # Some trace does not parse: find it, trace by trace (rare: a bad trace in the batch).
    frames = {i: f for i, c in enumerate(candidates) if (f := _parse(c.lines)) is not None}
    out.slow += [c.tb for i, c in enumerate(candidates) if i not in frames]
    index = sorted(frames)
    if not index:
        return index, None
    return index, pl.concat([frames[i].with_columns(_trace=pl.lit(i, pl.Int32)) for i in index], how="vertical")


def _event_rows(kept: pl.DataFrame, trace_ids: list[str], keep: list[int], digests: list[bytes]) -> pl.DataFrame:
    """Event rows as the pydantic path would produce them, from the parsed frame of accepted traces."""
    events = kept.with_columns(
        trace_id=pl.col("_trace").replace_strict(keep, trace_ids, return_dtype=pl.String),
        line_sha256=pl.Series(digests, dtype=pl.Binary).bin.encode("hex"),
    )
    events = events.select("trace_id", pl.exclude("trace_id", "_trace", "_keys", "_keys_ok", "_ok", "_text")).rename(
        {"id": "event_id"}
    )
    # The models' defaults for test runs: errors and skipped 0, failing_tests empty.
    is_test = pl.col("type") == "test_run"
    return events.with_columns(
        errors=pl.when(is_test).then(pl.col("errors").fill_null(0)).otherwise(pl.col("errors")),
        skipped=pl.when(is_test).then(pl.col("skipped").fill_null(0)).otherwise(pl.col("skipped")),
        failing_tests=pl.when(is_test).then(pl.col("failing_tests").fill_null([])).otherwise(pl.col("failing_tests")),
        extra=pl.lit(None, dtype=pl.String),
    )
