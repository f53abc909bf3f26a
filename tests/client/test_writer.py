from __future__ import annotations

import gzip
import hashlib
import json

import pytest

from client.diffs import apply_unified_diff, unified_diff
from client.storage import fs_for
from client.writer import TraceWriter
from schemas.chain import chain_head
from schemas.errors import InvalidInput, ObjectConflict
from schemas.layout import parse_chunk_name

SNAPSHOT = b"not really a tarball, but bytes all the same"


def _manifest(trace_id="t-writer"):
    return {
        "trace_id": trace_id,
        "session": {"participant_id": "p1", "consent": True},
        "task": {"id": "T-1", "title": "a task"},
        "repo": {"origin": "local", "start_commit": "abc"},
        "environment": {"os": "linux", "python_version": "3.11"},
        "qa": {"test_command": "python -m pytest -q"},
        "client": {"name": "test", "version": "0"},
        "started_at": "2025-10-09T08:53:20Z",
    }


def _objects(url: str, trace_id: str) -> dict[str, bytes]:
    fs, root = fs_for(url)
    fs.invalidate_cache()
    prefix = f"{root}/{trace_id}/"
    return {p[len(prefix) :]: fs.cat_file(p) for p in fs.find(prefix)}


def _lines(objects: dict[str, bytes]) -> list[bytes]:
    out = []
    for key in sorted(k for k in objects if k.startswith("chunks/")):
        raw = objects[key]
        if key.endswith(".gz"):
            raw = gzip.decompress(raw)
        out += raw.splitlines()
    return out


@pytest.mark.parametrize("compress", [pytest.param(False, id="plain"), pytest.param(True, id="gzip")])
def test_writes_a_complete_trace(storage_url, compress):
    inbox = storage_url("inbox")
    with TraceWriter(
        inbox, _manifest(), snapshot=SNAPSHOT, chunk_max_events=2, compress=compress, clock=lambda: 1_760_000_000.0
    ) as w:
        w.note("plan", "look first")
        w.cmd_run("pytest", exit_code=1, duration_s=0.5, stdout="F\n", stderr="")
        w.test_run("pytest", "pytest", passed=1, failed=1, failing_tests=["t::a"])
        w.edit_file("src/a.py", "x = 1\n", "x = 2\n")
        w.commit("abcdef1", "fix", branch="main")  # unknown field: kept
    objs = _objects(inbox, "t-writer")
    snap_hex = hashlib.sha256(SNAPSHOT).hexdigest()
    assert objs[f"artifacts/{snap_hex}"] == SNAPSHOT
    manifest = json.loads(objs["manifest.json"])
    assert manifest["repo"]["snapshot"] == f"sha256:{snap_hex}"
    chunk_keys = sorted(k for k in objs if k.startswith("chunks/"))
    assert [parse_chunk_name(k.split("/")[1]).seq for k in chunk_keys] == [0, 1, 2]
    assert all(k.endswith(".gz") == compress for k in chunk_keys)
    lines = _lines(objs)
    events = [json.loads(line) for line in lines]
    assert [e["seq"] for e in events] == list(range(5))
    assert events[-1]["branch"] == "main"
    complete = json.loads(objs["complete.json"])
    assert complete["chunk_count"] == 3 and complete["event_count"] == 5
    assert complete["chain_head"] == chain_head("t-writer", lines)


def test_large_output_becomes_an_artifact(tmp_path):
    big = "line\n" * 20_000
    with TraceWriter(str(tmp_path), _manifest(), snapshot=SNAPSHOT, inline_output_bytes=1024) as w:
        event = w.cmd_run("cat big", exit_code=0, duration_s=0.1, stdout=big, stderr="small")
    assert event.stdout is None and event.stderr == "small"
    digest = event.stdout_ref.removeprefix("sha256:")
    assert (tmp_path / "t-writer" / "artifacts" / digest).read_text() == big


def test_chunks_split_by_size(tmp_path):
    with TraceWriter(str(tmp_path), _manifest(), snapshot=SNAPSHOT, chunk_max_events=1000, chunk_max_bytes=300) as w:
        for i in range(10):
            w.note("observation", f"observation number {i} " + "x" * 100)
    chunks = sorted((tmp_path / "t-writer" / "chunks").iterdir())
    assert len(chunks) >= 4
    assert all(len(p.read_bytes()) < 300 + 200 for p in chunks)


