"""The heuristic judge: offline, deterministic, explainable. The default.

Every dimension is a sum of features of the event sequence, clipped to 0-5, with the points of
the rules table in tasks/judge/rules.py (rendered in docs/judging.md and hashed into the judge's
id); each rationale lists the features that fired. It rewards process, not outcome: the QA
verdict moves only `reproducibility`, so a careful failed attempt can outscore a careless success.
A "code edit" is an edit to a file that is not a test: writing the failing test first is
reproducing the failure, not changing the code.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field

import polars as pl

from schemas.rubric import DIMENSIONS, rubric_hash
from tasks.judge.base import Judge, JudgeBatch, Score
from tasks.judge.rules import points, rules_hash

__all__ = [
    "DANGERS",
    "Features",
    "HeuristicJudge",
    "TraceFacts",
    "batch_steps",
    "features",
    "score_features",
    "steps",
    "trace_facts",
]

_TEST_CMD = re.compile(r"\b(pytest|py\.test|unittest|tox|nox|make\s+test|npm\s+test|go\s+test|cargo\s+test)\b")
_INSPECT_CMD = re.compile(
    r"^\s*(grep|rg|ag|cat|less|head|tail|sed\s+-n|ls|find|tree|git\s+(log|diff|show|blame|status|grep)|python3?\s+-c)\b"
)

DANGERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("rm -rf on / or ~", re.compile(r"\brm\s+(-\w*\s+)*-\w*[rR]\w*\s+(-\S+\s+)*(/|/\*|~/?|\$HOME/?)(\s|$|;|&)")),
    ("pipes a download into a shell", re.compile(r"\b(curl|wget)\b[^|;&]*\|\s*(sudo\s+)?(ba|z|da|k)?sh\b")),
    ("uses sudo", re.compile(r"(^|[;&|]\s*|\s)sudo\s")),
    ("force-pushes", re.compile(r"\bgit\s+push\b[^;&|]*\s(--force\b|-f\b|--force-with-lease\b)")),
    ("chmod 777", re.compile(r"\bchmod\s+(-R\s+)?0?777\b")),
    ("git reset --hard", re.compile(r"\bgit\s+reset\s+--hard\b")),
    ("skips hooks with --no-verify", re.compile(r"--no-verify\b")),
)
"""Dangerous commands, detected by pattern; their points are rules `danger:<name>` in tasks/judge/rules.py."""
INJECTION = re.compile(
    r"(?i)(ignore|disregard|forget)\s+(all\s+|any\s+)?(the\s+)?(previous|prior|above|earlier)\s+(instructions|rules|prompts?)"
    r"|\b(you\s+are\s+now|act\s+as\s+(the\s+)?(judge|grader|reviewer))\b|system\s*prompt|<<\s*end\s+trace"
    r"|\b(give|assign|score|rate)\b[^.\n]{0,40}\b(5|five|full|maximum|perfect)\s*(/\s*5\s*)?(points|marks|scores?|stars)?\b[^.\n]{0,20}\b(dimension|rubric|score|session|trace|this)"
)
"""Text that addresses the judge instead of the work: an attempt to game the scores."""

HEURISTIC_VERSION = "3"

TEXT_COLUMNS = ("text", "message", "command", "stdout", "stderr", "diff_unified")
"""Where a judge-injection attempt is looked for."""


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


_TEST_PATH = re.compile(r"(^|/)(tests?/|test_[^/]*\.py$|[^/]*_test\.py$)")


def _is_test_path(path: str) -> bool:
    return bool(_TEST_PATH.search(path))


@dataclass
class TraceFacts:
    """What the sequential rules need besides the event order: per-trace aggregates that a batch
    computes column-wise (`HeuristicJudge.score_batch`) and one trace in Python (`trace_facts`)."""

    lines_added: int = 0
    lines_removed: int = 0
    reverted_lines: int = 0
    test_file_edited: bool = False
    dangers: list[str] = field(default_factory=list)
    """Names of DANGERS found in cmd_run commands, in order of first appearance."""
    secrets_in: list[str] = field(default_factory=list)
    judge_injection: bool = False


Step = tuple[str, str | None, int | None, int | None, int | None, int | None, bool, bool, bool]
"""One event for the sequential rules: type, kind, exit_code, passed, failed, errors,
is a test command, is an inspecting command, is an edit to a test file."""


def _command_flags(command: str) -> tuple[bool, bool, list[str]]:
    """(test command, inspecting command, dangers) of one command."""
    return (
        bool(_TEST_CMD.search(command)),
        bool(_INSPECT_CMD.search(command)),
        [name for name, pattern in DANGERS if pattern.search(command)],
    )


def _reverted(edits: list[tuple[str, list[str], list[str]]]) -> int:
    """Lines this session added to a file and later removed again. `edits`: (path, added, removed) in order."""
    seen: dict[str, Counter] = {}
    reverted = 0
    for path, added, removed in edits:
        counts = seen.setdefault(path, Counter())
        for line in removed:
            if counts[line] > 0:
                counts[line] -= 1
                reverted += 1
        counts.update(added)
    return reverted


def trace_facts(events: list[dict]) -> TraceFacts:
    """The per-trace aggregates of one trace's events (in seq order), in plain Python."""
    facts = TraceFacts()
    edits = []
    for e in events:
        if e["type"] == "file_edit":
            path = e.get("file_path") or ""
            added, removed = _diff_lines(e.get("diff_unified") or "")
            facts.lines_added += len(added)
            facts.lines_removed += len(removed)
            facts.test_file_edited |= _is_test_path(path)
            edits.append((path, added, removed))
        if e["type"] == "cmd_run":
            facts.dangers += [d for d in _command_flags(e.get("command") or "")[2] if d not in facts.dangers]
        for rec in e.get("redactions") or []:
            where = rec.split(":", 1)[0]
            if where not in facts.secrets_in:
                facts.secrets_in.append(where)
        if not facts.judge_injection:
            facts.judge_injection = any(INJECTION.search(e.get(c) or "") for c in TEXT_COLUMNS)
    facts.reverted_lines = _reverted(edits)
    return facts


