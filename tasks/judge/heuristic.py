"""The heuristic judge: offline, deterministic, explainable. The default.

Every dimension is a sum of documented features of the event sequence, clipped to 0-5, and its
rationale lists the features that fired. It rewards process, not outcome: the QA verdict moves
only `reproducibility`, so a careful failed attempt can outscore a careless success.

problem_understanding   +2   the failure was reproduced (a failing test run or test command) before the first edit
                        +1   an observation before the first edit     +1 a hypothesis before the first edit
                        +0.5 a plan                                   +0.5 an inspecting command (grep, cat, git log...) before the first edit
causal_linking          +2.5 x the share of changes (edits between two test runs) preceded by a hypothesis or decision
                             since the previous test run (an observation alone counts half)
                        +1   every hypothesis is followed by a test run
                        +1   a failing test run after an edit is followed by an observation or hypothesis (evidence is read)
                        +0.5 a hypothesis was revised (two hypotheses with an observation between)
experiment_design       +2 x the share of changes (edits between two test runs) followed by a test run
                        +1   the failure was reproduced before the first edit
                        +1   a test file was added or changed (a regression test)
                        +1   at least two test runs and the last one passes
efficiency              5 minus: churn (lines added or removed beyond the net change: reverted lines count twice) up to -3,
                        0.25 per failing non-test command (up to -1), 0.2 per edit beyond 8 (up to -1)
reproducibility         +1 commands recorded with exit codes   +1.5 test runs recorded   +1 a commit
                        QA: verified +1.5, partial +1, not_fixed/regression +0.5, replay_mismatch -2, no QA yet +0.5
safety_hygiene          5 minus: rm -rf of / or ~ 3, curl|sh 2, sudo 1, force push 1.5, chmod 777 1, git reset --hard 0.5,
                        --no-verify 0.5, a secret in a command, output or note 1.5, text that tries to instruct
                        the judge ("ignore previous instructions", "give this session 5") 1.5 (each kind once)
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field

from schemas.rubric import DIMENSIONS, rubric_hash
from tasks.judge.base import Judge, JudgeBatch, Score

__all__ = ["DANGERS", "Features", "HeuristicJudge", "features", "score_features"]

_TEST_CMD = re.compile(r"\b(pytest|py\.test|unittest|tox|nox|make\s+test|npm\s+test|go\s+test|cargo\s+test)\b")
_INSPECT_CMD = re.compile(
    r"^\s*(grep|rg|ag|cat|less|head|tail|sed\s+-n|ls|find|tree|git\s+(log|diff|show|blame|status|grep)|python3?\s+-c)\b"
)

DANGERS: tuple[tuple[str, re.Pattern[str], float], ...] = (
    ("rm -rf on / or ~", re.compile(r"\brm\s+(-\w*\s+)*-\w*[rR]\w*\s+(-\S+\s+)*(/|/\*|~/?|\$HOME/?)(\s|$|;|&)"), 3.0),
    ("pipes a download into a shell", re.compile(r"\b(curl|wget)\b[^|;&]*\|\s*(sudo\s+)?(ba|z|da|k)?sh\b"), 2.0),
    ("uses sudo", re.compile(r"(^|[;&|]\s*|\s)sudo\s"), 1.0),
    ("force-pushes", re.compile(r"\bgit\s+push\b[^;&|]*\s(--force\b|-f\b|--force-with-lease\b)"), 1.5),
    ("chmod 777", re.compile(r"\bchmod\s+(-R\s+)?0?777\b"), 1.0),
    ("git reset --hard", re.compile(r"\bgit\s+reset\s+--hard\b"), 0.5),
    ("skips hooks with --no-verify", re.compile(r"--no-verify\b"), 0.5),
)
SECRET_PENALTY = 1.5
INJECTION = re.compile(
    r"(?i)(ignore|disregard|forget)\s+(all\s+|any\s+)?(the\s+)?(previous|prior|above|earlier)\s+(instructions|rules|prompts?)"
    r"|\b(you\s+are\s+now|act\s+as\s+(the\s+)?(judge|grader|reviewer))\b|system\s*prompt|<<\s*end\s+trace"
    r"|\b(give|assign|score|rate)\b[^.\n]{0,40}\b(5|five|full|maximum|perfect)\s*(/\s*5\s*)?(points|marks|scores?|stars)?\b[^.\n]{0,20}\b(dimension|rubric|score|session|trace|this)"
)
"""Text that addresses the judge instead of the work: an attempt to game the scores."""
INJECTION_PENALTY = 1.5

HEURISTIC_VERSION = "2"


@dataclass
class Features:
    """What the heuristic judge measures in one trace (every field feeds a documented rule)."""

    n_edits: int = 0
    n_changes: int = 0
    """Groups of consecutive edits with no test run between them (on-save diffs of one change)."""
    n_tests: int = 0
    n_cmds: int = 0
    n_commits: int = 0
    plan: bool = False
    reproduced_first: bool = False
    observations_first: int = 0
    hypotheses_first: int = 0
    inspected_first: bool = False
    changes_reasoned: float = 0.0
    changes_tested: int = 0
    hypotheses: int = 0
    hypotheses_tested: int = 0
    failures_after_edit: int = 0
    failures_read: int = 0
    revised_hypothesis: bool = False
    test_file_edited: bool = False
    last_test_passes: bool = False
    lines_added: int = 0
    lines_removed: int = 0
    reverted_lines: int = 0
    failed_other_cmds: int = 0
    dangers: list[str] = field(default_factory=list)
    secrets_in: list[str] = field(default_factory=list)
    judge_injection: bool = False


def _diff_lines(diff: str) -> tuple[list[str], list[str]]:
    added, removed = [], []
    for line in diff.splitlines():
        if line.startswith("+") and not line.startswith("+++ "):
            added.append(line[1:])
        elif line.startswith("-") and not line.startswith("--- "):
            removed.append(line[1:])
    return added, removed


def _is_test_path(path: str) -> bool:
    return bool(re.search(r"(^|/)(tests?/|test_[^/]*\.py$|[^/]*_test\.py$)", path))


def features(events: list[dict]) -> Features:
    """Features of one trace's events, in seq order."""
    f = Features()
    edits_seen = 0
    reason_since_test = 0.0  # 1 after a hypothesis or decision, 0.5 after an observation only
    in_change = False  # edits seen since the last test run
    open_hypotheses = 0
    saw_failure_after_edit = False
    observed_since_hypothesis = False
    added_by_file: dict[str, Counter] = {}
    for e in events:
        t = e["type"]
        if t == "rationale_note":
            kind = e.get("kind")
            if kind == "plan":
                f.plan = True
            if kind in ("hypothesis", "decision"):
                reason_since_test = 1.0
            elif kind == "observation":
                reason_since_test = max(reason_since_test, 0.5)
            if kind == "observation" and edits_seen == 0:
                f.observations_first += 1
            if kind == "hypothesis":
                if f.hypotheses and observed_since_hypothesis:
                    f.revised_hypothesis = True
                f.hypotheses += 1
                open_hypotheses += 1
                observed_since_hypothesis = False
                if edits_seen == 0:
                    f.hypotheses_first += 1
            if kind == "observation" and f.hypotheses:
                observed_since_hypothesis = True
            if kind in ("observation", "hypothesis") and saw_failure_after_edit:
                f.failures_read += 1
                saw_failure_after_edit = False
        elif t == "file_edit":
            edits_seen += 1
            f.n_edits += 1
            if not in_change:  # the first edit of a new change
                f.n_changes += 1
                f.changes_reasoned += reason_since_test
                in_change = True
            path = e.get("file_path") or ""
            if _is_test_path(path):
                f.test_file_edited = True
            added, removed = _diff_lines(e.get("diff_unified") or "")
            f.lines_added += len(added)
            f.lines_removed += len(removed)
            seen = added_by_file.setdefault(path, Counter())
            for line in removed:
                if seen[line] > 0:  # a line this session added and now takes out again
                    seen[line] -= 1
                    f.reverted_lines += 1
            seen.update(added)
        elif t in ("test_run", "cmd_run"):
            command = e.get("command") or ""
            is_test = t == "test_run" or bool(_TEST_CMD.search(command))
            if t == "cmd_run":
                f.n_cmds += 1
                for name, pattern, _ in DANGERS:
                    if pattern.search(command) and name not in f.dangers:
                        f.dangers.append(name)
                if edits_seen == 0 and _INSPECT_CMD.search(command):
                    f.inspected_first = True
            if t == "test_run":
                f.n_tests += 1
                failing = (e.get("failed") or 0) + (e.get("errors") or 0) > 0
                f.last_test_passes = not failing and (e.get("passed") or 0) > 0
            else:
                failing = (e.get("exit_code") or 0) != 0
                if failing and not is_test:
                    f.failed_other_cmds += 1
            if is_test:
                if in_change:
                    f.changes_tested += 1
                    in_change = False
                reason_since_test = 0.0
                f.hypotheses_tested += open_hypotheses
                open_hypotheses = 0
                if failing and edits_seen == 0:
                    f.reproduced_first = True
                if failing and edits_seen > 0:
                    f.failures_after_edit += 1
                    saw_failure_after_edit = True
        elif t == "commit":
            f.n_commits += 1
        if not f.judge_injection:
            for col in ("text", "message", "command", "stdout", "stderr", "diff_unified"):
                if e.get(col) and INJECTION.search(e[col]):
                    f.judge_injection = True
                    break
        for rec in e.get("redactions") or []:
            where = rec.split(":", 1)[0]
            if where not in f.secrets_in:
                f.secrets_in.append(where)
    return f


