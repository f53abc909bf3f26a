"""One reader decides what a snapshot is, for ingest, QA and the recorder alike: every gzip member,
bounded decompression, files, folders and relative links that resolve inside the repo."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from client.snapshot import extract_snapshot, link_reason, read_snapshot, snapshot_dir
from schemas.errors import SnapshotError

LIMIT = 1 << 20


def _tar(entries: list[tuple[str, str, bytes | str]], *, compress: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, content in entries:
            info = tarfile.TarInfo(name)
            if kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, str(content)
                tar.addfile(info)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, str(content)
                tar.addfile(info)
            else:
                data = content if isinstance(content, bytes) else content.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue()) if compress else buf.getvalue()


def test_files_folders_and_inner_links_are_read():
    data = _tar([("a.py", "file", "x = 1\n"), ("docs", "dir", b""), ("docs/a.py", "link", "../a.py"), ("here", "link", ".")])
    entries = {e.name: e for e in read_snapshot(data, max_unpacked=LIMIT)}
    assert entries["a.py"].data == b"x = 1\n" and entries["docs/a.py"].target == "../a.py"


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        pytest.param([("a", "link", "/etc/shadow")], "is absolute", id="absolute-link"),
        pytest.param([("a", "link", "../outside")], "leaves the repo", id="link-climbs-out"),
        pytest.param([("d/a", "link", "../../x")], "leaves the repo", id="nested-link-climbs-out"),
        pytest.param([("b", "link", "."), ("a", "link", "b/..")], "leads out of the repo", id="out-through-another-link"),
        pytest.param([("a", "link", "b"), ("b", "link", "a")], "goes round in a loop", id="link-loop"),
        pytest.param([("h", "hard", "a")], "is a hard link", id="hard-link"),
        pytest.param([("../x.py", "file", "x")], "climbs out", id="dotdot-name"),
        pytest.param(
            [("pkg", "file", "x"), ("pkg/mod.py", "file", "y")], "lies under 'pkg', which is not a folder", id="file-then-folder"
        ),
        pytest.param([("a.py", "file", "1"), ("a.py", "file", "2")], "appears twice", id="twice"),
        pytest.param([("big.bin", "file", b"0" * (LIMIT + 1))], "unpacks to more than", id="too-large"),
    ],
)
def test_unsafe_snapshots_are_refused_with_the_reason(entries, why):
    with pytest.raises(SnapshotError, match=why):
        read_snapshot(_tar(entries), max_unpacked=LIMIT)


def test_a_second_gzip_member_is_read_too():
    """A reader that stops at the first member would pass what the second one hides."""
    raw = _tar([("a.py", "file", "ok\n")], compress=False).rstrip(b"\0")
    first = raw + b"\0" * (-len(raw) % 512)  # the archive goes on in the next member: no end-of-archive blocks here
    second = _tar([("b", "link", "/etc/shadow")], compress=False)
    data = gzip.compress(first) + gzip.compress(second)
    with pytest.raises(SnapshotError, match="is absolute"):
        read_snapshot(data, max_unpacked=LIMIT)
    hidden = gzip.compress(first) + gzip.compress(_tar([("big.bin", "file", b"0" * (3 * LIMIT))], compress=False))
    with pytest.raises(SnapshotError, match="unpacks to more than"):
        read_snapshot(hidden, max_unpacked=LIMIT)


def _pax(entries: list[tarfile.TarInfo], global_headers: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers=global_headers) as tar:
        for info in entries:
            tar.addfile(info, io.BytesIO(b"x" * info.size))
    return gzip.compress(buf.getvalue(), 9)


def test_extended_headers_are_bounded_before_tarfile_parses_them():
    """tarfile turns a pax header into a dict of its records and copies a global one into every
    later entry: 50 KiB of upload (20,000 global keys, 2,000 entries) cost 794 MiB before."""
    one_huge = tarfile.TarInfo("a.py")
    one_huge.pax_headers = {"comment": "x" * (80 << 20)}
    many_keys = tarfile.TarInfo("a.py")
    many_keys.pax_headers = {f"k{i}": "" for i in range(300_000)}
    global_bomb = _pax([tarfile.TarInfo(f"f{i}.py") for i in range(2000)], {f"g{i}": "" for i in range(20_000)})
    assert len(global_bomb) < 100_000
    for data in (_pax([one_huge]), _pax([many_keys]), global_bomb):
        with pytest.raises(SnapshotError, match="extended tar header over 65536 bytes"):
            read_snapshot(data, max_unpacked=LIMIT)


def test_a_chain_of_extended_headers_and_sparse_entries_are_refused():
    gnu = io.BytesIO()
    with tarfile.open(fileobj=gnu, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for _ in range(5):  # each long-name header is followed by the next: tarfile recurses per link
            info = tarfile.TarInfo("n" * 200)
            info.type = tarfile.GNUTYPE_LONGNAME
            info.size = 0
            tar.fileobj.write(info.tobuf(tarfile.GNU_FORMAT))
        tar.addfile(tarfile.TarInfo("a.py"))
    with pytest.raises(SnapshotError, match="extended tar headers in a row"):
        read_snapshot(gzip.compress(gnu.getvalue()), max_unpacked=LIMIT)
    sparse = tarfile.TarInfo("s.bin")
    sparse.type = tarfile.GNUTYPE_SPARSE
    raw = sparse.tobuf(tarfile.GNU_FORMAT) + b"\0" * 1024
    with pytest.raises(SnapshotError, match="GNU sparse file"):
        read_snapshot(gzip.compress(raw), max_unpacked=LIMIT)


def test_ordinary_extended_headers_still_read():
    """What real tools write: git archive's global comment, pax names for non-ASCII and long paths."""
    long_name = tarfile.TarInfo("src/" + "a" * 120 + "/" + "b" * 120 + ".py")
    long_name.size = 1
    unicode = tarfile.TarInfo("café.py")
    unicode.size = 1
    data = _pax([unicode, long_name], {"comment": "0" * 40})
    assert {e.name for e in read_snapshot(data, max_unpacked=LIMIT)} == {"café.py", long_name.name}


