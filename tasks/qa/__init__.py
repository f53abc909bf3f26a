"""QA: prove, in a sandbox, whether each trace's recorded edits fix its failing tests.

    store       which traces need verifying, their inputs from the lake, storing qa_runs rows
    verify      one trace: replay, the after and before runs, grade -> a qa_runs row and its evidence
    grade       the verdict, a pure function of the two runs' reports and the session's targets
    regrade     stored reports graded again with the current rules, nothing run
    sandbox/    the back-ends (docker, gVisor, namespace) behind one interface

How tests are run and reported (runners, reporters, report parsing) is shared with the recorder:
client/testruns/.
"""

from tasks.qa.grade import GRADER_VERSION, grade
from tasks.qa.regrade import regrade_traces
from tasks.qa.sandbox import get_sandbox
from tasks.qa.store import QaSummary, load_qa_inputs, pending_inputs, store_outcomes
from tasks.qa.verify import RUNNER_VERSION, verify_trace

__all__ = [
    "GRADER_VERSION",
    "RUNNER_VERSION",
    "QaSummary",
    "get_sandbox",
    "grade",
    "load_qa_inputs",
    "pending_inputs",
    "regrade_traces",
    "store_outcomes",
    "verify_trace",
]