def test_interrupted_writer_leaves_no_complete(storage_url):
    inbox = storage_url("inbox")
    with pytest.raises(RuntimeError), TraceWriter(inbox, _manifest(), snapshot=SNAPSHOT, chunk_max_events=1) as w:
        w.note("plan", "start")
        w.note("plan", "more")
        raise RuntimeError("terminal closed")
    objs = _objects(inbox, "t-writer")
    assert "complete.json" not in objs
    assert len([k for k in objs if k.startswith("chunks/")]) == 2


def test_same_session_twice_is_a_no_op_and_a_changed_one_conflicts(storage_url):
    inbox = storage_url("inbox")

    def write(text):
        with TraceWriter(inbox, _manifest(), snapshot=SNAPSHOT, clock=lambda: 1_760_000_000.0) as w:
            w.note("plan", text)

    write("same")
    before = _objects(inbox, "t-writer")
    write("same")
    assert _objects(inbox, "t-writer") == before
    with pytest.raises(ObjectConflict):
        write("different")  # same chunk_seq, other bytes: a different chunk id, then a conflicting complete.json


def test_resume_continues_the_chain(tmp_path):
    w = TraceWriter(str(tmp_path), _manifest(), snapshot=SNAPSHOT)
    w.note("plan", "one")
    state = w.state()
    w2 = TraceWriter(str(tmp_path), _manifest(), snapshot=SNAPSHOT, resume=state)
    w2.note("plan", "two")
    complete = w2.close()
    lines = _lines(_objects(str(tmp_path), "t-writer"))
    assert len(lines) == 2 and complete.chain_head == chain_head("t-writer", lines)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        pytest.param(lambda w: w.edit_file("/etc/passwd", "", "x"), "file_edit.file_path", id="absolute-path"),
        pytest.param(lambda w: w.edit_file("../up.py", "", "x"), "file_edit.file_path", id="dotdot-path"),
        pytest.param(lambda w: w.note("musing", "hm"), "rationale_note.kind", id="bad-kind"),
        pytest.param(lambda w: w.commit("abcdef1", "m", when=object()), "commit.when", id="not-serialisable"),
        pytest.param(lambda w: w.cmd_run("ls", exit_code="zero", duration_s=1), "cmd_run.exit_code", id="wrong-type"),
        pytest.param(lambda w: w.cmd_run("ls", exit_code=0, duration_s=1, stdout=b"bytes"), "cmd_run.stdout", id="bytes-output"),
        pytest.param(lambda w: w.commit("abcdef1", "m", seq=3), "commit.seq", id="writer-owned"),
    ],
)
def test_bad_input_names_the_field(tmp_path, call, field):
    w = TraceWriter(str(tmp_path), _manifest(), snapshot=SNAPSHOT)
    with pytest.raises(InvalidInput) as info:
        call(w)
    assert info.value.field == field
    assert field in str(info.value)
    assert w.event_count == 0  # nothing was recorded


def test_bad_manifest_names_the_field(tmp_path):
    with pytest.raises(InvalidInput) as info:
        TraceWriter(str(tmp_path), _manifest(trace_id="../escape"), snapshot=SNAPSHOT)
    assert info.value.field == "manifest.trace_id"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param("a\nb\nc\n", "a\nB\nc\n", id="change"),
        pytest.param("", "new\nfile\n", id="create"),
        pytest.param("x\ny", "x\ny\nz", id="no-final-newline"),
        pytest.param("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n", id="two-hunks"),
    ],
)
def test_unified_diff_round_trips(before, after):
    assert apply_unified_diff(before, unified_diff(before, after, "f.py")) == after


def test_started_at_defaults_to_now_and_a_session_that_breaks_a_table_rule_warns(tmp_path):
    import warnings

    from client.writer import SessionRuleWarning
    from tests.support.tracegen import SNAPSHOT, manifest

    m = manifest("now")
    del m["started_at"]
    now = 1_800_000_000.0
    clock = iter([now, now + 5, now + 8 * 86400, now + 9 * 86400])
    w = TraceWriter(str(tmp_path / "inbox"), m, snapshot=SNAPSHOT, clock=lambda: next(clock))
    assert w.manifest.started_at.timestamp() == now
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w.note("plan", "start")
        w.note("plan", "a week later")  # longer than the lake's 7-day limit
        w.note("plan", "later still")  # the same rule: warned once
        w.note("plan", "before it began", ts=now - 7200)
    messages = [str(c.message) for c in caught if issubclass(c.category, SessionRuleWarning)]
    assert len(messages) == 2
    assert "longer than 7 days; ingest will quarantine the trace (traces.duration_s)" in messages[0]
    assert "7200 s before the session's started_at" in messages[1] and "(events.not_before_session)" in messages[1]
