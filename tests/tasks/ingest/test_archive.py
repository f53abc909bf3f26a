"""The per-trace archive: a deterministic tar that `tarfile` reads back exactly."""

import io
import tarfile

from hypothesis import given
from hypothesis import strategies as st

from tasks.ingest.archive import make_tar, read_tar

names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,150}", fullmatch=True).filter(lambda n: not n.endswith("/"))


def _tarfile_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


@given(st.dictionaries(names, st.binary(max_size=3000), max_size=6))
def test_make_tar_is_what_tarfile_writes_and_reads_back(files):
    data = make_tar(files)
    assert data == _tarfile_bytes(files)
    assert read_tar(data) == files


def test_read_tar_ignores_links_and_directories():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        d = tarfile.TarInfo("dir")
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
        link = tarfile.TarInfo("dir/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        f = tarfile.TarInfo("dir/file")
        f.size = 2
        tar.addfile(f, io.BytesIO(b"ok"))
    assert read_tar(buf.getvalue()) == {"dir/file": b"ok"}
