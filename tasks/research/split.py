"""Leak-free splits: every record of a repo (or of a participant, or of a duplicate group) lands
in the same split, and a record's split depends on nothing but its key, so adding traces to the
lake never moves an old one to another split.

The key is hashed (SHA-256, the first 8 bytes read as a fraction of 2**64) and the fraction picks
the split by the cumulative shares, in the order given: `train=0.8,validation=0.1,test=0.1`
sends keys in [0, 0.8) to train, [0.8, 0.9) to validation, the rest to test.
"""

from __future__ import annotations

import hashlib
import re

from lake.read import repo_key
from schemas.errors import InvalidInput

__all__ = ["SPLIT_BY", "parse_split", "split_key", "split_of"]

SPLIT_BY = ("repo", "participant", "dedup_group")
"""What keeps records together: `dedup_group` keeps each group of duplicates in one split."""
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def parse_split(spec: str) -> dict[str, float]:
    """`train=0.8,validation=0.1,test=0.1` as {name: share}; shares positive and adding up to 1."""
    shares: dict[str, float] = {}
    for part in spec.split(","):
        name, _, value = part.strip().partition("=")
        try:
            share = float(value)
        except ValueError:
            share = -1.0
        if not _NAME.match(name) or not 0 < share <= 1 or name in shares:
            raise InvalidInput(
                "split", f"{part.strip()!r} in {spec!r} is not NAME=SHARE (a lowercase name, once; 0 < share <= 1)"
            )
        shares[name] = share
    if abs(sum(shares.values()) - 1) > 1e-6:
        raise InvalidInput("split", f"the shares of {spec!r} add up to {sum(shares.values()):g}, not 1")
    return shares


def split_key(record: dict, by: str) -> str:
    if by == "repo":
        return repo_key((record.get("repo") or {}).get("origin") or "")
    if by == "participant":
        return record.get("participant") or ""
    if by == "dedup_group":
        return record.get("dedup_group") or record["trace_id"]
    raise InvalidInput("split_by", f"{by!r} is not one of {', '.join(SPLIT_BY)}")


def split_of(key: str, shares: dict[str, float]) -> str:
    """The split of `key`: a stable function of the key and the shares alone."""
    x = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    edge = 0.0
    for name, share in shares.items():
        edge += share
        if x < edge:
            return name
    return next(reversed(shares))  # x within rounding of 1