def test_cut_and_garbage_snapshots_are_refused():
    good = _tar([("a.py", "file", "x" * 10000)])
    for bad in (good[: len(good) // 2], b"not gzip at all"):
        with pytest.raises(SnapshotError, match="not a readable gzip tar"):
            read_snapshot(bad, max_unpacked=LIMIT)


def test_extract_makes_links_and_keeps_exec_bits(tmp_path):
    repo = tmp_path / "repo"
    (repo / "bin").mkdir(parents=True)
    (repo / "bin" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(repo / "bin" / "run.sh", 0o755)
    (repo / "data.txt").write_text("d\n")
    os.symlink("../data.txt", repo / "bin" / "data.txt")
    os.symlink("/etc/passwd", repo / "escape")  # never part of a snapshot
    out = tmp_path / "out"
    out.mkdir()
    extract_snapshot(snapshot_dir(repo), out, max_unpacked=LIMIT)
    assert os.readlink(out / "bin" / "data.txt") == "../data.txt" and (out / "bin" / "data.txt").read_text() == "d\n"
    assert os.stat(out / "bin" / "run.sh").st_mode & 0o100 and not (out / "escape").exists()


@pytest.mark.parametrize(
    ("path", "target", "ok"),
    [
        ("a", "b", True),
        ("d/a", "../b", True),
        ("d/a", "../../b", False),
        ("a", "/b", False),
        ("a", "", False),
        ("a", "b\\c", False),
    ],
)
def test_link_rule(path, target, ok):
    assert (link_reason(path, target) is None) is ok


def test_the_snapshot_of_a_folder_skips_links_that_leave_it(tmp_path: Path):
    (tmp_path / "a").write_text("1")
    os.symlink("a", tmp_path / "inner")
    os.symlink("../../etc", tmp_path / "outer")
    names = {e.name for e in read_snapshot(snapshot_dir(tmp_path), max_unpacked=LIMIT)}
    assert names == {"a", "inner"}
