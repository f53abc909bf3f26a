"""tasks/ingest/feed.py: `prt serve` finds complete traces cheaply and hands out the newest first."""

from __future__ import annotations

import logging
import os
import time

import tasks.ingest.feed as feed_module
from client.storage import fs_for
from schemas.settings import IngestSettings
from tasks.ingest.claims import Claims
from tasks.ingest.feed import Feed, InboxWatch
from tests.support.tracegen import local_path, write_trace


def test_the_watch_looks_at_each_folder_until_it_is_complete_and_forgets_gone_ones(storage_url, monkeypatch):
    inbox = storage_url("inbox")
    write_trace(inbox, "t-done")
    write_trace(inbox, "t-uploading", complete=False)
    fs, root = fs_for(inbox)
    looked: list[str] = []
    real = feed_module.object_mtime
    monkeypatch.setattr(feed_module, "object_mtime", lambda fs, path: looked.append(path.split("/")[-2]) or real(fs, path))
    watch = InboxWatch(fs, root)
    assert set(watch.poll()) == {"t-done"}
    assert set(watch.poll()) == {"t-done"}
    assert sorted(looked) == ["t-done", "t-uploading", "t-uploading"]  # a complete folder is looked at once
    fs.rm(f"{root}/t-done", recursive=True)
    assert watch.poll() == {}


def _feed(inbox: str, lake: str, **settings) -> Feed:
    fs, root = fs_for(inbox)
    lake_fs, lake_root = fs_for(lake)
    s = IngestSettings(**settings)
    return Feed(
        fs, root, Claims(lake_fs, lake_root, lease_s=s.lease_s), s, run_id="test", poll_s=0.0, logger=logging.getLogger("t")
    )


def test_the_feed_hands_out_the_newest_complete_traces_first_and_each_once(tmp_path):
    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    for i, tid in enumerate(["t-old", "t-mid", "t-new"]):
        write_trace(inbox, tid)
        os.utime(local_path(inbox) / tid / "complete.json", (time.time() - 100 + i, time.time() - 100 + i))
    write_trace(inbox, "t-uploading", complete=False)
    feed = _feed(inbox, lake, batch_max_traces=2)
    first = feed.next_batch()
    assert first.members == ["t-new", "t-mid"] and not first.resumed
    second = feed.next_batch()
    assert second.members == ["t-old"]
    assert feed.next_batch() is None  # everything complete is in flight; the upload is not complete
    write_trace(inbox, "t-newest")
    assert feed.next_batch().members == ["t-newest"]


def test_a_trace_complete_but_missing_chunks_waits_until_they_come(tmp_path):
    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    write_trace(inbox, "t-gap", chunk_max_events=2)
    chunks = sorted((local_path(inbox) / "t-gap" / "chunks").iterdir())
    held = chunks[-1].read_bytes()
    chunks[-1].unlink()
    feed = _feed(inbox, lake)
    assert feed.next_batch() is None
    assert feed.next_batch() is None  # still missing: listed again (poll_s is 0 here), not handed out
    chunks[-1].write_bytes(held)
    assert feed.next_batch().members == ["t-gap"]


def test_a_batch_a_crashed_run_left_is_resumed_first(tmp_path, n=3):
    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    for i in range(n):
        write_trace(inbox, f"t-{i}")
    crashed = _feed(inbox, lake, lease_s=0.01)
    left = crashed.next_batch()
    time.sleep(0.05)  # its lease runs out: the run is gone
    resumed = _feed(inbox, lake).next_batch()
    assert resumed.resumed and resumed.info.batch_id == left.info.batch_id and sorted(resumed.members) == sorted(left.members)


def test_the_feed_says_since_when_a_backlog_drains(tmp_path):
    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    for i in range(3):
        write_trace(inbox, f"t-{i}")
    feed = _feed(inbox, lake, batch_max_traces=2)
    before = time.time()
    assert feed.next_batch() is not None and feed.backlog_since is not None and feed.backlog_since >= before
    since = feed.backlog_since
    assert feed.next_batch() is not None and feed.backlog_since == since  # the last of it: still draining
    assert feed.next_batch() is None and feed.backlog_since is None  # caught up
