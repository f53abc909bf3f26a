"""`prt upload DIR`: copy trace folders laid out per inbox protocol v1 into an inbox.

Order matters: artifacts, manifest and chunks first, complete.json last, so that the pipeline
never sees a trace as complete before all its objects are there. Every object is created
exclusively: re-uploading the same folder is a no-op, a changed object is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from client.storage import fs_for, join, put_immutable
from schemas.errors import InvalidInput
from schemas.layout import ARTIFACTS_DIR, CHUNKS_DIR, COMPLETE, MANIFEST, parse_chunk_name
from schemas.manifest import Complete, Manifest

__all__ = ["UploadResult", "find_trace_dirs", "upload_trace_dir"]

Putter = Callable[[str, bytes], bool]
"""put(relative_key, data) -> created; relative_key is `<trace_id>/...`."""


@dataclass
class UploadResult:
    trace_id: str
    created: int = 0
    unchanged: int = 0
    complete: bool = False
    objects: list[str] = field(default_factory=list)


def find_trace_dirs(path: str | Path) -> list[Path]:
    """`path` itself when it is a trace folder, else its sub-folders that are."""
    path = Path(path)
    if (path / MANIFEST).is_file() or (path / COMPLETE).is_file():
        return [path]
    found = sorted(p for p in path.iterdir() if p.is_dir() and ((p / MANIFEST).is_file() or (p / COMPLETE).is_file()))
    if not found:
        raise InvalidInput("DIR", f"{path} holds no trace folder (a folder with manifest.json)")
    return found


def _objects(folder: Path, trace_id: str) -> list[tuple[str, bytes]]:
    """The folder's objects in upload order, checked against the protocol on the way."""
    ordered: list[tuple[str, bytes]] = []
    art_dir = folder / ARTIFACTS_DIR
    for p in sorted(art_dir.iterdir()) if art_dir.is_dir() else []:
        data = p.read_bytes()
        if hashlib.sha256(data).hexdigest() != p.name:
            raise InvalidInput(f"{ARTIFACTS_DIR}/{p.name}", "the artifact's name is not the sha256 of its bytes")
        ordered.append((f"{trace_id}/{ARTIFACTS_DIR}/{p.name}", data))
    ordered.append((f"{trace_id}/{MANIFEST}", (folder / MANIFEST).read_bytes()))
    chunk_dir = folder / CHUNKS_DIR
    for p in sorted(chunk_dir.iterdir()) if chunk_dir.is_dir() else []:
        if parse_chunk_name(p.name) is None:
            raise InvalidInput(f"{CHUNKS_DIR}/{p.name}", "is not named <seq:06d>-<id>.jsonl[.gz]")
        ordered.append((f"{trace_id}/{CHUNKS_DIR}/{p.name}", p.read_bytes()))
    complete = folder / COMPLETE
    if complete.is_file():
        data = complete.read_bytes()
        try:
            Complete.model_validate_json(data)
        except ValidationError as exc:
            raise InvalidInput(COMPLETE, str(exc.errors()[0]["msg"])) from None
        ordered.append((f"{trace_id}/{COMPLETE}", data))
    return ordered


def upload_trace_dir(
    folder: str | Path,
    inbox: str | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
    put: Putter | None = None,
) -> UploadResult:
    """Upload one trace folder to `inbox`, or through `put` (e.g. a presigned grant)."""
    folder = Path(folder)
    try:
        manifest = Manifest.model_validate_json((folder / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise InvalidInput(MANIFEST, f"{folder} has no manifest.json") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InvalidInput("manifest." + ".".join(map(str, err["loc"])), err["msg"]) from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(MANIFEST, f"is not JSON ({exc})") from None
    trace_id = manifest.trace_id
    if put is None:
        if inbox is None:
            raise InvalidInput("inbox", "give an inbox URL or a grant")
        fs, root = fs_for(inbox, storage_options)

        def put(key: str, data: bytes) -> bool:
            return put_immutable(fs, join(root, key), data)

    result = UploadResult(trace_id)
    for key, data in _objects(folder, trace_id):
        if put(key, data):
            result.created += 1
        else:
            result.unchanged += 1
        result.objects.append(key)
        result.complete = key.endswith("/" + COMPLETE)
    return result
