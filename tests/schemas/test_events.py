from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from schemas.events import EVENT_ADAPTER, EVENT_TYPES, CmdRun, FileEdit, RationaleNote, TestRun

BASE = {"id": "e1", "seq": 0, "ts_client_s": 1_760_000_000.0}
GOOD = {
    "file_edit": {"file_path": "src/a.py", "diff_unified": "@@ -1 +1 @@\n-a\n+b\n", "buffer_hash_after": "0" * 64},
    "cmd_run": {"command": "ls", "exit_code": 0, "duration_s": 0.1, "stdout": "x"},
    "test_run": {"framework": "pytest", "command": "pytest", "passed": 1, "failed": 0, "duration_s": 1.0},
    "commit": {"sha": "abcdef1", "message": "m"},
    "rationale_note": {"kind": "hypothesis", "text": "because"},
}


def _event(event_type: str, **over):
    return {**BASE, "type": event_type, **GOOD[event_type], **over}


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_each_type_validates_from_json(kind):
    event = EVENT_ADAPTER.validate_json(json.dumps(_event(kind)))
    assert event.type == kind


def test_unknown_fields_are_kept():
    event = EVENT_ADAPTER.validate_python(_event("commit", branch="main", meta={"a": [1, 2]}))
    assert event.model_extra == {"branch": "main", "meta": {"a": [1, 2]}}
    assert json.loads(event.model_dump_json())["branch"] == "main"


def test_unknown_type_names_the_type():
    with pytest.raises(ValidationError) as info:
        EVENT_ADAPTER.validate_python({**BASE, "type": "keystroke"})
    assert "keystroke" in str(info.value)
    assert info.value.errors()[0]["type"] == "union_tag_invalid"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/etc/passwd", id="absolute"),
        pytest.param("../outside.py", id="dotdot"),
        pytest.param("src/../../x", id="dotdot-inner"),
        pytest.param("C:/x.py", id="drive"),
        pytest.param("src\\a.py", id="backslash"),
        pytest.param(".git/config", id="git"),
        pytest.param("a\x00b", id="nul"),
        pytest.param("", id="empty"),
    ],
)
def test_unsafe_file_paths_are_rejected(path):
    with pytest.raises(ValidationError) as info:
        FileEdit.model_validate(_event("file_edit", file_path=path))
    assert info.value.errors()[0]["loc"] == ("file_path",)


def test_note_kind_vocabulary():
    with pytest.raises(ValidationError):
        RationaleNote.model_validate(_event("rationale_note", kind="musing"))


def test_stdout_and_ref_are_exclusive():
    with pytest.raises(ValidationError, match="mutually exclusive"):
        CmdRun.model_validate(_event("cmd_run", stdout_ref="sha256:" + "a" * 64))


@pytest.mark.parametrize(
    "over",
    [
        pytest.param({"ts_client_s": 1e12}, id="ts-future"),
        pytest.param({"ts_client_s": 0}, id="ts-epoch"),
        pytest.param({"seq": -1}, id="seq-negative"),
        pytest.param({"passed": 2**40}, id="huge-count"),
        pytest.param({"duration_s": float("nan")}, id="nan"),
    ],
)
def test_out_of_range_values(over):
    with pytest.raises(ValidationError):
        TestRun.model_validate(_event("test_run", **over))
