"""Verification vocabulary: test statuses and the verdicts of a QA run (SWE-bench semantics)."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["STATUSES", "VERDICTS", "VERDICT_MEANINGS", "TestStatus", "Verdict"]

TestStatus = Literal["passed", "failed", "error", "skipped"]
STATUSES: frozenset[str] = frozenset(get_args(TestStatus))

Verdict = Literal["verified", "partial", "not_fixed", "regression", "replay_mismatch", "error"]
VERDICTS: frozenset[str] = frozenset(get_args(Verdict))

VERDICT_MEANINGS: dict[str, str] = {
    "verified": "At least one test went from failing to passing (FAIL_TO_PASS), no test that passed before fails or is gone after (no PASS_TO_FAIL), and every test the session targeted passes after the edits. Tests that fail before and after outside the session's targets (FAIL_TO_FAIL, often a tool the sandbox lacks) are listed and do not block it.",
    "partial": "At least one test went from failing to passing and none broke, but a test the session targeted (its test files, the tests its test runs named or saw fail) still fails, errors or is gone after the edits.",
    "not_fixed": "Both runs ran, no test went from failing to passing, and none broke: the edits fix nothing the tests can see.",
    "regression": "A test that passed before the edits fails, errors or is gone after them (PASS_TO_FAIL), whatever else changed.",
    "replay_mismatch": "A recorded edit did not apply to the file, or the file's sha256 after it is not the recorded buffer_hash_after; the tests were not run.",
    "error": "The runs cannot be graded, and the reason says why: a timeout or sandbox failure; no report; a test command QA cannot run without a shell; the runner failed (pytest exit status 2, 3, 4 or 5); no tests ran; a test file could not be collected (in the before run, only the session's own test files may); a conftest or plugin changed test outcomes; or none of the tests the session targeted ran.",
}
assert set(VERDICT_MEANINGS) == VERDICTS
