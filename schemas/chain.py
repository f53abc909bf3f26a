"""The trace hash chain (inbox protocol v1).

    h0 = sha256(b"prt-chain-v1\\n" + trace_id)
    h  = sha256(h + sha256(line))          for each event line, in seq order
    chain_head = hex(h)

`line` is the event's exact JSON bytes without the trailing newline; digests are the raw 32 bytes.
Because each step consumes only a line's digest, the chain can be re-checked from stored
`line_sha256` values after the text has been redacted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["CHAIN_SEED", "chain_head", "chain_head_from_digests", "chain_start", "chain_step", "line_digest"]

CHAIN_SEED = b"prt-chain-v1\n"

_sha256 = hashlib.sha256


def chain_start(trace_id: str) -> bytes:
    """The chain's first value for `trace_id`."""
    return _sha256(CHAIN_SEED + trace_id.encode("utf-8")).digest()


def line_digest(line: bytes) -> bytes:
    """sha256 of one event line (no trailing newline)."""
    return _sha256(line).digest()


def chain_step(h: bytes, digest: bytes) -> bytes:
    """Advance the chain by one event whose line hashes to `digest`."""
    return _sha256(h + digest).digest()


def chain_head_from_digests(trace_id: str, digests: Iterable[bytes]) -> str:
    """The chain head over already-computed line digests, in seq order."""
    h = chain_start(trace_id)
    for d in digests:
        h = _sha256(h + d).digest()
    return h.hex()


def chain_head(trace_id: str, lines: Iterable[bytes]) -> str:
    """The chain head over event lines (exact bytes, no newline), in seq order."""
    return chain_head_from_digests(trace_id, (_sha256(line).digest() for line in lines))
