from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from client.storage import fs_for
from client.upload import find_trace_dirs, upload_trace_dir
from schemas.errors import InvalidInput, ObjectConflict
from tests.conftest import EXAMPLE_IDS, EXAMPLES, REPO


def _listing(url: str) -> dict[str, bytes]:
    fs, root = fs_for(url)
    fs.invalidate_cache()
    return {p[len(root) + 1 :]: fs.cat_file(p) for p in fs.find(root)}


def test_upload_examples_then_again(storage_url):
    inbox = storage_url("inbox")
    results = [upload_trace_dir(d, inbox) for d in find_trace_dirs(EXAMPLES)]
    assert sorted(r.trace_id for r in results) == sorted(EXAMPLE_IDS)
    assert all(r.complete and r.unchanged == 0 for r in results)
    uploaded = _listing(inbox)
    for trace_id in EXAMPLE_IDS:
        local = {p.relative_to(EXAMPLES).as_posix(): p.read_bytes() for p in (EXAMPLES / trace_id).rglob("*") if p.is_file()}
        assert {k: v for k, v in uploaded.items() if k.startswith(trace_id + "/")} == local
    again = [upload_trace_dir(d, inbox) for d in find_trace_dirs(EXAMPLES)]
    assert all(r.created == 0 for r in again)


def test_complete_json_goes_last(tmp_path):
    order: list[str] = []
    upload_trace_dir(EXAMPLES / "example-simple-fix", put=lambda key, data: order.append(key) or True)
    assert order[-1] == "example-simple-fix/complete.json"
    assert order.index("example-simple-fix/manifest.json") < min(i for i, k in enumerate(order) if "/chunks/" in k)


def test_changed_object_is_refused(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(EXAMPLES / "example-simple-fix", src)
    inbox = str(tmp_path / "inbox")
    upload_trace_dir(src, inbox)
    chunk = sorted((src / "chunks").iterdir())[0]
    chunk.write_bytes(chunk.read_bytes().replace(b"plan", b"PLAN"))
    with pytest.raises(ObjectConflict):
        upload_trace_dir(src, inbox)


def test_artifact_with_a_wrong_name_is_refused(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(EXAMPLES / "example-simple-fix", src)
    next((src / "artifacts").iterdir()).write_bytes(b"tampered")
    with pytest.raises(InvalidInput, match="artifacts/"):
        upload_trace_dir(src, str(tmp_path / "inbox"))


def test_prt_upload_command(tmp_path):
    inbox = tmp_path / "inbox"
    cmd = [sys.executable, "-m", "client.cli", "upload", str(EXAMPLES), "--inbox", str(inbox)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.count("objects uploaded") == 3
    assert sorted(p.name for p in inbox.iterdir()) == sorted(EXAMPLE_IDS)
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "client.cli",
            "upload",
            str(tmp_path / "inbox" / "example-simple-fix" / "chunks"),
            "--inbox",
            str(inbox),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert bad.returncode == 2 and "holds no trace folder" in bad.stderr
