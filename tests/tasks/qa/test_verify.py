from __future__ import annotations

import pytest

from client.diffs import EditSpec
from tasks.qa.verify import QaInput, is_test_file, qa_id


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("tests/test_calc.py", True),
        ("test_top.py", True),
        ("pkg/calc_test.py", True),
        ("conftest.py", True),
        ("tests/helpers.py", True),
        ("test/data/fixture.json", True),
        ("pkg/sub/tests/test_x.py", True),
        ("calc.py", False),
        ("pkg/testing_utils.py", False),
        ("latest.py", False),
        ("contest.py", False),
    ],
)
def test_is_test_file(path, expected):
    assert is_test_file(path) is expected


def _inp(**over):
    base = dict(
        trace_id="t",
        snapshot_ref="sha256:" + "a" * 64,
        test_command="python -m pytest -q",
        timeout_s=60.0,
        image=None,
        edits=(EditSpec(3, "e3", "calc.py", "@@ -1 +1 @@\n-a\n+b\n", "b" * 64),),
    )
    base.update(over)
    return QaInput(**base)


def test_qa_id_is_stable_and_covers_every_input():
    ref = qa_id(_inp(), "docker/20/runc", "sha256:img")
    assert ref == qa_id(_inp(trace_id="other"), "docker/20/runc", "sha256:img")  # the id is about inputs, not names
    changed = [
        qa_id(_inp(snapshot_ref="sha256:" + "c" * 64), "docker/20/runc", "sha256:img"),
        qa_id(_inp(test_command="pytest -x"), "docker/20/runc", "sha256:img"),
        qa_id(_inp(timeout_s=30.0), "docker/20/runc", "sha256:img"),
        qa_id(_inp(edits=()), "docker/20/runc", "sha256:img"),
        qa_id(_inp(edits=(EditSpec(3, "e3", "calc.py", "@@ -1 +1 @@\n-a\n+c\n", "b" * 64),)), "docker/20/runc", "sha256:img"),
        qa_id(_inp(), "docker/20/runsc", "sha256:img"),
        qa_id(_inp(), "docker/20/runc", "sha256:other-image"),
    ]
    assert ref not in changed and len(set(changed)) == len(changed)
