"""Scanning the inbox in parts (tasks.ingest.inbox.scan_parts) finds what one whole scan finds."""

from __future__ import annotations

import os

from client.storage import fs_for
from schemas.settings import IngestSettings
from tasks.ingest.inbox import ScanPart, scan_inbox, scan_parts
from tests.support.tracegen import put, write_trace

SETTINGS = IngestSettings()


def _summary(scans) -> tuple[dict, list]:
    traces = {tid: (t.status, sorted(t.objects)) for s in scans for tid, t in s.traces.items()}
    return traces, sorted(o.key for s in scans for o in s.stray)


def test_parts_cover_the_whole_inbox_once(storage_url, tmp_path):
    inbox = storage_url("inbox")
    for i in range(7):
        write_trace(inbox, f"t-{i}", complete=i != 3)  # t-3 is pending
    put(inbox, "stray.txt", b"outside any trace folder")
    if not inbox.startswith("s3://"):
        os.symlink(tmp_path, os.path.join(inbox, "t-link"))  # a linked folder: a stray, never followed
    fs, root = fs_for(inbox)

    parts = scan_parts(fs, root, first=2, growth=2)
    whole = scan_inbox(fs, root, SETTINGS)
    assert _summary([scan_inbox(fs, root, SETTINGS, part=p) for p in parts]) == _summary([whole])
    assert _summary([whole])[0]["t-3"][0] == "pending" and "stray.txt" in _summary([whole])[1]
    if inbox.startswith("s3://"):
        assert parts == [ScanPart(None)]  # an object store is listed whole
    else:
        assert [(p.folders, p.root) for p in parts] == [
            (("t-0", "t-1"), True),
            (("t-2", "t-3", "t-4", "t-5"), False),
            (("t-6",), False),
        ]
        assert "t-link" in _summary([whole])[1]


def test_an_inbox_without_folders_still_reports_its_strays(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "stray.txt").write_bytes(b"x")
    fs, root = fs_for(str(inbox))
    parts = scan_parts(fs, root)
    assert parts == [ScanPart((), root=True)]
    assert [o.key for o in scan_inbox(fs, root, SETTINGS, part=parts[0]).stray] == ["stray.txt"]
    assert scan_parts(*fs_for(str(tmp_path / "missing"))) == [ScanPart((), root=True)]


def test_a_huge_chunk_count_costs_the_scan_nothing(tmp_path):
    """complete.json may claim a million chunks: 40 such traces once made one scan hold 1.5 GB."""
    import time
    import tracemalloc

    from tests.support.corpus import RawTrace

    inbox = str(tmp_path / "inbox")
    for i in range(40):
        RawTrace(f"cc-{i}", complete={"chunk_count": 1_000_000}).write(inbox)
    fs, root = fs_for(inbox)
    tracemalloc.start()
    try:
        scan = scan_inbox(fs, root, SETTINGS, now=time.time() + 10 * SETTINGS.grace_period_s)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert {t.status for t in scan.traces.values()} == {"expired"}
    assert scan.traces["cc-0"].missing_chunks == list(range(2, 12))  # the first ten, for the message
    assert peak < 20 * 2**20, f"the scan held {peak / 2**20:.0f} MiB"
