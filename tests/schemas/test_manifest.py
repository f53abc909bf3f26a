from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from schemas.manifest import Complete, Manifest
from tests.conftest import EXAMPLE_IDS, EXAMPLES


def _manifest(**over):
    data = json.loads((EXAMPLES / "example-simple-fix" / "manifest.json").read_text())
    data.update(over)
    return data


@pytest.mark.parametrize("trace_id", EXAMPLE_IDS)
def test_examples_parse(trace_id):
    m = Manifest.model_validate_json((EXAMPLES / trace_id / "manifest.json").read_bytes())
    c = Complete.model_validate_json((EXAMPLES / trace_id / "complete.json").read_bytes())
    assert m.trace_id == trace_id and c.chunk_count >= 3


@pytest.mark.parametrize(
    "trace_id",
    [
        pytest.param("../x", id="dotdot"),
        pytest.param("/abs", id="absolute"),
        pytest.param("a/b", id="slash"),
        pytest.param("-lead", id="leading-dash"),
        pytest.param("x" * 129, id="too-long"),
        pytest.param("", id="empty"),
    ],
)
def test_trace_id_pattern(trace_id):
    with pytest.raises(ValidationError):
        Manifest.model_validate(_manifest(trace_id=trace_id))


@pytest.mark.parametrize("consent", ["yes", 1, "true", None])
def test_consent_must_be_a_real_boolean(consent):
    with pytest.raises(ValidationError):
        Manifest.model_validate(_manifest(session={"participant_id": "p", "consent": consent}))


def test_naive_or_far_timestamps_are_rejected():
    with pytest.raises(ValidationError):
        Manifest.model_validate(_manifest(started_at="2025-10-09T08:53:20"))
    with pytest.raises(ValidationError):
        Manifest.model_validate(_manifest(started_at="2999-01-01T00:00:00Z"))


def test_manifest_keeps_unknown_fields():
    m = Manifest.model_validate(_manifest(ide={"name": "vim"}))
    assert m.model_extra == {"ide": {"name": "vim"}}
