"""Copy raw objects into the lake before they leave the inbox, and check every copy.

Accepted traces go to `<lake>/raw/<trace_id>/` with redacted event lines and a manifest whose
participant id is replaced by its pseudonym; artifacts go to `<lake>/artifacts/<sha256>`, output
artifacts redacted (and renamed by their new hash). Rejected traces move, as received, under
`<lake>/quarantine/<quarantine_key>/`. Every written object is read back and compared before
the marker object (`_archived.json`, `_moved.json`) says the copy is complete; only then may the
inbox objects be deleted.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping

from fsspec import AbstractFileSystem

from lake.storage import join, put_immutable
from schemas.layout import COMPLETE, MANIFEST
from tasks.assemble import AssembledTrace
from tasks.inbox import TraceListing

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
    marker = {
        "batch_id": batch_id,
        "redacted_lines": [
            {"seq": s, "line_sha256": t.digests[s].hex(), "rules": plan.line_rules.get(s, [])} for s in sorted(plan.lines)
        ],
        "renamed_artifacts": plan.renamed,
    }
    put_immutable(fs, archive_marker(lake_root, t.trace_id), json.dumps(marker, indent=1, sort_keys=True).encode())


def move_to_quarantine(
    inbox_fs: AbstractFileSystem,
    lake_fs: AbstractFileSystem,
    lake_root: str,
    key: str,
    listing: TraceListing,
    *,
    keep: bool = True,
    note: dict | None = None,
) -> str | None:
    """Copy a rejected trace's objects under `<lake>/quarantine/<key>/` and verify them.

    With keep=False (consent withdrawn) nothing is copied. Returns the lake-relative prefix or None.
    The caller deletes the inbox objects afterwards.
    """
    if not keep:
        return None
    base = join(lake_root, "quarantine", key)
    objects: dict[str, bytes] = {}
    paths = {o.path: k for k, o in listing.objects.items() if not o.is_link}
    bodies = inbox_fs.cat(list(paths), on_error="return") if paths else {}
    for path, k in paths.items():
        body = bodies.get(path)
        if isinstance(body, bytes):
            objects[join(base, "objects", k)] = body
    if objects:
        _put_verified(lake_fs, objects)
    lake_fs.pipe_file(quarantine_marker(lake_root, key), json.dumps(note or {}, indent=1, sort_keys=True).encode())
    return f"quarantine/{key}"