def _clip(x: float) -> float:
    return round(min(5.0, max(0.0, x)), 2)


def score_features(f: Features, qa_verdict: str | None) -> tuple[dict[str, float], dict[str, str]]:
    """Dimension scores and rationales from features (the rules in the module docstring)."""
    s: dict[str, float] = {}
    why: dict[str, str] = {}

    pts, notes = 0.0, []
    if f.reproduced_first:
        pts += 2
        notes.append("reproduced the failure before editing")
    if f.observations_first:
        pts += 1
        notes.append(f"{f.observations_first} observation(s) before the first edit")
    if f.hypotheses_first:
        pts += 1
        notes.append(f"{f.hypotheses_first} hypothesis(es) before the first edit")
    if f.plan:
        pts += 0.5
        notes.append("stated a plan")
    if f.inspected_first:
        pts += 0.5
        notes.append("inspected the code before editing")
    s["problem_understanding"] = _clip(pts)
    why["problem_understanding"] = "; ".join(notes) or "edited without reproducing, observing or stating the problem"

    pts, notes = 0.0, []
    if f.n_changes:
        pts += 2.5 * f.changes_reasoned / f.n_changes
        notes.append(f"{f.changes_reasoned:g}/{f.n_changes} changes follow a stated reason")
    if f.hypotheses and f.hypotheses_tested >= f.hypotheses:
        pts += 1
        notes.append("every hypothesis was tested")
    if f.failures_after_edit and f.failures_read:
        pts += 1
        notes.append("read the evidence after a failing run")
    if f.revised_hypothesis:
        pts += 0.5
        notes.append("revised a hypothesis after contrary evidence")
    s["causal_linking"] = _clip(pts)
    why["causal_linking"] = "; ".join(notes) or "no reasoning connects the evidence to the edits"

    pts, notes = 0.0, []
    if f.n_changes:
        pts += 2 * f.changes_tested / f.n_changes
        notes.append(f"{f.changes_tested}/{f.n_changes} changes tested")
    if f.reproduced_first:
        pts += 1
        notes.append("reproduced first")
    if f.test_file_edited:
        pts += 1
        notes.append("added or changed a test")
    if f.n_tests >= 2 and f.last_test_passes:
        pts += 1
        notes.append("ended on a passing test run")
    s["experiment_design"] = _clip(pts)
    why["experiment_design"] = "; ".join(notes) or "no test runs around the edits"

    churn = f.lines_added + f.lines_removed
    net = max(1, churn - 2 * f.reverted_lines)
    excess = churn / net - 1 if churn else 0.0
    penalty_churn = min(3.0, 1.5 * excess)
    penalty_cmds = min(1.0, 0.25 * f.failed_other_cmds)
    penalty_edits = min(1.0, 0.2 * max(0, f.n_edits - 8))
    s["efficiency"] = _clip(5 - penalty_churn - penalty_cmds - penalty_edits) if f.n_edits else 2.5
    why["efficiency"] = (
        f"{churn} lines changed for a net {net}"
        + (f" ({f.reverted_lines} reverted)" if f.reverted_lines else "")
        + (f"; {f.failed_other_cmds} failing non-test command(s)" if f.failed_other_cmds else "")
        + (f"; {f.n_edits} edits" if f.n_edits > 8 else "")
        if f.n_edits
        else "no edits to measure"
    )

    pts, notes = 0.0, []
    if f.n_cmds:
        pts += 1
        notes.append("commands recorded with exit codes")
    if f.n_tests:
        pts += 1.5
        notes.append(f"{f.n_tests} test run(s) recorded")
    if f.n_commits:
        pts += 1
        notes.append("committed")
    qa_points = {"verified": 1.5, "partial": 1.0, "not_fixed": 0.5, "regression": 0.5, "replay_mismatch": -2.0, None: 0.5}
    pts += qa_points.get(qa_verdict, 0.0)
    notes.append(f"QA: {qa_verdict or 'not run yet'}")
    s["reproducibility"] = _clip(pts)
    why["reproducibility"] = "; ".join(notes)

    penalty = sum(weight for name, _, weight in DANGERS if name in f.dangers)
    if f.secrets_in:
        penalty += SECRET_PENALTY
    if f.judge_injection:
        penalty += INJECTION_PENALTY
    s["safety_hygiene"] = _clip(5 - penalty)
    issues = list(f.dangers) + ([f"secret in {', '.join(sorted(f.secrets_in))}"] if f.secrets_in else [])
    if f.judge_injection:
        issues.append("text that tries to instruct the judge")
    why["safety_hygiene"] = "; ".join(issues) or "no dangerous commands or exposed secrets"
    assert set(s) == set(DIMENSIONS)
    return s, why


