"""Copy raw objects into the lake before they leave the inbox, and check every copy.

Accepted traces go to `<lake>/raw/<trace_id>/` with redacted event lines and a manifest whose
participant id is replaced by its pseudonym; artifacts go to `<lake>/artifacts/<sha256>`, output
artifacts redacted (and renamed by their new hash). Rejected traces move under
`<lake>/quarantine/<trace>/<quarantine_id>/objects/`, redacted and pseudonymised as far as their
bytes can be read. Every written object is read back and compared before
the marker object (`_archived.json`, `_moved.json`) says the copy is complete; only then may the
inbox objects be deleted.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Mapping

from fsspec import AbstractFileSystem

from lake.storage import join, put_immutable
from schemas.layout import CHUNKS_DIR, COMPLETE, MANIFEST
from tasks.assemble import AssembledTrace
from tasks.inbox import TraceListing
from tasks.privacy import pseudonym
from tasks.redact import redact_bytes, redact_json_value, redact_text

__all__ = ["ArchivePlan", "archive_marker", "archive_trace", "move_to_quarantine", "quarantine_marker"]

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
    return join(lake_root, "raw", trace_id, ARCHIVED)


def quarantine_marker(lake_root: str, key: str) -> str:
    return join(lake_root, "quarantine", key, MOVED)


def _chunk_bytes(key: str, raw: bytes, lines: list[tuple[int, bytes]], redacted: Mapping[int, bytes]) -> bytes:
    if not any(seq in redacted for seq, _ in lines):
        return raw  # untouched chunks are archived byte for byte
    body = b"\n".join(redacted.get(seq, line) for seq, line in lines) + b"\n"
    return gzip.compress(body, mtime=0) if key.endswith(".gz") else body


def _put_verified(fs: AbstractFileSystem, objects: dict[str, bytes]) -> None:
    for path, data in objects.items():
        put_immutable(fs, path, data)
    fs.invalidate_cache()
    back = fs.cat(list(objects), on_error="return")
    for path, data in objects.items():
        if back.get(path) != data:
            raise OSError(f"archive copy {path} does not read back as written; the inbox objects were kept")


def archive_trace(fs: AbstractFileSystem, lake_root: str, plan: ArchivePlan, batch_id: str) -> None:
    """Write and verify the trace's archive, then its marker. Idempotent: a re-run rewrites nothing."""
    t = plan.trace
    base = join(lake_root, "raw", t.trace_id)
    objects: dict[str, bytes] = {}
    for key, seqs in t.chunk_seqs.items():
        objects[join(base, key)] = _chunk_bytes(key, t.objects[key], [(s, t.lines[s]) for s in seqs], plan.lines)
    objects[join(base, MANIFEST)] = plan.manifest
    objects[join(base, COMPLETE)] = t.objects[COMPLETE]
    for hex_, data in plan.artifacts.items():
        objects[join(lake_root, "artifacts", hex_)] = data
    _put_verified(fs, objects)
    # Every archived line that differs from what the client sent (redacted now or earlier): its
    # digest maps back to the original, so the chain can be checked again from the archive.
    digest_map = {}
    for seq, original in enumerate(t.digests):
        stored = hashlib.sha256(plan.lines.get(seq, t.lines[seq])).digest()
        if stored != original:
            digest_map[stored.hex()] = original.hex()
    marker = {
        "batch_id": batch_id,
        "digest_map": digest_map,
        "redacted_lines": [{"seq": s, "rules": plan.line_rules.get(s, [])} for s in sorted(plan.line_rules)],
        "renamed_artifacts": plan.renamed,
    }
    put_immutable(fs, archive_marker(lake_root, t.trace_id), json.dumps(marker, indent=1, sort_keys=True).encode())


def _chunk_copy(key: str, data: bytes, digest_map: dict[str, str], limit: int) -> bytes:
    gz = key.endswith(".gz")
    if gz:
        try:
            d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            raw = d.decompress(data, limit + 1)
            if len(raw) > limit or not d.eof:
                return data  # a bomb or a broken stream: kept as received, it cannot be read anyway
        except zlib.error:
            return data
    else:
        raw = data
    lines = raw.split(b"\n")
    changed = False
    for i, line in enumerate(lines):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            continue
        try:  # structurally when the line is a JSON object, as text otherwise (too deep, not JSON)
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError("not an object")
            new_value, hits = redact_json_value(value)
            new = json.dumps(new_value, ensure_ascii=False, separators=(",", ":")) if hits else text
        except (ValueError, RecursionError):
            new, hits = redact_text(text)
        if hits:
            new_bytes = new.encode("utf-8")
            digest_map[hashlib.sha256(new_bytes).hexdigest()] = hashlib.sha256(line).hexdigest()
            lines[i] = new_bytes
            changed = True
    if not changed:
        return data
    body = b"\n".join(lines)
    return gzip.compress(body, mtime=0) if gz else body