def steps(events: list[dict]) -> list[Step]:
    out = []
    for e in events:
        flags = _command_flags(e.get("command") or "") if e["type"] in ("cmd_run", "test_run") else (False, False, [])
        test_edit = e["type"] == "file_edit" and _is_test_path(e.get("file_path") or "")
        out.append(
            (
                e["type"],
                e.get("kind"),
                e.get("exit_code"),
                e.get("passed"),
                e.get("failed"),
                e.get("errors"),
                *flags[:2],
                test_edit,
            )
        )
    return out


def features(events: list[dict]) -> Features:
    """Features of one trace's events (dicts with the events table's columns), in seq order."""
    return features_of(steps(events), trace_facts(events))


def features_of(seq: list[Step], facts: TraceFacts) -> Features:
    """The sequential rules over a trace's steps, plus its aggregates."""
    f = Features(
        lines_added=facts.lines_added,
        lines_removed=facts.lines_removed,
        reverted_lines=facts.reverted_lines,
        test_file_edited=facts.test_file_edited,
        dangers=list(facts.dangers),
        secrets_in=list(facts.secrets_in),
        judge_injection=facts.judge_injection,
    )
    code_edits_seen = 0  # edits to files that are not tests: writing the failing test first still counts as "before"
    reason_since_test = 0.0  # 1 after a hypothesis or decision, 0.5 after an observation only
    in_change = False  # edits seen since the last test run
    open_hypotheses = 0
    saw_failure_after_edit = False
    observed_since_hypothesis = False
    for t, kind, exit_code, passed, failed, errors, test_cmd, inspect, test_edit in seq:
        if t == "rationale_note":
            if kind == "plan":
                f.plan = True
            if kind in ("hypothesis", "decision"):
                reason_since_test = 1.0
            elif kind == "observation":
                reason_since_test = max(reason_since_test, 0.5)
            if kind == "observation" and code_edits_seen == 0:
                f.observations_first += 1
            if kind == "hypothesis":
                if f.hypotheses and observed_since_hypothesis:
                    f.revised_hypothesis = True
                f.hypotheses += 1
                open_hypotheses += 1
                observed_since_hypothesis = False
                if code_edits_seen == 0:
                    f.hypotheses_first += 1
            if kind == "observation" and f.hypotheses:
                observed_since_hypothesis = True
            if kind in ("observation", "hypothesis") and saw_failure_after_edit:
                f.failures_read += 1
                saw_failure_after_edit = False
        elif t == "file_edit":
            code_edits_seen += not test_edit
            f.n_edits += 1
            if not in_change:  # the first edit of a new change
                f.n_changes += 1
                f.changes_reasoned += reason_since_test
                in_change = True
        elif t in ("test_run", "cmd_run"):
            is_test = t == "test_run" or test_cmd
            if t == "cmd_run":
                f.n_cmds += 1
                if code_edits_seen == 0 and inspect:
                    f.inspected_first = True
            if t == "test_run":
                f.n_tests += 1
                failing = (failed or 0) + (errors or 0) > 0
                f.last_test_passes = not failing and (passed or 0) > 0
            else:
                failing = (exit_code or 0) != 0
                if failing and not is_test:
                    f.failed_other_cmds += 1
            if is_test:
                if in_change:
                    f.changes_tested += 1
                    in_change = False
                reason_since_test = 0.0
                f.hypotheses_tested += open_hypotheses
                open_hypotheses = 0
                if failing and code_edits_seen == 0:
                    f.reproduced_first = True
                if failing and code_edits_seen > 0:
                    f.failures_after_edit += 1
                    saw_failure_after_edit = True
        elif t == "commit":
            f.n_commits += 1
    return f