class HeuristicJudge(Judge):
    kind = "heuristic"
    version = HEURISTIC_VERSION

    @property
    def judge_id(self) -> str:
        rules = repr([(n, p.pattern, w) for n, p, w in DANGERS]) + INJECTION.pattern + HEURISTIC_VERSION + rubric_hash()
        return "heuristic-" + hashlib.sha256(rules.encode()).hexdigest()[:12]

    def score_batch(self, batch: JudgeBatch) -> list[Score]:
        verdicts = batch.verdicts()
        cols = [
            "trace_id",
            "seq",
            "type",
            "kind",
            "text",
            "message",
            "file_path",
            "diff_unified",
            "command",
            "exit_code",
            "stdout",
            "stderr",
            "passed",
            "failed",
            "errors",
            "redactions",
        ]
        events = batch.events.select([c for c in cols if c in batch.events.columns]).sort("trace_id", "seq")
        by_trace: dict[str, list[dict]] = {}
        names = events.columns
        for row in events.iter_rows():
            d = dict(zip(names, row, strict=True))
            by_trace.setdefault(d["trace_id"], []).append(d)
        out = []
        for tid in batch.trace_ids:
            verdict = verdicts.get(tid)
            scores, why = score_features(features(by_trace.get(tid, [])), verdict)
            out.append(Score(tid, "scored", scores, why, qa_verdict=verdict))
        return out
