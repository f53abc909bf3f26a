"""Copy raw objects into the lake before they leave the inbox, and check every copy.

Accepted traces go to `<lake>/raw/<trace_id>/archive.tar`: one object holding the trace's inbox
objects (event lines redacted, the manifest's participant id replaced by its pseudonym) and
`_archived.json` (the digest map that keeps the chain checkable, what was redacted). One object
per trace, not five: written atomically, its presence says the archive is complete. Artifacts go
to `<lake>/artifacts/<sha256>`, outputs redacted (and renamed by their new hash). Rejected traces
move under `<lake>/quarantine/<trace>/<quarantine_id>/objects/`, redacted and pseudonymised as
far as their bytes can be read, then `_moved.json`. Every written object is read back and
compared; only then may the inbox objects be deleted.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping

from fsspec import AbstractFileSystem

from client.storage import io_threads, join, map_io, put_immutable, read_bytes, read_many
from schemas.errors import GzipError
from schemas.layout import CHUNKS_DIR, COMPLETE, MANIFEST
from tasks.ingest.assemble import AssembledTrace, gunzip_all
from tasks.ingest.inbox import TraceListing
from tasks.ingest.privacy import pseudonym
from tasks.ingest.redact import JsonPairs, dump_pairs, load_pairs, redact_bytes, redact_json_text, redact_pairs, redact_text

__all__ = [
    "ArchivePlan",
    "archive_marker",
    "archive_traces",
    "make_tar",
    "move_to_quarantine",
    "put_verified",
    "quarantine_marker",
    "read_objects",
    "read_tar",
    "redact_output",
]

ARCHIVE = "archive.tar"
ARCHIVED = "_archived.json"
MOVED = "_moved.json"


class ArchivePlan:
    """What the archive of one accepted trace holds, as prepared by the redaction step."""

    def __init__(self, trace: AssembledTrace):
        self.trace = trace
        self.lines: dict[int, bytes] = {}
        """seq -> redacted line, for lines that changed."""
        self.line_rules: dict[int, list[str]] = {}
        self.manifest: bytes = b""
        self.artifacts: dict[str, bytes] = {}
        """hex -> bytes to store under <lake>/artifacts (outputs already redacted)."""
        self.renamed: dict[str, str] = {}
        """original artifact hex -> stored hex, for outputs changed by redaction."""


def archive_marker(lake_root: str, trace_id: str) -> str:
    """The archive object of a trace; it exists only once the whole archive is written."""
    return join(lake_root, "raw", trace_id, ARCHIVE)


def _member_header(name: str, size: int) -> bytes:
    """The header `tarfile` writes (PAX format) for a regular file with mode 0644 and mtime 0.

    A short ASCII name needs no PAX extension, only the ustar block: that block is patched from
    one made by tarfile (name, size, checksum), 6 times faster than asking tarfile each time
    (the archive is written once per trace, five members each). Anything else goes to tarfile."""
    if len(name) > tarfile.LENGTH_NAME or not name.isascii() or size >= 8**11:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, 0
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    block = bytearray(_USTAR_TEMPLATE)
    block[0:100] = name.encode("ascii").ljust(100, b"\0")
    block[124:136] = b"%011o\0" % size
    block[148:156] = b" " * 8  # the checksum counts its own field as spaces
    block[148:155] = b"%06o\0" % sum(block)
    return bytes(block)


def _template() -> bytes:
    info = tarfile.TarInfo("x")
    info.size, info.mode, info.mtime = 0, 0o644, 0
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


_USTAR_TEMPLATE = _template()


def make_tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed tar of `files`, sorted, with fixed metadata: the same files, the same bytes.

    Byte for byte what `tarfile` writes (PAX format), built from the members' headers directly:
    the archive is written once per trace, and tarfile's stream machinery costs more than the data.
    """
    parts = []
    size = 0
    for name in sorted(files):
        data = files[name]
        header = _member_header(name, len(data))
        pad = -len(data) % tarfile.BLOCKSIZE
        parts += [header, data, b"\0" * pad]
        size += len(header) + len(data) + pad
    # Two zero blocks end the archive; tarfile then pads it to a whole record.
    parts.append(b"\0" * (2 * tarfile.BLOCKSIZE + (-(size + 2 * tarfile.BLOCKSIZE) % tarfile.RECORDSIZE)))
    return b"".join(parts)