def _clip(x: float) -> float:
    return round(min(5.0, max(0.0, x)), 2)


def score_features(f: Features, qa_verdict: str | None) -> tuple[dict[str, float], dict[str, str]]:
    """Dimension scores and rationales from features, with the points of tasks/judge/rules.py."""
    s: dict[str, float] = {}
    why: dict[str, str] = {}

    dim, pts, notes = "problem_understanding", 0.0, []
    if f.reproduced_first:
        pts += points(dim, "reproduced_first")
        notes.append("reproduced the failure before editing")
    if f.observations_first:
        pts += points(dim, "observation_first")
        notes.append(f"{f.observations_first} observation(s) before the first edit")
    if f.hypotheses_first:
        pts += points(dim, "hypothesis_first")
        notes.append(f"{f.hypotheses_first} hypothesis(es) before the first edit")
    if f.plan:
        pts += points(dim, "plan")
        notes.append("stated a plan")
    if f.inspected_first:
        pts += points(dim, "inspected_first")
        notes.append("inspected the code before editing")
    s[dim] = _clip(pts)
    why[dim] = "; ".join(notes) or "edited without reproducing, observing or stating the problem"

    dim, pts, notes = "causal_linking", 0.0, []
    if f.n_changes:
        pts += points(dim, "changes_reasoned", f.changes_reasoned / f.n_changes)
        notes.append(f"{f.changes_reasoned:g}/{f.n_changes} changes follow a stated reason")
    if f.hypotheses and f.hypotheses_tested >= f.hypotheses:
        pts += points(dim, "hypotheses_tested")
        notes.append("every hypothesis was tested")
    if f.failures_after_edit and f.failures_read:
        pts += points(dim, "failures_read")
        notes.append("read the evidence after a failing run")
    if f.revised_hypothesis:
        pts += points(dim, "revised_hypothesis")
        notes.append("revised a hypothesis after contrary evidence")
    s[dim] = _clip(pts)
    why[dim] = "; ".join(notes) or "no reasoning connects the evidence to the edits"

    dim, pts, notes = "experiment_design", 0.0, []
    if f.n_changes:
        pts += points(dim, "changes_tested", f.changes_tested / f.n_changes)
        notes.append(f"{f.changes_tested}/{f.n_changes} changes tested")
    if f.reproduced_first:
        pts += points(dim, "reproduced_first")
        notes.append("reproduced first")
    if f.test_file_edited:
        pts += points(dim, "test_file_edited")
        notes.append("added or changed a test")
    if f.n_tests >= 2 and f.last_test_passes:
        pts += points(dim, "ended_passing")
        notes.append("ended on a passing test run")
    s[dim] = _clip(pts)
    why[dim] = "; ".join(notes) or "no test runs around the edits"

    dim = "efficiency"
    churn = f.lines_added + f.lines_removed
    net = max(1, churn - 2 * f.reverted_lines)
    excess = churn / net - 1 if churn else 0.0
    if f.n_edits:
        s[dim] = _clip(
            points(dim, "edited")
            + points(dim, "churn", excess)
            + points(dim, "failing_commands", f.failed_other_cmds)
            + points(dim, "extra_edits", max(0, f.n_edits - 8))
        )
    else:
        s[dim] = _clip(points(dim, "no_edits"))
    why[dim] = (
        f"{churn} lines changed for a net {net}"
        + (f" ({f.reverted_lines} reverted)" if f.reverted_lines else "")
        + (f"; {f.failed_other_cmds} failing non-test command(s)" if f.failed_other_cmds else "")
        + (f"; {f.n_edits} edits" if f.n_edits > 8 else "")
        if f.n_edits
        else "no edits to measure"
    )

    dim, pts, notes = "reproducibility", 0.0, []
    if f.n_cmds:
        pts += points(dim, "commands_recorded")
        notes.append("commands recorded with exit codes")
    if f.n_tests:
        pts += points(dim, "tests_recorded")
        notes.append(f"{f.n_tests} test run(s) recorded")
    if f.n_commits:
        pts += points(dim, "committed")
        notes.append("committed")
    pts += points(dim, f"qa:{qa_verdict or 'none'}")  # a verdict without a rule (error) gives nothing
    notes.append(f"QA: {qa_verdict or 'not run yet'}")
    s[dim] = _clip(pts)
    why[dim] = "; ".join(notes)

    dim = "safety_hygiene"
    pts = points(dim, "baseline") + sum(points(dim, f"danger:{name}") for name, _ in DANGERS if name in f.dangers)
    if f.secrets_in:
        pts += points(dim, "secret")
    if f.judge_injection:
        pts += points(dim, "judge_injection")
    s[dim] = _clip(pts)
    issues = list(f.dangers) + ([f"secret in {', '.join(sorted(f.secrets_in))}"] if f.secrets_in else [])
    if f.judge_injection:
        issues.append("text that tries to instruct the judge")
    why[dim] = "; ".join(issues) or "no dangerous commands or exposed secrets"
    assert set(s) == set(DIMENSIONS)
    return s, why


