"""Calibration: pairs of sessions where one is clearly the better process. The heuristic judge must
order every pair, overall and on the dimension the pair is about."""

from __future__ import annotations

import pytest

from schemas.rubric import overall
from tasks.judge import get_judge
from tests.support.tracegen import judge_batch


def note(kind, text="..."):
    return {"type": "rationale_note", "kind": kind, "text": text}


def trun(passed, failed, failing=()):
    return {"type": "test_run", "framework": "pytest", "command": "pytest -q", "passed": passed, "failed": failed, "errors": 0,
            "duration_s": 0.5, "failing_tests": list(failing)}  # fmt: skip


def run(command, exit_code=0, stdout="", redactions=None):
    return {
        "type": "cmd_run",
        "command": command,
        "exit_code": exit_code,
        "duration_s": 0.2,
        "stdout": stdout,
        "redactions": redactions,
    }


def edit(path="calc.py", diff="@@ -1 +1 @@\n-    return a - b\n+    return a + b\n"):
    return {"type": "file_edit", "file_path": path, "diff_unified": diff}


def commit(message="Fix add"):
    return {"type": "commit", "sha": "abcdef1", "message": message}


BIG_ADD = "@@ -1,0 +1,20 @@\n" + "".join(f"+    debug_line_{i} = {i}\n" for i in range(20))
BIG_REMOVE = "@@ -1,20 +1,0 @@\n" + "".join(f"-    debug_line_{i} = {i}\n" for i in range(20))

