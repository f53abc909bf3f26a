"""The column-wise fast path agrees with the pydantic models: it accepts only what they accept, and
then produces the same rows. Checked on generated traces (hypothesis) and on the corpus."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.errors import TraceRejected
from tasks.ingest.assemble import assemble_trace
from tasks.ingest.fastpath import assemble_fast
from tasks.ingest.frames import BatchStamp, events_frame
from tests.support.corpus import CASES, RawTrace, good_events
from tests.tasks.ingest.test_fuzz import LIMITS, _blobs

RAW_HUGE = "<1e400>"
"""Written into the line as the bare number 1e400 (json.dumps cannot: it is Infinity once parsed)."""
STAMP = BatchStamp("b", "r", datetime(2026, 1, 1, tzinfo=UTC))
FIELD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-300, 2**40), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6),
    st.sampled_from(["", "a" * 64, "/etc/x", "a/../b", "src/ok.py", "plan", "hypothesis", "sha256:" + "b" * 64, "abcdef1", "1.5", "7"]),
    st.lists(st.one_of(st.text(max_size=4), st.integers(), st.none()), max_size=3),
    # Escapes: lone and paired surrogates, NUL, an escaped backslash; a number too large for a double.
    st.sampled_from(["\ud800", "a\udfffb", "\U0001f600", "\x00", "\\u0041", RAW_HUGE]),
)  # fmt: skip
FIELDS = ["id", "seq", "ts_client_s", "type", "file_path", "diff_unified", "buffer_hash_after", "command", "exit_code", "duration_s",
          "stdout", "stdout_ref", "stderr", "framework", "passed", "failed", "errors", "skipped", "failing_tests", "sha", "message",
          "kind", "text", "unknown_field"]  # fmt: skip


def _line(event: dict, duplicate: str | None) -> bytes:
    text = json.dumps(event, separators=(",", ":"))
    if duplicate and duplicate in event:  # a repeated key: polars keeps the first value, pydantic the last
        text = text[:-1] + f',"{duplicate}":{json.dumps(event[duplicate])}' + "}"
    return text.replace(f'"{RAW_HUGE}"', "1e400").encode()


@st.composite
def traces(draw):
    events = good_events()
    lines = []
    for e in events:
        e = dict(e)
        if draw(st.booleans()):
            name = draw(st.sampled_from(FIELDS))
            if draw(st.booleans()):
                e.pop(name, None)
            else:
                e[name] = draw(FIELD_VALUES)
        lines.append(_line(e, draw(st.none() | st.sampled_from(["seq", "type", "text", "exit_code"]))))
    return RawTrace("t", lines=lines).build()


def _slow(objects):
    try:
        return assemble_trace(_blobs(objects), LIMITS)
    except TraceRejected:
        return None


def _fast_rows(objects):
    result = assemble_fast([_blobs(objects)], LIMITS)
    if not result.accepted:
        return None
    return events_frame([], STAMP, fast=result.events)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(objects=traces())
def test_fast_path_accepts_only_what_pydantic_accepts_and_builds_the_same_rows(objects):
    slow = _slow(objects)
    fast = _fast_rows(objects)
    if fast is None:
        return  # deferred to the pydantic path: always allowed
    assert slow is not None, "the fast path accepted a trace the models reject"
    expected = events_frame([slow], STAMP)
    assert fast.equals(expected), (fast.to_dicts(), expected.to_dicts())


def test_fast_path_takes_the_good_traces_and_defers_every_corpus_case(tmp_path):
    good = RawTrace("t", events=good_events()).build()
    assert _fast_rows(good) is not None
    for name, (build, _) in CASES.items():
        inbox = tmp_path / name
        build(str(inbox))
        for folder in inbox.iterdir():
            if folder.is_dir():
                objects = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
                assert _fast_rows(objects) is None, name


def test_events_with_unknown_fields_go_the_pydantic_way_and_keep_them():
    events = good_events()
    events[0] = {**events[0], "editor": {"name": "vim", "version": 9}}
    objects = RawTrace("t", events=events).build()
    assert _fast_rows(objects) is None
    rows = events_frame([_slow(objects)], STAMP)
    assert json.loads(rows.filter(pl.col("seq") == 0)["extra"][0]) == {"editor": {"name": "vim", "version": 9}}


ESCAPES = ["\ud800", "a\udfffb", "\ud83d\ude00", "\U0001f600", "\x00", "\\u0041", "\\ud800", "tab\there"]
STRING_FIELDS = {0: "text", 1: "command", 3: "message"}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.lists(st.sampled_from(ESCAPES) | st.text(st.characters(exclude_categories=()), max_size=3), max_size=4).map("".join),
    which=st.sampled_from(sorted(STRING_FIELDS)),
)
def test_fast_path_and_pydantic_agree_on_escapes(value, which):
    """Strings full of escapes (json.dumps writes every non-ASCII character as one): a lone
    surrogate is bad JSON for pydantic, so the fast path must not store it as something else."""
    events = good_events()
    events[which] = {**events[which], STRING_FIELDS[which]: value}
    objects = RawTrace("t", events=events).build()
    slow, fast = _slow(objects), _fast_rows(objects)
    if fast is not None:
        assert slow is not None, "the fast path accepted a trace the models reject"
        assert fast.equals(events_frame([slow], STAMP))


def test_a_lone_surrogate_is_bad_json_on_both_paths():
    events = good_events()
    events[0] = {**events[0], "text": "half a pair: \ud800"}
    objects = RawTrace("t", events=events).build()
    assert _fast_rows(objects) is None and _slow(objects) is None


def test_an_unknown_field_cannot_hold_infinity():
    events = good_events()
    objects = RawTrace("t", lines=[_line(e, None) for e in events]).build()
    key = next(k for k in objects if k.startswith("chunks/"))
    objects[key] = objects[key].replace(b'"kind":"hypothesis"', b'"kind":"hypothesis","confidence":1e400', 1)
    with pytest.raises(TraceRejected, match="'confidence' holds a number JSON cannot carry"):
        assemble_trace(_blobs(objects), LIMITS)