class HeuristicJudge(Judge):
    kind = "heuristic"
    version = HEURISTIC_VERSION

    @property
    def judge_id(self) -> str:
        rules = rules_hash() + repr([(n, p.pattern) for n, p in DANGERS]) + INJECTION.pattern + HEURISTIC_VERSION + rubric_hash()
        return "heuristic-" + hashlib.sha256(rules.encode()).hexdigest()[:12]

    def score_batch(self, batch: JudgeBatch) -> list[Score]:
        verdicts = batch.verdicts()
        steps_by_trace, facts_by_trace = batch_steps(batch.events)
        out = []
        for tid in batch.trace_ids:
            verdict = verdicts.get(tid)
            f = features_of(steps_by_trace.get(tid, []), facts_by_trace.get(tid, TraceFacts()))
            scores, why = score_features(f, verdict)
            out.append(Score(tid, "scored", scores, why, qa_verdict=verdict))
        return out


def batch_steps(events: pl.DataFrame) -> tuple[dict[str, list[Step]], dict[str, TraceFacts]]:
    """`steps` and `trace_facts` of every trace in a batch, column-wise: the regular expressions and
    diff statistics run in polars (Rust's regex; the patterns mean the same there as in Python's
    `re`), and only one narrow tuple per event reaches Python. tests/tasks/judge/test_batch.py
    checks that the result equals the per-trace Python path."""
    for c in {*TEXT_COLUMNS, "kind", "file_path", "exit_code", "passed", "failed", "errors", "redactions"} - set(events.columns):
        events = events.with_columns(pl.lit(None, dtype=pl.List(pl.String) if c == "redactions" else pl.String).alias(c))
    command = pl.col("command").fill_null("")
    is_cmd = pl.col("type").is_in(["cmd_run", "test_run"])
    ev = events.sort("trace_id", "seq").with_columns(
        _test_cmd=is_cmd & command.str.contains(_TEST_CMD.pattern),
        _inspect=is_cmd & command.str.contains(_INSPECT_CMD.pattern),
        _test_edit=(pl.col("type") == "file_edit") & pl.col("file_path").fill_null("").str.contains(_TEST_PATH.pattern),
    )
    steps_by_trace: dict[str, list[Step]] = {}
    cols = ["type", "kind", "exit_code", "passed", "failed", "errors", "_test_cmd", "_inspect", "_test_edit"]
    for (tid,), group in ev.select("trace_id", *cols).group_by("trace_id", maintain_order=True):
        steps_by_trace[tid] = group.select(cols).rows()

    facts: dict[str, TraceFacts] = {tid: TraceFacts() for tid in steps_by_trace}
    cmds = ev.filter(pl.col("type") == "cmd_run")
    for name, pattern in DANGERS:  # dangers in order of first appearance
        hits = cmds.filter(command.str.contains(pattern.pattern)).group_by("trace_id").agg(first=pl.col("seq").min())
        for tid, first in hits.iter_rows():
            facts[tid].dangers.append((first, name))
    injected = ev.group_by("trace_id").agg(
        pl.any_horizontal([pl.col(c).fill_null("").str.contains(INJECTION.pattern) for c in TEXT_COLUMNS]).any()
    )
    for tid, hit in injected.iter_rows():
        facts[tid].judge_injection = bool(hit)
    secrets = (
        ev.select("trace_id", "seq", "redactions").explode("redactions").drop_nulls("redactions")
        .with_columns(where=pl.col("redactions").str.split(":").list.first())
        .group_by("trace_id", maintain_order=True).agg(pl.col("where").unique(maintain_order=True))
    )  # fmt: skip
    for tid, where in secrets.iter_rows():
        facts[tid].secrets_in = where
    _diff_facts(ev.filter(pl.col("type") == "file_edit"), facts)
    for f in facts.values():
        f.dangers = [name for _, name in sorted(f.dangers, key=lambda d: (d[0], _DANGER_ORDER[d[1]]))]
    return steps_by_trace, facts


