"""Repo snapshots: a gzip tar of the repo's files, paths relative to the root, byte-for-byte reproducible."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
from pathlib import Path

__all__ = ["snapshot_dir", "snapshot_git"]

_SKIP_DIRS = {".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".venv", "node_modules"}


def _gzip(raw: bytes) -> bytes:
    # mtime=0 and no file name: the same tree always gives the same bytes, hence the same ref.
    return gzip.compress(raw, compresslevel=6, mtime=0)


def snapshot_dir(root: str | os.PathLike[str]) -> bytes:
    """Tar every regular file under `root` (skipping VCS and cache folders), sorted, with fixed metadata."""
    root = Path(root)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(_files(root)):
            rel = path.relative_to(root).as_posix()
            data = path.read_bytes()
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.mtime = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return _gzip(buf.getvalue())


def _files(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        for name in filenames:
            p = Path(dirpath, name)
            if p.is_file() and not p.is_symlink():
                yield p


def snapshot_git(repo: str | os.PathLike[str], commit: str = "HEAD") -> bytes:
    """Tar the tracked files of `repo` at `commit` (`git archive`, which is deterministic per commit)."""
    raw = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", commit],
        check=True,
        capture_output=True,
    ).stdout
    return _gzip(raw)
