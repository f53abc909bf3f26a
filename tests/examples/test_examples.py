"""The three example sessions are real: regenerating them is reproducible, their diffs replay with the
recorded hashes over the shipped snapshot, and the repo's tests fail at the start and (for the two
fixes) pass after the edits. The repos are this project's own example code, so running them here is safe;
traced input from clients only ever runs in a sandbox (tasks/sandbox)."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from client.diffs import EditSpec, replay_edits
from schemas.chain import chain_head
from schemas.events import EVENT_ADAPTER
from schemas.manifest import Complete, Manifest
from tests.conftest import EXAMPLE_IDS, EXAMPLES, REPO

EXPECTED = {
    # trace id: (tests failing at the start, tests failing after the recorded edits)
    "example-simple-fix": ({"tests/test_stats.py::test_mean", "tests/test_stats.py::test_mean_single_value"}, set()),
    "example-multi-file-fix": (
        {"tests/test_cart.py::test_total_with_discount", "tests/test_regression.py::test_mixed_discounts_are_applied_once"},
        set(),
    ),
    "example-failed-attempt": (
        {"tests/test_tokens.py::test_token_expires_at_boundary", "tests/test_tokens.py::test_default_now_is_timezone_aware"},
        {"tests/test_tokens.py::test_token_expires_at_boundary", "tests/test_tokens.py::test_default_now_is_timezone_aware"},
    ),
}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_regeneration_is_byte_identical(tmp_path):
    subprocess.run([sys.executable, str(REPO / "examples" / "make_examples.py"), str(tmp_path)], check=True, capture_output=True)
    assert _tree(tmp_path) == _tree(EXAMPLES)


def _load(trace_id: str):
    folder = EXAMPLES / trace_id
    manifest = Manifest.model_validate_json((folder / "manifest.json").read_bytes())
    complete = Complete.model_validate_json((folder / "complete.json").read_bytes())
    lines: list[bytes] = []
    for chunk in sorted((folder / "chunks").iterdir()):
        raw = chunk.read_bytes()
        lines += (gzip.decompress(raw) if chunk.name.endswith(".gz") else raw).splitlines()
    snapshot = (folder / "artifacts" / manifest.repo.snapshot.removeprefix("sha256:")).read_bytes()
    return manifest, complete, lines, snapshot


def _untar(snapshot: bytes, dest: Path) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(snapshot), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")
    return _tree(dest)


def _failing(repo: Path) -> set[str]:
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={repo / 'junit.xml'}"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    failing = set()
    for case in ET.parse(repo / "junit.xml").iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            path = case.get("classname").replace(".", "/") + ".py"
            failing.add(f"{path}::{case.get('name')}")
    return failing


@pytest.mark.parametrize("trace_id", EXAMPLE_IDS)
def test_example_is_consistent_and_real(trace_id, tmp_path):
    _, complete, lines, snapshot = _load(trace_id)
    assert complete.event_count == len(lines) >= 9
    assert chain_head(trace_id, lines) == complete.chain_head
    events = [EVENT_ADAPTER.validate_json(line) for line in lines]
    assert [e.seq for e in events] == list(range(len(events)))

    start = tmp_path / "start"
    files = _untar(snapshot, start)
    edits = [EditSpec(e.seq, e.id, e.file_path, e.diff_unified, e.buffer_hash_after) for e in events if e.type == "file_edit"]
    final = replay_edits(files, edits)  # raises if a diff does not apply or a hash differs

    fail_start, fail_end = EXPECTED[trace_id]
    # Like the QA "before" run: the start state plus the session's final test files.
    before = tmp_path / "before"
    _untar(snapshot, before)
    for path, data in final.items():
        if path.startswith("tests/"):
            (before / path).parent.mkdir(parents=True, exist_ok=True)
            (before / path).write_bytes(data)
    assert _failing(before) == fail_start

    after = tmp_path / "after"
    _untar(snapshot, after)
    for path, data in final.items():
        (after / path).parent.mkdir(parents=True, exist_ok=True)
        (after / path).write_bytes(data)
    assert _failing(after) == fail_end


def test_examples_cover_the_story():
    counts = {}
    for trace_id in EXAMPLE_IDS:
        _, _, lines, _ = _load(trace_id)
        events = [json.loads(line) for line in lines]
        counts[trace_id] = {
            "edited_files": len({e["file_path"] for e in events if e["type"] == "file_edit"}),
            "commits": sum(e["type"] == "commit" for e in events),
            "hypotheses": sum(e.get("kind") == "hypothesis" for e in events),
        }
    assert counts["example-simple-fix"] == {"edited_files": 1, "commits": 1, "hypotheses": 0}
    assert counts["example-multi-file-fix"]["edited_files"] == 3 and counts["example-multi-file-fix"]["hypotheses"] == 2
    assert counts["example-failed-attempt"]["commits"] == 0 and counts["example-failed-attempt"]["edited_files"] == 2