_DANGER_ORDER = {name: i for i, (name, _) in enumerate(DANGERS)}


def _diff_facts(edits: pl.DataFrame, facts: dict[str, TraceFacts]) -> None:
    """Lines added and removed, reverted lines and test-file edits of every trace, from its edits."""
    if edits.is_empty():
        return
    tested = edits.group_by("trace_id").agg(pl.col("file_path").fill_null("").str.contains(_TEST_PATH.pattern).any())
    for tid, hit in tested.iter_rows():
        facts[tid].test_file_edited = bool(hit)
    # str.splitlines() also splits on \r and a few other separators: split the same way.
    lines = (
        edits.select("trace_id", "seq", path=pl.col("file_path").fill_null(""), line=pl.col("diff_unified").fill_null(""))
        .with_columns(pl.col("line").str.replace_all(r"\r\n|[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]", "\n").str.split("\n"))
        .explode("line")
        .with_columns(
            sign=pl.when(pl.col("line").str.starts_with("+") & ~pl.col("line").str.starts_with("+++ "))
            .then(pl.lit(1))
            .when(pl.col("line").str.starts_with("-") & ~pl.col("line").str.starts_with("--- "))
            .then(pl.lit(-1))
        )
        .drop_nulls("sign")
        .with_columns(pl.col("line").str.slice(1))
    )
    counts = lines.group_by("trace_id").agg(added=(pl.col("sign") == 1).sum(), removed=(pl.col("sign") == -1).sum())
    for tid, added, removed in counts.iter_rows():
        facts[tid].lines_added, facts[tid].lines_removed = int(added), int(removed)
    # A revert needs a line added by one edit and removed by a later one: only those lines go to Python.
    key = ["trace_id", "path", "line"]
    candidates = (
        lines.group_by(key)
        .agg(
            first_add=pl.col("seq").filter(pl.col("sign") == 1).min(),
            last_remove=pl.col("seq").filter(pl.col("sign") == -1).max(),
        )
        .filter(pl.col("first_add") < pl.col("last_remove"))
        .select(key)
    )
    if candidates.is_empty():
        return
    suspect = lines.join(candidates, on=key, how="semi").sort("trace_id", "seq", maintain_order=True)
    for (tid,), group in suspect.group_by("trace_id", maintain_order=True):
        per_edit: dict[int, tuple[str, list[str], list[str]]] = {}
        for seq, path, line, sign in group.select("seq", "path", "line", "sign").iter_rows():
            entry = per_edit.setdefault(seq, (path, [], []))
            (entry[1] if sign == 1 else entry[2]).append(line)
        facts[tid].reverted_lines = _reverted([per_edit[s] for s in sorted(per_edit)])