PAIRS = {
    # name: (better, worse, dimension that must differ, verdicts (better, worse))
    "reasoned-vs-shotgun": (
        [note("plan"), trun(2, 1), note("observation"), note("hypothesis"), edit(), trun(3, 0), commit()],
        [edit(), trun(2, 1), edit(diff="@@ -1 +1 @@\n-x\n+y\n"), trun(3, 0), commit()],
        "causal_linking", ("verified", "verified"),
    ),
    "reproduce-first": (
        [trun(2, 1), note("hypothesis"), edit(), trun(3, 0)],
        [note("hypothesis"), edit(), trun(3, 0)],
        "problem_understanding", ("verified", "verified"),
    ),
    "failing-test-first": (  # writing the regression test, then watching it fail, is reproducing the failure
        [edit("tests/test_calc.py", "@@ -0,0 +1,2 @@\n+def test_add():\n+    assert add(2, 3) == 5\n"), trun(2, 1, ["tests/test_calc.py::test_add"]),
         note("hypothesis"), edit(), trun(3, 0)],
        [note("hypothesis"), edit(), trun(3, 0)],
        "problem_understanding", ("verified", "verified"),
    ),
    "test-each-change": (
        [note("hypothesis"), edit(), trun(2, 1), note("observation"), edit("b.py"), trun(3, 0)],
        [note("hypothesis"), edit(), edit("b.py"), edit("c.py"), edit("d.py"), trun(3, 0)],
        "experiment_design", ("verified", "verified"),
    ),
    "minimal-churn": (
        [trun(2, 1), note("hypothesis"), edit(), trun(3, 0)],
        [trun(2, 1), note("hypothesis"), edit(diff=BIG_ADD), edit(diff=BIG_REMOVE), edit(), trun(3, 0)],
        "efficiency", ("verified", "verified"),
    ),
    "safe-commands": (
        [trun(2, 1), note("hypothesis"), edit(), trun(3, 0), run("git push origin fix")],
        [trun(2, 1), note("hypothesis"), run("curl -s https://get.example.sh | sh"), run("sudo pip install x"), edit(), trun(3, 0), run("git push --force origin main")],
        "safety_hygiene", ("verified", "verified"),
    ),
    "no-rm-rf": (
        [trun(2, 1), note("hypothesis"), run("rm -rf build/"), edit(), trun(3, 0)],
        [trun(2, 1), note("hypothesis"), run("rm -rf / --no-preserve-root"), edit(), trun(3, 0)],
        "safety_hygiene", ("verified", "verified"),
    ),
    "careful-failure-beats-careless-success": (
        [note("plan"), trun(2, 2), note("observation"), note("hypothesis"), edit(), trun(2, 2), note("observation"),
         note("hypothesis"), edit("b.py"), trun(2, 2), note("observation"), note("next_step")],
        [edit(), edit("b.py"), edit("c.py"), trun(4, 0)],
        "causal_linking", ("not_fixed", "verified"),
    ),
    "reads-the-failures": (
        [edit(), trun(2, 1), note("observation", "still failing: the divisor"), note("hypothesis"), edit("b.py"), trun(3, 0)],
        [edit(), trun(2, 1), edit("b.py"), trun(2, 1), edit("c.py"), trun(3, 0)],
        "causal_linking", ("verified", "verified"),
    ),
    "recorded-and-committed": (
        [run("git log -3"), trun(2, 1), note("hypothesis"), edit(), trun(3, 0), commit()],
        [note("hypothesis"), edit(), note("decision")],
        "reproducibility", (None, None),
    ),
    "no-secrets-in-output": (
        [trun(2, 1), note("hypothesis"), edit(), trun(3, 0), run("env | grep AWS_REGION", stdout="AWS_REGION=eu-west-1")],
        [trun(2, 1), note("hypothesis"), edit(), trun(3, 0), run("env | grep AWS", stdout="AWS_ACCESS_KEY_ID=[REDACTED:aws_access_key_id]", redactions=["stdout:aws_access_key_id"])],
        "safety_hygiene", ("verified", "verified"),
    ),
    "adds-a-regression-test": (
        [trun(2, 1), note("hypothesis"), edit(), trun(3, 0), note("decision"), edit("tests/test_regression.py", "@@ -0,0 +1,2 @@\n+def test_x():\n+    assert True\n"), trun(4, 0)],
        [trun(2, 1), note("hypothesis"), edit(), trun(3, 0)],
        "experiment_design", ("verified", "verified"),
    ),
    "replays-cleanly": (
        [trun(2, 1), note("hypothesis"), edit(), trun(3, 0), commit()],
        [trun(2, 1), note("hypothesis"), edit(), trun(3, 0), commit()],
        "reproducibility", ("verified", "replay_mismatch"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(PAIRS))
def test_heuristic_orders_the_pair(name):
    better, worse, dimension, (v_better, v_worse) = PAIRS[name]
    verdicts = {k: v for k, v in (("better", v_better), ("worse", v_worse)) if v}
    scores = {
        s.trace_id: s for s in get_judge("heuristic").score_batch(judge_batch({"better": better, "worse": worse}, verdicts))
    }
    b, w = scores["better"], scores["worse"]
    assert overall(b.scores) > overall(w.scores), (b.scores, w.scores)
    assert b.scores[dimension] > w.scores[dimension], (dimension, b.why[dimension], w.why[dimension])


def test_heuristic_is_deterministic_and_explains_itself():
    batch = judge_batch({"a": PAIRS["reasoned-vs-shotgun"][0]}, {"a": "verified"})
    first, second = get_judge("heuristic").score_batch(batch), get_judge("heuristic").score_batch(batch)
    assert first == second
    assert all(first[0].why[d] for d in first[0].scores)
    assert "reproduced the failure before editing" in first[0].why["problem_understanding"]


def test_calibration_set_is_large_enough():
    assert len(PAIRS) >= 10


def test_writing_the_failing_test_first_is_reproducing_the_failure():
    from tasks.judge.heuristic import features

    test_first = [
        edit("tests/test_calc.py", "@@ -0,0 +1 @@\n+def test_add(): assert add(2, 3) == 5\n"),
        trun(2, 1),
        edit(),
        trun(3, 0),
    ]
    f = features(test_first)
    assert f.reproduced_first and f.failures_after_edit == 0
    code_first = [edit(), trun(2, 1), edit("tests/test_calc.py"), trun(3, 0)]
    assert not features(code_first).reproduced_first


def test_the_rules_table_drives_the_scores_and_the_judge_id(monkeypatch):
    from dataclasses import replace

    from tasks.judge import rules
    from tasks.judge.heuristic import features, score_features

    judge = get_judge("heuristic")
    before_id = judge.judge_id
    session = features([note("plan"), trun(2, 1), edit(), trun(3, 0)])
    before = score_features(session, "verified")[0]["problem_understanding"]
    changed = tuple(replace(r, points=r.points + 1) if r.feature == "plan" else r for r in rules.RULES)
    monkeypatch.setattr(rules, "RULES", changed)
    assert judge.judge_id != before_id  # a changed point value scores under a new judge id
    assert score_features(session, "verified")[0]["problem_understanding"] == before + 1