def _manifest_copy(data: bytes, pseudonym_key: str | None) -> tuple[bytes, bool]:
    try:
        value = json.loads(data)
        if not isinstance(value, dict):
            raise ValueError("not an object")
        pseudonymized = False
        session = value.get("session")
        if pseudonym_key is None:  # already a pseudonym (a copy of the lake's own archive)
            pseudonymized = True
        elif isinstance(session, dict) and isinstance(session.get("participant_id"), str):
            session["participant_id"] = pseudonym(session["participant_id"], pseudonym_key)
            pseudonymized = True
        value, _ = redact_json_value(value)
        return json.dumps(value, indent=2, ensure_ascii=False).encode("utf-8"), pseudonymized
    except (ValueError, UnicodeDecodeError, RecursionError):
        return redact_bytes(data), False


def quarantine_copy(
    objects: dict[str, bytes], pseudonym_key: str | None, max_chunk_bytes: int, prior_digest_map: dict[str, str] | None = None
) -> tuple[dict[str, bytes], dict]:
    """The objects of a rejected trace as the lake may keep them: participant pseudonymised and
    secrets redacted wherever the bytes can be read, plus the maps that lead back to the original
    digests (so a later reprocess can check the chain and the artifact names again)."""
    out: dict[str, bytes] = {}
    digest_map: dict[str, str] = {}
    artifact_map: dict[str, str] = {}
    pseudonymized = False
    for key, data in objects.items():
        if key == MANIFEST:
            data, pseudonymized = _manifest_copy(data, pseudonym_key)
        elif key.startswith(CHUNKS_DIR + "/"):
            data = _chunk_copy(key, data, digest_map, max_chunk_bytes)
        elif key.startswith("artifacts/"):
            new = redact_bytes(data)  # a snapshot tarball is not text and stays as it is
            if new != data:
                stored = hashlib.sha256(new).hexdigest()
                artifact_map[key.split("/", 1)[1]] = stored
                key = f"artifacts/{stored}"
            data = new
        else:
            data = redact_bytes(data)
        out[key] = data
    prior = prior_digest_map or {}
    # Lines redacted earlier (in the raw archive) and now: both lead back to what the client sent.
    combined = {**prior, **{new: prior.get(old, old) for new, old in digest_map.items()}}
    return out, {"digest_map": combined, "artifact_map": artifact_map, "pseudonymized": pseudonymized}


def move_to_quarantine(
    source_fs: AbstractFileSystem,
    lake_fs: AbstractFileSystem,
    lake_root: str,
    key: str,
    listing: TraceListing,
    *,
    keep: bool = True,
    note: dict | None = None,
    pseudonym_key: str | None,
    max_chunk_bytes: int,
) -> str | None:
    """Copy a rejected trace's objects, redacted, under `<lake>/quarantine/<key>/objects/` and verify them.

    With keep=False (consent withdrawn) nothing is copied. `pseudonym_key=None` and the listing's
    digest map mark a copy of the lake's own (already redacted) archive. Returns the lake-relative
    prefix or None. The caller deletes the source objects afterwards.
    """
    if not keep:
        return None
    base = join(lake_root, "quarantine", key)
    paths = {o.path: k for k, o in listing.objects.items() if not o.is_link}
    bodies = source_fs.cat(list(paths), on_error="return") if paths else {}
    received = {k: bodies[p] for p, k in paths.items() if isinstance(bodies.get(p), bytes)}
    copies, maps = quarantine_copy(received, pseudonym_key, max_chunk_bytes, listing.digest_map)
    if copies:
        _put_verified(lake_fs, {join(base, "objects", k): v for k, v in copies.items()})
    marker = {**(note or {}), **maps}
    lake_fs.pipe_file(quarantine_marker(lake_root, key), json.dumps(marker, indent=1, sort_keys=True).encode())
    return f"quarantine/{key}"
