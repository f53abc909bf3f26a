"""Object names of inbox protocol v1, shared by producers (client/) and the pipeline (tasks/).

<inbox>/<trace_id>/manifest.json
<inbox>/<trace_id>/chunks/<chunk_seq:06d>-<chunk_id>.jsonl[.gz]
<inbox>/<trace_id>/artifacts/<sha256-hex>
<inbox>/<trace_id>/complete.json
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = [
    "ARTIFACTS_DIR",
    "ARTIFACT_NAME_RE",
    "CHUNKS_DIR",
    "CHUNK_NAME_RE",
    "COMPLETE",
    "MANIFEST",
    "ChunkName",
    "artifact_ref",
    "chunk_name",
    "parse_chunk_name",
    "ref_hex",
]

MANIFEST = "manifest.json"
COMPLETE = "complete.json"
CHUNKS_DIR = "chunks"
ARTIFACTS_DIR = "artifacts"

CHUNK_NAME_RE = re.compile(r"^(?P<seq>[0-9]{6})-(?P<id>[A-Za-z0-9_-]{1,64})\.jsonl(?P<gz>\.gz)?$")
ARTIFACT_NAME_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class ChunkName:
    seq: int
    chunk_id: str
    gzip: bool


def chunk_name(seq: int, chunk_id: str, *, gzip: bool = False) -> str:
    return f"{seq:06d}-{chunk_id}.jsonl" + (".gz" if gzip else "")


def parse_chunk_name(name: str) -> ChunkName | None:
    """The parts of a chunk object's name, or None when it does not follow the protocol."""
    m = CHUNK_NAME_RE.match(name)
    if not m:
        return None
    return ChunkName(int(m["seq"]), m["id"], m["gz"] is not None)


def artifact_ref(data: bytes) -> str:
    """`sha256:<hex>` of `data`: how events and the manifest reference an artifact."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def ref_hex(ref: str) -> str:
    """The hex digest of an artifact ref (the artifact's object name)."""
    return ref.removeprefix("sha256:")