def read_tar(data: bytes) -> dict[str, bytes]:
    """The regular files of an archive written by `make_tar` (nothing else is ever extracted)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isreg()}


def quarantine_marker(lake_root: str, key: str) -> str:
    return join(lake_root, "quarantine", key, MOVED)


def _chunk_bytes(key: str, raw: bytes, lines: list[tuple[int, bytes]], redacted: Mapping[int, bytes]) -> bytes:
    if not any(seq in redacted for seq, _ in lines):
        return raw  # untouched chunks are archived byte for byte
    body = b"\n".join(redacted.get(seq, line) for seq, line in lines) + b"\n"
    return gzip.compress(body, mtime=0) if key.endswith(".gz") else body


def put_verified(fs: AbstractFileSystem, objects: dict[str, bytes]) -> None:
    """Write every object (immutable: an identical one already there is fine), then read each back
    and compare. Raises before anything could be deleted on the strength of a bad copy."""

    def put_and_check(item: tuple[str, bytes]) -> str | None:
        path, data = item
        put_immutable(fs, path, data)
        return None if read_bytes(fs, path) == data else path

    bad = [p for p in map_io(put_and_check, objects.items(), workers=io_threads(fs)) if p]
    if bad:
        raise OSError(f"archive copy {bad[0]} does not read back as written; the inbox objects were kept")


def archive_objects(plan: ArchivePlan, lake_root: str, batch_id: str) -> tuple[tuple[str, bytes], dict[str, bytes]]:
    """The archive object of one trace (path, tar bytes) and the artifacts it references (path -> bytes)."""
    t = plan.trace
    files: dict[str, bytes] = {}
    for key, seqs in t.chunk_seqs.items():
        files[key] = _chunk_bytes(key, t.objects[key], [(s, t.lines[s]) for s in seqs], plan.lines)
    files[MANIFEST] = plan.manifest
    files[COMPLETE] = t.objects[COMPLETE]
    # Every archived line that differs from what the client sent (redacted now or in an earlier
    # pass): its digest maps back to the original, so the chain can be checked again from the
    # archive. Lines read from the inbox are the client's own unless this pass changed them.
    seqs = range(len(t.lines)) if t.pseudonymized else sorted(plan.lines)
    digest_map = {}
    for seq in seqs:
        stored = hashlib.sha256(plan.lines.get(seq, t.lines[seq])).digest()
        if stored != t.digests[seq]:
            digest_map[stored.hex()] = t.digests[seq].hex()
    marker = {
        "batch_id": batch_id,
        "digest_map": digest_map,
        "redacted_lines": [{"seq": s, "rules": plan.line_rules.get(s, [])} for s in sorted(plan.line_rules)],
        "renamed_artifacts": plan.renamed,
    }
    files[ARCHIVED] = json.dumps(marker, indent=1, sort_keys=True).encode()
    artifacts = {join(lake_root, "artifacts", hex_): data for hex_, data in plan.artifacts.items()}
    return (archive_marker(lake_root, t.trace_id), make_tar(files)), artifacts


def archive_traces(fs: AbstractFileSystem, lake_root: str, plans: list[ArchivePlan], batch_id: str) -> None:
    """Write and verify the artifacts of many traces, then their archives. Idempotent."""
    artifacts: dict[str, bytes] = {}
    archives: dict[str, bytes] = {}
    for plan in plans:
        (path, tar), trace_artifacts = archive_objects(plan, lake_root, batch_id)
        archives[path] = tar
        artifacts.update(trace_artifacts)
    put_verified(fs, artifacts)
    put_verified(fs, archives)


def _chunk_copy(key: str, data: bytes, digest_map: dict[str, str], limit: int) -> bytes | None:
    """The chunk as quarantine keeps it: every line redacted (keys, repeated keys and escaped text
    too); None when it cannot be read whole (a cut or broken gzip stream, a bomb): what could be
    read of it could not be checked either, so nothing of it is kept."""
    gz = key.endswith(".gz")
    if gz:
        try:
            raw = gunzip_all(data, limit)
        except GzipError:
            return None
    else:
        raw = data
    lines = raw.split(b"\n")
    changed = False
    for i, line in enumerate(lines):
        text = line.decode("utf-8", "surrogateescape")
        new, hits = redact_json_text(text)
        if hits:
            new_bytes = new.encode("utf-8", "surrogateescape")
            digest_map[hashlib.sha256(new_bytes).hexdigest()] = hashlib.sha256(line).hexdigest()
            lines[i] = new_bytes
            changed = True
    if not changed:
        return data
    body = b"\n".join(lines)
    return gzip.compress(body, mtime=0) if gz else body


def redact_output(data: bytes, limit: int) -> bytes | None:
    """A command's output as the lake may store it: a gzip stream decompressed first (None when it
    cannot be read whole within `limit` bytes: then nothing in it could be checked), then secrets
    redacted in its text (bytes that are not UTF-8 stay as they are around them). A gzip tar (a
    repo snapshot) is kept as it is: QA replays it byte for byte."""
    if data[:2] == b"\x1f\x8b":
        try:
            unpacked = gunzip_all(data, limit)
        except GzipError:
            return None
        if unpacked[257:262] == b"ustar":
            return data
        data = unpacked
    new, hits = redact_text(data.decode("utf-8", "surrogateescape"))
    return new.encode("utf-8", "surrogateescape") if hits else data


def _manifest_copy(data: bytes, pseudonym_key: str | None) -> tuple[bytes, bool]:
    """The manifest as quarantine keeps it: every participant id replaced by its pseudonym (in
    every copy of a repeated key), every string and key redacted."""
    try:
        value = load_pairs(data)
        if not isinstance(value, JsonPairs):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError, RecursionError):
        if pseudonym_key is None:
            return redact_bytes(data), False
        # Unreadable, it may still hold a participant id that nothing could turn into a pseudonym
        # (and so nothing could find and erase): the copy keeps only what it was.
        note = {"unreadable_manifest": {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}}
        return json.dumps(note, indent=2).encode(), False
    pseudonymized = pseudonym_key is None  # None: already a pseudonym (a copy of the lake's own archive)
    if pseudonym_key is not None:
        for k, session in value:
            if k != "session" or not isinstance(session, JsonPairs):
                continue
            ids = [j for j, (sk, sv) in enumerate(session) if sk == "participant_id" and isinstance(sv, str)]
            for j in ids:
                session[j] = ("participant_id", pseudonym(session[j][1], pseudonym_key))
            pseudonymized = pseudonymized or bool(ids)
    redacted = redact_pairs(value, [])
    return dump_pairs(redacted).encode("utf-8"), pseudonymized


def quarantine_copy(
    objects: dict[str, bytes], pseudonym_key: str | None, max_chunk_bytes: int, prior_digest_map: dict[str, str] | None = None
) -> tuple[dict[str, bytes], dict]:
    """The objects of a rejected trace as the lake may keep them: participant pseudonymised and
    secrets redacted wherever the bytes can be read, plus the maps that lead back to the original
    digests (so a later reprocess can check the chain and the artifact names again)."""
    out: dict[str, bytes] = {}
    digest_map: dict[str, str] = {}
    artifact_map: dict[str, str] = {}
    dropped: dict[str, str] = {}
    pseudonymized = False
    for key, data in objects.items():
        if key == MANIFEST:
            data, pseudonymized = _manifest_copy(data, pseudonym_key)
        elif key.startswith(CHUNKS_DIR + "/"):
            data = _chunk_copy(key, data, digest_map, max_chunk_bytes)
            if data is None:
                dropped[key] = "cannot be read whole (a cut or broken gzip stream, or over the chunk limit): not kept"
                continue
        elif key.startswith("artifacts/"):
            new = redact_output(data, max_chunk_bytes)
            if new is None:
                dropped[key] = "a gzip stream that cannot be read whole: not kept"
                continue
            if new != data:
                stored = hashlib.sha256(new).hexdigest()
                artifact_map[key.split("/", 1)[1]] = stored
                key = f"artifacts/{stored}"
            data = new
        else:
            data = redact_bytes(data)
        out[redact_text(key)[0]] = data  # a chunk's name is the client's: it may hold a secret too
    prior = prior_digest_map or {}
    # Lines redacted earlier (in the raw archive) and now: both lead back to what the client sent.
    combined = {**prior, **{new: prior.get(old, old) for new, old in digest_map.items()}}
    return out, {"digest_map": combined, "artifact_map": artifact_map, "pseudonymized": pseudonymized, "dropped": dropped}


def read_objects(fs: AbstractFileSystem, listing: TraceListing) -> dict[str, bytes]:
    """The bytes of a listing's objects (links are never followed)."""
    paths = {o.path: k for k, o in listing.objects.items() if not o.is_link}
    bodies = read_many(fs, list(paths))
    return {k: bodies[p] for p, k in paths.items() if isinstance(bodies.get(p), bytes)}


def move_to_quarantine(
    received: dict[str, bytes],
    lake_fs: AbstractFileSystem,
    lake_root: str,
    key: str,
    *,
    keep: bool = True,
    note: dict | None = None,
    pseudonym_key: str | None,
    max_chunk_bytes: int,
    prior_digest_map: dict[str, str] | None = None,
) -> str | None:
    """Copy a rejected trace's objects, redacted, under `<lake>/quarantine/<key>/objects/` and verify them.

    With keep=False (consent withdrawn) nothing is copied. `pseudonym_key=None` and a prior digest
    map mark a copy of the lake's own (already redacted) archive. Returns the lake-relative prefix
    or None. The caller deletes the source objects afterwards.
    """
    if not keep:
        return None
    base = join(lake_root, "quarantine", key)
    copies, maps = quarantine_copy(received, pseudonym_key, max_chunk_bytes, prior_digest_map)
    if copies:
        put_verified(lake_fs, {join(base, "objects", k): v for k, v in copies.items()})
    marker = {**(note or {}), **maps}
    lake_fs.pipe_file(quarantine_marker(lake_root, key), json.dumps(marker, indent=1, sort_keys=True).encode())
    return f"quarantine/{key}"
