"""Duplicates in a training set: the same fix recorded twice (exact) or nearly (MinHash/LSH)."""

from __future__ import annotations

import random

from tasks.research.dedup import dedup_groups, keep_best

PATCH = """--- a/stats.py
+++ b/stats.py
@@ -7,7 +7,7 @@ def mean(values):
     if not values:
         raise ValueError("mean() of an empty sequence")
-    return sum(values) / (len(values) - 1)
+    return sum(values) / len(values)
"""
OTHER = """--- a/tokens.py
+++ b/tokens.py
@@ -1,3 +1,3 @@
-def split(text): return text.split(",")
+def split(text): return [t.strip() for t in text.split(",") if t.strip()]
"""


def _rec(tid, patch=PATCH, origin="https://example.org/calculator.git", commit="abc123", overall=None, title="Fix mean()"):
    return {
        "trace_id": tid,
        "repo": {"origin": origin, "start_commit": commit},
        "task": {"title": title, "description": "mean() divides by n - 1 and gets every average wrong"},
        "final_patch": patch,
        "scores": None if overall is None else {"overall": overall},
        "verdict": "verified",
    }


def test_exact_and_near_duplicates_share_a_group_whatever_the_order():
    records = [
        _rec("t-1", overall=3.0),
        # the same fix: another spelling of the origin, CRLF line ends, other hunk line numbers
        _rec(
            "t-2",
            PATCH.replace("@@ -7,7 +7,7 @@", "@@ -9,7 +9,7 @@").replace("\n", "\r\n"),
            "git@example.org:calculator",
            overall=4.2,
        ),
        _rec("t-3", PATCH + "+# tidy\n"),  # nearly the same fix
        _rec("t-4", PATCH, commit="def456"),  # the same patch on another commit: not exact, but near
        _rec("t-5", OTHER, "https://example.org/tokens.git", title="Split drops empty tokens"),
        _rec("t-6", PATCH, "https://example.org/other.git", title="Something else entirely", commit="zzz"),
    ]
    first = dedup_groups(records)
    assert first.groups["t-2"] == "t-1" and first.exact_pairs == 1
    assert first.groups["t-3"] == first.groups["t-4"] == "t-1" and first.near_pairs >= 2
    assert first.groups["t-5"] == "t-5"
    assert first.duplicated_groups() >= 1 and first.in_groups() >= 4
    for seed in range(5):
        shuffled = records[:]
        random.Random(seed).shuffle(shuffled)
        assert dedup_groups(shuffled).groups == first.groups


def test_keep_best_keeps_the_best_scored_of_each_group():
    records = [_rec("t-1", overall=3.0), _rec("t-2", overall=4.2), _rec("t-3"), _rec("t-5", OTHER, title="Split")]
    found = dedup_groups(records)
    for r in records:
        r["dedup_group"] = found.groups[r["trace_id"]]
    assert [r["trace_id"] for r in keep_best(records)] == ["t-2", "t-5"]
