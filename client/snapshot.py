"""Repo snapshots: a gzip tar of the repo's files, paths relative to the root, byte-for-byte reproducible.

Making one (`snapshot_git`, `snapshot_dir`) and reading one (`read_snapshot`) live here, and every
reader uses `read_snapshot`: ingest to accept or refuse a snapshot, QA to extract it, the recorder
to start its shadow copy. What one of them accepts, the others read the same way: every gzip
member is read (a second member cannot hide from one of them), and nothing is decompressed
beyond the size limit.

A snapshot holds regular files, folders, and symbolic links that are relative and resolve inside
the repo, even through other links (inbox protocol v1). Anything else is refused with a reason.
"""

from __future__ import annotations

import gzip
import io
import os
import posixpath
import subprocess
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from schemas.errors import SnapshotError
from schemas.types import unsafe_path_reason

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_SNAPSHOT_MEMBERS",
    "SnapshotEntry",
    "check_snapshot",
    "extract_snapshot",
    "iter_snapshot",
    "link_reason",
    "read_snapshot",
    "snapshot_dir",
    "snapshot_git",
]

MAX_SNAPSHOT_MEMBERS = 100_000
_SKIP_DIRS = {".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".venv", "node_modules"}
_TAR_ALLOWANCE = 64 * 2**20
"""Bytes of tar headers (512 per entry, more with pax headers) allowed on top of the content limit."""
MAX_HEADER_BYTES = 64 * 2**10
"""The largest extended header (pax, GNU long name): tarfile turns one into a dict of every record
it holds, and copies a global one into every later entry, so a small upload of them can cost
gigabytes. `git archive` writes one 52-byte global header; long paths take a few hundred bytes."""
_EXTENDED = {tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK}
_MAX_HEADER_CHAIN = 4


def _gzip(raw: bytes) -> bytes:
    # mtime=0 and no file name: the same tree always gives the same bytes, hence the same ref.
    return gzip.compress(raw, compresslevel=6, mtime=0)


def snapshot_dir(root: str | os.PathLike[str]) -> bytes:
    """Tar every regular file (and every relative link that stays inside) under `root`, skipping VCS
    and cache folders, sorted, with fixed metadata."""
    root = Path(root)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(_files(root)):
            rel = path.relative_to(root).as_posix()
            info = tarfile.TarInfo(rel)
            info.mtime = 0
            info.uname = info.gname = ""
            if path.is_symlink():
                target = os.readlink(path)
                if link_reason(rel, target):
                    continue  # not part of a snapshot (the recorder refuses such a repo at start)
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
                tar.addfile(info)
                continue
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            tar.addfile(info, io.BytesIO(data))
    return _gzip(buf.getvalue())


def _files(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        for name in filenames + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
            p = Path(dirpath, name)
            if p.is_symlink() or p.is_file():
                yield p


def snapshot_git(repo: str | os.PathLike[str], commit: str = "HEAD") -> bytes:
    """Tar the tracked files of `repo` at `commit` (`git archive`, which is deterministic per commit)."""
    raw = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", commit],
        check=True,
        capture_output=True,
    ).stdout
    return _gzip(raw)


def link_reason(path: str, target: str) -> str | None:
    """Why a link at `path` (repo-relative) pointing at `target` cannot be in a snapshot, or None.
    Only the link itself is judged here; `read_snapshot` also resolves chains of links."""
    if not target or "\x00" in target or "\\" in target:
        return "is empty or holds characters no path may hold"
    if target.startswith("/"):
        return "is absolute"
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if joined == ".." or joined.startswith("../"):
        return "leaves the repo"
    return None


@dataclass(frozen=True)
class SnapshotEntry:
    name: str
    """Path relative to the repo root."""
    kind: Literal["file", "dir", "link"]
    mode: int
    data: bytes = b""
    target: str | None = None
    """A link's target, relative to the link's folder."""


class _Bounded(io.RawIOBase):
    """Every gzip member of `data`, decompressed as it is read, and never more than `limit` bytes:
    a read that would pass the limit raises before it happens (a pax header cannot ask for more)."""

    def __init__(self, data: bytes, limit: int):
        self._gz = gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb")  # reads member after member
        self.limit, self.total = limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        want = min(len(buffer), self.limit + 1 - self.total)
        try:
            chunk = self._gz.read(want)
        except (OSError, EOFError, zlib.error) as exc:
            raise SnapshotError(f"is not a readable gzip tar ({exc or type(exc).__name__})") from None
        self.total += len(chunk)
        if self.total > self.limit:
            raise SnapshotError(f"unpacks to more than {self.limit} bytes")
        buffer[: len(chunk)] = chunk
        return len(chunk)


class _CheckedInfo(tarfile.TarInfo):
    """A tar header that refuses, before tarfile parses it, an extended header over
    MAX_HEADER_BYTES, global headers adding up to more, a chain of extended headers (tarfile
    recurses once per link) and GNU sparse entries (unbounded lists of extents)."""

    def _proc_member(self, tarfile_):
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise SnapshotError(f"entry {self.name!r} is a GNU sparse file; only files, folders and relative links are allowed")
        if self.type not in _EXTENDED:
            return super()._proc_member(tarfile_)
        seen = getattr(tarfile_, "_prt_seen", {"chain": 0, "global": 0})
        tarfile_._prt_seen = seen
        seen["global"] += self.size if self.type == tarfile.XGLTYPE else 0
        if self.size > MAX_HEADER_BYTES or seen["global"] > MAX_HEADER_BYTES:
            raise SnapshotError(f"has an extended tar header over {MAX_HEADER_BYTES} bytes")
        if seen["chain"] >= _MAX_HEADER_CHAIN:
            raise SnapshotError(f"has more than {_MAX_HEADER_CHAIN} extended tar headers in a row")
        seen["chain"] += 1
        try:
            return super()._proc_member(tarfile_)
        finally:
            seen["chain"] -= 1


def iter_snapshot(data: bytes, *, max_unpacked: int, with_data: bool = True) -> Iterator[SnapshotEntry]:
    """The entries of a snapshot, checked as they come, in order; a SnapshotError names the first
    problem (problems of the whole, such as a link leading out through another link, at the end).
    Memory holds one file at a time. `with_data=False` reads past file contents without keeping them."""
    stream = io.BufferedReader(_Bounded(data, max_unpacked + _TAR_ALLOWANCE), buffer_size=1 << 16)
    layout = _Layout()
    total = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|", tarinfo=_CheckedInfo) as tar:
            for i, member in enumerate(iter(tar.next, None)):
                tar.members.clear()  # tarfile keeps every header it read; one at a time is enough here
                if i >= MAX_SNAPSHOT_MEMBERS:
                    raise SnapshotError(f"has more than {MAX_SNAPSHOT_MEMBERS} entries")
                name = member.name.removeprefix("./").rstrip("/")
                if not name and member.isdir():
                    continue
                reason = unsafe_path_reason(name)
                if reason:
                    raise SnapshotError(f"entry {member.name!r} {reason}")
                if member.issym():
                    why = link_reason(name, member.linkname)
                    if why:
                        raise SnapshotError(f"entry {member.name!r} is a link whose target {member.linkname!r} {why}")
                    entry = SnapshotEntry(name, "link", 0o777, target=member.linkname)
                elif member.isdir():
                    entry = SnapshotEntry(name, "dir", member.mode)
                elif member.isreg():
                    total += member.size
                    if total > max_unpacked:
                        raise SnapshotError(f"unpacks to more than {max_unpacked} bytes")
                    f = tar.extractfile(member)
                    content = f.read() if f is not None and with_data else b""
                    entry = SnapshotEntry(name, "file", member.mode, content)
                else:
                    what = "a hard link" if member.islnk() else "a device or special file"
                    raise SnapshotError(f"entry {member.name!r} is {what}; only files, folders and relative links are allowed")
                layout.add(entry.name, entry.kind, entry.target)
                yield entry
    except tarfile.TarError as exc:
        raise SnapshotError(f"is not a readable gzip tar ({exc})") from None
    layout.finish()


def read_snapshot(data: bytes, *, max_unpacked: int) -> list[SnapshotEntry]:
    """Every entry of a snapshot, checked (the whole snapshot in memory: for small ones)."""
    return list(iter_snapshot(data, max_unpacked=max_unpacked))


def check_snapshot(data: bytes, *, max_unpacked: int) -> None:
    """SnapshotError unless `data` is a snapshot that `iter_snapshot` reads to the end."""
    for _ in iter_snapshot(data, max_unpacked=max_unpacked, with_data=False):
        pass


def extract_snapshot(data: bytes, target: Path, *, max_unpacked: int) -> None:
    """Write a snapshot's files, folders and links under `target` (an empty folder), one file at a
    time. Nothing is written through a link: every link resolves inside the snapshot."""
    for e in iter_snapshot(data, max_unpacked=max_unpacked):
        path = target / e.name
        if e.kind == "dir":
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.parent.resolve() != (target / posixpath.dirname(e.name)).resolve(strict=False):
            raise SnapshotError(f"entry {e.name!r} would be written through a link")
        if e.kind == "link":
            os.symlink(str(e.target), path)
        else:
            path.write_bytes(e.data)
            path.chmod(0o755 if e.mode & 0o100 else 0o644)


class _Layout:
    """The shape of the snapshot so far: no path twice or under a file, checked as each entry comes
    (so an extraction never meets one), and at the end every link resolving inside the repo."""

    def __init__(self) -> None:
        self.kinds: dict[str, str] = {}
        self.links: dict[str, str | None] = {}

    def add(self, name: str, kind: str, target: str | None) -> None:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if self.kinds.get(parent) in ("file", "link"):
                raise SnapshotError(f"entry {name!r} lies under {parent!r}, which is not a folder")
            self.kinds.setdefault(parent, "dir")
        if self.kinds.get(name, kind) != kind or (name in self.kinds and kind != "dir"):
            raise SnapshotError(f"entry {name!r} appears twice")
        self.kinds[name] = kind
        if kind == "link":
            self.links[name] = target

    def finish(self) -> None:
        for name in self.links:
            _resolve(name, self.links)


def _resolve(name: str, links: dict[str, str | None]) -> str:
    """Where `name` really points inside the snapshot (following its links), or SnapshotError."""
    todo = name.split("/")
    done: list[str] = []
    hops = 0
    while todo:
        part = todo.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not done:
                raise SnapshotError(f"link {name!r} leads out of the repo")
            done.pop()
            continue
        here = "/".join([*done, part])
        if here in links:
            hops += 1
            if hops > 40:
                raise SnapshotError(f"link {name!r} goes round in a loop")
            todo = [*str(links[here]).split("/"), *todo]
            continue
        done.append(part)
    return "/".join(done)
