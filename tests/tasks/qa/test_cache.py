"""QA's host cache: what the lake no longer holds goes, what a live run may use stays."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tasks.qa.cache import prune_qa_cache

OLD = time.time() - 7 * 3600


def _folder(path: Path, *, old: bool = False, spec: dict | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "f").write_text("content")
    if spec is not None:
        (path / "spec.json").write_text(json.dumps(spec))
    if old:
        os.utime(path, (OLD, OLD))
    return path


def test_prune_keeps_what_is_live_or_young_and_removes_the_rest(tmp_path):
    snaps, envs = tmp_path / "prt-snapshots", tmp_path / "prt-envs"
    live = _folder(snaps / ("a" * 64), old=True)
    gone_old = _folder(snaps / ("b" * 64), old=True)
    gone_young = _folder(snaps / ("c" * 64))  # a run that started after the lake was read may use it
    erased = _folder(snaps / ("d" * 64))
    half = _folder(snaps / ".extract-x1", old=True)
    half_young = _folder(snaps / ".extract-x2")
    from_erased = _folder(envs / "env-1", spec={"editable": ["."], "snapshot": "d" * 64})
    from_live = _folder(envs / "env-2", spec={"editable": ["."], "snapshot": "a" * 64}, old=True)
    no_repo = _folder(envs / "env-3", spec={"editable": [], "snapshot": "b" * 64}, old=True)  # packages only
    building = _folder(envs / ".building-y", old=True)

    done = prune_qa_cache(tmp_path, live={"a" * 64}, erased={"d" * 64})
    assert (done.snapshots, done.environments, done.leftovers) == (2, 1, 2)
    assert [p.exists() for p in (live, gone_young, half_young, from_live, no_repo)] == [True] * 5
    assert [p.exists() for p in (gone_old, erased, half, from_erased, building)] == [False] * 5


def test_prune_without_a_live_set_removes_only_the_erased(tmp_path):
    keep = _folder(tmp_path / "prt-snapshots" / ("a" * 64), old=True)
    erased = _folder(tmp_path / "prt-snapshots" / ("d" * 64))
    assert prune_qa_cache(tmp_path, erased={"d" * 64}).snapshots == 1
    assert keep.exists() and not erased.exists()
