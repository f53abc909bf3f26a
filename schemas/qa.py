"""Verification vocabulary: test statuses and the verdicts of a QA run (SWE-bench semantics)."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["STATUSES", "VERDICTS", "VERDICT_MEANINGS", "TestStatus", "Verdict"]

TestStatus = Literal["passed", "failed", "error", "skipped"]
STATUSES: frozenset[str] = frozenset(get_args(TestStatus))

Verdict = Literal["verified", "partial", "not_fixed", "regression", "replay_mismatch", "error"]
VERDICTS: frozenset[str] = frozenset(get_args(Verdict))

VERDICT_MEANINGS: dict[str, str] = {
    "verified": "At least one test went from failing to passing (FAIL_TO_PASS), no test that passed before fails after, and every test passes after the edits.",
    "partial": "At least one test went from failing to passing and none broke, but some tests still fail after the edits.",
    "not_fixed": "No test went from failing to passing, and none broke: the edits fix nothing the tests can see.",
    "regression": "A test that passed before the edits fails (or is gone) after them (PASS_TO_FAIL), whatever else changed.",
    "replay_mismatch": "A recorded edit did not apply to the file, or the file's sha256 after it is not the recorded buffer_hash_after; the tests were not run.",
    "error": "A test run could not be graded: it timed out, the sandbox failed, or the command wrote no JUnit report.",
}
assert set(VERDICT_MEANINGS) == VERDICTS
