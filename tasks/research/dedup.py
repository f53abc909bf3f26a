"""Duplicate sessions in a training set: the same fix recorded twice, or nearly the same.

Two records are *exact* duplicates when they have the same repo, start commit and final patch
(normalised: line endings, trailing blanks and hunk line numbers do not count). They are *near*
duplicates when the MinHash estimate of the Jaccard similarity of their word 3-grams (the
final patch's changed lines, the task's title and description) reaches `threshold`, found with
locality-sensitive hashing (datasketch's MinHashLSH: a well-kept implementation, instead of
hand-written banding). Groups are closed under both relations (a union-find), so a chain of near
duplicates is one group.

Every record gets `dedup_group`: the smallest trace id of its group (its own id when it has no
duplicate), so a group's name does not depend on the order of the records. The result is the
same for the same records, whatever their order: the hashing is seeded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from lake.read import repo_key

__all__ = ["DedupResult", "dedup_groups", "exact_key", "keep_best"]

NUM_PERM = 128
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@.*$", re.M)
_WORD = re.compile(r"\w+")


def _normal_patch(patch: str | None) -> str:
    text = (patch or "").replace("\r\n", "\n")
    text = _HUNK.sub("@@", text)
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


def exact_key(record: dict) -> str:
    """What makes two records the same session: repo, start commit, normalised final patch."""
    repo = record.get("repo") or {}
    parts = (repo_key(repo.get("origin") or ""), repo.get("start_commit") or "", _normal_patch(record.get("final_patch")))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _shingles(record: dict) -> set[bytes]:
    task = record.get("task") or {}
    changed = [
        line[1:]
        for line in (record.get("final_patch") or "").splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    words = _WORD.findall(" ".join([task.get("title") or "", task.get("description") or "", *changed]).lower())
    if len(words) < 3:
        return {" ".join(words).encode()} if words else set()
    return {" ".join(words[i : i + 3]).encode() for i in range(len(words) - 2)}


@dataclass
class DedupResult:
    groups: dict[str, str] = field(default_factory=dict)
    """trace_id -> dedup_group (the smallest trace id of its group)."""
    exact_pairs: int = 0
    """Records that joined a group as an exact duplicate of one before them."""
    near_pairs: int = 0
    """Pairs of records that are near duplicates and not exact ones (each may join two groups)."""

    def _sizes(self) -> list[int]:
        sizes: dict[str, int] = {}
        for g in self.groups.values():
            sizes[g] = sizes.get(g, 0) + 1
        return [n for n in sizes.values() if n > 1]

    def duplicated_groups(self) -> int:
        """Groups of more than one record."""
        return len(self._sizes())

    def in_groups(self) -> int:
        """Records that have at least one duplicate."""
        return sum(self._sizes())

    def summary(self, dropped: int = 0) -> str:
        """One line for an export's output: the groups, and the records `--dedup` left out."""
        line = f"duplicates: {self.in_groups()} records in {self.duplicated_groups()} groups ({self.exact_pairs} exact, {self.near_pairs} near pairs)"
        return line + (f"; {dropped} left out (--dedup keeps the best-scored of each group)" if dropped else "")


def dedup_groups(records: Iterable[dict], *, threshold: float = 0.8) -> DedupResult:
    """`dedup_group` of every record (by trace_id), exact and near duplicates together."""
    from datasketch import MinHash, MinHashLSH

    records = sorted(records, key=lambda r: r["trace_id"])
    parent = {r["trace_id"]: r["trace_id"] for r in records}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    result = DedupResult()
    first_of: dict[str, str] = {}
    keys = {r["trace_id"]: exact_key(r) for r in records}
    for r in records:
        key = keys[r["trace_id"]]
        if key in first_of:
            union(first_of[key], r["trace_id"])
            result.exact_pairs += 1
        else:
            first_of[key] = r["trace_id"]

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    signatures = {}
    for r in records:
        shingles = _shingles(r)
        if not shingles:
            continue
        m = MinHash(num_perm=NUM_PERM, seed=1)
        m.update_batch(sorted(shingles))
        for other in lsh.query(m):
            if (
                keys[other] != keys[r["trace_id"]] and m.jaccard(signatures[other]) >= threshold
            ):  # LSH proposes; the estimate decides
                union(other, r["trace_id"])
                result.near_pairs += 1
        lsh.insert(r["trace_id"], m)
        signatures[r["trace_id"]] = m
    result.groups = {tid: find(tid) for tid in parent}
    return result


def _rank(record: dict) -> tuple:
    scores = record.get("scores") or {}
    overall = scores.get("overall")
    # Best first: the highest score, then a verified fix, then the smallest trace id.
    return (-(overall if overall is not None else float("-inf")), record.get("verdict") != "verified", record["trace_id"])


def keep_best(records: list[dict]) -> list[dict]:
    """One record per `dedup_group`: the best-scored (then verified, then smallest id), in trace_id order."""
    best: dict[str, dict] = {}
    for r in records:
        g = r["dedup_group"]
        if g not in best or _rank(r) < _rank(best[g]):
            best[g] = r
    return sorted(best.values(), key=lambda r: r["trace_id"])
