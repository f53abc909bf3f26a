"""lake.storage helpers against the real filesystems they stand in for."""

from __future__ import annotations

import os

import fsspec

from lake.storage import list_files


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
