from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from client.diffs import EditSpec
from schemas.errors import StorageUnavailable
from schemas.settings import SandboxSettings
from tasks.qa.verify import QaInput, is_test_file, qa_id, verify_trace
from tests.conftest import sandbox_or_skip


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


def _snapshot(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


CALC_SNAPSHOT = [("calc.py", b"def add(a, b):\n    return a - b\n"), ("tests/test_calc.py", b"from calc import add\n")]
FIXED = b"def add(a, b):\n    return a + b\n"
FIX = EditSpec(1, "e1", "calc.py", "@@ -2 +2 @@\n-    return a - b\n+    return a + b\n", hashlib.sha256(FIXED).hexdigest())


@pytest.fixture
def box(tmp_path):
    return sandbox_or_skip("namespace", SandboxSettings(workdir=str(tmp_path)))


def _row(box, snapshot: bytes, edits=(FIX,)) -> dict:
    inp = _inp(snapshot_ref="sha256:" + hashlib.sha256(snapshot).hexdigest(), edits=edits)
    return verify_trace(inp, snapshot, box, run_id="test", batch_id="test").row


def test_a_snapshot_qa_cannot_read_is_that_traces_error_row(box):
    row = _row(box, _snapshot([("pkg", b"x"), ("pkg/mod.py", b"y"), *CALC_SNAPSHOT]))
    assert row["verdict"] == "error" and "the snapshot cannot be used" in row["verdict_reason"]


def test_a_host_side_failure_is_that_traces_error_row(box, monkeypatch):
    def broken(spec):
        raise RuntimeError("the host ran out of something")

    monkeypatch.setattr(box, "run", broken)
    row = _row(box, _snapshot(CALC_SNAPSHOT))
    assert row["verdict"] == "error"
    assert row["verdict_reason"].endswith("QA failed on the host: RuntimeError: the host ran out of something")


def test_an_image_that_is_not_allowed_is_never_run(tmp_path, monkeypatch):
    """A trace may name any image in environment.image; a local one may hold a secret baked in."""
    snapshot = _snapshot(CALC_SNAPSHOT)
    ran = []
    for allowed in ([], ["registry.local/py:3.11"]):
        box = sandbox_or_skip("namespace", SandboxSettings(workdir=str(tmp_path), allowed_images=allowed))
        monkeypatch.setattr(box, "run", lambda spec, box=box: ran.append(spec) or type(box).run(box, spec))
        inp = _inp(snapshot_ref="sha256:" + hashlib.sha256(snapshot).hexdigest(), edits=(FIX,), image="registry.local/py:3.11")
        row = verify_trace(inp, snapshot, box, run_id="test", batch_id="test").row
        if not allowed:
            assert row["verdict"] == "error" and "'registry.local/py:3.11' is not an image QA may run" in row["verdict_reason"]
            assert ran == [] and row["image_id"] == "not-allowed"
        else:
            assert ran and "not an image QA may run" not in (row["verdict_reason"] or "")
    default = SandboxSettings()
    assert default.image_allowed("prt-sandbox:1") and default.image_allowed("prt-sandbox:1-trixie")
    assert not default.image_allowed("prt-sandbox:2") and not default.image_allowed("private/secrets:latest")


def test_a_transient_failure_leaves_no_row_so_the_trace_is_verified_again(box, monkeypatch):
    def gone(spec):
        raise StorageUnavailable("the endpoint went away", url="s3://lake")

    monkeypatch.setattr(box, "run", gone)
    with pytest.raises(StorageUnavailable):
        _row(box, _snapshot(CALC_SNAPSHOT))
