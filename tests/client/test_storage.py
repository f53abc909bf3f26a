"""client.storage helpers against the real filesystems they stand in for."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import fsspec
import pytest

from client.storage import list_files, list_folders, put_immutable_each, read_bytes, read_many, remove_files, rm_quiet
from schemas.errors import ObjectConflict


def test_list_files_matches_fsspec_find_and_never_follows_links(tmp_path):
    root = tmp_path / "inbox"
    (root / "t1" / "chunks").mkdir(parents=True)
    (root / "t1" / "manifest.json").write_bytes(b"{}")
    (root / "t1" / "chunks" / "000000-ab.jsonl").write_bytes(b"x" * 1234)
    (root / "stray.txt").write_bytes(b"s")
    outside = tmp_path / "outside"
    (outside / "d").mkdir(parents=True)
    (outside / "d" / "secret").write_bytes(b"never listed")
    os.symlink(outside / "d", root / "t1" / "artifacts")
    os.symlink(outside / "d" / "secret", root / "t2")

    fs = fsspec.filesystem("file")
    ours, theirs = list_files(fs, str(root)), fs.find(str(root), detail=True, withdirs=False)
    assert (
        sorted(ours)
        == sorted(theirs)
        == sorted(
            str(p)
            for p in (
                root / "t1/manifest.json",
                root / "t1/chunks/000000-ab.jsonl",
                root / "stray.txt",
                root / "t1/artifacts",
                root / "t2",
            )
        )
    )
    for path, info in ours.items():
        assert info["islink"] == theirs[path]["islink"] == os.path.islink(path)
        assert info["mtime"] == theirs[path]["mtime"]
        if not info["islink"]:
            assert info["size"] == theirs[path]["size"] == os.path.getsize(path)
    assert list_files(fs, str(tmp_path / "missing")) == {}
    # Not recursive: the files and links at the root only, as find with maxdepth=1 lists them.
    top = list_files(fs, str(root), recursive=False)
    assert sorted(top) == sorted(fs.find(str(root), maxdepth=1, withdirs=False)) == [str(root / "stray.txt"), str(root / "t2")]
    assert list_folders(fs, str(root)) == ["t1"] and list_folders(fs, str(tmp_path / "missing")) == []


def test_local_reads_and_removes_match_fsspec_and_never_follow_links(tmp_path):
    """read_many/remove_files skip fsspec's file objects on a local disk; the results must be
    what fsspec gives, and removing a link must leave what it points to untouched."""
    (tmp_path / "a").write_bytes(b"alpha")
    (tmp_path / "b").write_bytes(b"")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"keep me")
    os.symlink(outside, tmp_path / "dir-link")
    os.symlink(outside / "keep", tmp_path / "file-link")
    fs = fsspec.filesystem("file")
    paths = [str(tmp_path / n) for n in ("a", "b", "missing")]

    ours, theirs = read_many(fs, paths), fs.cat(paths, on_error="return")
    assert {p: v for p, v in ours.items() if isinstance(v, bytes)} == {p: v for p, v in theirs.items() if isinstance(v, bytes)}
    assert ours[str(tmp_path / "a")] == b"alpha" and read_bytes(fs, str(tmp_path / "a")) == b"alpha"
    assert isinstance(ours[paths[2]], FileNotFoundError) and isinstance(theirs[paths[2]], FileNotFoundError)
    assert read_many(fs, []) == {}

    remove_files(fs, [str(tmp_path / "a"), str(tmp_path / "dir-link"), str(tmp_path / "file-link")])
    assert sorted(os.listdir(tmp_path)) == ["b", "outside"]
    assert (outside / "keep").read_bytes() == b"keep me"
    with pytest.raises(FileNotFoundError):
        remove_files(fs, [str(tmp_path / "a")])

    # rm_quiet: a plain unlink too (a link goes, its target stays); already gone is fine.
    os.symlink(outside / "keep", tmp_path / "link-again")
    for name in ("b", "link-again", "never-there"):
        rm_quiet(fs, str(tmp_path / name))
    assert sorted(os.listdir(tmp_path)) == ["outside"] and (outside / "keep").read_bytes() == b"keep me"
    rm_quiet(fs, str(outside), recursive=True)
    assert os.listdir(tmp_path) == []


def test_put_immutable_each_is_exclusive_per_path_when_two_writers_race(tmp_path):
    """One body hard-linked to many claim paths: each path goes to exactly one of two racing
    writers, holds that writer's bytes whole, and a path already holding other bytes conflicts."""
    fs = fsspec.filesystem("file")
    paths = [str(tmp_path / "claims" / f"t{i:03d}.json") for i in range(300)]
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "t000.json").write_bytes(b"held by an earlier batch")
    results: dict[bytes, list] = {}

    def writer(body: bytes) -> None:
        results[body] = put_immutable_each(fs, paths, body)

    threads = [threading.Thread(target=writer, args=(body,)) for body in (b'{"batch_id": "a"}', b'{"batch_id": "b"}')]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a, b = results[b'{"batch_id": "a"}'], results[b'{"batch_id": "b"}']
    assert isinstance(a[0], ObjectConflict) and isinstance(b[0], ObjectConflict)
    for i, path in enumerate(paths[1:], 1):
        won = [body for body, r in results.items() if r[i] is True]
        assert len(won) == 1, path
        assert Path(path).read_bytes() == won[0]
    assert not [n for n in os.listdir(tmp_path / "claims") if not n.endswith(".json")]  # no temp file left
    assert put_immutable_each(fs, [], b"x") == []
